"""Validation of preprocessed model-input windows, numpy only: shared by the PyTorch encoders and
the torch-free device runtimes (:mod:`anyppg_edge.deploy.runtime`).

* :func:`check_model_input`: shape, dtype, and finite values *after* the cast to float32 (a float64
  window with values beyond 3.4e38 is finite but becomes Inf in float32: refused, not fed).
* :func:`check_normalized`: the windows look like the contract's per-window z-score (mean 0, std 1),
  within the bounds below; raw ADC codes or unscaled filtered signals are refused.
"""

from __future__ import annotations

import numpy as np

from anyppg_edge.errors import InvalidSignalError

__all__ = [
    "ZSCORE_MEAN_MAX",
    "ZSCORE_STD_MAX",
    "ZSCORE_STD_MIN",
    "check_model_input",
    "check_normalized",
    "not_normalized",
    "window_stats",
]

# Bounds of check_normalized(). A window z-scored by the contract's chain ((x - mean) / (std + 1e-8),
# float32) has mean 0 and std 1 up to float32 rounding. Measured on every window of ../shared
# (931 windows: extract_windows over load_shared_recordings(), hops of 10 s and 5 s) and on the
# committed default calibration set (64 windows): |mean| <= 2.8e-8 and 0.9999997 <= std <= 1.0000001
# (max |x| 7.8). The bounds leave orders of magnitude of margin for device-side z-scores (another eps,
# fixed point, int8-dequantized windows: quantization noise of a few % of the std) and for unit-normal
# test noise (the mean of a 10 s window's L = 1,250 N(0, 1) samples has sd 0.028, their std sd 0.02: these bounds are 9 and
# 10 sd away), while raw ADC codes (30000 +- 500), unscaled filtered signals (std 50, or 0.001 in
# volts) and recording-level normalisation that is off by more than 25 % are refused. All-zero windows
# pass: they are what the z-score makes of a constant window.
ZSCORE_MEAN_MAX = 0.25
ZSCORE_STD_MIN = 0.8
ZSCORE_STD_MAX = 1.25


def check_model_input(windows: np.ndarray, window_samples: int) -> np.ndarray:
    """Validate ``[N, window_samples]`` (or ``[N, 1, window_samples]``) real windows; return
    ``[N, 1, L]`` float32, every value finite *after* the cast (InvalidSignalError naming the windows)."""
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
    with np.errstate(over="ignore", invalid="ignore"):
        x = arr.astype(np.float32, copy=False)  # cast first, then check: 1e300 is finite in float64
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        src_bad = ~np.isfinite(arr) if arr.dtype != np.float32 and arr.dtype.kind == "f" else bad
        if src_bad.any():
            raise InvalidSignalError(
                f"model input has {int(src_bad.sum())} NaN/Inf values in windows {rows[:10].tolist()}"
            )
        with np.errstate(invalid="ignore"):
            peak = float(np.max(np.abs(arr[rows[0]])))
        raise InvalidSignalError(
            f"model input windows {rows[:10].tolist()} hold {int(bad.sum())} values that overflow float32 "
            f"(|x| up to {peak:.3g}, float32 holds at most 3.4e38): model inputs are z-scored windows "
            "(mean 0, std 1); preprocess the raw signal with preprocess_ppg_window first"
        )
    return x


def window_stats(x: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Per-window mean and population std (float64 accumulation) of ``[N, ..., L]`` windows, in
    chunks of ``chunk`` windows (the float64 temporaries stay small for large batches)."""
    flat = np.asarray(x).reshape(len(x), -1)
    mean, std = np.empty(len(flat)), np.empty(len(flat))
    for i in range(0, len(flat), chunk):
        part = flat[i : i + chunk]
        mean[i : i + chunk] = part.mean(axis=1, dtype=np.float64)
        std[i : i + chunk] = part.std(axis=1, dtype=np.float64)
    return mean, std


def not_normalized(x: np.ndarray) -> np.ndarray:
    """Indices of the windows outside the z-score bounds (all-zero windows count as normalised)."""
    if len(x) == 0:
        return np.zeros(0, np.int64)
    mean, std = window_stats(x)
    zero = (std == 0) & (mean == 0)
    bad = (np.abs(mean) > ZSCORE_MEAN_MAX) | (std > ZSCORE_STD_MAX) | ((std < ZSCORE_STD_MIN) & ~zero)
    return np.flatnonzero(bad)


def check_normalized(x: np.ndarray, what: str = "model input") -> None:
    """Refuse windows that are clearly not per-window z-scored (:class:`InvalidSignalError` naming
    them, their mean and std). ``x``: finite ``[N, 1, L]`` or ``[N, L]`` (after :func:`check_model_input`).
    Bounds: ``|mean| <= ZSCORE_MEAN_MAX`` and ``ZSCORE_STD_MIN <= std <= ZSCORE_STD_MAX``, or all zeros."""
    bad = not_normalized(x)
    if bad.size == 0:
        return
    mean, std = window_stats(np.asarray(x)[bad[:3]])
    shown = "; ".join(f"window {i}: mean {m:.4g}, std {s:.4g}" for i, m, s in zip(bad[:3], mean, std, strict=True))
    raise InvalidSignalError(
        f"{what}: {bad.size} of {len(x)} windows are not z-scored ({shown}"
        f"{'; ...' if bad.size > 3 else ''}; windows {bad[:10].tolist()}). Encoders take per-window z-scored "
        f"windows (mean 0, std 1; accepted: |mean| <= {ZSCORE_MEAN_MAX:g}, {ZSCORE_STD_MIN:g} <= std <= "
        f"{ZSCORE_STD_MAX:g}, or all zeros): raw ADC codes or an unscaled filtered signal? Run "
        "preprocess_ppg_window (or the Streamer) first, or pass check_normalized=False to open_encoder() / "
        "Encoder.embed() if these windows are meant as they are"
    )
