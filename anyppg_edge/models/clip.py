"""The CLIP model of pretraining: PPG and ECG Net1D towers, projection heads and a learnable logit
scale (open_clip conventions). Its loss and trainer task live in :mod:`anyppg_edge.train.clip`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.config import dataclass_from_dict
from anyppg_edge.errors import ConfigError
from anyppg_edge.models.registry import create_model

__all__ = ["ClipConfig", "ClipModel", "Projector"]


class Projector(nn.Module):
    """Linear(in → hidden) → GELU → Linear(hidden → out); defaults hidden = in/2, out = in/4
    (paper: 1024 → 512 → 256)."""

    def __init__(self, in_dim: int, hidden_dim: int | None = None, out_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or in_dim // 2
        out_dim = out_dim or in_dim // 4
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ConfigError(f"projector dims must be >= 1, got {in_dim} -> {hidden_dim} -> {out_dim}")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@dataclass
class ClipConfig:
    """What :class:`ClipModel` is built from (JSON-serialisable)."""

    ppg_model: str = "anyppg-paper"  # registry name of the PPG encoder
    ecg_model: str = "anyppg-paper"  # registry name of the ECG encoder
    proj_hidden_dim: int | None = None  # None: encoder out_dim // 2
    proj_out_dim: int | None = None  # None: encoder out_dim // 4 (must agree between the two towers)
    init_temperature: float = 0.07  # logit_scale starts at log(1 / init_temperature)
    max_logit_scale: float = 100.0  # the scale is clamped at this value when used
    ecg_frozen: bool = False  # frozen (pretrained) ECG encoder: no grads, always eval mode
    ecg_checkpoint: str | None = None  # official-layout state_dict for the ECG encoder (strict)
    ppg_checkpoint: str | None = None  # optional PPG encoder initialisation (strict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipConfig:
        return dataclass_from_dict(cls, d)


class ClipModel(nn.Module):
    """PPG and ECG Net1D towers with projection heads and a learnable logit scale."""

    def __init__(self, cfg: ClipConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ClipConfig()
        if not cfg.init_temperature > 0:
            raise ConfigError(f"init_temperature must be > 0, got {cfg.init_temperature}")
        self.ppg_encoder = create_model(cfg.ppg_model, checkpoint=cfg.ppg_checkpoint)
        self.ecg_encoder = create_model(cfg.ecg_model, checkpoint=cfg.ecg_checkpoint)
        ppg_dim, ecg_dim = self.ppg_encoder.out_dim, self.ecg_encoder.out_dim
        out_dim = cfg.proj_out_dim
        if out_dim is None and ppg_dim // 4 != ecg_dim // 4:
            raise ConfigError(
                f"encoders {cfg.ppg_model!r} ({ppg_dim}) and {cfg.ecg_model!r} ({ecg_dim}) give different "
                "default projection sizes; set proj_out_dim explicitly"
            )
        self.ppg_proj = Projector(ppg_dim, cfg.proj_hidden_dim, out_dim)
        self.ecg_proj = Projector(ecg_dim, cfg.proj_hidden_dim, out_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.ecg_frozen = cfg.ecg_frozen
        if self.ecg_frozen:
            self.ecg_encoder.requires_grad_(False)
            self.ecg_encoder.eval()

    @property
    def embed_dim(self) -> int:
        return self.ppg_proj.out_dim

    def train(self, mode: bool = True) -> ClipModel:
        super().train(mode)
        if self.ecg_frozen:
            self.ecg_encoder.eval()  # BN running stats and dropout of the frozen tower never change
        return self

    def scale(self) -> torch.Tensor:
        """The multiplicative logit scale, exp(logit_scale) clamped at ``max_logit_scale``."""
        return self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp()

    def encode_ppg(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.ppg_proj(self.ppg_encoder(x)), dim=-1)

    def encode_ecg(self, x: torch.Tensor) -> torch.Tensor:
        if self.ecg_frozen:
            with torch.no_grad():
                feat = self.ecg_encoder(x)
        else:
            feat = self.ecg_encoder(x)
        return F.normalize(self.ecg_proj(feat), dim=-1)

    def forward(self, ppg: torch.Tensor, ecg: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ppg": self.encode_ppg(ppg), "ecg": self.encode_ecg(ecg), "logit_scale": self.scale()}
