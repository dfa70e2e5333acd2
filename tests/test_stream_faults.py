"""Streamer reliability under real use (issue 22, item 3): timestamp jumps of any length are handled in
constant work, and clock drift beyond ``StreamConfig.max_drift_ppm`` flags windows ``drift`` (hard)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
from anyppg_edge.errors import InvalidSignalError
from anyppg_edge.stream import SensorConfig, emulate
from anyppg_edge.stream.streamer import (
    FLAG_DRIFT,
    FLAG_GAP,
    FLAG_INTERPOLATED,
    FLAG_NAMES,
    FLAG_RESET,
    HARD_FLAGS,
    StreamConfig,
    Streamer,
)


def _ppg(n: int, odr: float, t0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` int32 codes of a pulse-like signal sampled at ``odr`` from ``t0``, and their timestamps."""
    t = t0 + np.arange(n) / odr
    tt = np.arange(n) / odr
    x = 3000 * np.sin(2 * np.pi * 1.3 * tt) + 800 * np.sin(2 * np.pi * 2.6 * tt + 0.4) + 2**17
    return np.round(x).astype(np.int32), t


def _push_all(s: Streamer, x: np.ndarray, t: np.ndarray, size: int) -> list:
    out = []
    for i in range(0, x.size, size):
        out += s.push(x[i : i + size], t[i : i + size])
    return out


def _count_work(s: Streamer, limit: int) -> list[int]:
    """Count the slots the streamer writes; fail (instead of hanging) past ``limit``."""
    written = [0]
    append = s._append

    def counted(vals, ts, states):
        written[0] += vals.size
        if written[0] > limit:
            raise AssertionError(f"{written[0]} slots written, more than {limit}: work grows with the gap")
        return append(vals, ts, states)

    s._append = counted
    return written


# ----------------------------------------------------------------------------- large timestamp jumps


