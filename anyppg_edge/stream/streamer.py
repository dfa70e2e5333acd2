"""Streaming 10 s windowed PPG preprocessing: the code a watch or phone port mirrors.

A :class:`Streamer` takes FIFO bursts of native-rate samples (integer ADC codes, or floats) with
their host timestamps, keeps them in a fixed-size ring buffer (one window of samples, timestamps and
per-sample states), and every ``hop_s`` emits a :class:`StreamWindow`: 10 s of samples on a grid
anchored at the first sample, with quality flags and, unless a hard flag is set, the model input
(``[cfg.window_samples]`` float32 at the contract's rate ``cfg.target_sample_rate_hz``: 125 Hz for the
reference chain). All parameters of the chain come from the single
:class:`~anyppg_edge.preprocessing.PreprocessConfig`.

**Native-rate contracts** (``cfg.target_sample_rate_hz`` other than the reference 125 Hz, e.g. a
``student-watch-25hz`` model, :func:`~anyppg_edge.models.registry.ModelSpec.preprocess_config`): the
model reads the sensor's own samples, band-passed and z-scored at that rate with nothing resampled
(``resample_poly`` at 1/1 is skipped in every mode, and in the generated C). The sensor must run at
the contract's rate: any other ``odr_hz`` is refused (:func:`check_sensor_rate`,
:class:`~anyppg_edge.errors.ContractMismatchError`), since resampling it would not give the windows the
model was trained on (:func:`~anyppg_edge.data.native_rate.native_rate_windows`).

**Streaming contract** (also in ``firmware_harness/README.md``):

* Timestamps are host times in seconds, strictly increasing, within and across bursts. The slot of a
  sample on the native-rate grid is the previous sample's slot plus ``round(dt * odr_hz)``; a step of
  more than one slot is a gap (dropped samples, FIFO overflow). Timestamp error must stay below a
  quarter period so a gap is never hidden or invented; ``dt * odr_hz < 0.5`` (a step that rounds to
  0) and bursts spanning 8+ periods whose mean sample spacing is off ``1 / odr_hz`` by more than
  ``rate_tolerance`` (or, with 5+ samples, with no two samples one period apart) are refused
  (:class:`InvalidSignalError`: wrong rate or duplicated samples).
* Clock drift: :attr:`Streamer.estimated_drift_ppm` fits timestamp against slot over the bursts so far;
  :attr:`Streamer.drift_bounds_ppm` is the interval the drift must lie in given timestamp errors up
  to a quarter period. While that whole interval lies beyond ``+-max_drift_ppm`` (default 20,000 ppm =
  2 %) every window is flagged ``drift``, a hard flag: a window recorded 2 % too fast or too slow has
  its heart rate 2 % wrong. A crystal-clocked sensor (within +-100 ppm) is thus never flagged, however
  the bursts are cut; a +-5 % error is flagged from the first window on at 25 Hz with regular bursts
  (the interval is about +-3,400 ppm wide then). The two rate rules split the work: a burst spanning
  8+ periods whose own mean spacing is off by more than ``rate_tolerance`` (5 %: a sensor 4.8 % slow or
  5.3 % fast, or a wrong ``odr_hz``) is refused at once; a smaller error, or one in bursts too short
  to check (< 8 periods), passes the burst check and flags windows once the fit is sure of it.
* Gaps of at most ``max_interp_gap_s`` (default 0.1 s: 2 samples at 25 Hz, 12 at 125 Hz) are filled by
  linear interpolation between their neighbours; the window is flagged ``interpolated`` (a soft flag:
  it still reaches the model). Longer gaps are never interpolated across: their slots stay missing and
  every window that overlaps them is flagged ``gap``.
* A jump of more than one window (``n_win`` or more missing slots, beyond what the ring holds) is a
  reset of the buffer, handled in constant time whatever its length (a 1e9 s jump included): the
  windows holding samples from before it are completed with missing slots and flagged ``gap``, the
  windows made of missing slots only are skipped (``StreamWindow.index`` and ``start_sample`` jump
  ahead on the same grid; nothing of theirs could reach a model), and the windows holding the first
  new samples are flagged ``gap`` until one lies wholly after the jump. A jump also starts a new run
  of the clock fit, as a reset does (its slot count comes from the host clock).
* ``push(..., reset=True)`` reports a sensor reset before the burst: the slots between the last sample
  and the first new one are missing and the first ``reset_settle_s`` of new samples are settling
  samples; windows holding either are flagged ``reset``.
* Per window, with all samples defined, the reference quality gates run on the raw samples: ``flat``
  (:func:`~anyppg_edge.preprocessing.flat_ratio` above ``cfg.flat_max_ratio``) and ``saturation``
  (:func:`~anyppg_edge.preprocessing.saturation_ratio` above ``cfg.saturation_max_ratio``, or any
  sample at the ADC rails when ``adc_bits`` is known). NaN samples (``nan_policy="flag"``) flag
  ``nan``. A window whose chain overflows (finite samples too large for the float32 chain, amplitude
  ~1e17 and up in ``reference``/``device`` mode: the z-score's float32 variance is Inf) is flagged
  ``overflow``; samples beyond the float32 range (|x| > 3.4e38) are refused with the burst, as Inf
  samples are. A constant window is flagged ``flat`` whatever the gate thresholds (nothing to
  normalise), and so is one the reference chain finds flat down to rounding noise. A window with a
  hard flag (everything but ``interpolated``) carries no model input.
* Windows are emitted in order; a trailing incomplete window is dropped (as
  :func:`~anyppg_edge.preprocessing.segment` does).

**Modes** (``StreamConfig.mode``):

* ``"reference"``: each window goes through :func:`~anyppg_edge.preprocessing.preprocess_ppg_window`
  itself (zero-phase band-pass at the native rate with MNE padding, float32, ``resample_poly``,
  z-score): streamed windows equal the offline windows bit for bit.
* ``"device"``: the same chain as a float32 device computes it: window minus its integer mean (exact
  on int32 codes; the band-pass has no DC gain, so the result is unchanged), float32 reflect padding,
  float32 second-order sections forward and backward, float32 ``resample_poly``, float32 z-score.
* ``"causal"``: low latency. Every sample goes once through a stateful float64 SOS band-pass (state
  ``zi``, primed with the steady state of the first sample after a start, gap or reset) and a
  streaming polyphase resampler with the same FIR as ``resample_poly`` (its linear-phase delay is
  compensated, which costs ``half_len / up`` ≈ 10 native samples of latency); a window is the z-score
  of its ``cfg.window_samples`` causal output samples. It differs from the zero-phase reference (phase, edges); the
  harness measures by how much.
"""

