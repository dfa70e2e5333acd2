"""Offline reference preprocessing: the official AnyPPG chain, in NumPy/SciPy only.

The official AnyPPG code (``preprocessing/*/data_processor.py``) uses MNE for filtering. This module
reproduces it without MNE, sample for sample (checked against ``shared/reference/preprocess_golden.npz``):

PPG, per 10 s segment at its native rate ``sr``:

1. quality gates on the *raw* segment: flat-line ratio (official ``detect_flat_in_windows``) and,
   added here, a saturation (clipping) ratio;
2. band-pass 0.5–8 Hz, 3rd-order Butterworth in transfer-function (``ba``) form, applied forward and
   backward the way ``mne.filter.filter_data(method='iir')`` does it: the signal is first extended at
   both ends by ``padlen`` samples of odd reflection about its end samples (MNE's
   ``"reflect_limited"`` padding; zeros beyond if the signal is shorter than the pad), where ``padlen``
   is MNE's ``estimate_ringing_samples`` of the filter, capped at ``len(x) - 1``; then
   ``filtfilt(..., padlen=0)`` and the padding is cut off again;
3. the official code casts the filtered signal to ``float32``; everything after runs in float32;
4. ``scipy.signal.resample_poly(x, 125, sr)``;
5. z-score ``(x - mean) / (std + 1e-8)``.

ECG: the same, with a 0.5 Hz 5th-order Butterworth high-pass (``ba``) and then MNE's IIR notch
(50 Hz, width 1 Hz), which MNE designs as a 4th-order Butterworth band-stop from 49 to 51 Hz in
second-order sections (the notch width plus MNE's default 1 Hz transition band), applied with
``sosfiltfilt`` and the same padding. The notch needs its upper edge (51 Hz) below Nyquist, i.e.
``sr > 102 Hz``; at lower rates MNE raises, this module **skips the notch** (documented deviation:
at 100 Hz, 50 Hz is the Nyquist frequency itself, and below that mains hum has aliased to other
frequencies that a 50 Hz notch would not reach anyway). The paper's variant, a 0.5–40 Hz band-pass, is ``PreprocessConfig(ecg_lowpass_hz=40)``.

Record-level ECG polarity correction (official ``record_ecg_invert_checker``) and the Zhao 2018 ECG
quality index (via ``neurokit2``, imported lazily) are also here.

Every function validates its input and raises :class:`~anyppg_edge.errors.InvalidSignalError` with a
message naming the problem, the value found and the value expected: samples must be finite, native
rates lie in ``[cfg.min_sample_rate_hz, MAX_SAMPLE_RATE_HZ]`` (10 kHz), and every step that can
overflow (filter, float32 cast, resampling, z-score) is checked, so a signal too large for the float32
chain (amplitude ~1e17 and up) is refused instead of coming out as zeros or NaN; a window that is
flat after filtering (std 0, or rounding noise: at most 1e-9 of its raw peak) is refused too, instead
of coming out as zeros or as amplified noise. No numpy floating-point warning leaks.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from anyppg_edge.errors import ConfigError, InvalidSignalError

__all__ = [
    "DEFAULT_CONFIG",
    "MAX_SAMPLE_RATE_HZ",
    "PreprocessConfig",
    "correct_ecg_polarity",
    "ecg_filter",
    "ecg_is_inverted",
    "ecg_quality_zhao2018",
    "estimate_ringing_samples",
    "flat_ratio",
    "is_flat",
    "is_saturated",
    "notch_applies",
    "ppg_bandpass",
    "preprocess_ecg_window",
    "preprocess_ppg_window",
    "resample_factors",
    "resample_to_target",
    "saturation_ratio",
    "segment",
    "window_length_samples",
    "zscore",
]

# MNE's IIR notch adds half of its default 1 Hz transition band on each side of the notch width.
_NOTCH_TRANSITION_HZ = 1.0
# MNE's default IIR design for notch_filter(method="iir"): 4th-order Butterworth, second-order sections.
_NOTCH_ORDER = 4
# Official polarity check: rolling window in which at least one heartbeat is expected.
_POLARITY_WINDOW_S = 2.0
# Non-integer sample rates are approximated by a fraction with at most this denominator (62.5 -> 125/2).
_RATE_MAX_DENOMINATOR = 1000
# Tolerance when turning ``seconds * rate`` into a sample count (10 * 33.3 = 332.99999999999994).
_SAMPLES_EPS = 1e-9
# Highest native sample rate accepted anywhere (the lowest is ``PreprocessConfig.min_sample_rate_hz``).
# PPG front ends sample at 25-4096 Hz (MAX30101 <= 3200 Hz, MAX86141 <= 4096 Hz), ECG front ends used
# for recordings at <= 1-2 kHz; 10 kHz leaves a wide margin and keeps resample_poly's filter small
# (a 9999.7 Hz window resamples in ~0.4 s). Far above it a rate is a unit mistake (mHz, a period
# count): 1e9 Hz made resample_poly design a 160 M-tap filter for 54 s before returning garbage. The
# 0.5-8 Hz band-pass in transfer-function form is itself unstable above ~3.2 kHz (refused there).
MAX_SAMPLE_RATE_HZ = 10_000.0
# Largest finite float32: the official chain runs in float32 after the band-pass.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# A window whose std after filtering and resampling is at most this fraction of its raw peak |x| is
# flat: what is left is float rounding noise, which the z-score would blow up to unit variance.
# Measured (PPG chain, constant windows of level 1 to 1e15): <= 7e-14 of the level up to 125 Hz,
# ~1e-11 at 1 kHz, 4e-10 at 3 kHz (the ba band-pass near its 3.2 kHz instability). Real windows of
# ../shared that pass the gates: >= 0.08; a 50-code pulse on a 24-bit ADC's 8e6 DC level: ~2.5e-6.
_NUMERIC_FLAT_RATIO = 1e-9


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------

_INT_FIELDS = ("target_sample_rate_hz", "ppg_filter_order", "ecg_filter_order")
_OPTIONAL_FLOAT_FIELDS = ("ecg_lowpass_hz", "ecg_notch_hz")


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the preprocessing chain. Defaults reproduce the official AnyPPG chain.

    This object travels with exported models as their input contract, so it is JSON-serialisable
    (:meth:`to_dict` / :meth:`from_dict`) and has a stable fingerprint (:meth:`config_hash`).
    Numeric fields are normalised on construction (``window_s=10`` and ``window_s=10.0`` are the same
    configuration and hash the same).
    """

    target_sample_rate_hz: int = 125
    window_s: float = 10.0
    ppg_band_hz: tuple[float, float] = (0.5, 8.0)
    ppg_filter_order: int = 3
    ecg_highpass_hz: float = 0.5
    ecg_lowpass_hz: float | None = None
    ecg_filter_order: int = 5
    ecg_notch_hz: float | None = 50.0
    ecg_notch_width_hz: float = 1.0
    flat_window_s: float = 0.1
    flat_change_threshold: float = 0.001
    flat_max_ratio: float = 0.25
    saturation_max_ratio: float = 0.2
    zscore_eps: float = 1e-8
    min_sample_rate_hz: float = 20.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "ppg_band_hz":
                value = _as_band(value)
            elif f.name in _INT_FIELDS:
                value = _as_int(f.name, value)
            elif f.name in _OPTIONAL_FLOAT_FIELDS and value is None:
                pass
            else:
                value = _as_float(f.name, value)
            object.__setattr__(self, f.name, value)
        self._check_values()

    def _check_values(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"invalid PreprocessConfig: {msg}")

        need(
            self.target_sample_rate_hz > 0,
            f"target_sample_rate_hz must be > 0, got {self.target_sample_rate_hz}",
        )
        need(self.window_s > 0, f"window_s must be > 0, got {self.window_s}")
        lo, hi = self.ppg_band_hz
        need(0 < lo < hi, f"ppg_band_hz must satisfy 0 < low < high, got {self.ppg_band_hz}")
        need(
            hi < self.target_sample_rate_hz / 2,
            f"ppg_band_hz upper edge {hi} Hz must be below the target Nyquist {self.target_sample_rate_hz / 2} Hz",
        )
        need(self.ppg_filter_order >= 1, f"ppg_filter_order must be >= 1, got {self.ppg_filter_order}")
        need(self.ecg_highpass_hz > 0, f"ecg_highpass_hz must be > 0, got {self.ecg_highpass_hz}")
        if self.ecg_lowpass_hz is not None:
            need(
                self.ecg_lowpass_hz > self.ecg_highpass_hz,
                f"ecg_lowpass_hz ({self.ecg_lowpass_hz}) must exceed ecg_highpass_hz ({self.ecg_highpass_hz})",
            )
        need(self.ecg_filter_order >= 1, f"ecg_filter_order must be >= 1, got {self.ecg_filter_order}")
        if self.ecg_notch_hz is not None:
            need(self.ecg_notch_hz > 0, f"ecg_notch_hz must be > 0 or None, got {self.ecg_notch_hz}")
            need(
                self.ecg_notch_hz - self.ecg_notch_width_hz / 2 - _NOTCH_TRANSITION_HZ / 2 > 0,
                f"ecg_notch_width_hz {self.ecg_notch_width_hz} too wide for a notch at {self.ecg_notch_hz} Hz",
            )
        need(self.ecg_notch_width_hz >= 0, f"ecg_notch_width_hz must be >= 0, got {self.ecg_notch_width_hz}")
        need(self.flat_window_s > 0, f"flat_window_s must be > 0, got {self.flat_window_s}")
        need(
            self.flat_change_threshold >= 0,
            f"flat_change_threshold must be >= 0, got {self.flat_change_threshold}",
        )
        need(0 <= self.flat_max_ratio <= 1, f"flat_max_ratio must be in [0, 1], got {self.flat_max_ratio}")
        need(
            0 <= self.saturation_max_ratio <= 1,
            f"saturation_max_ratio must be in [0, 1], got {self.saturation_max_ratio}",
        )
        need(self.zscore_eps >= 0, f"zscore_eps must be >= 0, got {self.zscore_eps}")
        need(
            self.min_sample_rate_hz > 2 * hi,
            f"min_sample_rate_hz ({self.min_sample_rate_hz}) must exceed twice the PPG upper edge ({2 * hi} Hz)",
        )
        need(
            int(self.flat_window_s * self.min_sample_rate_hz + _SAMPLES_EPS) >= 2,
            f"flat_window_s * min_sample_rate_hz must give >= 2 samples, got {self.flat_window_s} s * "
            f"{self.min_sample_rate_hz} Hz",
        )

    @property
    def window_samples(self) -> int:
        """Samples in one preprocessed window at the target rate (10 s * 125 Hz = 1250)."""
        return round(self.window_s * self.target_sample_rate_hz)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`. Unknown keys are an error; missing keys take their defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"PreprocessConfig.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown PreprocessConfig keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**dict(data))

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the text that :meth:`config_hash` hashes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def config_hash(self) -> str:
        """SHA-256 hex digest of the canonical JSON of this configuration."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


def native_config(cfg: PreprocessConfig, sample_rate_hz: float) -> PreprocessConfig:
    """``cfg`` with the model input at ``sample_rate_hz`` (everything else, the band-pass included,
    unchanged). Refuses a rate whose Nyquist is not above the PPG band."""
    rate = float(sample_rate_hz)
    if not (math.isfinite(rate) and rate > 0 and rate == int(rate)):
        raise ConfigError(f"a native input rate must be a whole number of Hz, got {sample_rate_hz!r}")
    if rate / 2 <= cfg.ppg_band_hz[1]:
        raise ConfigError(
            f"a {rate:g} Hz input cannot carry the {cfg.ppg_band_hz[0]:g}-{cfg.ppg_band_hz[1]:g} Hz PPG band "
            f"(Nyquist {rate / 2:g} Hz): use a sensor rate above {2 * cfg.ppg_band_hz[1]:g} Hz"
        )
    return dataclasses.replace(cfg, target_sample_rate_hz=int(rate))


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"invalid PreprocessConfig: {name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"invalid PreprocessConfig: {name} must be finite, got {value!r}")
    return out


def _as_int(name: str, value: Any) -> int:
    out = _as_float(name, value)
    if out != int(out):
        raise ConfigError(f"invalid PreprocessConfig: {name} must be an integer, got {value!r}")
    return int(out)


def _as_band(value: Any) -> tuple[float, float]:
    try:
        items = list(value)
    except TypeError:
        items = []
    if len(items) != 2:
        raise ConfigError(f"invalid PreprocessConfig: ppg_band_hz must be (low, high), got {value!r}")
    return (_as_float("ppg_band_hz", items[0]), _as_float("ppg_band_hz", items[1]))


DEFAULT_CONFIG = PreprocessConfig()


# --------------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------------


def _check_array(x: Any, what: str = "signal") -> np.ndarray:
    """1-D, real (integer or floating) and finite -> float64 array (a copy only when needed)."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists and the like
        raise InvalidSignalError(f"{what} cannot be converted to a numeric array: {exc}") from exc
    if arr.ndim != 1:
        raise InvalidSignalError(
            f"{what} must be 1-D (one channel, samples along the only axis), got shape {arr.shape} "
            f"({arr.ndim}-D)"
        )
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidSignalError(
            f"{what} has dtype {arr.dtype}; expected a real floating or integer dtype "
            "(not complex, bool, object or string)"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        n_bad = int(bad.sum())
        first = int(np.flatnonzero(bad)[0])
        raise InvalidSignalError(
            f"{what} contains {n_bad} non-finite value(s) (NaN/Inf) out of {arr.size}; first at index "
            f"{first} (value {arr[first]}); expected all samples finite"
        )
    return arr


def _check_rate(sample_rate_hz: Any, cfg: PreprocessConfig, *, nyquist_above_hz: float = 0.0) -> float:
    """Finite, in ``[cfg.min_sample_rate_hz, MAX_SAMPLE_RATE_HZ]``, Nyquist above ``nyquist_above_hz``."""
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, numbers.Real):
        raise InvalidSignalError(f"sample rate must be a real number in Hz, got {sample_rate_hz!r}")
    sr = float(sample_rate_hz)
    if not math.isfinite(sr) or sr <= 0:
        raise InvalidSignalError(f"sample rate must be finite and positive, got {sample_rate_hz!r} Hz")
    if sr > MAX_SAMPLE_RATE_HZ:
        raise InvalidSignalError(
            f"sample rate {sr:g} Hz is implausible for a PPG/ECG sensor: at most {MAX_SAMPLE_RATE_HZ:g} Hz "
            "is accepted (PPG front ends sample at 25-4096 Hz). Check the rate's unit: it is samples per "
            "second, not per minute or a period"
        )
    if sr < cfg.min_sample_rate_hz:
        raise InvalidSignalError(
            f"sample rate {sr:g} Hz is too low: at least {cfg.min_sample_rate_hz:g} Hz is required "
            f"(the {cfg.ppg_band_hz[1]:g} Hz band-pass edge and the {cfg.flat_window_s:g} s flat-line "
            "windows need it)"
        )
    if nyquist_above_hz and sr / 2 <= nyquist_above_hz:
        raise InvalidSignalError(
            f"sample rate {sr:g} Hz is too low for a filter edge at {nyquist_above_hz:g} Hz: its Nyquist "
            f"frequency {sr / 2:g} Hz must exceed it (sample rate > {2 * nyquist_above_hz:g} Hz)"
        )
    return sr


def _peak(x: np.ndarray) -> float:
    """Largest finite magnitude in ``x`` (for error messages; 0 when none is finite)."""
    finite = np.abs(x[np.isfinite(x)])
    return float(finite.max()) if finite.size else 0.0


def _check_step(y: np.ndarray, x: np.ndarray, what: str, step: str) -> None:
    """Raise when ``y``, the output of ``step`` on the finite ``x``, holds NaN/Inf: it overflowed.
    One vectorised ``isfinite`` per call; the message is built only on failure."""
    if np.isfinite(y).all():
        return
    n_bad = int(np.count_nonzero(~np.isfinite(y)))
    raise InvalidSignalError(
        f"{what} overflows in the {step}: {n_bad} of {y.size} output values are NaN/Inf (input values reach "
        f"|x| = {_peak(x):.3g}). Expected sensor values (ADC codes or physical units) many orders of "
        "magnitude smaller: rescale the signal"
    )


def _check_length(arr: np.ndarray, min_samples: int, what: str, why: str) -> None:
    if arr.size < min_samples:
        raise InvalidSignalError(
            f"{what} too short: got {arr.size} samples, need at least {min_samples} ({why})"
        )


def _n_samples(seconds: float, sample_rate_hz: float) -> int:
    """``int(seconds * rate)`` as the official code computes it, robust to 332.99999999999994."""
    return int(seconds * sample_rate_hz + _SAMPLES_EPS)


def window_length_samples(sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> int:
    """Samples in one raw window at ``sample_rate_hz`` (official ``int(10 * sr)``; 640 at 64 Hz)."""
    sr = _check_rate(sample_rate_hz, cfg)
    return _n_samples(cfg.window_s, sr)


# --------------------------------------------------------------------------------------------------
# MNE-equivalent zero-phase IIR filtering
# --------------------------------------------------------------------------------------------------


def estimate_ringing_samples(
    system: tuple[np.ndarray, np.ndarray] | np.ndarray, max_try: int = 100_000
) -> int:
    """Length of the filter's impulse response until it decays below 0.001 of its peak.

    Same algorithm as MNE's ``estimate_ringing_samples`` (it sets the edge padding of IIR filtering):
    the impulse response is computed in 1000-sample chunks; the running threshold is 0.001 times the
    largest magnitude seen; the first chunk with no sample above it ends the search and the answer is
    the last above-threshold index of the previous chunk, counted from the start of the response.
    ``system`` is ``(b, a)`` or an SOS array.
    """
    n_per_chunk = 1000
    n_chunks_max = int(np.ceil(max_try / float(n_per_chunk)))
    if isinstance(system, tuple):
        b, a = system
        zi: np.ndarray = np.zeros(len(a) - 1)
    else:
        sos = np.array(system, dtype=np.float64)  # writable copy: sosfilt refuses read-only arrays
        zi = np.zeros((len(sos), 2))
    x = np.zeros(n_per_chunk)
    x[0] = 1.0
    last_good = n_per_chunk
    thresh_val = 0.0
    for ii in range(n_chunks_max):
        if isinstance(system, tuple):
            h, zi = signal.lfilter(b, a, x, zi=zi)
        else:
            h, zi = signal.sosfilt(sos, x, zi=zi)
        x[0] = 0.0  # later chunks get zero input
        h = np.abs(h)
        thresh_val = max(0.001 * float(np.max(h)), thresh_val)
        above = np.flatnonzero(h > thresh_val)
        if above.size:
            last_good = int(above[-1])
        else:
            # (ii - 1) chunks before the one in which ``last_good`` was found (MNE's arithmetic)
            return (ii - 1) * n_per_chunk + last_good
    return n_per_chunk * n_chunks_max  # did not decay within max_try (MNE warns here)


def _reflect_limited_pad(x: np.ndarray, n_pad: int) -> np.ndarray:
    """MNE's ``reflect_limited`` padding: odd reflection about each end sample, then zeros if
    ``n_pad`` exceeds ``len(x) - 1``."""
    n = x.size
    zeros = np.zeros(max(n_pad - n + 1, 0), dtype=x.dtype)
    left = 2 * x[:1] - x[n_pad:0:-1]
    right = 2 * x[-1:] - x[-2 : -n_pad - 2 : -1]
    return np.concatenate([zeros, left, x, right, zeros])


def _zero_phase(
    x: np.ndarray, system: tuple[np.ndarray, np.ndarray] | np.ndarray, ringing: int
) -> np.ndarray:
    """Forward-backward filtering with MNE's padding (``_iir_pad_apply_unpad``). Overflow (values near
    the float64 limit) gives NaN/Inf: the callers run it under ``np.errstate`` and check the output."""
    padlen = min(ringing, x.size - 1)
    ext = _reflect_limited_pad(x, padlen) if padlen > 0 else x
    if isinstance(system, tuple):
        y = signal.filtfilt(system[0], system[1], ext, padlen=0)
    else:
        y = signal.sosfiltfilt(np.array(system), ext, padlen=0)  # writable copy of the cached SOS
    return np.ascontiguousarray(y[padlen : y.size - padlen])


def _freeze(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _check_stable(poles: np.ndarray, what: str, sample_rate_hz: float) -> None:
    # MNE's _check_coefficients refuses the same filters (RuntimeError there).
    if np.any(np.abs(poles) > 1.0):
        raise InvalidSignalError(
            f"the {what} is unstable at sample rate {sample_rate_hz:g} Hz (poles outside the unit "
            "circle in transfer-function form); use a lower sample rate or a lower filter order"
        )


@functools.lru_cache(maxsize=256)
def _design_ba(
    order: int, low_hz: float | None, high_hz: float | None, sample_rate_hz: float
) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    """Butterworth in ``ba`` form as MNE's ``construct_iir_filter`` builds it, plus its ringing length.

    ``low_hz`` only: high-pass; ``high_hz`` only: low-pass; both: band-pass.
    """
    nyq = sample_rate_hz / 2.0
    if low_hz is not None and high_hz is not None:
        wn: float | np.ndarray = np.array([low_hz, high_hz]) / nyq
        btype = "bandpass"
    elif low_hz is not None:
        wn, btype = low_hz / nyq, "highpass"
    elif high_hz is not None:
        wn, btype = high_hz / nyq, "lowpass"
    else:  # pragma: no cover - internal misuse
        raise ConfigError("a filter needs at least one edge")
    b, a = signal.iirfilter(N=order, Wn=wn, btype=btype, ftype="butter", output="ba")
    _check_stable(np.roots(a), f"{order}th-order Butterworth {btype}", sample_rate_hz)
    system = (_freeze(b), _freeze(a))
    return system, estimate_ringing_samples(system)


@functools.lru_cache(maxsize=64)
def _design_notch(notch_hz: float, width_hz: float, sample_rate_hz: float) -> tuple[np.ndarray, int] | None:
    """MNE's IIR notch: 4th-order Butterworth band-stop (SOS) over notch ± (width/2 + 0.5 Hz).

    ``None`` when the upper edge is not below Nyquist (MNE raises there; we skip the notch).
    """
    half = width_hz / 2.0 + _NOTCH_TRANSITION_HZ / 2.0
    low, high = notch_hz - half, notch_hz + half
    nyq = sample_rate_hz / 2.0
    if high >= nyq:
        return None
    sos = signal.iirfilter(
        _NOTCH_ORDER, np.array([low, high]) / nyq, btype="bandstop", ftype="butter", output="sos"
    )
    sos = _freeze(sos)
    return sos, estimate_ringing_samples(sos)


def notch_applies(sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> bool:
    """Whether :func:`ecg_filter` applies the mains notch at this rate (needs ``notch + width/2 +
    0.5 Hz < sr/2``, i.e. ``sr > 102 Hz`` for the default 50 Hz notch)."""
    sr = _check_rate(sample_rate_hz, cfg)
    if cfg.ecg_notch_hz is None:
        return False
    return _design_notch(cfg.ecg_notch_hz, cfg.ecg_notch_width_hz, sr) is not None


def ppg_bandpass(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Official PPG band-pass (0.5–8 Hz, 3rd-order Butterworth, MNE zero-phase IIR) at the native rate.

    Returns float64 with the same length as ``x``. (The official code then casts to float32; the
    window pipeline :func:`preprocess_ppg_window` does that.)
    """
    arr = _check_array(x, "PPG signal")
    sr = _check_rate(sample_rate_hz, cfg, nyquist_above_hz=cfg.ppg_band_hz[1])
    _check_length(arr, 2, "PPG signal", "zero-phase filtering needs at least 2 samples")
    with np.errstate(over="ignore", invalid="ignore"):
        y = _ppg_filtered(arr, sr, cfg)
    _check_step(y, arr, "PPG signal", "band-pass filter (float64)")
    return y


def _ppg_filtered(arr: np.ndarray, sr: float, cfg: PreprocessConfig) -> np.ndarray:
    """The band-pass on validated input, unchecked (NaN/Inf on overflow): callers check."""
    system, ringing = _design_ba(cfg.ppg_filter_order, cfg.ppg_band_hz[0], cfg.ppg_band_hz[1], sr)
    return _zero_phase(arr, system, ringing)


def ecg_filter(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Official ECG cleaning at the native rate: high-pass (or band-pass if ``cfg.ecg_lowpass_hz``)
    Butterworth of order ``cfg.ecg_filter_order``, then the MNE IIR mains notch.

    The notch is skipped (documented deviation: MNE raises) when its upper edge is not below Nyquist,
    i.e. for the default 50 Hz notch at rates <= 102 Hz. See :func:`notch_applies`. Returns float64.
    """
    arr = _check_array(x, "ECG signal")
    sr = _check_rate(sample_rate_hz, cfg, nyquist_above_hz=cfg.ecg_lowpass_hz or 0.0)
    _check_length(arr, 2, "ECG signal", "zero-phase filtering needs at least 2 samples")
    with np.errstate(over="ignore", invalid="ignore"):
        y = _ecg_filtered(arr, sr, cfg)
    _check_step(y, arr, "ECG signal", "ECG filter (float64)")
    return y


def _ecg_filtered(arr: np.ndarray, sr: float, cfg: PreprocessConfig) -> np.ndarray:
    """The ECG filter on validated input, unchecked (NaN/Inf on overflow): callers check."""
    system, ringing = _design_ba(cfg.ecg_filter_order, cfg.ecg_highpass_hz, cfg.ecg_lowpass_hz, sr)
    y = _zero_phase(arr, system, ringing)
    if cfg.ecg_notch_hz is not None:
        notch = _design_notch(cfg.ecg_notch_hz, cfg.ecg_notch_width_hz, sr)
        if notch is not None:
            y = _zero_phase(y, notch[0], notch[1])
    return y


# --------------------------------------------------------------------------------------------------
# quality gates
# --------------------------------------------------------------------------------------------------


def flat_ratio(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> float:
    """Fraction of flat sub-windows (official ``detect_flat_in_windows``), on the raw signal.

    With ``w = int(flat_window_s * sr)`` (12 at 125 Hz): the mean absolute sample-to-sample change over
    each run of ``w - 1`` consecutive differences (``np.convolve(..., 'valid')``) is compared with
    ``flat_change_threshold``; the result is the fraction of those runs below it.
    """
    arr = _check_array(x)
    sr = _check_rate(sample_rate_hz, cfg)
    w = _n_samples(cfg.flat_window_s, sr)
    _check_length(arr, w, "signal", f"one {cfg.flat_window_s:g} s flat-detection window at {sr:g} Hz")
    with np.errstate(over="ignore", invalid="ignore"):  # |x| near the float64 limit: inf changes, not flat
        diff = np.abs(np.diff(arr))
        change_rate = np.convolve(diff, np.ones(w - 1), mode="valid") / (w - 1)
    return float(np.mean(change_rate < cfg.flat_change_threshold))


def is_flat(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> bool:
    """True when :func:`flat_ratio` exceeds ``cfg.flat_max_ratio`` (the official rejection rule)."""
    return flat_ratio(x, sample_rate_hz, cfg) > cfg.flat_max_ratio


def saturation_ratio(x: Any) -> float:
    """Fraction of samples pinned at the signal's own minimum or maximum value (clipping at the
    ADC rails shows up as many samples at exactly these values). A constant signal gives 1.0."""
    arr = _check_array(x)
    if arr.size == 0:
        return 0.0
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        return 1.0
    return float((np.count_nonzero(arr == lo) + np.count_nonzero(arr == hi)) / arr.size)


def is_saturated(x: Any, cfg: PreprocessConfig = DEFAULT_CONFIG) -> bool:
    """True when :func:`saturation_ratio` exceeds ``cfg.saturation_max_ratio``."""
    return saturation_ratio(x) > cfg.saturation_max_ratio


def _quality_gate(arr: np.ndarray, sr: float, cfg: PreprocessConfig, what: str) -> None:
    ratio = flat_ratio(arr, sr, cfg)
    if ratio > cfg.flat_max_ratio:
        raise InvalidSignalError(
            f"{what} is flat: {ratio:.1%} of its {cfg.flat_window_s:g} s sub-windows change by less than "
            f"{cfg.flat_change_threshold:g} per sample; at most {cfg.flat_max_ratio:.0%} allowed"
        )
    sat = saturation_ratio(arr)
    if sat > cfg.saturation_max_ratio:
        raise InvalidSignalError(
            f"{what} is saturated (clipped): {sat:.1%} of samples sit at its minimum or maximum value "
            f"({arr.min():g} / {arr.max():g}); at most {cfg.saturation_max_ratio:.0%} allowed"
        )


# --------------------------------------------------------------------------------------------------
# resampling, normalisation, segmentation
# --------------------------------------------------------------------------------------------------


def _rate_fraction(sample_rate_hz: float) -> Fraction:
    if float(sample_rate_hz).is_integer():
        return Fraction(int(sample_rate_hz))
    return Fraction(sample_rate_hz).limit_denominator(_RATE_MAX_DENOMINATOR)


def resample_factors(sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[int, int]:
    """``(up, down)`` for ``resample_poly``: ``target / sr`` in lowest terms. Integer rates are exact
    (64 Hz -> (125, 64)); other rates use a rational approximation of ``sr`` with denominator at most
    1000 (62.5 Hz -> (2, 1), 33.3 Hz -> (1250, 333))."""
    sr = _check_rate(sample_rate_hz, cfg)
    ratio = Fraction(cfg.target_sample_rate_hz) / _rate_fraction(sr)
    return ratio.numerator, ratio.denominator


def resample_to_target(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> np.ndarray:
    """``scipy.signal.resample_poly`` from ``sample_rate_hz`` to ``cfg.target_sample_rate_hz``.

    Float32 input stays float32 (as in the official chain); anything else is resampled as float64.
    Output length is ``ceil(len(x) * up / down)``.
    """
    up, down = resample_factors(sample_rate_hz, cfg)  # the rate first: an absurd one is refused at once
    raw = np.asarray(x)
    checked = _check_array(raw)
    src = raw if raw.dtype == np.float32 else checked
    with np.errstate(over="ignore", invalid="ignore"):
        out = signal.resample_poly(src, up, down)
    _check_step(out, src, "signal", "resampling")
    return out


def zscore(x: Any, eps: float = 1e-8) -> np.ndarray:
    """``(x - mean) / (std + eps)`` (population std). Floating input keeps its dtype (the official chain
    normalises float32 data in float32); integer input becomes float64."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidSignalError(f"cannot z-score dtype {arr.dtype}; expected real floating or integer")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.size == 0:
        raise InvalidSignalError("cannot z-score an empty signal (0 samples; expected at least 1)")
    with np.errstate(over="ignore", invalid="ignore"):
        return _zscore(arr, eps, "signal")


def _zscore(
    arr: np.ndarray,
    eps: float,
    what: str,
    *,
    noise_floor: float | None = None,
    nonfinite_step: str | None = None,
) -> np.ndarray:
    """``(arr - mean) / (std + eps)`` in ``arr``'s dtype (run it under ``np.errstate``), refusing a
    non-finite mean or std and, when ``noise_floor`` is given, a std at or below it (0: a constant).
    A NaN/Inf anywhere in ``arr`` makes the mean non-finite, and so do values whose sum or squares
    overflow the dtype (the official chain z-scores in float32, where a window of amplitude ~1e17
    already overflows): two scalar checks cover the whole window. ``nonfinite_step`` names the step
    that made ``arr`` for the message when it holds NaN/Inf."""
    mean = arr.mean()
    std = arr.std()
    if not (math.isfinite(mean) and math.isfinite(std)):
        if not np.isfinite(arr).all():
            if nonfinite_step is not None:
                _check_step(arr, arr, what, nonfinite_step)
            raise InvalidSignalError(
                f"cannot z-score {what}: it holds {int(np.count_nonzero(~np.isfinite(arr)))} NaN/Inf "
                f"value(s) of {arr.size}; expected all samples finite"
            )
        which, how = ("mean", "sum") if not math.isfinite(mean) else ("standard deviation", "square")
        raise InvalidSignalError(
            f"cannot z-score {what}: its {which} overflows {arr.dtype} (values reach |x| = {_peak(arr):.3g}, "
            f"too large to {how} in {arr.dtype}). Expected sensor values (ADC codes or physical units) many "
            "orders of magnitude smaller: rescale the signal"
        )
    if noise_floor is not None and std <= noise_floor:
        raise InvalidSignalError(
            f"cannot z-score {what}: it is flat after filtering and resampling (std {float(std):.3g}, at or "
            f"below {noise_floor:.3g}, the float rounding noise of its raw values), so it carries no pulse "
            "and would normalise to zeros or amplified rounding noise; expected a varying window (the "
            "flat-line gate refuses such windows unless check_quality=False)"
        )
    return (arr - mean) / (std + eps)


def segment(
    x: Any,
    sample_rate_hz: float,
    window_s: float = DEFAULT_CONFIG.window_s,
    hop_s: float | None = None,
) -> np.ndarray:
    """Cut a 1-D recording into windows of ``int(window_s * sr)`` samples every ``int(hop_s * sr)``
    samples (default ``hop_s = window_s``: no overlap), like the official ``data_segmentor``. The
    trailing remainder shorter than a window is dropped.

    Returns a read-only 2-D view ``[n_windows, window_samples]`` into the (float64) input.
    """
    arr = _check_array(x, "recording")
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, numbers.Real):
        raise InvalidSignalError(f"sample rate must be a real number in Hz, got {sample_rate_hz!r}")
    sr = float(sample_rate_hz)
    if not math.isfinite(sr) or sr <= 0:
        raise InvalidSignalError(f"sample rate must be finite and positive, got {sample_rate_hz!r} Hz")
    n_win = _n_samples(window_s, sr)
    n_hop = _n_samples(window_s if hop_s is None else hop_s, sr)
    if n_win < 1 or n_hop < 1:
        raise InvalidSignalError(
            f"window ({window_s} s) and hop ({hop_s} s) must each be at least one sample at {sr:g} Hz, "
            f"got {n_win} and {n_hop} samples"
        )
    _check_length(arr, n_win, "recording", f"one {window_s:g} s window at {sr:g} Hz")
    return sliding_window_view(arr, n_win)[::n_hop]


# --------------------------------------------------------------------------------------------------
# full per-window chains
# --------------------------------------------------------------------------------------------------


def _check_window(
    x: Any, sample_rate_hz: float, cfg: PreprocessConfig, what: str, nyq_edge: float
) -> tuple[np.ndarray, float]:
    """Validated float64 window of exactly ``int(window_s * sr)`` samples, and the rate as float."""
    arr = _check_array(x, what)
    sr = _check_rate(sample_rate_hz, cfg, nyquist_above_hz=nyq_edge)
    n = _n_samples(cfg.window_s, sr)
    if arr.size < n:
        raise InvalidSignalError(
            f"{what} too short: got {arr.size} samples, a {cfg.window_s:g} s window at {sr:g} Hz needs "
            f"exactly {n}"
        )
    if arr.size > n:
        raise InvalidSignalError(
            f"{what} too long: got {arr.size} samples, a {cfg.window_s:g} s window at {sr:g} Hz has "
            f"exactly {n}; cut recordings into windows with segment()"
        )
    return arr, sr


def _to_target_window(
    arr: np.ndarray, sr: float, cfg: PreprocessConfig, what: str, filt: Any, filt_step: str
) -> np.ndarray:
    # Official: filt(arr).astype(float32) -> resample_poly(x, 125, sr) -> (x - mean) / (std + eps).
    # The ratio window_samples / len(x) equals 125 / sr for integer rates (resample_poly reduces it);
    # for other rates it guarantees exactly window_samples output samples.
    # Every step that can overflow is checked, at the cost of one vectorised isfinite and two scalar
    # tests per window: the float32 cast (NaN/Inf there also catches a filter overflow), then the
    # z-score's mean and std (non-finite when the resampled window holds NaN/Inf, or when its float32
    # sum or squares overflow: a sine of amplitude 1e20 used to come out as all zeros); a std at the
    # level of rounding noise (a constant window: 0, or ~1e-16 of its level) is refused too.
    with np.errstate(over="ignore", invalid="ignore"):
        filtered = filt(arr, sr, cfg)
        x32 = filtered.astype(np.float32)
        if not np.isfinite(x32).all():
            _check_step(filtered, arr, what, filt_step)
            _check_step(x32, filtered, what, "cast to float32 after filtering (float32 holds |x| <= 3.4e38)")
        ratio = Fraction(cfg.window_samples, x32.size)
        out = signal.resample_poly(x32, ratio.numerator, ratio.denominator)
        floor = _NUMERIC_FLAT_RATIO * float(np.abs(arr).max())
        z = _zscore(out, cfg.zscore_eps, what, noise_floor=floor, nonfinite_step="float32 resampling")
    return np.ascontiguousarray(z, dtype=np.float32)


def preprocess_ppg_window(
    x: Any,
    sample_rate_hz: float,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    *,
    check_quality: bool = True,
) -> np.ndarray:
    """One raw PPG window (exactly ``int(window_s * sr)`` samples) -> model input, float32
    ``[cfg.window_samples]``: flat/saturation gates on the raw window (skipped with
    ``check_quality=False``), band-pass, float32, resample to the target rate, z-score.
    """
    arr, sr = _check_window(x, sample_rate_hz, cfg, "PPG window", cfg.ppg_band_hz[1])
    if check_quality:
        _quality_gate(arr, sr, cfg, "PPG window")
    return _to_target_window(arr, sr, cfg, "PPG window", _ppg_filtered, "band-pass filter (float64)")


def preprocess_ecg_window(
    x: Any,
    sample_rate_hz: float,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    *,
    check_quality: bool = True,
) -> np.ndarray:
    """One raw ECG window -> float32 ``[cfg.window_samples]``: gates, :func:`ecg_filter`, float32,
    resample, z-score. Polarity is a record-level decision: apply :func:`correct_ecg_polarity` to the
    record's raw windows first, as the official chain does. The Zhao 2018 quality check
    (:func:`ecg_quality_zhao2018`) is separate, on the filtered native-rate ECG.
    """
    arr, sr = _check_window(x, sample_rate_hz, cfg, "ECG window", cfg.ecg_lowpass_hz or 0.0)
    if check_quality:
        _quality_gate(arr, sr, cfg, "ECG window")
    return _to_target_window(arr, sr, cfg, "ECG window", _ecg_filtered, "ECG filter (float64)")


# --------------------------------------------------------------------------------------------------
# ECG polarity and quality
# --------------------------------------------------------------------------------------------------


def ecg_is_inverted(x: Any, sample_rate_hz: float, cfg: PreprocessConfig = DEFAULT_CONFIG) -> bool:
    """Official per-segment inversion test (NeuroKit's ``ecg_invert`` idea, with the MNE cleaning).

    The raw ECG is cleaned with the official ECG filter (high-pass + notch; the official check always
    uses the high-pass, also in the band-pass variant), cast to float32; in every 2 s window (step of
    one sample) the signed value at the maximum of the squared signal is taken; the segment is
    inverted when the median of those values is negative.
    """
    arr = _check_array(x, "ECG signal")
    sr = _check_rate(sample_rate_hz, cfg)
    win = _n_samples(_POLARITY_WINDOW_S, sr)
    _check_length(arr, win, "ECG signal", f"one {_POLARITY_WINDOW_S:g} s polarity window at {sr:g} Hz")
    clean_cfg = cfg if cfg.ecg_lowpass_hz is None else dataclasses.replace(cfg, ecg_lowpass_hz=None)
    filtered = ecg_filter(arr, sr, clean_cfg)
    with np.errstate(over="ignore", invalid="ignore"):  # squares of |x| > 1.8e19 are inf: still the peak
        cleaned = filtered.astype(np.float32)
        _check_step(cleaned, filtered, "ECG signal", "cast to float32 after the ECG filter")
        rolled = sliding_window_view(cleaned, win)
        idx = np.square(rolled).argmax(axis=-1)
    peak_values = np.take_along_axis(rolled, idx[:, None], axis=-1)
    return bool(np.nanmedian(peak_values) < 0)


def correct_ecg_polarity(
    segments: Any,
    sample_rate_hz: float,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    threshold: float = 0.5,
) -> tuple[np.ndarray, float, bool]:
    """Record-level polarity correction (official ``record_ecg_invert_checker``).

    ``segments``: raw ECG windows of one record, ``[n, samples]`` (or one 1-D window). Each is tested
    with :func:`ecg_is_inverted`; if more than ``threshold`` of them are inverted, *all* are negated.
    Returns ``(segments as float64, invert_ratio, inverted)``.
    """
    try:
        arr = np.asarray(segments)
    except (ValueError, TypeError) as exc:
        raise InvalidSignalError(f"ECG segments cannot be converted to a numeric array: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InvalidSignalError(
            f"ECG segments must be [n_segments, samples] with n_segments >= 1, got shape {arr.shape}"
        )
    rows = [_check_array(row, f"ECG segment {i}") for i, row in enumerate(arr)]
    flags = [ecg_is_inverted(row, sample_rate_hz, cfg) for row in rows]
    invert_ratio = sum(flags) / len(flags)
    inverted = invert_ratio > threshold
    out = np.stack(rows)
    return (-out if inverted else out), float(invert_ratio), bool(inverted)


def ecg_quality_zhao2018(x: Any, sample_rate_hz: float) -> bool:
    """Zhao 2018 ECG quality via ``neurokit2.ecg_quality(method='zhao2018', approach='simple')``.

    Acceptable unless NeuroKit says ``'Unacceptable'`` or raises (the official rule). The official
    chain assesses the *filtered* ECG at its native rate (pass :func:`ecg_filter` output); the rate
    is passed to NeuroKit as ``int(sample_rate_hz)``, as officially.
    """
    arr = _check_array(x, "ECG signal")
    if isinstance(sample_rate_hz, bool) or not isinstance(sample_rate_hz, numbers.Real):
        raise InvalidSignalError(f"sample rate must be a real number in Hz, got {sample_rate_hz!r}")
    if not math.isfinite(float(sample_rate_hz)) or sample_rate_hz <= 0:
        raise InvalidSignalError(f"sample rate must be finite and positive, got {sample_rate_hz!r} Hz")
    try:
        import neurokit2 as nk
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("ecg_quality_zhao2018 needs neurokit2: pip install 'anyppg-edge[data]'") from exc
    try:
        quality = nk.ecg_quality(arr, sampling_rate=int(sample_rate_hz), method="zhao2018", approach="simple")
    except Exception:  # the official checker counts any NeuroKit failure as unacceptable
        return False
    return quality != "Unacceptable"
