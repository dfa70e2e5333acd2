"""Training checkpoints: atomic saves and the checked reader of the trainer's checkpoint format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from anyppg_edge.errors import CheckpointError
from anyppg_edge.io import atomic_write
from anyppg_edge.models.checkpoint import TRAINER_CHECKPOINT_FORMAT, torch_load

CHECKPOINT_FORMAT = TRAINER_CHECKPOINT_FORMAT


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`anyppg_edge.io.atomic_write`: a crash leaves either the old file or
    the new one, never a partial file under ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


_REQUIRED_KEYS = ("format", "model", "optimizer", "scheduler", "step", "sampler", "rng", "train_config")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only`` loading); any problem is a :class:`CheckpointError`
    naming the file."""
    path = Path(path)
    ckpt = torch_load(path, "training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an anyppg-edge training checkpoint ({CHECKPOINT_FORMAT})")
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"training checkpoint {path} lacks keys {missing}")
    return ckpt