from __future__ import annotations

import math
import numbers
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.native_rate import is_native_rate
from anyppg_edge.errors import ContractMismatchError, InvalidSignalError

__all__ = [
    "FLAG_DRIFT",
    "FLAG_FLAT",
    "FLAG_GAP",
    "FLAG_INTERPOLATED",
    "FLAG_NAMES",
    "FLAG_NAN",
    "FLAG_OVERFLOW",
    "FLAG_RESET",
    "FLAG_SATURATION",
    "HARD_FLAGS",
    "MODES",
    "StreamConfig",
    "StreamWindow",
    "Streamer",
    "check_sensor_rate",
    "flag_names",
    "offline_windows",
    "stream_windows",
]

FLAG_GAP = 1 << 0  # missing samples (not interpolated)
FLAG_INTERPOLATED = 1 << 1  # short gap filled by linear interpolation (soft)
FLAG_FLAT = 1 << 2  # reference flat-line gate
FLAG_SATURATION = 1 << 3  # reference saturation gate or ADC rail hit
FLAG_NAN = 1 << 4  # NaN samples (nan_policy="flag")
FLAG_RESET = 1 << 5  # sensor reset inside the window (dead time or settling samples)
FLAG_DRIFT = 1 << 6  # estimated sensor clock drift beyond StreamConfig.max_drift_ppm
FLAG_OVERFLOW = 1 << 7  # the float32 chain overflowed on finite samples (values far too large: rescale)
FLAG_NAMES = {
    FLAG_GAP: "gap",
    FLAG_INTERPOLATED: "interpolated",
    FLAG_FLAT: "flat",
    FLAG_SATURATION: "saturation",
    FLAG_NAN: "nan",
    FLAG_RESET: "reset",
    FLAG_DRIFT: "drift",
    FLAG_OVERFLOW: "overflow",
}
HARD_FLAGS = FLAG_GAP | FLAG_FLAT | FLAG_SATURATION | FLAG_NAN | FLAG_RESET | FLAG_DRIFT | FLAG_OVERFLOW
MODES = ("reference", "device", "causal")

