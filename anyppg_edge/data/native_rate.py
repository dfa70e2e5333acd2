"""Native-rate windows: a recording's PPG as a watch sensor samples it, preprocessed at that rate.

A watch PPG sensor delivers 25-64 Hz. A native-rate encoder (its registry config's
``input_sample_rate_hz`` equals the sensor's output data rate) reads those samples directly: the
preprocessing chain band-passes and z-scores at the sensor's rate and resamples nothing
(``resample_poly`` at 1/1 is skipped). The offline windows it is trained and tested on come from one
function, :func:`sample_like_sensor`: the analog front-end of the emulated sensor
(:mod:`anyppg_edge.stream.sensor` uses the same :func:`sensor_front_end`) read at ``k / odr_hz``, an
ideal sensor (no clock drift, no ADC quantisation, no faults). :func:`native_rate_windows` then cuts
the window that starts at each ``start_s`` and preprocesses it with :func:`native_config`, the
contract's configuration at that rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import interpolate, signal

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.recording import Channel, Recording
from anyppg_edge.errors import ConfigError, InvalidSignalError
from anyppg_edge.preprocessing import native_config

__all__ = [
    "ANTIALIAS_FRACTION",
    "ANTIALIAS_ORDER",
    "REFERENCE_SAMPLE_RATE_HZ",
    "NativeWindows",
    "as_sensor_recording",
    "is_native_rate",
    "model_input_recording",
    "native_config",
    "native_rate_windows",
    "reference_config",
    "sample_like_sensor",
    "sensor_front_end",
    "source_nan_at",
]

# The official AnyPPG input rate: a model at this rate reads windows resampled from the recording
# (the reference chain); a model at any other rate is a native-rate model and reads what a sensor at
# that rate delivers.
REFERENCE_SAMPLE_RATE_HZ = pp.DEFAULT_CONFIG.target_sample_rate_hz
ANTIALIAS_ORDER = 8
ANTIALIAS_FRACTION = 0.4  # low-pass cutoff as a fraction of the ODR (below its 0.5 Nyquist)


def sensor_front_end(ppg: Channel, odr_hz: float) -> tuple[interpolate.CubicSpline, np.ndarray]:
    """The sensor's analog front-end: a cubic spline through the PPG (zero-phase 8th-order Butterworth
    low-pass at ``0.4 * odr_hz`` first, when that decimates), and the source's NaN mask. The spline
    is exact at the source's own sample times."""
    x = np.asarray(ppg.data, dtype=np.float64)
    fs = ppg.sample_rate_hz
    nan = ~np.isfinite(x)
    if nan.all():
        raise InvalidSignalError("the recording's PPG channel has no finite samples")
    if nan.any():  # fill for filtering / interpolation; those times are never sampled
        idx = np.arange(x.size)
        x = np.interp(idx, idx[~nan], x[~nan])
    if odr_hz < fs and x.size > 3 * (2 * ANTIALIAS_ORDER + 1):  # decimating: band-limit first
        sos = signal.butter(ANTIALIAS_ORDER, ANTIALIAS_FRACTION * odr_hz, btype="lowpass", fs=fs, output="sos")
        x = signal.sosfiltfilt(sos, x)
    t = np.arange(x.size) / fs
    return interpolate.CubicSpline(t, x, extrapolate=False), nan


def source_nan_at(t: np.ndarray, nan: np.ndarray, source_rate_hz: float) -> np.ndarray:
    """Which times ``t`` lie next to a NaN source sample (the sensor produces nothing there)."""
    n = nan.size
    near = np.clip(np.round(t * source_rate_hz).astype(np.int64), 0, n - 1)
    lo = np.clip(np.floor(t * source_rate_hz).astype(np.int64), 0, n - 1)
    return nan[near] | nan[lo] | nan[np.minimum(lo + 1, n - 1)]


def sample_like_sensor(ppg: Channel, odr_hz: float) -> Channel:
    """The PPG channel as an ideal sensor at ``odr_hz`` delivers it: :func:`sensor_front_end` read at
    ``t = k / odr_hz`` up to the last source sample, NaN where the source is NaN. No clock drift, no
    ADC quantisation, no faults: those are the emulator's (:func:`anyppg_edge.stream.sensor.emulate`)."""
    odr = float(odr_hz)
    if not (math.isfinite(odr) and odr > 0):
        raise ConfigError(f"odr_hz must be a positive number, got {odr_hz!r}")
    spline, nan = sensor_front_end(ppg, odr)
    t_last = (ppg.n_samples - 1) / ppg.sample_rate_hz
    t = np.arange(math.floor(t_last * odr + 1e-9) + 1) / odr
    x = spline(t)
    if nan.any():
        x[source_nan_at(t, nan, ppg.sample_rate_hz)] = np.nan
    return Channel(x, odr, ppg.unit)


