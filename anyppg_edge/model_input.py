"""Validation of preprocessed model-input windows, numpy only: shared by the PyTorch encoders and
the torch-free device runtimes (:mod:`anyppg_edge.deploy.runtime`)."""

from __future__ import annotations

import numpy as np

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