# per-slot states in the ring buffer
_OK, _FILLED, _MISSING, _NAN, _RESET_MISSING, _SETTLE = 0, 1, 2, 3, 4, 5
_EPS = 1e-9
_RATE_CHECK_MIN_SLOTS = 8  # a burst's rate is checked when it spans at least this many sample periods
_MAX_SLOTS = 2.0**53  # longest timestamp step (sample periods) whose slot count is exact in a float64;
# a longer jump is refused (Python and the generated C alike)
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # samples beyond it cannot enter a float32 chain


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags`` (``[]`` for a clean window)."""
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


def check_sensor_rate(cfg: pp.PreprocessConfig, odr_hz: float) -> None:
    """Refuse a sensor rate that cannot feed ``cfg``: a native-rate contract
    (:func:`~anyppg_edge.data.native_rate.is_native_rate`) takes the sensor's samples as they come, so
    the sensor must run at ``cfg.target_sample_rate_hz``; the reference (125 Hz) chain resamples any
    rate. Raises :class:`~anyppg_edge.errors.ContractMismatchError`."""
    rate = cfg.target_sample_rate_hz
    if is_native_rate(cfg) and float(odr_hz) != float(rate):
        raise ContractMismatchError(
            f"the sensor runs at {float(odr_hz):g} Hz but the model's input contract is native-rate {rate} Hz "
            f"(its {cfg.window_samples}-sample windows are the sensor's own samples, band-passed and z-scored "
            f"at {rate} Hz, nothing resampled): set the sensor's ODR to {rate} Hz, or use a model exported for "
            f"{float(odr_hz):g} Hz (or the {pp.DEFAULT_CONFIG.target_sample_rate_hz} Hz reference chain, which "
            "resamples any rate)"
        )


@dataclass(frozen=True)
class StreamConfig:
    """Streaming parameters. The preprocessing chain itself comes from the ``PreprocessConfig``."""

    odr_hz: float
    hop_s: float = 5.0
    mode: str = "reference"
    adc_bits: int | None = None  # rail detection (codes 0 and 2**adc_bits - 1); None: off
    max_interp_gap_s: float = 0.1  # longest gap filled by interpolation
    reset_settle_s: float = 0.5  # samples after a reset flagged as settling
    nan_policy: str = "raise"  # "raise": NaN in a burst is an error; "flag": NaN samples flag their windows
    rate_tolerance: float = 0.05  # relative tolerance of a burst's mean sample spacing vs 1 / odr_hz
    keep_raw: bool = False  # keep each window's raw native samples (StreamWindow.raw)
    # Windows are flagged ``drift`` (hard) once Streamer.drift_bounds_ppm lies wholly beyond +-this.
    # 2 %: 200x the +-100 ppm of a watch crystal (never flagged); a sensor whose ODR is a few % off (an
    # RC oscillator's tolerance) is flagged, since its heart rate is that many % wrong: configure
    # odr_hz to its measured rate (odr_hz * (1 + estimated_drift_ppm * 1e-6)) instead. Kept below
    # 1e6 * rate_tolerance (5 %), where the per-burst rate check refuses bursts outright.
    max_drift_ppm: float = 20_000.0

    def __post_init__(self) -> None:
        for name in ("odr_hz", "hop_s", "max_interp_gap_s", "reset_settle_s", "rate_tolerance", "max_drift_ppm"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise InvalidSignalError(f"StreamConfig.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.odr_hz <= 0:
            raise InvalidSignalError(f"StreamConfig.odr_hz must be > 0 Hz, got {self.odr_hz}")
        if self.hop_s <= 0:
            raise InvalidSignalError(f"StreamConfig.hop_s must be > 0 s, got {self.hop_s}")
        if self.max_interp_gap_s < 0 or self.reset_settle_s < 0:
            raise InvalidSignalError("StreamConfig.max_interp_gap_s and reset_settle_s must be >= 0")
        if not 0 < self.rate_tolerance < 0.5:
            raise InvalidSignalError(f"StreamConfig.rate_tolerance must be in (0, 0.5), got {self.rate_tolerance}")
        if self.max_drift_ppm <= 0:
            raise InvalidSignalError(f"StreamConfig.max_drift_ppm must be > 0 ppm, got {self.max_drift_ppm}")
        if self.mode not in MODES:
            raise InvalidSignalError(f"StreamConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.nan_policy not in ("raise", "flag"):
            raise InvalidSignalError(f"StreamConfig.nan_policy must be 'raise' or 'flag', got {self.nan_policy!r}")
        if self.adc_bits is not None and (
            isinstance(self.adc_bits, bool) or not isinstance(self.adc_bits, numbers.Integral)
            or not 2 <= self.adc_bits <= 30
        ):
            raise InvalidSignalError(f"StreamConfig.adc_bits must be None or an integer in [2, 30], got {self.adc_bits!r}")


@dataclass
class StreamWindow:
    """One 10 s window of the stream."""

    index: int  # window number on the grid (0, 1, ...)
    start_sample: int  # native-rate slot of its first sample (slot 0 = first sample of the stream)
    t_start_s: float  # host timestamp of its first slot (estimated for a missing slot)
    t_end_s: float  # host timestamp of its last slot
    flags: int
    x: np.ndarray | None  # model input [window_samples] float32; None when a hard flag is set
    preprocess_s: float = 0.0  # wall time spent on this window's quality gates + chain
    flat_ratio: float = math.nan
    saturation_ratio: float = math.nan
    n_filled: int = 0
    n_missing: int = 0
    mode: str = "reference"
    raw: np.ndarray | None = None  # native samples (float64, NaN where missing) with keep_raw

    @property
    def ok(self) -> bool:
        """No hard flag: the window reaches the model."""
        return not (self.flags & HARD_FLAGS) and self.x is not None

    @property
    def flag_names(self) -> list[str]:
        return flag_names(self.flags)


def bandpass_design(cfg: pp.PreprocessConfig, odr_hz: float, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The reference band-pass at ``odr_hz`` as second-order sections, their ``sosfilt_zi``, and the
    edge padding of an ``n``-sample window (the ringing estimate of the ba form, as MNE designs it);
    the Python streamer and the generated C preprocessor (:mod:`anyppg_edge.stream.c_stream`) use it."""
    nyq = odr_hz / 2.0
    b, a = signal.iirfilter(cfg.ppg_filter_order, np.array(cfg.ppg_band_hz) / nyq, btype="bandpass",
                            ftype="butter", output="ba")
    sos = signal.iirfilter(cfg.ppg_filter_order, np.array(cfg.ppg_band_hz) / nyq, btype="bandpass",
                           ftype="butter", output="sos")
    ringing = pp.estimate_ringing_samples((b, a))
    return sos, np.asarray(signal.sosfilt_zi(sos)), min(ringing, n - 1)


def _resample_filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """``resample_poly``'s FIR (Kaiser 5.0, ``half_len = 10 * max(up, down)``), front-padded as
    scipy pads it, and the number of leading outputs scipy removes (the filter's delay)."""
    if up == down == 1:  # resample_poly returns a copy: identity
        return np.ones(1), 0
    max_rate = max(up, down)
    half_len = 10 * max_rate
    h = signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * up
    n_pre_pad = down - half_len % down
    return np.concatenate([np.zeros(n_pre_pad), h]), (half_len + n_pre_pad) // down


