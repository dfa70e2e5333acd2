"""Distillation's models: a frozen :class:`Teacher` (a PPG encoder, and for a CLIP teacher its
projector and ECG tower) and the :class:`StudentModel` (the deployable student encoder plus its
training heads). Losses and the run live in :mod:`anyppg_edge.train.distill`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.models.clip import Projector
from anyppg_edge.models.registry import create_model

__all__ = ["StudentModel", "Teacher"]


class Teacher(nn.Module):
    """A frozen teacher: ``features(ppg)`` (encoder output), and for a CLIP teacher ``ppg_embedding``
    / ``ecg_embedding`` (L2-normalised CLIP space) and its logit scale."""

    def __init__(self, ppg_encoder: nn.Module, clip: nn.Module | None = None, source: str = "", sha256: str = ""):
        super().__init__()
        self.ppg_encoder = ppg_encoder
        self.clip = clip
        self.source, self.sha256 = source, sha256
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teacher:  # always eval: BN statistics and dropout frozen
        return super().train(False)

    @property
    def has_ecg(self) -> bool:
        return self.clip is not None

    @property
    def feature_dim(self) -> int:
        return int(self.ppg_encoder.out_dim)

    @property
    def embed_dim(self) -> int | None:
        return None if self.clip is None else int(self.clip.embed_dim)

    @torch.no_grad()
    def outputs(self, ppg: torch.Tensor, ecg: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        feat = self.ppg_encoder(ppg)
        out = {"t_feat": feat}
        if self.clip is not None:
            out["t_ppg"] = F.normalize(self.clip.ppg_proj(feat), dim=-1)
            if ecg is not None:
                out["t_ecg"] = self.clip.encode_ecg(ecg)
        return out

    def logit_scale(self) -> float:
        return float(self.clip.scale()) if self.clip is not None else 1.0 / 0.07

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sha256": self.sha256,
            "kind": "clip" if self.has_ecg else "ppg-encoder",
            "ppg_model": getattr(self.ppg_encoder, "name", ""),
            "feature_dim": self.feature_dim,
            "embed_dim": self.embed_dim,
        }


class StudentModel(nn.Module):
    """Student encoder (the deployable part) + training heads: ``adapter`` (student dim → teacher
    feature dim) and, for a CLIP teacher, ``clip_head`` (a projector into the teacher's CLIP space)."""

    def __init__(self, student: str, teacher_feature_dim: int, teacher_embed_dim: int | None):
        super().__init__()
        self.encoder = create_model(student)
        d = int(self.encoder.out_dim)
        self.adapter = nn.Linear(d, int(teacher_feature_dim))
        self.clip_head = None if teacher_embed_dim is None else Projector(d, max(d, teacher_embed_dim), teacher_embed_dim)
        # teacher-feature standardisation (set from the training targets; saved with the checkpoint)
        self.register_buffer("feat_mean", torch.zeros(int(teacher_feature_dim)))
        self.register_buffer("feat_std", torch.ones(int(teacher_feature_dim)))

    @torch.no_grad()
    def set_feature_stats(self, teacher_features: torch.Tensor) -> None:
        """Standardise the teacher's features for the MSE: per-dimension mean, one scale for all
        dimensions (the RMS of the centred features, floored at 1 % of the features' RMS), so that a
        near-constant teacher dimension is not blown up. The adapter starts exactly at the mean
        (zero weight, bias = mean): the regression loss starts at 1 and its first steps are not spent
        undoing a random projection."""
        f = torch.as_tensor(teacher_features, dtype=torch.float32)
        mean = f.mean(0)
        spread = float((f - mean).pow(2).mean().sqrt())
        scale = max(spread, 0.01 * float(f.pow(2).mean().sqrt()), 1e-8)
        self.feat_mean.copy_(mean)
        self.feat_std.fill_(scale)
        self.adapter.weight.zero_()
        self.adapter.bias.copy_(mean)

    def forward(self, ppg: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.encoder(ppg)
        pred = self.adapter(feat)
        emb = F.normalize(self.clip_head(feat) if self.clip_head is not None else pred, dim=-1)
        return {"feat": feat, "pred_feat": pred, "emb": emb}

    @torch.no_grad()
    def embed(self, ppg: torch.Tensor) -> torch.Tensor:
        return self.forward(ppg)["emb"]
