"""Batch encoding of preprocessed windows with input checks and a progress bar."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from anyppg_edge.model_input import check_model_input
from anyppg_edge.preprocessing import DEFAULT_CONFIG

__all__ = ["check_model_input", "encode_windows"]


@torch.no_grad()
def encode_windows(
    model: nn.Module, windows: np.ndarray, window_samples: int = DEFAULT_CONFIG.window_samples, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """Embeddings ``[N, D]`` (float32) of preprocessed windows, in eval mode, batch by batch."""
    x = check_model_input(windows, window_samples)
    was_training = model.training
    model.eval()
    outs = []
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="encode", unit="batch", leave=False)
    try:
        for i in starts:
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).numpy())
    finally:
        model.train(was_training)
    if not outs:
        return np.zeros((0, getattr(model, "out_dim", 0)), np.float32)
    return np.concatenate(outs)