class Streamer:
    """Fixed-memory streaming preprocessor. ``push(codes, timestamps_s, reset=False)`` returns the
    windows completed by the burst; ``flush()`` the causal windows still waiting at the end."""

    def __init__(self, stream_cfg: StreamConfig, cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG) -> None:
        if not isinstance(stream_cfg, StreamConfig):
            raise TypeError(f"stream_cfg must be a StreamConfig, got {type(stream_cfg).__name__}")
        self.scfg, self.cfg = stream_cfg, cfg
        odr = stream_cfg.odr_hz
        check_sensor_rate(cfg, odr)
        self.n_win = pp.window_length_samples(odr, cfg)  # raises InvalidSignalError for too-low rates
        if odr / 2.0 <= cfg.ppg_band_hz[1]:
            raise InvalidSignalError(
                f"odr_hz {odr:g} Hz is too low for the {cfg.ppg_band_hz[1]:g} Hz band-pass edge "
                f"(need > {2 * cfg.ppg_band_hz[1]:g} Hz)"
            )
        self.n_hop = int(stream_cfg.hop_s * odr + _EPS)
        if self.n_hop < 1:
            raise InvalidSignalError(f"hop_s={stream_cfg.hop_s:g} s is less than one sample at {odr:g} Hz")
        self.max_fill = int(stream_cfg.max_interp_gap_s * odr + _EPS)
        self.n_settle = max(1, int(stream_cfg.reset_settle_s * odr + _EPS))
        self.full_scale = None if stream_cfg.adc_bits is None else (1 << stream_cfg.adc_bits) - 1
        cap = self.n_win
        self._val = np.zeros(cap)
        self._ts = np.zeros(cap)
        self._st = np.zeros(cap, np.uint8)
        self._n = 0  # next slot
        self._win = 0  # next window
        self._last_ts: float | None = None
        self._last_val = math.nan
        self._last_valid = False
        self._settle_left = 0
        # online clock fit (Welford / Chan): host timestamp vs slot
        self._fit_n, self._fit_mi, self._fit_mt, self._fit_cii, self._fit_cit = 0, 0.0, 0.0, 0.0, 0.0
        self._fit_done = [0.0, 0.0, 0]  # (cii, cit, points) of the closed runs (pooled fit)
        self.pushed_samples = 0
        if stream_cfg.mode == "reference":  # an unstable reference band-pass fails here, not at window 1
            pp.ppg_bandpass(np.zeros(self.n_win), odr, cfg)
        sos, zi, padlen = bandpass_design(cfg, odr, self.n_win)
        self._padlen = padlen
        ratio = Fraction(cfg.window_samples, self.n_win)
        self._up, self._down = ratio.numerator, ratio.denominator
        if stream_cfg.mode == "device":
            self._sos32 = sos.astype(np.float32)
            self._zi32 = zi.astype(np.float32)
        elif stream_cfg.mode == "causal":
            self._init_causal(sos, zi)

    # ------------------------------------------------------------------ causal machinery

    def _init_causal(self, sos: np.ndarray, zi: np.ndarray) -> None:
        up, down = self._up, self._down
        if (self.n_hop * up) % down:
            raise InvalidSignalError(
                f"causal mode needs a hop that maps to whole {self.cfg.target_sample_rate_hz} Hz samples: {self.n_hop} samples at "
                f"{self.scfg.odr_hz:g} Hz * {up}/{down} is not an integer; choose another hop_s"
            )
        self._ba = [(sec[:3].copy(), sec[3:].copy()) for sec in sos]
        self._zi_unit = zi
        self._zi = np.zeros_like(zi)
        self._primed = False
        h, self._delay = _resample_filter(up, down)
        k = -(-h.size // up)
        h = np.concatenate([h, np.zeros(k * up - h.size)])
        self._bank = np.ascontiguousarray(h.reshape(k, up).T)  # [phase, tap]: h[p + j * up]
        self._k = k
        self._hist = np.zeros(k)
        self._n_in = 0
        self._m_done = 0
        self._out_cap = 2 * self.cfg.window_samples + self._delay + 8
        self._out = np.zeros(self._out_cap)
        self._pending: deque[StreamWindow] = deque()

    def _iir(self, x: np.ndarray) -> np.ndarray:
        if not self._primed:  # steady state of the first sample: no start-up step response
            self._zi = self._zi_unit * x[0]
            self._primed = True
        for j, (bb, aa) in enumerate(self._ba):  # biquad cascade (sosfilt's call overhead is 7x lfilter's)
            x, self._zi[j] = signal.lfilter(bb, aa, x, zi=self._zi[j])
        return x

    def _causal_feed(self, vals: np.ndarray, states: np.ndarray | int) -> None:
        """Causal band-pass + streaming resampler over a chunk; invalid slots feed zeros and unprime
        the band-pass (it restarts from the next valid sample's steady state)."""
        if isinstance(states, int):
            if states in (_OK, _FILLED, _SETTLE):
                y = self._iir(vals)
            else:
                self._primed = False
                y = np.zeros(vals.size)
            self._resample_feed(y)
            return
        valid = (states == _OK) | (states == _FILLED) | (states == _SETTLE)
        y = np.zeros(vals.size)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
        if not valid[0]:
            self._primed = False
        for a, b in zip(edges[::2], edges[1::2], strict=True):
            if a > 0:
                self._primed = False
            y[a:b] = self._iir(vals[a:b])
        if not valid[-1]:
            self._primed = False
        self._resample_feed(y)

    def _resample_feed(self, y: np.ndarray) -> None:
        up, down, k = self._up, self._down, self._k
        total = self._n_in + y.size
        if up == down == 1:  # identity
            m = np.arange(self._m_done, total) % self._out_cap
            self._out[m] = y
            self._m_done = self._n_in = total
            return
        m_end = (total * up + down - 1) // down
        if m_end > self._m_done:
            buf = np.concatenate([self._hist, y])
            m = np.arange(self._m_done, m_end)
            q = (m * down) // up
            p = m * down - q * up
            idx = (q - self._n_in + k)[:, None] - np.arange(k)[None, :]
            out = np.einsum("ij,ij->i", buf[idx], self._bank[p])
            self._out[m % self._out_cap] = out
            self._m_done = m_end
            self._hist = buf[-k:]
        else:
            self._hist = np.concatenate([self._hist, y])[-k:]
        self._n_in = total

    def _causal_ready(self) -> list[StreamWindow]:
        out = []
        L = self.cfg.window_samples
        while self._pending:
            w = self._pending[0]
            m0 = w.start_sample * self._up // self._down + self._delay
            if w.flags & HARD_FLAGS:
                out.append(self._pending.popleft())
                continue
            if self._m_done < m0 + L:
                break
            if self._m_done - self._out_cap > m0:  # pragma: no cover - guarded by the capacity
                raise RuntimeError("causal output ring overrun")
            t = time.perf_counter()
            seg = self._out[np.arange(m0, m0 + L) % self._out_cap]
            try:
                w.x = np.ascontiguousarray(pp.zscore(seg, self.cfg.zscore_eps), dtype=np.float32)
            except InvalidSignalError:  # NaN/Inf in the causal output (cannot happen for float32-range samples)
                w.flags |= FLAG_OVERFLOW
            w.preprocess_s += time.perf_counter() - t
            out.append(self._pending.popleft())
        return out

    # ------------------------------------------------------------------ input validation

    def _check_burst(self, codes: Any, timestamps_s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
        """Validated ``(samples (integer codes as given, else float64), timestamps float64, slot steps
        within the burst (None: all one), has_nan)``."""
        c = np.asarray(codes)
        if c.ndim != 1:
            raise InvalidSignalError(f"burst codes must be 1-D (one channel), got shape {c.shape}")
        if c.dtype == np.bool_ or c.dtype.kind not in "iuf":
            raise InvalidSignalError(
                f"burst codes have dtype {c.dtype}; expected integer ADC codes or real floats "
                "(not bool, complex, object or string)"
            )
        t = np.asarray(timestamps_s)
        if t.ndim != 1 or t.dtype == np.bool_ or t.dtype.kind not in "iuf":
            raise InvalidSignalError(
                f"burst timestamps must be a 1-D real array in seconds, got shape {t.shape} dtype {t.dtype}"
            )
        if t.size != c.size:
            raise InvalidSignalError(f"burst has {c.size} codes but {t.size} timestamps; expected one per sample")
        t = t.astype(np.float64, copy=False)
        v = c if c.dtype.kind in "iu" else c.astype(np.float64, copy=False)  # the ring stores float64
        odr = self.scfg.odr_hz
        if t.size == 0:
            return v, t, None, False
        d = t[1:] - t[:-1]
        dmin, dmax = (float(d.min()), float(d.max())) if d.size else (1.0 / odr, 1.0 / odr)
        # one reduction each: a NaN/Inf timestamp makes an end, dmin or dmax non-finite
        if not (math.isfinite(t[0]) and math.isfinite(t[-1]) and math.isfinite(dmin) and math.isfinite(dmax)):
            raise InvalidSignalError(f"burst timestamps contain {int((~np.isfinite(t)).sum())} NaN/Inf values")
        has_nan = False
        # one reduction: the peak magnitude is NaN with a NaN sample, Inf with an Inf sample, and above
        # the float32 maximum with a sample no float32 chain can take; the rest runs on failure only
        if c.dtype.kind == "f" and not np.abs(v).max() <= _FLOAT32_MAX:
            if np.isinf(v).any():
                raise InvalidSignalError(f"burst contains {int(np.isinf(v).sum())} infinite sample(s)")
            big = np.abs(v) > _FLOAT32_MAX  # NaN compares False
            if big.any():
                i = int(np.flatnonzero(big)[0])
                raise InvalidSignalError(
                    f"burst contains {int(big.sum())} sample(s) beyond the float32 range (first at index {i}: "
                    f"{v[i]!r}; float32 holds |x| <= 3.4e38, and the chain runs in float32): expected ADC codes "
                    "or physical units, many orders of magnitude smaller; rescale the samples"
                )
            nan = np.isnan(v)
            if self.scfg.nan_policy == "raise":
                raise InvalidSignalError(
                    f"burst contains {int(nan.sum())} NaN sample(s) out of {v.size} (first at index "
                    f"{int(np.flatnonzero(nan)[0])}); expected finite samples (StreamConfig(nan_policy='flag') "
                    "flags their windows instead)"
                )
            has_nan = True
        if dmin <= 0:
            i = int(np.flatnonzero(d <= 0)[0])
            raise InvalidSignalError(
                f"burst timestamps are not strictly increasing: t[{i + 1}]={t[i + 1]!r} s after t[{i}]={t[i]!r} s"
            )
        if d.size and dmin * odr > 0.5 and dmax * odr < 1.5:  # every step rounds to one slot: contiguous
            steps, min_step, span = None, 1.0, float(d.size)
        else:
            steps = np.rint(d * odr)
            min_step, span = (float(steps.min()), float(steps.sum())) if d.size else (1.0, 0.0)
            if min_step < 1:
                raise InvalidSignalError(
                    f"two samples {dmin:.6g} s apart in a burst, less than half a period at odr_hz={odr:g} Hz "
                    "(wrong rate or duplicated samples?)"
                )
        if span >= _RATE_CHECK_MIN_SLOTS:  # timestamp jitter is negligible over >= 8 periods
            period = (float(t[-1]) - float(t[0])) / span
            if abs(period * odr - 1.0) > self.scfg.rate_tolerance or (d.size >= 4 and min_step >= 2):
                implied = 1.0 / period if min_step < 2 else 1.0 / dmin
                raise InvalidSignalError(
                    f"burst timestamps imply a sample rate of {implied:.4g} Hz but the stream is configured "
                    f"for odr_hz={odr:g} Hz (wrong rate?)"
                )
        if self._last_ts is not None and t[0] <= self._last_ts:
            raise InvalidSignalError(
                f"non-monotonic timestamps across bursts: burst starts at {t[0]!r} s, the previous "
                f"sample was at {self._last_ts!r} s"
            )
        since = float(t[-1]) - (float(t[0]) if self._last_ts is None else self._last_ts)
        if not since * odr < _MAX_SLOTS:
            raise InvalidSignalError(
                f"a timestamp jump of {since:.6g} s ({since * odr:.3g} periods at odr_hz={odr:g} Hz): beyond 2^53 "
                "periods no slot count is exact; the host clock is wrong (a unit error?), or restart the stream"
            )
        return v, t, steps, has_nan

    # ------------------------------------------------------------------ main entry points

    def push(self, codes: Any, timestamps_s: Any, *, reset: bool = False) -> list[StreamWindow]:
        """Add one burst (native-rate samples and their host timestamps, seconds). ``reset``: the
        sensor was reset before its first sample. Returns the windows this burst completed."""
        v, t, intra, has_nan = self._check_burst(codes, timestamps_s)
        odr = self.scfg.odr_hz
        first = 1  # the first sample of the stream takes slot 0
        if v.size and self._last_ts is not None:
            dt0 = float(t[0]) - self._last_ts
            first = round(dt0 * odr)
            if first < 1:
                raise InvalidSignalError(
                    f"a burst starts {dt0:.6g} s after the previous sample, less than half a period at "
                    f"odr_hz={odr:g} Hz (duplicated samples or a wrong rate)"
                )
        # the burst is valid: only now does the state change (a refused burst, reset or not, leaves it)
        if reset:
            self._settle_left = self.n_settle
            self._new_clock_run()  # a reset restarts the sensor clock at a new phase
            if self.scfg.mode == "causal":
                self._primed = False
        if v.size == 0:
            return []
        if first - 1 >= self.n_win:  # a jump past the ring: its slot count comes from the host clock
            self._new_clock_run()
        self._fit(self._n - 1 + first, float(t[0]))
        self.pushed_samples += v.size
        if first == 1 and intra is None and not self._settle_left and not has_nan:
            return self._append(v, t, _OK)  # the common case: contiguous samples
        steps = np.ones(v.size, np.int64)
        steps[0] = first
        if intra is not None:
            steps[1:] = intra
        out: list[StreamWindow] = []
        bounds = np.unique(np.concatenate([[0, v.size], np.flatnonzero(steps > 1)])).tolist()
        for j in range(len(bounds) - 1):
            a, b = bounds[j], bounds[j + 1]
            gap = int(steps[a]) - 1
            if gap >= self.n_win and a > 0:  # a jump past the ring inside a burst: as at a burst start
                self._new_clock_run()
                self._fit(self._n + gap, float(t[a]))
            if gap > 0:
                out += self._fill_gap(gap, v[a], t[a], reset and a == 0)
            seg_v, seg_t = v[a:b], t[a:b]
            st = np.zeros(seg_v.size, np.uint8)
            if self._settle_left:
                k = min(self._settle_left, seg_v.size)
                st[:k] = _SETTLE
                self._settle_left -= k
            if has_nan:
                st[np.isnan(seg_v)] = _NAN
            out += self._append(seg_v, seg_t, st)
        return out

    def flush(self) -> list[StreamWindow]:
        """End of stream. Causal mode: completes the pending windows by feeding the resampler zeros
        (an end-of-stream edge). The trailing incomplete window is dropped in every mode."""
        if self.scfg.mode != "causal" or not self._pending:
            return []
        last = self._pending[-1]
        m_need = last.start_sample * self._up // self._down + self._delay + self.cfg.window_samples
        n_need = -(-m_need * self._down // self._up) - self._n_in + 1
        if n_need > 0:
            self._resample_feed(np.zeros(n_need))
        return self._causal_ready()

    def run(self, bursts: Any) -> list[StreamWindow]:
        """Push every burst (objects with ``codes``, ``timestamps_s`` and optionally ``reset``) and
        flush; all windows in order."""
        out: list[StreamWindow] = []
        for b in bursts:
            out += self.push(b.codes, b.timestamps_s, reset=bool(getattr(b, "reset", False)))
        return out + self.flush()

    @property
    def estimated_drift_ppm(self) -> float:
        """Sensor clock vs host clock from a least-squares fit of timestamp against slot, pooled over
        the runs between resets and jumps of more than a window (their slot count comes from the host
        clock, which would hide the drift), on the first sample of each burst and of each run
        (positive: the sensor runs fast). NaN until a run has two points (two bursts). See
        :attr:`drift_bounds_ppm` for its uncertainty and the ``drift`` flag."""
        cii, cit = self._fit_done[0] + self._fit_cii, self._fit_done[1] + self._fit_cit
        if cii <= 0:
            return math.nan
        period = cit / cii
        return (1.0 / (period * self.scfg.odr_hz) - 1.0) * 1e6

    @property
    def drift_bounds_ppm(self) -> tuple[float, float]:
        """``(low, high)``: the drift lies in it when every fitted timestamp is within ``e`` = a quarter
        period of its sample's true time (the streaming contract). For errors ``|eps_i| <= e`` the
        least-squares period moves by ``|sum (i - mean) eps_i| / cii <= e * sqrt(N / cii)`` (Cauchy-
        Schwarz over the ``N`` fit points), so the interval shrinks as the fit spans more slots: about
        +-3,400 ppm at the first window at 25 Hz with 16-sample bursts (+-700 ppm at 125 Hz), -33 % to
        +100 % for two points one slot apart. Windows are flagged ``drift`` when the whole interval lies beyond
        ``+-StreamConfig.max_drift_ppm``. Exact for contiguous runs; across a short gap the slot count
        comes from the host clock, which pulls a drifting estimate toward zero (never away from it).
        ``(nan, nan)`` while :attr:`estimated_drift_ppm` is NaN."""
        cii, cit = self._fit_done[0] + self._fit_cii, self._fit_done[1] + self._fit_cit
        if cii <= 0:
            return math.nan, math.nan
        odr = self.scfg.odr_hz
        period = cit / cii
        dp = 0.25 / odr * math.sqrt((self._fit_done[2] + self._fit_n) / cii)
        low = (1.0 / ((period + dp) * odr) - 1.0) * 1e6
        high = (1.0 / ((period - dp) * odr) - 1.0) * 1e6 if period > dp else math.inf
        return low, high

    # ------------------------------------------------------------------ internals

    def _new_clock_run(self) -> None:
        """Close the clock-fit run: its sums join the pooled fit, the next point starts a new run."""
        self._fit_done[0] += self._fit_cii
        self._fit_done[1] += self._fit_cit
        self._fit_done[2] += self._fit_n
        self._fit_n, self._fit_mi, self._fit_mt, self._fit_cii, self._fit_cit = 0, 0.0, 0.0, 0.0, 0.0

    def _fit(self, slot: float, t: float) -> None:
        # Welford update on the first sample of each burst (one point per burst keeps it cheap)
        self._fit_n += 1
        di = slot - self._fit_mi
        self._fit_mi += di / self._fit_n
        self._fit_mt += (t - self._fit_mt) / self._fit_n
        self._fit_cii += di * (slot - self._fit_mi)
        self._fit_cit += di * (t - self._fit_mt)

    def _fill_gap(self, gap: int, next_val: float, next_ts: float, is_reset: bool) -> list[StreamWindow]:
        prev_ts = self._last_ts if self._last_ts is not None else next_ts - (gap + 1) / self.scfg.odr_hz
        if is_reset:
            state = _RESET_MISSING
        elif gap <= self.max_fill and self._last_valid and math.isfinite(next_val):
            frac = np.arange(1, gap + 1) / (gap + 1)
            vals = self._last_val + (next_val - self._last_val) * frac
            ts = prev_ts + (next_ts - prev_ts) * frac
            return self._append(vals, ts, np.full(gap, _FILLED, np.uint8))
        else:
            state = _MISSING
        period = (next_ts - prev_ts) / (gap + 1)
        if gap < self.n_win:
            return self._append_missing(prev_ts, period, 0, gap, state)
        # A jump past the ring: work independent of its length. Missing slot j (1..gap) sits at slot
        # last + j with timestamp prev_ts + j * period, as for a short gap; only the windows made of
        # missing slots alone are never emitted (nothing of theirs could reach a model).
        last, nxt = self._n - 1, self._n + gap  # slots of the samples before and after the gap
        # 1. the missing slots that complete the windows holding samples from before the gap
        head = max(0, (last // self.n_hop) * self.n_hop + self.n_win - self._n)
        out = self._append_missing(prev_ts, period, 0, head, state)
        # 2. skip to the last n_win missing slots, which the windows holding the next sample need
        self._win = max(self._win, -(-(nxt + 1 - self.n_win) // self.n_hop))
        tail = max(head, gap - self.n_win)
        out += self._skip(tail - head)
        return out + self._append_missing(prev_ts, period, tail, gap, state)

    def _append_missing(self, prev_ts: float, period: float, j0: int, j1: int, state: int) -> list[StreamWindow]:
        """Append missing slots ``j0 + 1 .. j1`` of a gap (slot ``j`` at ``prev_ts + j * period``)."""
        out: list[StreamWindow] = []
        done = j0
        while done < j1:  # chunked: a long gap never allocates more than a window
            k = min(j1 - done, self.n_win)
            ts = prev_ts + period * np.arange(done + 1, done + k + 1)
            out += self._append(np.full(k, np.nan), ts, np.full(k, state, np.uint8))
            done += k
        return out

    def _skip(self, n: int) -> list[StreamWindow]:
        """Advance the stream by ``n`` missing slots in O(1) work: no window ends among them, and the
        ``n_win`` missing slots that follow rewrite the ring before any window reads it. Causal mode:
        zeros are fed until the windows waiting for resampler output are complete (in order), then
        the resampler's input and output counters jump; the outputs skipped are never read, as the
        ``n_win >= K`` zeros that follow refill its history and every window holding them is hard-
        flagged. Returns the causal windows this completed."""
        out: list[StreamWindow] = []
        if n <= 0:
            return out
        if self.scfg.mode == "causal":
            self._primed = False
            fed = 0
            while fed < n and self._pending:
                c = min(n - fed, self.n_hop)
                self._resample_feed(np.zeros(c))
                fed += c
                out += self._causal_ready()
            self._n_in += n - fed
            up, down = self._up, self._down
            self._m_done = max(self._m_done, self._n_in if up == down == 1 else (self._n_in * up + down - 1) // down)
        self._n += n
        return out

    def _append(self, vals: np.ndarray, ts: np.ndarray, states: np.ndarray | int) -> list[StreamWindow]:
        """Write samples (with one state for all, or one each) into the ring; emit completed windows."""
        out: list[StreamWindow] = []
        scalar_state = isinstance(states, int)
        pos, n = 0, vals.size
        cap = self._val.size
        while pos < n:
            win_end = self._win * self.n_hop + self.n_win
            k = min(n - pos, win_end - self._n) if win_end > self._n else n - pos
            k = max(k, 1)
            i0 = self._n % cap
            k1 = min(k, cap - i0)
            st = states if scalar_state else states[pos : pos + k]
            self._val[i0 : i0 + k1] = vals[pos : pos + k1]
            self._ts[i0 : i0 + k1] = ts[pos : pos + k1]
            self._st[i0 : i0 + k1] = st if scalar_state else st[:k1]
            if k1 < k:  # wrap around
                self._val[: k - k1] = vals[pos + k1 : pos + k]
                self._ts[: k - k1] = ts[pos + k1 : pos + k]
                self._st[: k - k1] = st if scalar_state else st[k1:]
            if self.scfg.mode == "causal":
                self._causal_feed(vals[pos : pos + k], st)
            self._n += k
            pos += k
            while self._win * self.n_hop + self.n_win <= self._n:
                w = self._emit()
                if self.scfg.mode == "causal":
                    self._pending.append(w)
                else:
                    out.append(w)
            if self.scfg.mode == "causal":
                out += self._causal_ready()
        last_state = states if scalar_state else int(states[-1])
        self._last_ts = float(ts[-1])
        self._last_val = float(vals[-1])
        self._last_valid = last_state in (_OK, _FILLED, _SETTLE) and math.isfinite(self._last_val)
        return out

    def _emit(self) -> StreamWindow:
        start = self._win * self.n_hop
        idx = np.arange(start, start + self.n_win) % self._val.size  # (np.take's mode="wrap" costs O(start))
        vals = self._val[idx]
        st = self._st[idx]
        ts = self._ts[idx]
        w = StreamWindow(self._win, start, float(ts[0]), float(ts[-1]), 0, None, mode=self.scfg.mode)
        self._win += 1
        t0 = time.perf_counter()
        flags = 0
        counts = np.bincount(st, minlength=6)
        if counts[_MISSING]:
            flags |= FLAG_GAP
        if counts[_RESET_MISSING] or counts[_SETTLE]:
            flags |= FLAG_RESET
        if counts[_NAN]:
            flags |= FLAG_NAN
        if counts[_FILLED]:
            flags |= FLAG_INTERPOLATED
        low, high = self.drift_bounds_ppm
        if low > self.scfg.max_drift_ppm or high < -self.scfg.max_drift_ppm:  # False while NaN
            flags |= FLAG_DRIFT
        w.n_filled = int(counts[_FILLED])
        w.n_missing = int(counts[_MISSING] + counts[_RESET_MISSING] + counts[_NAN])
        if self.scfg.keep_raw:
            w.raw = vals.copy()
        if not w.n_missing:
            odr = self.scfg.odr_hz
            w.flat_ratio = pp.flat_ratio(vals, odr, self.cfg)
            w.saturation_ratio = pp.saturation_ratio(vals)
            if w.flat_ratio > self.cfg.flat_max_ratio:
                flags |= FLAG_FLAT
            rails = self.full_scale is not None and bool(((vals <= 0) | (vals >= self.full_scale)).any())
            if w.saturation_ratio > self.cfg.saturation_max_ratio or rails:
                flags |= FLAG_SATURATION
            if w.saturation_ratio == 1.0 and vals.min() == vals.max():  # constant: flat, whatever the gates
                flags |= FLAG_FLAT
        if not (flags & HARD_FLAGS):
            try:
                if self.scfg.mode == "reference":
                    w.x = pp.preprocess_ppg_window(vals, self.scfg.odr_hz, self.cfg, check_quality=False)
                elif self.scfg.mode == "device":
                    w.x = self._device_chain(vals)
            except InvalidSignalError:
                # the chain refused the finite samples of a complete window: it overflowed, or (with the
                # flat gate turned off) the window is flat down to rounding noise
                flags |= FLAG_FLAT if w.flat_ratio >= 1.0 else FLAG_OVERFLOW
        w.flags = flags
        w.preprocess_s = time.perf_counter() - t0
        return w

    def _device_chain(self, vals: np.ndarray) -> np.ndarray:
        # overflow (samples near the float32 limit) gives Inf/NaN without a numpy warning; the z-score
        # refuses a non-finite window (InvalidSignalError: _emit flags it ``overflow``)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._device_chain_f32(vals)

    def _device_chain_f32(self, vals: np.ndarray) -> np.ndarray:
        x = (vals - np.floor(vals.mean())).astype(np.float32)
        p = self._padlen
        if p > 0:
            zeros = np.zeros(max(p - x.size + 1, 0), np.float32)
            left = 2 * x[:1] - x[p:0:-1]
            right = 2 * x[-1:] - x[-2 : -p - 2 : -1]
            ext = np.concatenate([zeros, left, x, right, zeros])
        else:
            ext = x
        y, _ = signal.sosfilt(self._sos32, ext, zi=self._zi32 * ext[0])
        y = y[::-1]
        y, _ = signal.sosfilt(self._sos32, y, zi=self._zi32 * y[0])
        y = np.ascontiguousarray(y[::-1][p : ext.size - p])
        out = signal.resample_poly(y, self._up, self._down) if (self._up, self._down) != (1, 1) else y
        return np.ascontiguousarray(pp.zscore(out, self.cfg.zscore_eps), dtype=np.float32)


# --------------------------------------------------------------------------------------------------
# whole-stream helpers
# --------------------------------------------------------------------------------------------------


def stream_windows(
    bursts: Any, stream_cfg: StreamConfig, cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG
) -> list[StreamWindow]:
    """All windows of a burst sequence (a :class:`~anyppg_edge.stream.sensor.SensorRun` or any
    iterable of bursts) through a fresh :class:`Streamer`."""
    return Streamer(stream_cfg, cfg).run(bursts)


@dataclass
class OfflineWindows:
    """Offline reference windows of a contiguous native-rate signal."""

    x: np.ndarray  # [N, window_samples] float32, NaN rows where the reference rejects the window
    ok: np.ndarray  # [N] bool
    reason: list[str] = field(default_factory=list)  # "" or the InvalidSignalError message


def offline_windows(
    samples: Any, odr_hz: float, hop_s: float, cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG
) -> OfflineWindows:
    """The offline path: :func:`~anyppg_edge.preprocessing.segment` then
    :func:`~anyppg_edge.preprocessing.preprocess_ppg_window` (with its quality gates) on every
    window."""
    segs = pp.segment(samples, odr_hz, cfg.window_s, hop_s)
    x = np.full((len(segs), cfg.window_samples), np.nan, np.float32)
    ok = np.zeros(len(segs), bool)
    reason = []
    for i, s in enumerate(segs):
        try:
            x[i] = pp.preprocess_ppg_window(s, odr_hz, cfg)
            ok[i] = True
            reason.append("")
        except InvalidSignalError as exc:
            reason.append(str(exc))
    return OfflineWindows(x, ok, reason)
