"""Hand-crafted baselines: spectral PPG<->ECG matching and spectral-peak heart rate.

**Spectral retrieval baseline.** Each preprocessed 10 s window (125 Hz, 1,250 samples) is described
by its log power spectrum between 0.5 and 4 Hz (30-240 bpm: the heart-rate fundamental and, at low
rates, its second harmonic), mean-centred per window; PPG and ECG features live on the same
frequency grid, so a PPG window is matched to the ECG window whose spectrum it correlates with best
(cosine). Whatever a subject's heart rate (and its changes) share between the two signals is what
this baseline can use; no learning is involved.

Welch settings (:data:`WELCH_NPERSEG` = the window length, :data:`WELCH_NFFT` = 4096): a single Hann-windowed
segment spanning the whole window gives the finest resolution a 10 s window allows (0.1 Hz bin
spacing, ~0.2 Hz / 12 bpm main lobe); ``nfft`` 4096 zero-pads it to a 0.03 Hz grid (~1.8 bpm), so a
few-bpm heart-rate difference moves the peak across grid points. Shorter segments (``nperseg`` 512:
four averaged segments, 0.24 Hz bins, ~0.5 Hz / 29 bpm main lobe) trade that resolution for lower
variance, which blurs exactly the heart-rate differences that separate windows within a pool; on the
shared recordings they give a lower R@1 (see :func:`main`, which reports both).

**Spectral-peak heart rate.** :func:`spectral_peak_hr_bpm`: Welch spectrum (same settings, 0.7-3.5 Hz
by default, i.e. 42-210 bpm), highest bin refined by parabolic interpolation of the log power.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal

from anyppg_edge.preprocessing import DEFAULT_CONFIG

__all__ = [
    "SPECTRAL_BAND_HZ",
    "WELCH_NFFT",
    "WELCH_NPERSEG",
    "heart_rate_codes",
    "log_spectrum",
    "main",
    "spectral_features",
    "spectral_peak_hr_bpm",
]

SPECTRAL_BAND_HZ = (0.5, 4.0)
WELCH_NPERSEG = DEFAULT_CONFIG.window_samples  # one Hann segment over the whole window
WELCH_NFFT = 4096


def _windows_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim == 3 and arr.shape[1] == 1:  # [B, 1, L] model inputs
        arr = arr[:, 0]
    if arr.ndim != 2 or arr.shape[1] < 8:
        raise ValueError(f"{name} must be windows [n, samples] (or [n, 1, samples]), got shape {np.shape(x)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def _welch(x: np.ndarray, fs: float, nperseg: int, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    nper = min(nperseg, x.shape[1])
    return signal.welch(x, fs=fs, nperseg=nper, nfft=max(nfft, nper), detrend="constant", axis=-1)


def log_spectrum(
    windows: Any,
    fs: float = 125.0,
    band_hz: tuple[float, float] = SPECTRAL_BAND_HZ,
    nperseg: int = WELCH_NPERSEG,
    nfft: int = WELCH_NFFT,
) -> tuple[np.ndarray, np.ndarray]:
    """``(freqs [F], features [n, F])``: log10 Welch power within ``band_hz``, mean-centred per window."""
    x = _windows_2d(windows, "windows")
    f, p = _welch(x, fs, nperseg, nfft)
    keep = (f >= band_hz[0]) & (f <= band_hz[1])
    logp = np.log10(p[:, keep] + 1e-12)
    return f[keep], logp - logp.mean(axis=1, keepdims=True)


def spectral_features(
    ppg: Any,
    ecg: Any,
    fs: float = 125.0,
    band_hz: tuple[float, float] = SPECTRAL_BAND_HZ,
    nperseg: int = WELCH_NPERSEG,
    nfft: int = WELCH_NFFT,
) -> tuple[np.ndarray, np.ndarray]:
    """The spectral baseline's ``(ppg_features, ecg_features)``, paired row by row, for
    :func:`~anyppg_edge.eval.retrieval.pooled_retrieval` (cosine similarity)."""
    _, fp = log_spectrum(ppg, fs, band_hz, nperseg, nfft)
    _, fe = log_spectrum(ecg, fs, band_hz, nperseg, nfft)
    if fp.shape != fe.shape:
        raise ValueError(
            f"ppg and ecg must be paired windows of the same shape, got {fp.shape} and {fe.shape}"
        )
    return fp.astype(np.float32), fe.astype(np.float32)


def heart_rate_codes(hr_bpm: Any, sigma_bpm: float = 1.0, range_bpm: tuple[float, float] = (20.0, 260.0)) -> np.ndarray:
    """Heart rates as Gaussian codes (one bump of width ``sigma_bpm`` on a 0.25 bpm grid) so that
    cosine similarity falls monotonically with the heart-rate difference: retrieval by these codes
    ranks windows exactly by ``|HR_query - HR_gallery|``. Given the same reference HR on both sides
    (e.g. from the ECG R peaks) it is a *heart-rate oracle*: the best retrieval any method that knows
    only each window's mean heart rate can reach. A NaN rate gives an all-zero code (never matched)."""
    hr = np.asarray(hr_bpm, dtype=np.float64).reshape(-1)
    if not sigma_bpm > 0:
        raise ValueError(f"sigma_bpm must be > 0, got {sigma_bpm}")
    grid = np.arange(range_bpm[0], range_bpm[1] + 0.25, 0.25)
    codes = np.exp(-0.5 * ((grid[None, :] - hr[:, None]) / sigma_bpm) ** 2)
    return np.nan_to_num(codes, nan=0.0).astype(np.float32)


