"""Pretraining: CLIP PPG↔ECG on PyTorch DDP (torchrun), a generic task-based training loop with exact
resume, and distributed helpers. Importing this package imports torch."""

from anyppg_edge.models.clip import ClipConfig, ClipModel, Projector
from anyppg_edge.train.clip import ClipLoss, ClipTask
from anyppg_edge.train.distributed import (
    DistributedBatchNorm1d,
    barrier,
    convert_sync_batchnorm,
    init_distributed,
    is_main,
    rank,
    world_size,
)
from anyppg_edge.train.trainer import (
    PairedArrayDataset,
    ShardedBatchSampler,
    TrainConfig,
    Trainer,
    WarmupCosine,
    atomic_torch_save,
    build_optimizer,
    load_checkpoint,
    seed_everything,
    train_clip,
)

__all__ = [
    "ClipConfig",
    "ClipLoss",
    "ClipModel",
    "ClipTask",
    "DistributedBatchNorm1d",
    "PairedArrayDataset",
    "Projector",
    "ShardedBatchSampler",
    "TrainConfig",
    "Trainer",
    "WarmupCosine",
    "atomic_torch_save",
    "barrier",
    "build_optimizer",
    "convert_sync_batchnorm",
    "init_distributed",
    "is_main",
    "load_checkpoint",
    "rank",
    "seed_everything",
    "train_clip",
    "world_size",
]
