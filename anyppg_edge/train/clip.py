"""CLIP-style PPG↔ECG pretraining: the symmetric InfoNCE loss with embeddings all-gathered across DDP
ranks and the trainer task (open_clip conventions). The model is :mod:`anyppg_edge.models.clip`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.models.clip import ClipModel
from anyppg_edge.train import distributed as D
from anyppg_edge.train.augment import AugmentConfig, joint_augment


class ClipLoss(nn.Module):
    """Symmetric InfoNCE: mean of the PPG→ECG and ECG→PPG cross-entropies.

    Under DDP (``gather=True`` and world size > 1) each rank scores its local rows against the
    embeddings of **all** ranks (all-gathered with gradients flowing back to the owning rank), with
    labels offset by ``rank * local_batch`` (open_clip's ``local_loss=True, gather_with_grad=True``).
    DDP's gradient averaging then gives exactly the gradient of the loss on the global batch.
    """

    def forward(
        self, ppg: torch.Tensor, ecg: torch.Tensor, logit_scale: torch.Tensor, gather: bool = True
    ) -> dict[str, torch.Tensor]:
        if ppg.dtype in (torch.float16, torch.bfloat16):  # loss in >= float32 (float64 kept)
            ppg, ecg = ppg.float(), ecg.float()
        n = ppg.shape[0]
        offset = 0
        all_ppg, all_ecg = ppg, ecg
        if gather and D.world_size() > 1:
            all_ppg, all_ecg = D.all_gather_with_grad(ppg), D.all_gather_with_grad(ecg)
            offset = D.rank() * n
        labels = torch.arange(n, device=ppg.device) + offset
        logits_ppg = logit_scale * ppg @ all_ecg.T
        logits_ecg = logit_scale * ecg @ all_ppg.T
        loss = (F.cross_entropy(logits_ppg, labels) + F.cross_entropy(logits_ecg, labels)) / 2
        return {"contrastive_loss": loss}


class ClipTask(nn.Module):
    """Trainer task: ``forward(batch)`` → losses (keys ending ``_loss``) and metrics; ``embed(batch)``.

    In training mode the batch is augmented (``augment``, off by default) and the loss gathers over
    ranks; in eval mode it is computed on the local batch only (the trainer validates every rank on
    the whole validation set with the global batch size).
    """

    def __init__(self, model: ClipModel, loss: ClipLoss | None = None, augment: AugmentConfig | None = None):
        super().__init__()
        self.model = model
        self.loss = loss or ClipLoss()
        self.augment = augment or AugmentConfig()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ppg, ecg = batch["ppg"], batch["ecg"]
        if self.training and self.augment.enabled:
            ppg, ecg = joint_augment(ppg, ecg, self.augment)
        out = self.model(ppg, ecg)
        losses = self.loss(out["ppg"], out["ecg"], out["logit_scale"], gather=self.training)
        return {**losses, "logit_scale": out["logit_scale"].detach()}

    @torch.no_grad()
    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_ppg(batch["ppg"]), self.model.encode_ecg(batch["ecg"])
