"""Batch encoding of preprocessed windows with input checks and a progress bar."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from anyppg_edge.errors import InvalidSignalError


def check_model_input(windows: np.ndarray, window_samples: int) -> np.ndarray:
    """Validate ``[N, window_samples]`` (or ``[N, 1, window_samples]``) float windows; return ``[N,1,L]`` float32."""
    arr = np.asarray(windows)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise InvalidSignalError(f"model input must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[1] != 1:
        raise InvalidSignalError(
            f"model input must have shape [N, {window_samples}] or [N, 1, {window_samples}], got {arr.shape}"
        )
    if arr.shape[-1] != window_samples:
        raise InvalidSignalError(
            f"model input windows must have {window_samples} samples, got {arr.shape[-1]} "
            "(too short or resampled at the wrong rate?)"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise InvalidSignalError(f"model input has {int(bad.sum())} NaN/Inf values in windows {rows[:10].tolist()}")
    return arr.astype(np.float32, copy=False)


@torch.no_grad()
def encode_windows(
    model: nn.Module, windows: np.ndarray, window_samples: int = 1250, batch_size: int = 64, progress: bool = True
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