@dataclass
class NativeWindows:
    """Native-rate model inputs ``x`` ``[N, window_samples]`` float32 (NaN rows where the reference
    chain refuses the window: ``ok`` False, ``reason`` its message)."""

    x: np.ndarray
    ok: np.ndarray
    reason: list[str] = field(default_factory=list)
    sample_rate_hz: int = 0


def native_rate_windows(
    rec: Recording | Channel, start_s: Sequence[float] | np.ndarray, sample_rate_hz: float,
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG, *, check_quality: bool = True,
) -> NativeWindows:
    """The windows starting at ``start_s`` (seconds into the recording) as a sensor at
    ``sample_rate_hz`` samples them (:func:`sample_like_sensor`), each through
    :func:`~anyppg_edge.preprocessing.preprocess_ppg_window` at :func:`native_config` (band-pass and
    z-score at that rate, no resampling). ``rec``: a recording (its ``"ppg"`` channel) or a channel.
    A window that runs past the recording or fails the reference checks is a NaN row with ``ok``
    False."""
    ch = rec.channel("ppg") if isinstance(rec, Recording) else rec
    ncfg = native_config(cfg, sample_rate_hz)
    sensed = sample_like_sensor(ch, ncfg.target_sample_rate_hz)
    n = ncfg.window_samples
    starts = np.asarray(start_s, np.float64).reshape(-1)
    x = np.full((starts.size, n), np.nan, np.float32)
    ok = np.zeros(starts.size, bool)
    reason: list[str] = []
    for i, t0 in enumerate(starts):
        a = round(float(t0) * ncfg.target_sample_rate_hz)
        seg = sensed.data[a : a + n]
        try:
            if a < 0 or seg.size < n:
                raise InvalidSignalError(f"window at {t0:g} s runs past the recording ({ch.duration_s:g} s)")
            x[i] = pp.preprocess_ppg_window(seg, ncfg.target_sample_rate_hz, ncfg, check_quality=check_quality)
            ok[i] = True
            reason.append("")
        except InvalidSignalError as exc:
            reason.append(str(exc))
    return NativeWindows(x, ok, reason, ncfg.target_sample_rate_hz)


def is_native_rate(cfg: pp.PreprocessConfig) -> bool:
    """Whether ``cfg`` is a native-rate contract (model input at a sensor's rate, not the reference
    125 Hz): its windows come from :func:`sample_like_sensor`, not from resampling."""
    return cfg.target_sample_rate_hz != REFERENCE_SAMPLE_RATE_HZ


def as_sensor_recording(rec: Recording, sample_rate_hz: float) -> Recording:
    """``rec`` with every PPG channel (``ppg``, ``ppg2``, ...) as an ideal sensor at ``sample_rate_hz``
    delivers it (:func:`sample_like_sensor`); the ECG and other channels unchanged. Windows cut from
    it by :func:`~anyppg_edge.data.windows.extract_windows` at :func:`native_config` are exactly
    :func:`native_rate_windows` (band-pass and z-score at the sensor's rate, nothing resampled)."""
    channels = {name: (sample_like_sensor(ch, sample_rate_hz) if name.startswith("ppg") else ch)
                for name, ch in rec.channels.items()}
    return Recording(rec.subject_id, rec.dataset, channels, {**rec.meta, "sensor_rate_hz": float(sample_rate_hz)})


def model_input_recording(rec: Recording, cfg: pp.PreprocessConfig) -> Recording:
    """The recording a model of contract ``cfg`` reads its windows from: ``rec`` itself for the
    reference rate, :func:`as_sensor_recording` at the contract's rate for a native-rate model. Every
    offline window source (calibration, QAT, golden and parity sets) goes through this one rule."""
    return as_sensor_recording(rec, cfg.target_sample_rate_hz) if is_native_rate(cfg) else rec


def reference_config(cfg: pp.PreprocessConfig) -> pp.PreprocessConfig:
    """``cfg`` at the reference rate: what reference measurements (the ECG heart rate a model is scored
    against) use whatever the model's input rate, so a 25 Hz model is not scored against R peaks found
    in an ECG brought down to 25 Hz."""
    return native_config(cfg, REFERENCE_SAMPLE_RATE_HZ) if is_native_rate(cfg) else cfg
