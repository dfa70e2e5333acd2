"""Emulated watch PPG sensor: an optical front-end with its own clock, an ADC, a FIFO and a watermark
interrupt, replaying a recording (or the simulator) as the bursts of integer codes a host driver reads.

Model (all times in seconds on the host clock, which is the recording's time axis):

* **Clock.** The sensor samples at ``odr_hz * (1 + drift_ppm * 1e-6)`` true Hz while the host believes
  ``odr_hz``: sample ``k`` of a run is taken at ``t = t_run + k / (odr_hz * (1 + drift_ppm * 1e-6))``
  (``drift_ppm`` within +-100,000, i.e. +-10 %: watch crystals stay within +-100 ppm, sensor ODRs from
  RC oscillators within a few %, and the streamer's drift flag and rate check need cases beyond).
  A sensor reset starts a new run ``reset_dead_s`` after the reset (new sample phase).
* **Analog front-end.** The recording's PPG is low-pass filtered (zero-phase 8th-order Butterworth at
  ``0.4 * odr_hz``, only when that is below the recording's Nyquist) and read at the true sample
  times by cubic-spline interpolation (exact at the recording's own sample times, so ``odr_hz`` equal
  to the recording rate with no drift reproduces its samples). Samples whose nearest source samples
  are NaN are never produced.
* **ADC.** ``code = round(offset_codes + gain * x)`` clipped to ``[0, 2**adc_bits - 1]``. ``gain``
  (codes per signal unit) and ``offset_codes`` default to auto-ranging: the recording's min..max maps
  onto the middle half of full scale, so a clean replay never touches the rails. During ``saturate``
  intervals the photodiode is blinded and the code is pinned at full scale. After each reset the
  front-end re-calibrates its ambient/LED offset: ``offset_codes`` jumps by ``reset_offset_step`` of
  full scale (random sign).
* **Faults.** Each sample is lost with probability ``drop_prob`` (a missed conversion / bus error).
  ``gaps`` are host stalls ``(start_s, duration_s)``: the FIFO is not drained, and when more than
  ``fifo_depth`` samples accumulate the oldest are overwritten (the FIFO-rollover loss of real
  watches). A reset (``reset_at_s``) discards the FIFO content and produces nothing for
  ``reset_dead_s``; the driver reports it on the next burst (``Burst.reset``).
* **FIFO and interrupt.** The watermark interrupt fires when ``watermark`` samples are in the FIFO; the
  host reads all samples present at its read time (interrupt + service latency ``|N(0, jitter_s)|``,
  or the end of a stall). The last partial FIFO is drained at the end of the recording.
* **Timestamps.** The driver time-stamps each burst from its interrupt and back-fills the samples at
  the sensor period; what is left is a per-burst timestamp error ``N(0, jitter_s)`` clipped at
  ``3 * jitter_s``. ``jitter_s`` must stay below ``1 / (12 * odr_hz)`` so that two bursts' errors
  (at most ``6 * jitter_s`` apart) can never hide or fake a dropped sample (half a period); with drift
  the step itself is off one period by ``|1 / (1 + drift) - 1|`` and the bound shrinks by as much
  (:attr:`SensorConfig.max_jitter_s`).

Everything random comes from one ``numpy.random.Generator`` seeded by ``seed``: same recording, same
config, same bursts. :func:`emulate` also returns the ground truth (:class:`SensorTrace`: every
produced sample, delivered or lost, with its true time) that the parity checks compare against.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyppg_edge.data.native_rate import sensor_front_end, source_nan_at
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import InvalidSignalError

__all__ = [
    "DELIVERED",
    "DROPPED",
    "OVERFLOW",
    "RESET_LOST",
    "STATUS_NAMES",
    "Burst",
    "SensorConfig",
    "SensorEmulator",
    "SensorRun",
    "SensorTrace",
    "emulate",
    "fault_config",
]

# status of each produced sample in SensorTrace.status
DELIVERED = 0  # read by the host
DROPPED = 1  # lost at the sensor (drop_prob)
OVERFLOW = 2  # overwritten in the FIFO during a host stall
RESET_LOST = 3  # in the FIFO when the sensor was reset
STATUS_NAMES = {DELIVERED: "delivered", DROPPED: "dropped", OVERFLOW: "overflow", RESET_LOST: "reset-lost"}

_AUTO_RANGE_FRACTION = 0.5  # auto gain: the recording's min..max spans this fraction of full scale
_MAX_DRIFT_PPM = 100_000.0  # +-10 %: beyond real clocks (crystals +-100 ppm, RC oscillators a few %)


def _interval_list(value: Any, name: str) -> tuple[tuple[float, float], ...]:
    out = []
    for item in value or ():
        try:
            a, d = (float(v) for v in item)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid SensorConfig: {name} must be (start_s, duration_s) pairs, got {item!r}") from exc
        if not (math.isfinite(a) and math.isfinite(d)) or a < 0 or d <= 0:
            raise ValueError(f"invalid SensorConfig: {name} entry {item!r} needs start_s >= 0 and duration_s > 0")
        out.append((a, d))
    return tuple(sorted(out))


@dataclass(frozen=True)
class SensorConfig:
    """The emulated front-end. Units are in the names; ``None`` for ``gain`` / ``offset_codes`` means
    auto-ranging. Interval lists are ``(start_s, duration_s)`` on the recording's time axis."""

    odr_hz: float = 25.0
    adc_bits: int = 18
    gain: float | None = None  # ADC codes per signal unit
    offset_codes: float | None = None
    fifo_depth: int = 64
    watermark: int = 16
    drift_ppm: float = 0.0
    jitter_s: float = 0.0
    drop_prob: float = 0.0
    gaps: tuple[tuple[float, float], ...] = ()  # host stalls: FIFO not drained
    saturate: tuple[tuple[float, float], ...] = ()  # codes pinned at full scale
    reset_at_s: tuple[float, ...] = ()
    reset_dead_s: float = 0.2
    reset_offset_step: float = 0.02  # offset jump after a reset, fraction of full scale
    start_s: float = 0.0  # replay [start_s, start_s + duration_s) of the source
    duration_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"invalid SensorConfig: {msg}")

        for name in ("odr_hz", "drift_ppm", "jitter_s", "drop_prob", "reset_dead_s", "reset_offset_step", "start_s"):
            v = getattr(self, name)
            need(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
                 f"{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("adc_bits", "fifo_depth", "watermark", "seed"):
            v = getattr(self, name)
            need(isinstance(v, numbers.Integral) and not isinstance(v, bool), f"{name} must be an integer, got {v!r}")
            object.__setattr__(self, name, int(v))
        need(self.odr_hz > 0, f"odr_hz must be > 0, got {self.odr_hz}")
        need(2 <= self.adc_bits <= 30, f"adc_bits must be in [2, 30], got {self.adc_bits}")
        need(self.fifo_depth >= 1, f"fifo_depth must be >= 1, got {self.fifo_depth}")
        need(1 <= self.watermark <= self.fifo_depth,
             f"watermark must be in [1, fifo_depth={self.fifo_depth}], got {self.watermark}")
        need(abs(self.drift_ppm) <= _MAX_DRIFT_PPM,
             f"drift_ppm must be within +/-{_MAX_DRIFT_PPM:g} (+/-10 %), got {self.drift_ppm}")
        need(self.jitter_s >= 0, f"jitter_s must be >= 0, got {self.jitter_s}")
        max_jitter = self.max_jitter_s
        need(
            self.jitter_s < max_jitter,
            f"jitter_s={self.jitter_s:g} s is too large for {self.odr_hz:g} Hz with drift_ppm={self.drift_ppm:g}: "
            f"it must stay below {max_jitter:.3g} s (1/(12*odr_hz) without drift), or timestamps could hide or "
            "fake a dropped sample",
        )
        need(0 <= self.drop_prob < 1, f"drop_prob must be in [0, 1), got {self.drop_prob}")
        need(self.reset_dead_s >= 0, f"reset_dead_s must be >= 0, got {self.reset_dead_s}")
        need(self.reset_offset_step >= 0, f"reset_offset_step must be >= 0, got {self.reset_offset_step}")
        need(self.start_s >= 0, f"start_s must be >= 0, got {self.start_s}")
        if self.gain is not None:
            g = self.gain
            need(isinstance(g, numbers.Real) and math.isfinite(g) and g != 0, f"gain must be finite and non-zero, got {g!r}")
            object.__setattr__(self, "gain", float(g))
        if self.offset_codes is not None:
            o = self.offset_codes
            need(isinstance(o, numbers.Real) and math.isfinite(o), f"offset_codes must be finite, got {o!r}")
            object.__setattr__(self, "offset_codes", float(o))
        if self.duration_s is not None:
            need(math.isfinite(self.duration_s) and self.duration_s > 0, f"duration_s must be > 0, got {self.duration_s}")
            object.__setattr__(self, "duration_s", float(self.duration_s))
        object.__setattr__(self, "gaps", _interval_list(self.gaps, "gaps"))
        object.__setattr__(self, "saturate", _interval_list(self.saturate, "saturate"))
        resets = self.reset_at_s
        if isinstance(resets, numbers.Real):
            resets = (resets,)
        resets = tuple(sorted(float(r) for r in resets))
        need(all(math.isfinite(r) and r > 0 for r in resets), f"reset_at_s must be times > 0 s, got {resets}")
        object.__setattr__(self, "reset_at_s", resets)

    @property
    def max_jitter_s(self) -> float:
        """The largest ``jitter_s`` (exclusive) that keeps every sample step rounding to one slot: two
        bursts' errors are at most ``6 * jitter_s`` apart and the step is ``1 / true_rate_hz``, so
        ``|odr_hz / true_rate_hz - 1| + 6 * jitter_s * odr_hz < 0.5``; ``1 / (12 * odr_hz)`` without drift."""
        return (0.5 - abs(1.0 / (1.0 + self.drift_ppm * 1e-6) - 1.0)) / (6.0 * self.odr_hz)

    @property
    def full_scale(self) -> int:
        """Largest ADC code (``2**adc_bits - 1``)."""
        return (1 << self.adc_bits) - 1

    @property
    def true_rate_hz(self) -> float:
        """The rate the sensor really samples at (its clock drifts by ``drift_ppm``)."""
        return self.odr_hz * (1.0 + self.drift_ppm * 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def fault_config(
    odr_hz: float,
    duration_s: float,
    *,
    drift_ppm: float = 50.0,
    drop_prob: float = 0.01,
    jitter_s: float | None = None,
    n_resets: int = 1,
    stall_s: float | None = None,
    saturate_s: float | None = None,
    seed: int = 0,
    **kw: Any,
) -> SensorConfig:
    """The harness's standard fault scenario for a replay of ``duration_s``: ``drift_ppm`` clock drift,
    ``drop_prob`` dropped samples, timestamp jitter (default: a third of the largest allowed,
    ``1 / (36 * odr_hz)``, capped at 1 ms), ``n_resets`` resets spread over the replay and, when
    given, one host stall of ``stall_s`` (FIFO overflow) at 70 % and one saturation episode of
    ``saturate_s`` at 20 % of the replay."""
    if jitter_s is None:
        jitter_s = min(1e-3, 1.0 / (36.0 * odr_hz))
    resets = tuple(duration_s * (k + 1) / (n_resets + 1) for k in range(n_resets))
    gaps = ((0.7 * duration_s, stall_s),) if stall_s else ()
    sat = ((0.2 * duration_s, saturate_s),) if saturate_s else ()
    return SensorConfig(
        odr_hz=odr_hz, drift_ppm=drift_ppm, drop_prob=drop_prob, jitter_s=jitter_s, reset_at_s=resets,
        gaps=gaps, saturate=sat, duration_s=duration_s, seed=seed, **kw,
    )


@dataclass(frozen=True)
class Burst:
    """One FIFO read: integer ADC codes with the driver's per-sample host timestamps."""

    codes: np.ndarray  # int32 [n]
    timestamps_s: np.ndarray  # float64 [n], strictly increasing
    t_read_s: float  # host time of the read
    reset: bool = False  # the sensor was reset before the first sample of this burst
    seq: np.ndarray | None = None  # ground truth: SensorTrace index of each sample (not visible to a host)

    def __len__(self) -> int:
        return int(self.codes.size)


@dataclass
class SensorTrace:
    """Ground truth: every sample the sensor produced, delivered or lost, in production order."""

    t_true_s: np.ndarray  # float64 true sample times
    codes: np.ndarray  # int32 ADC code
    status: np.ndarray  # uint8: DELIVERED / DROPPED / OVERFLOW / RESET_LOST
    run: np.ndarray  # int32: 0 before the first reset, +1 after each reset
    saturated: np.ndarray  # bool: pinned at a rail (saturate interval or clipped)
    t_host_s: np.ndarray  # float64 host timestamp (NaN when not delivered)
    odr_hz: float
    dead_intervals_s: list[tuple[float, float]] = field(default_factory=list)  # reset -> first new sample

    def __len__(self) -> int:
        return int(self.t_true_s.size)

    def counts(self) -> dict[str, int]:
        out = {name: int(np.count_nonzero(self.status == code)) for code, name in STATUS_NAMES.items()}
        out["saturated"] = int(self.saturated.sum())
        out["runs"] = int(self.run.max()) + 1 if self.run.size else 0
        return out


@dataclass
class SensorRun:
    """The output of :func:`emulate`: the bursts a host reads, the truth, and the source recording
    (its ECG is the replay's heart-rate reference)."""

    config: SensorConfig
    bursts: list[Burst]
    trace: SensorTrace
    source: Recording
    gain: float
    offset_codes: float

    def __iter__(self) -> Iterator[Burst]:
        return iter(self.bursts)

    @property
    def n_delivered(self) -> int:
        return int(sum(len(b) for b in self.bursts))


class SensorEmulator:
    """Iterator form of :func:`emulate`: ``for burst in SensorEmulator(cfg, recording): ...``."""

    def __init__(self, config: SensorConfig, source: Recording | Any) -> None:
        self.run = emulate(source, config)

    def __iter__(self) -> Iterator[Burst]:
        return iter(self.run.bursts)

    @property
    def trace(self) -> SensorTrace:
        return self.run.trace


# --------------------------------------------------------------------------------------------------


def _source_recording(source: Any, cfg: SensorConfig) -> Recording:
    from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair

    if isinstance(source, Recording):
        return source
    if isinstance(source, SimulatorConfig):
        return simulate_pair(source)
    if source is None or source == "simulator":
        dur = (cfg.duration_s or 60.0) + cfg.start_s + 1.0
        return simulate_pair(SimulatorConfig(duration_s=dur, seed=cfg.seed))
    raise TypeError(f"sensor source must be a Recording, a SimulatorConfig or 'simulator', got {type(source).__name__}")


def _sample_times(cfg: SensorConfig, t_end: float) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
    """True sample times and run ids for [start_s, t_end), split at resets."""
    period = 1.0 / cfg.true_rate_hz
    bounds = [cfg.start_s] + [r for r in cfg.reset_at_s if cfg.start_s < r < t_end]
    times, runs, dead = [], [], []
    for k, a in enumerate(bounds):
        t0 = a if k == 0 else a + cfg.reset_dead_s
        if k:
            dead.append((a, t0))
        b = bounds[k + 1] if k + 1 < len(bounds) else t_end
        n = max(math.ceil((b - t0) / period - 1e-9), 0)
        tt = t0 + np.arange(n) * period
        tt = tt[tt < b]
        times.append(tt)
        runs.append(np.full(tt.size, k, np.int32))
    return np.concatenate(times), np.concatenate(runs), dead


def _in_intervals(t: np.ndarray, intervals: Sequence[tuple[float, float]]) -> np.ndarray:
    m = np.zeros(t.size, bool)
    for a, d in intervals:
        m |= (t >= a) & (t < a + d)
    return m


def emulate(source: Recording | Any, cfg: SensorConfig | None = None) -> SensorRun:
    """Replay ``source`` (a :class:`Recording` with a ``"ppg"`` channel, a
    :class:`~anyppg_edge.data.simulator.SimulatorConfig`, or ``"simulator"``) through the emulated
    sensor. Returns the bursts in read order, the ground truth and the source."""
    cfg = cfg or SensorConfig()
    rec = _source_recording(source, cfg)
    ppg = rec.channel("ppg")
    rng = np.random.default_rng(cfg.seed)
    t_end = ppg.duration_s if cfg.duration_s is None else min(ppg.duration_s, cfg.start_s + cfg.duration_s)
    # the spline needs the next source sample too: stop at the last source sample time
    t_end = min(t_end, (ppg.n_samples - 1) / ppg.sample_rate_hz + 1e-12)
    if t_end <= cfg.start_s:
        raise InvalidSignalError(
            f"nothing to replay: start_s={cfg.start_s:g} s is past the recording's end ({ppg.duration_s:g} s)"
        )
    spline, src_nan = sensor_front_end(ppg, cfg.odr_hz)
    t, run, dead = _sample_times(cfg, t_end)
    x = spline(t)
    produced = np.isfinite(x)
    if src_nan.any():
        produced &= ~source_nan_at(t, src_nan, ppg.sample_rate_hz)
    t, run, x = t[produced], run[produced], x[produced]
    if t.size == 0:
        raise InvalidSignalError("the emulated sensor produced no samples (all source samples NaN?)")

    # ADC
    fs_code = cfg.full_scale
    gain, offset = cfg.gain, cfg.offset_codes
    lo_v, hi_v = float(np.min(x)), float(np.max(x))
    if gain is None:
        gain = _AUTO_RANGE_FRACTION * fs_code / (hi_v - lo_v) if hi_v > lo_v else 1.0
    if offset is None:
        offset = fs_code / 2.0 - gain * (lo_v + hi_v) / 2.0
    n_runs = int(run.max()) + 1
    steps = np.concatenate([[0.0], rng.choice([-1.0, 1.0], size=n_runs - 1) * cfg.reset_offset_step * fs_code])
    run_offset = offset + np.cumsum(steps)
    analog = run_offset[run] + gain * x
    sat_interval = _in_intervals(t, cfg.saturate)
    analog[sat_interval] = fs_code + 1.0
    codes = np.clip(np.round(analog), 0, fs_code).astype(np.int32)
    saturated = sat_interval | (codes == 0) | (codes == fs_code)

    status = np.full(t.size, DELIVERED, np.uint8)
    if cfg.drop_prob > 0:
        status[rng.random(t.size) < cfg.drop_prob] = DROPPED
    t_host = np.full(t.size, np.nan)
    seq = np.arange(t.size)
    bursts: list[Burst] = []
    stalls = [(a, a + d) for a, d in cfg.gaps]

    def after_stall(tr: float) -> float:
        for a, b in stalls:
            if a <= tr < b:
                return b
        return tr

    def draw() -> float:
        return float(np.clip(rng.normal(0.0, cfg.jitter_s), -3 * cfg.jitter_s, 3 * cfg.jitter_s)) if cfg.jitter_s else 0.0

    final_run = n_runs - 1
    for r in range(n_runs):
        kept = seq[(run == r) & (status == DELIVERED)]
        run_end = cfg.reset_at_s[r] if r < final_run else math.inf  # the reset that ends this run
        tk = t[kept]
        pos, first = 0, True
        while pos < kept.size:
            wm = pos + cfg.watermark - 1
            if wm < kept.size:
                t_read = after_stall(tk[wm] + abs(draw()))
            elif r == final_run:
                t_read = after_stall(tk[-1] + abs(draw()))  # end of data: the host drains the FIFO
            else:
                t_read = math.inf  # the watermark is never reached before the reset
            if t_read >= run_end:  # the reset discards whatever is in the FIFO
                status[kept[pos:]] = RESET_LOST
                break
            end = int(np.searchsorted(tk, t_read, side="right"))
            end = max(end, min(wm + 1, kept.size))
            if end - pos > cfg.fifo_depth:  # rollover: the oldest samples were overwritten
                lost = end - pos - cfg.fifo_depth
                status[kept[pos : pos + lost]] = OVERFLOW
                pos += lost
            idx = kept[pos:end]
            ts = t[idx] + draw()
            t_host[idx] = ts
            bursts.append(Burst(codes[idx].copy(), ts, float(t_read), reset=(first and r > 0), seq=idx))
            first = False
            pos = end
    trace = SensorTrace(t, codes, status, run, saturated, t_host, cfg.odr_hz, dead)
    return SensorRun(cfg, bursts, trace, rec, float(gain), float(offset))