def spectral_peak_hr_bpm(
    windows: Any,
    fs: float = 125.0,
    band_hz: tuple[float, float] = (0.7, 3.5),
    nperseg: int = WELCH_NPERSEG,
    nfft: int = 8192,
) -> np.ndarray | float:
    """Heart rate (bpm) at the Welch spectral peak within ``band_hz``, per window.

    ``windows``: ``[n, samples]`` (or one 1-D window -> a float). Parabolic interpolation of the log
    power around the peak bin refines it below the grid spacing.
    """
    single = np.asarray(windows).ndim == 1
    x = _windows_2d(windows, "windows")
    f, p = _welch(x, fs, nperseg, nfft)
    sel = np.flatnonzero((f >= band_hz[0]) & (f <= band_hz[1]))
    if sel.size < 3:
        raise ValueError(f"band {band_hz} Hz holds fewer than 3 spectral bins at fs={fs} Hz")
    logp = np.log(p[:, sel] + 1e-20)
    k = np.argmax(logp, axis=1)
    kk = np.clip(k, 1, sel.size - 2)
    rows = np.arange(x.shape[0])
    a, b, c = logp[rows, kk - 1], logp[rows, kk], logp[rows, kk + 1]
    denom = a - 2 * b + c
    delta = np.where((k == kk) & (denom < 0), 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    df = f[1] - f[0]
    hr = (f[sel][k] + np.clip(delta, -0.5, 0.5) * df) * 60.0
    return float(hr[0]) if single else hr


def main(argv: list[str] | None = None) -> dict:
    """``python -m anyppg_edge.eval.baselines``: the spectral baseline on the shared real recordings
    (10 s windows, 2 s hop, no ECG-quality filter), pools of 64, overall and per dataset."""
    import argparse
    import json
    import time

    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.windows import WindowSet, extract_windows
    from anyppg_edge.eval.retrieval import pooled_retrieval

    ap = argparse.ArgumentParser(prog="python -m anyppg_edge.eval.baselines")
    ap.add_argument("--pool-size", type=int, default=64)
    ap.add_argument("--hop-s", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    ws = WindowSet.concat(
        [extract_windows(r, hop_s=args.hop_s, ecg_quality=False) for r in load_shared_recordings()]
    )
    t_prep = time.perf_counter() - t0
    out: dict[str, Any] = {
        "n_windows": len(ws),
        "rejected": dict(ws.rejected),
        "prep_seconds": round(t_prep, 1),
    }
    settings = ((f"nperseg{WELCH_NPERSEG}_nfft{WELCH_NFFT}", WELCH_NPERSEG, WELCH_NFFT), ("nperseg512_nfft2048", 512, 2048))
    for label, nper, nfft in settings:
        fp, fe = spectral_features(ws.ppg, ws.ecg, nperseg=nper, nfft=nfft)
        mixed = pooled_retrieval(fp, fe, pool_size=args.pool_size, seed=args.seed)
        by_ds = pooled_retrieval(fp, fe, pool_size=args.pool_size, seed=args.seed, groups=ws.dataset)
        out[label] = {"mixed_pools": mixed, "per_dataset_pools": by_ds}
    keys = ("R@1", "R@5", "R@10", "mAP@10", "MRR")
    print(
        f"{len(ws)} windows (10 s, hop {args.hop_s:g} s) from the shared recordings; pools of "
        f"{args.pool_size} (chance R@1 {1 / args.pool_size:.3f})"
    )
    for label, _, _ in settings:
        res = out[label]
        print(f"\n{label}")
        print(f"{'':<28}" + "".join(f"{k:>8}" for k in keys) + f"{'n':>7}")
        m = res["mixed_pools"]
        print(f"{'all (mixed pools)':<28}" + "".join(f"{m[k]:>8.3f}" for k in keys) + f"{m['n_queries']:>7}")
        d = res["per_dataset_pools"]
        for name, r in d["per_group"].items():
            print(f"{name:<28}" + "".join(f"{r[k]:>8.3f}" for k in keys) + f"{r['n_queries']:>7}")
        print(f"{'per-dataset, weighted':<28}" + "".join(f"{d['weighted'][k]:>8.3f}" for k in keys))
        print(f"{'per-dataset, macro':<28}" + "".join(f"{d['macro'][k]:>8.3f}" for k in keys))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