@pytest.mark.parametrize("mode", ["reference", "device", "causal"])
@pytest.mark.parametrize("odr", [25.0, 125.0])
@pytest.mark.parametrize("jump_s", [1e5, 1e7, 1e9])
@pytest.mark.parametrize("inside_burst", [False, True])
@pytest.mark.parametrize(("hop_s", "before_s"), [(5.0, 23.3), (10.0, 20.0)])
def test_large_jump_constant_work_flags_and_recovery(hop_s, before_s, jump_s, odr, mode, inside_burst):
    """A jump of 1e5..1e9 s: the windows holding samples before it are flagged ``gap``, no window made of
    missing slots alone is emitted, the windows holding the first new samples are flagged ``gap`` with
    exactly their missing slots counted, and the first window wholly after the jump is clean and equal
    to what a fresh streamer makes of the new samples (causal filter and resampler state included).
    Layouts: data ending off the grid (trailing windows to complete), and ending on a window's end with
    hop = window (none to complete; in causal mode that window still waits for resampler output)."""
    scfg = StreamConfig(odr_hz=odr, hop_s=hop_s, mode=mode)
    s = Streamer(scfg)
    n_win, n_hop = s.n_win, s.n_hop
    n1 = int(before_s * odr)
    x1, t1 = _ppg(n1, odr, t0=1.7e9)  # epoch-like host times
    split = n1 - 3 if inside_burst else n1  # inside_burst: the jump sits inside one burst
    before = _push_all(s, x1[:split], t1[:split], 16)
    # the first new sample lands on the grid, so the fresh streamer's grid coincides with this one's
    last = n1 - 1
    nxt = -(-(last + round(jump_s * odr)) // n_hop) * n_hop
    n2 = n_win + 2 * n_hop + 3
    x2, t2 = _ppg(n2, odr, t0=float(t1[-1]) + (nxt - last) / odr)
    assert round((t2[0] - t1[-1]) * odr) == nxt - last  # the float64 host clock resolves the slot
    limit = 2 * n_win + n2 + 3  # a window of missing slots each side of the jump, and the samples
    written = _count_work(s, limit)
    after = []
    if inside_burst:  # (the burst's rate check must not mind the jump)
        after += s.push(np.concatenate([x1[split:], x2[:11]]), np.concatenate([t1[split:], t2[:11]]))
        after += _push_all(s, x2[11:], t2[11:], 16)
    else:
        after += _push_all(s, x2, t2, 16)
    after += s.flush()
    assert written[0] <= limit

    old = before + [w for w in after if w.start_sample + n_win <= n1]
    trailing = [w for w in after if w.start_sample <= last < w.start_sample + n_win - 1]
    leading = [w for w in after if last < w.start_sample < nxt]
    clean = [w for w in after if w.start_sample >= nxt]
    assert len(before) + len(after) == len(old) + len(trailing) + len(leading) + len(clean)
    assert [w.index for w in old] == [k for k in range(9) if k * n_hop + n_win <= n1]
    assert all(w.flags == 0 and w.ok for w in old)
    # trailing: every grid window that holds old samples and missing slots
    assert [w.index for w in trailing] == list(range(len(old), last // n_hop + 1))
    for w in trailing:
        assert w.flags == FLAG_GAP and w.x is None
        assert w.n_missing == w.start_sample + n_win - n1
        assert w.t_start_s == t1[w.start_sample]
    # leading: only windows that hold new samples, missing slots counted exactly
    assert [w.index for w in leading] == list(range(-(-(nxt + 1 - n_win) // n_hop), nxt // n_hop))
    for w in leading:
        assert w.flags == FLAG_GAP and w.x is None and w.n_missing == nxt - w.start_sample
        assert w.t_end_s == t2[w.start_sample + n_win - 1 - nxt]
    # recovery: clean as soon as a full window of new samples arrived
    assert [w.start_sample for w in clean] == [nxt + k * n_hop for k in range((n2 - n_win) // n_hop + 1)]
    assert all(w.flags == 0 and w.ok for w in clean)
    fresh = Streamer(scfg)
    ref = _push_all(fresh, x2, t2, 16) + fresh.flush()
    assert len(ref) == len(clean)
    for a, b in zip(clean, ref, strict=True):
        assert a.start_sample - nxt == b.start_sample and a.t_start_s == b.t_start_s
        np.testing.assert_array_equal(a.x, b.x)
    if mode == "reference":
        np.testing.assert_array_equal(clean[0].x, pp.preprocess_ppg_window(x2[:n_win], odr))
    # the clock fit restarts at the jump: no drift was invented, none hidden
    assert abs(s.estimated_drift_ppm) < 100


def test_jump_at_ring_boundary_matches_short_gap_semantics():
    """Gaps one slot either side of a window: the windows holding samples are the same (flags, missing
    counts, grid positions) as the per-slot path gives, and only all-missing windows are dropped."""
    odr = 25.0
    s_short, s_long = Streamer(StreamConfig(odr_hz=odr, hop_s=2.0)), Streamer(StreamConfig(odr_hz=odr, hop_s=2.0))
    n_win = s_short.n_win
    x, t = _ppg(600, odr)
    out = {}
    for s, gap in ((s_short, n_win - 1), (s_long, n_win + 1)):
        ws = _push_all(s, x[:300], t[:300], 10)
        ws += _push_all(s, x[300:], t[300:] + gap / odr, 10)
        out[gap] = ws
    # n_win - 1 missing slots: the per-slot path; no window is all missing
    assert all(w.n_missing < n_win for w in out[n_win - 1])
    # n_win + 1: the grid window starting at slot 300 (index 6) would hold only missing slots (300..549)
    short_idx = {w.index for w in out[n_win - 1]}
    long_idx = {w.index for w in out[n_win + 1]}
    assert short_idx == set(range(12)) and long_idx == set(range(13)) - {6}
    assert all(w.n_missing < n_win for w in out[n_win + 1])
    assert [(w.index, w.flags, w.n_missing, w.t_start_s) for w in out[n_win + 1] if w.start_sample < 300] == [
        (w.index, w.flags, w.n_missing, w.t_start_s) for w in out[n_win - 1] if w.start_sample < 300
    ]


# ----------------------------------------------------------------------------- clock drift


@functools.cache
def _rec():
    return simulate_pair(SimulatorConfig(duration_s=32.0, seed=5))


def _drift_windows(odr: float, drift_ppm: float, watermark: int, jitter_frac: float = 0.9, seed: int = 1):
    """Stream 30 s of the emulated sensor with ``drift_ppm`` and timestamp jitter at ``jitter_frac`` of the
    largest the contract allows; the windows and the drift interval when each was emitted."""
    base = SensorConfig(odr_hz=odr, drift_ppm=drift_ppm)
    run = emulate(_rec(), SensorConfig(odr_hz=odr, drift_ppm=drift_ppm, watermark=watermark, duration_s=30.0,
                                       jitter_s=jitter_frac * base.max_jitter_s, seed=seed))
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=5.0, adc_bits=18))
    ws, bounds = [], []
    for b in run.bursts:
        got = s.push(b.codes, b.timestamps_s, reset=b.reset)
        ws += got
        bounds += [s.drift_bounds_ppm] * len(got)
    return s, ws, bounds


def test_drift_flag_is_hard_and_named():
    assert FLAG_NAMES[FLAG_DRIFT] == "drift" and FLAG_DRIFT & HARD_FLAGS
    assert all(bit & (bit - 1) == 0 for bit in FLAG_NAMES) and len(set(FLAG_NAMES.values())) == len(FLAG_NAMES)
    assert sum(FLAG_NAMES) == HARD_FLAGS | FLAG_INTERPOLATED and not HARD_FLAGS & FLAG_INTERPOLATED
    assert StreamConfig(odr_hz=25).max_drift_ppm == 20_000.0
    with pytest.raises(InvalidSignalError, match="max_drift_ppm"):
        StreamConfig(odr_hz=25, max_drift_ppm=0)
    with pytest.raises(InvalidSignalError, match="max_drift_ppm"):
        StreamConfig(odr_hz=25, max_drift_ppm=float("nan"))


@pytest.mark.parametrize("odr", [25.0, 125.0])
@pytest.mark.parametrize("drift_ppm", [-100_000.0, -50_000.0, 50_000.0, 100_000.0])
def test_drift_flagged_on_every_window(odr, drift_ppm):
    """+-5 % and +-10 %, in 4-sample bursts (too short for the per-burst rate check): the drift interval
    excludes +-2 % from the first window on (about +-4,000 ppm wide at 25 Hz, +-800 ppm at 125 Hz by
    then), so every window is flagged ``drift`` and none reaches the model."""
    s, ws, bounds = _drift_windows(odr, drift_ppm, watermark=4)
    assert len(ws) >= 4
    lo, hi = bounds[0]
    assert lo <= drift_ppm <= hi and hi - lo < (10_000 if odr == 25.0 else 2_000)
    assert all(w.flags == FLAG_DRIFT and w.x is None and not w.ok for w in ws)  # and no fake gap
    assert abs(s.estimated_drift_ppm - drift_ppm) < 1_000


def test_sensor_drift_up_to_10_percent():
    """The emulator takes +-10 % drift; its jitter bound shrinks with drift so a sample step plus two
    bursts' timestamp errors still rounds to one slot (without drift: 1 / (12 * odr_hz))."""
    for d in (-100_000.0, 100_000.0):
        cfg = SensorConfig(odr_hz=25.0, drift_ppm=d)
        assert cfg.true_rate_hz == pytest.approx(25.0 * (1 + d * 1e-6))
        assert 0 < cfg.max_jitter_s < 1 / (12 * 25.0)
        step = 25.0 / cfg.true_rate_hz  # a sample step, in nominal periods
        assert abs(step - 1) + 6 * cfg.max_jitter_s * 25.0 == pytest.approx(0.5)
        with pytest.raises(ValueError, match="jitter_s"):
            SensorConfig(odr_hz=25.0, drift_ppm=d, jitter_s=0.99 / (12 * 25.0))
    assert SensorConfig(odr_hz=25.0).max_jitter_s == 1 / (12 * 25.0)
    for d in (-100_001.0, 100_001.0):
        with pytest.raises(ValueError, match="drift_ppm"):
            SensorConfig(drift_ppm=d)


@pytest.mark.parametrize("odr", [25.0, 125.0])
@pytest.mark.parametrize("drift_ppm", [-100.0, 100.0])
@pytest.mark.parametrize("watermark", [4, 16])
def test_crystal_drift_never_flagged(odr, drift_ppm, watermark):
    """A watch crystal (+-100 ppm) with near-maximal timestamp jitter: never flagged, windows clean."""
    s, ws, bounds = _drift_windows(odr, drift_ppm, watermark=watermark)
    assert len(ws) >= 4 and all(w.flags == 0 and w.ok for w in ws)
    assert all(lo <= drift_ppm <= hi for lo, hi in bounds)
    assert abs(s.estimated_drift_ppm - drift_ppm) < 1_000


@pytest.mark.parametrize("odr", [25.0, 125.0])
def test_rate_check_and_drift_flag_split_the_work(odr):
    """16-sample bursts (15 periods, checked): -5 % and +-10 % exceed the 5 % burst rate tolerance and
    are refused at once; +5 % (a mean spacing 4.8 % short) and -3 % pass the burst check and are
    flagged ``drift`` instead."""
    for drift_ppm in (-50_000.0, 100_000.0, -100_000.0):
        with pytest.raises(InvalidSignalError, match="wrong rate"):
            _drift_windows(odr, drift_ppm, watermark=16)
    for drift_ppm in (50_000.0, -30_000.0):
        _, ws, _ = _drift_windows(odr, drift_ppm, watermark=16)
        assert len(ws) >= 4 and all(w.flags == FLAG_DRIFT for w in ws)


def test_drift_near_the_bound_is_flagged_once_the_fit_is_sure():
    """2.3 % at 25 Hz, exact timestamps: at the first window (10 s of fit) the interval is too wide to
    exclude 2 %, from the second (15 s) on it is narrow enough; once flagged, always flagged."""
    _, ws, bounds = _drift_windows(25.0, 23_000.0, watermark=4, jitter_frac=0.0)
    assert len(ws) >= 4 and [bool(w.flags & FLAG_DRIFT) for w in ws] == [False] + [True] * (len(ws) - 1)
    assert bounds[0][0] < 20_000 < bounds[1][0] and ws[0].ok


def test_drift_flag_not_fooled_by_timestamp_error_within_contract():
    """One sample, then a 249-sample burst, timestamps 9 ms (under a quarter period) off in opposite
    directions: the raw two-point estimate reads +82 %, but the interval spans the truth (0 ppm), so
    the window is not flagged."""
    odr = 25.0
    x, t = _ppg(400, odr)
    t = t.copy()
    t[0] += 0.009
    t[1:250] -= 0.009
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=5.0))
    s.push(x[:1], t[:1])
    ws = s.push(x[1:250], t[1:250])
    assert len(ws) == 1 and s.estimated_drift_ppm > 800_000  # the naive rule would flag it
    lo, hi = s.drift_bounds_ppm
    assert lo <= 0 <= hi and ws[0].flags == 0 and ws[0].ok


def test_drift_bounds_hold_the_truth_across_runs():
    """Worst-case timestamp errors (0.9 of a quarter period, signs chosen to tilt the fit) in two runs
    split by a reset, each a 1-sample burst then a long one: the estimate reads -31 %, the interval
    (pooled over both runs' points) still holds the true 0 ppm, so no window is flagged."""
    odr, e = 25.0, 0.009
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=1.0))
    x, t = _ppg(301, odr)
    ws = []
    for t0, reset in ((0.0, False), (100.0, True)):
        ws += s.push(x[:1], t[:1] + t0 - e, reset=reset)
        ws += s.push(x[1:], t[1:] + t0 + e)
        lo, hi = s.drift_bounds_ppm
        assert s.estimated_drift_ppm < -300_000 and lo <= 0 <= hi
    assert ws and not any(w.flags & FLAG_DRIFT for w in ws)
    assert ws[-1].flags == 0 and ws[-1].ok


@pytest.mark.parametrize("burst", [4, 5])  # the jump inside a burst / at a burst's start
def test_drift_stays_flagged_across_a_long_jump(burst):
    """+5 % drift, then a 1e5 s host stall: the jump's slot count comes from the host clock (it would pull a
    single fit toward 0 ppm), so it starts a new fit run and windows after it are still flagged."""
    odr, drift = 25.0, 0.05
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=5.0))
    x, _ = _ppg(1500, odr)
    t = np.arange(1500) / (odr * (1 + drift))
    t[750:] += 1e5
    ws = _push_all(s, x, t, burst)
    assert abs(s.estimated_drift_ppm - drift * 1e6) < 10
    post = [w for w in ws if w.t_start_s > 1e5 and not w.n_missing]
    assert len(post) >= 2 and all(w.flags & FLAG_DRIFT for w in ws)
    assert all(w.flags == FLAG_DRIFT and w.x is None for w in post)


def test_reset_and_long_jump_together_flag_reset():
    """A reported reset with a long dead time: the boundary windows are flagged ``reset`` (not ``gap``)."""
    odr = 25.0
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=5.0))
    x, t = _ppg(900, odr)
    ws = _push_all(s, x[:400], t[:400], 8)
    ws += s.push(x[400:408], t[400:408] + 1e7, reset=True)
    ws += _push_all(s, x[408:], t[408:] + 1e7, 8)
    boundary = [w for w in ws if w.n_missing]
    assert boundary and all(w.flags & FLAG_RESET and not w.flags & FLAG_GAP for w in boundary)
    assert ws[-1].flags == 0 and ws[-1].ok
