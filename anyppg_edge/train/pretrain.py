"""Pretraining from prepared shards (single process or ``torchrun``) with retrieval evaluation.

    python -m anyppg_edge prepare-data --shared --out runs/data
    torchrun --nproc_per_node=8 -m anyppg_edge pretrain --shards runs/data --model anyppg-paper \\
        --steps 200000 --batch-size 256 --out runs/pretrain
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anyppg_edge.errors import ConfigError
from anyppg_edge.report import write_json


def evaluate_retrieval(ppg_emb, ecg_emb, pool_size: int = 64, groups=None, seed: int = 0) -> dict[str, Any]:
    """PPG→ECG retrieval in random pools (pool shrunk to the set size when the set is small)."""
    from anyppg_edge.eval.retrieval import pooled_retrieval

    n = len(ppg_emb)
    if n < 2:
        raise ConfigError(f"retrieval needs at least 2 pairs, got {n}")
    return pooled_retrieval(ppg_emb, ecg_emb, pool_size=min(pool_size, n), seed=seed, groups=groups)


def pretrain_from_shards(
    shards_dir: str | Path, clip_cfg, train_cfg, pool_size: int = 64, eval_split: str = "val", augment=None
) -> dict[str, Any]:
    """Train CLIP on the ``train`` split, evaluate PPG→ECG retrieval on ``eval_split`` (rank 0) next to
    the spectral baseline on the same windows; writes ``retrieval.json`` in ``train_cfg.out_dir``. A batch
    below 2 (no in-batch negatives) or above the training windows is a
    :class:`~anyppg_edge.errors.ConfigError` (:func:`~anyppg_edge.train.trainer.train_clip`)."""
    import numpy as np

    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.eval.baselines import spectral_features
    from anyppg_edge.train import distributed as D
    from anyppg_edge.train.trainer import train_clip

    train_ds = ShardDataset(shards_dir, split="train")
    if len(train_ds) == 0:
        raise ConfigError(f"{shards_dir}: the train split holds no windows; prepare shards with training subjects")
    eval_ds = ShardDataset(shards_dir, split=eval_split)
    result = train_clip(train_ds, eval_ds if len(eval_ds) else None, clip_cfg, train_cfg, augment=augment)
    if not D.is_main() or "val_ppg_emb" not in result:
        return result
    ppg, ecg = eval_ds.get_batch(np.arange(len(eval_ds)))
    retrieval = {
        "split": eval_split,
        "n_windows": len(eval_ds),
        "model": evaluate_retrieval(result.pop("val_ppg_emb"), result.pop("val_ecg_emb"), pool_size),
        "spectral_baseline": evaluate_retrieval(*spectral_features(ppg[:, 0], ecg[:, 0]), pool_size),
    }
    result["retrieval"] = retrieval
    write_json(Path(train_cfg.out_dir) / "retrieval.json", retrieval)
    return result
