"""Pretraining: CLIP PPG↔ECG on PyTorch DDP (torchrun), a generic task-based training loop with exact
resume, distillation and distributed helpers.

Names are imported lazily: the configs (:mod:`anyppg_edge.train.configs`) import no torch, so the
command lines build their options without loading PyTorch; the training modules import it."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClipConfig": "anyppg_edge.models.clip",
    "ClipModel": "anyppg_edge.models.clip",
    "Projector": "anyppg_edge.models.clip",
    "ClipLoss": "anyppg_edge.train.clip",
    "ClipTask": "anyppg_edge.train.clip",
    "AugmentConfig": "anyppg_edge.train.configs",
    "DistillConfig": "anyppg_edge.train.configs",
    "TrainConfig": "anyppg_edge.train.configs",
    **{n: "anyppg_edge.train.distributed" for n in (
        "DistributedBatchNorm1d", "barrier", "convert_sync_batchnorm", "init_distributed", "is_main", "rank",
        "world_size")},
    **{n: "anyppg_edge.train.trainer" for n in (
        "Trainer", "WarmupCosine", "build_optimizer", "seed_everything", "train_clip")},
    **{n: "anyppg_edge.train.datasets" for n in (
        "PairedArrayDataset", "ShardedBatchSampler", "TensorDictDataset", "check_batch_fits")},
    **{n: "anyppg_edge.train.checkpoints" for n in ("CHECKPOINT_FORMAT", "atomic_torch_save", "load_checkpoint")},
    "check_resume": "anyppg_edge.train.resume",
    "configure_threads": "anyppg_edge.train.threads",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'anyppg_edge.train' has no attribute {name!r}")
