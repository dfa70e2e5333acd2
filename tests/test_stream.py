"""Streaming harness library (issue 6): emulated sensor, streaming preprocessor, parity bars.

Bars asserted here: offline parity at every rate in {25, 50, 64, 100, 125} Hz without faults (streamed
windows vs offline windows: max abs <= 1e-5 in float64, <= 1e-3 on the float32 device path; float-model
embedding cosine >= 0.9999), chunking invariance (hypothesis: any burst pattern, same windows), and
under faults (drift, drops, jitter, reset, stall, saturation): no crash, every window a fault touched is
flagged, untouched windows still at parity.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
from anyppg_edge.errors import InvalidSignalError
from anyppg_edge.stream import (
    FLAG_GAP,
    FLAG_INTERPOLATED,
    FLAG_NAN,
    FLAG_RESET,
    FLAG_SATURATION,
    SensorConfig,
    StreamConfig,
    Streamer,
    emulate,
    fault_config,
    offline_windows,
)
from anyppg_edge.stream.harness import parity_report, rechunk
from anyppg_edge.stream.replay import BARS, window_truth
from anyppg_edge.stream.sensor import DELIVERED, DROPPED

RATES = (25.0, 50.0, 64.0, 100.0, 125.0)
FLOAT_CKPT = Path(__file__).resolve().parent.parent / "runs" / "distill_watch" / "best.pt"


@functools.cache
def _sim(duration_s: float = 65.0, seed: int = 1):
    return simulate_pair(SimulatorConfig(duration_s=duration_s, seed=seed, motion_artifact_rate_per_min=1.0))


@functools.cache
def _fault_run(odr: float, seed: int = 3, drop_prob: float = 0.01):
    rec = _sim(125.0, seed)
    return emulate(rec, fault_config(odr, 120.0, drift_ppm=-50.0 if seed % 2 else 50.0, drop_prob=drop_prob,
                                     stall_s=3.0, saturate_s=1.5, seed=seed))


@pytest.fixture(scope="module")
def float_encoder():
    """The distilled float student when this checkout has one, else the seeded random-init student."""
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.models.loading import load_encoder

    model = (load_encoder(FLOAT_CKPT) if FLOAT_CKPT.is_file() else load_encoder(None, "student-watch")).encoder
    return open_encoder(model)


# ----------------------------------------------------------------------------- parity, no faults


@pytest.mark.parametrize("odr", RATES)
def test_offline_parity_every_rate(odr, float_encoder):
    rep = parity_report(_sim(), odr, float_encoder, hop_s=5.0, duration_s=60.0, modes=("reference", "device"))
    for mode in ("reference", "device"):
        r = rep[mode]
        assert r["same_count"] and r["same_flags"], (mode, r)
        assert r["n_windows"] >= 10
    ref, dev = rep["reference"], rep["device"]
    print(f"{odr:g} Hz: float64 max abs {ref['max_abs']:.3g}, float32 device {dev['max_abs']:.3g}, "
          f"cosine {ref['cos_min']:.7f} / {dev['cos_min']:.7f}")
    assert ref["max_abs"] <= BARS["parity_max_abs_float64"]
    assert ref["max_abs"] == 0.0  # the reference mode calls the reference chain itself: bit for bit
    assert dev["max_abs"] <= BARS["parity_max_abs_float32_device"]
    assert ref["cos_min"] >= BARS["parity_min_cosine_float_model"]
    assert dev["cos_min"] >= BARS["parity_min_cosine_float_model"]


@pytest.mark.parametrize("odr", RATES)
def test_offline_parity_real_recording(odr, shared, float_encoder):
    from anyppg_edge.stream.replay import load_recording

    rep = parity_report(load_recording("shared:DATA_03"), odr, float_encoder, hop_s=5.0, duration_s=60.0,
                        modes=("reference", "device"))
    ref, dev = rep["reference"], rep["device"]
    assert ref["same_flags"] and dev["same_flags"]
    assert ref["max_abs"] == 0.0 and dev["max_abs"] <= 1e-3
    assert min(ref["cos_min"], dev["cos_min"]) >= 0.9999


def test_streamed_windows_equal_segment_then_preprocess():
    """Direct check without the report helper: 64 Hz, 2 s hop, samples pushed one by one."""
    run = emulate(_sim(), SensorConfig(odr_hz=64, duration_s=30.0))
    codes = run.trace.codes
    s = Streamer(StreamConfig(odr_hz=64, hop_s=2.0, adc_bits=18))
    ts = run.trace.t_host_s
    ws = []
    for i in range(codes.size):
        ws += s.push(codes[i : i + 1], ts[i : i + 1])
    segs = pp.segment(codes, 64, 10.0, 2.0)
    assert len(ws) == len(segs) == 11
    for w, seg in zip(ws, segs, strict=True):
        assert w.ok and w.flags == 0
        np.testing.assert_array_equal(w.x, pp.preprocess_ppg_window(seg, 64))
        assert w.x.dtype == np.float32 and w.x.shape == (1250,)


def test_causal_mode_deviation_is_measured(float_encoder):
    rep = parity_report(_sim(), 25.0, float_encoder, hop_s=5.0, duration_s=60.0, modes=("causal",))
    c = rep["causal"]
    assert c["same_flags"] and c["n_windows"] >= 10
    # not a bar: a single causal pass has |H| (not filtfilt's |H|^2) and the band-pass's phase, so it is a
    # related but different signal (Pearson ~0.8-0.9 on PPG); this only guards against a broken path
    assert c["pearson_mean"] > 0.7 and c["pearson_best_lag_mean"] >= c["pearson_mean"]
    assert abs(c["best_lag_ms"]) < 100
    assert c["cos_min"] > 0.5
    print("causal deviation:", {k: c[k] for k in ("max_abs", "pearson_mean", "best_lag_ms", "pearson_best_lag_mean", "cos_min")})


# ----------------------------------------------------------------------------- chunking invariance


def _windows(run_bursts, mode: str, odr: float):
    return Streamer(StreamConfig(odr_hz=odr, hop_s=5.0, mode=mode, adc_bits=18)).run(run_bursts)


@functools.cache
def _reference_windows(mode: str, odr: float):
    return _windows(_fault_run(odr).bursts, mode, odr)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 150), min_size=1, max_size=12),
       mode=st.sampled_from(("reference", "device", "causal")), odr=st.sampled_from((25.0, 64.0)))
def test_chunking_invariance(sizes, mode, odr):
    """Any FIFO burst pattern (drops, a reset, a stall and saturation included) yields the same windows."""
    ref = _reference_windows(mode, odr)
    got = _windows(rechunk(_fault_run(odr).bursts, sizes), mode, odr)
    assert len(got) == len(ref)
    for a, b in zip(got, ref, strict=True):
        assert a.flags == b.flags and a.start_sample == b.start_sample
        if b.x is None:
            assert a.x is None
        else:
            np.testing.assert_array_equal(a.x, b.x)


# ----------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("odr", "drop_prob", "seed"), [(25.0, 0.01, 3), (25.0, 0.01, 4), (100.0, 0.01, 3),
                                                         (100.0, 0.001, 4)])
def test_faults_flagged_and_clean_windows_at_parity(odr, drop_prob, seed):
    """-50/+50 ppm drift, drops, jitter, a reset, a 3 s stall and 1.5 s of saturation. (At 100 Hz, 1 % of
    i.i.d. drops touch every 1000-sample window: the clean-window parity needs the 0.1 % case there.)"""
    run = _fault_run(odr, seed, drop_prob)
    counts = run.trace.counts()
    assert counts["dropped"] > 0 and counts["overflow"] > 0 and counts["runs"] == 2 and counts["saturated"] > 0
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=5.0, adc_bits=run.config.adc_bits))
    ws = s.run(run.bursts)
    assert len(ws) >= 20
    n_win = pp.window_length_samples(odr)
    n_clean = 0
    for w in ws:
        truth = window_truth(run, w, n_win)
        if truth.affected:
            assert w.flags, f"window {w.index} touched by {truth.reasons} but not flagged"
        if w.x is not None:
            assert np.isfinite(w.x).all()
        if not truth.affected and not w.flags:
            n_clean += 1
            ref = pp.preprocess_ppg_window(run.trace.codes[truth.seq0 : truth.seq0 + n_win], odr)
            np.testing.assert_array_equal(w.x, ref)
    n_win_expected_clean = len(ws) * (1 - drop_prob) ** n_win
    assert n_clean >= 1 or n_win_expected_clean < 3
    names = {n for w in ws for n in w.flag_names}
    assert {"gap", "interpolated", "reset", "saturation"} <= names
    assert all(w.x is None for w in ws if w.flags & (FLAG_GAP | FLAG_RESET | FLAG_SATURATION))
    assert abs(s.estimated_drift_ppm - run.config.drift_ppm) < 5.0


def test_short_gaps_interpolated_long_gaps_not():
    odr = 25.0
    t = np.arange(int(60 * odr)) / odr
    x = (1000 * np.sin(2 * np.pi * 1.2 * t) + 2**17).round().astype(np.int32)
    keep = np.ones(t.size, bool)
    keep[100] = False  # one sample: 0.04 s <= 0.1 s -> filled
    keep[700:710] = False  # 0.4 s -> gap, not interpolated
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=10.0))
    ws = s.run([type("B", (), {"codes": x[keep], "timestamps_s": t[keep], "reset": False})()])
    assert [w.flag_names for w in ws[:3]] == [["interpolated"], [], ["gap"]]
    assert ws[0].ok and ws[0].n_filled == 1 and ws[2].x is None and ws[2].n_missing == 10
    # the filled sample is the linear interpolation of its neighbours
    seg = x[:250].astype(float)
    seg[100] = (seg[99] + seg[101]) / 2
    np.testing.assert_array_equal(ws[0].x, pp.preprocess_ppg_window(seg, odr))


def test_nan_policy_flag_and_flat_window():
    odr = 50.0
    t = np.arange(int(40 * odr)) / odr
    x = np.sin(2 * np.pi * 1.1 * t) * 100
    x[1000:1500] = 3.0  # 10 s constant: the reference flat gate
    x[1700] = np.nan
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=10.0, nan_policy="flag"))
    ws = []
    for i in range(0, t.size, 32):
        ws += s.push(x[i : i + 32], t[i : i + 32])
    # a constant window is both flat and (saturation ratio 1.0) saturated for the reference gates
    assert [w.flag_names for w in ws] == [[], [], ["flat", "saturation"], ["nan"]]
    assert ws[3].flags & FLAG_NAN and ws[3].x is None and not ws[2].ok


def test_reset_flags_settling_samples():
    run = emulate(_sim(), SensorConfig(odr_hz=25, duration_s=60.0, reset_at_s=(30.0,), reset_dead_s=0.0))
    ws = Streamer(StreamConfig(odr_hz=25, hop_s=5.0, adc_bits=18)).run(run.bursts)
    flagged = [w.index for w in ws if w.flags & FLAG_RESET]
    assert flagged and all(w.x is None for w in ws if w.index in flagged)
    assert all(w.flags == 0 for w in ws if w.index not in flagged)


def test_fixed_memory_and_long_gap():
    s = Streamer(StreamConfig(odr_hz=25, hop_s=2.0))
    sizes = (s._val.size, s._ts.size, s._st.size)
    t = np.arange(500) / 25
    s.push(np.zeros(500, np.int32) + np.arange(500) % 7, t)
    ws = s.push(np.arange(10, dtype=np.int32), 10_000.0 + np.arange(10) / 25)  # a 10,000 s gap
    assert (s._val.size, s._ts.size, s._st.size) == sizes == (250, 250, 250)
    # a jump beyond one window resets the buffer: only the windows holding real samples are emitted
    # (those before the gap, completed with missing slots), never thousands of all-missing windows
    assert [w.index for w in ws] == [6, 7, 8, 9]
    assert all(w.flags & FLAG_GAP and w.x is None and 0 < w.n_missing < 250 for w in ws)


# ----------------------------------------------------------------------------- sensor


def test_sensor_deterministic_and_native_rate_exact():
    rec = _sim()
    cfg = fault_config(25.0, 50.0, seed=7)
    a, b = emulate(rec, cfg), emulate(rec, cfg)
    assert len(a.bursts) == len(b.bursts)
    for x, y in zip(a.bursts, b.bursts, strict=True):
        np.testing.assert_array_equal(x.codes, y.codes)
        np.testing.assert_array_equal(x.timestamps_s, y.timestamps_s)
    c = emulate(rec, fault_config(25.0, 50.0, seed=8))
    assert not np.array_equal(a.trace.status, c.trace.status)
    # at the recording's own rate, no drift: the codes are the recording's samples through the ADC
    run = emulate(rec, SensorConfig(odr_hz=125.0, duration_s=20.0))
    x = rec.ppg.data[: len(run.trace)]
    np.testing.assert_array_equal(run.trace.codes, np.round(run.offset_codes + run.gain * x).astype(np.int32))
    assert (run.trace.status == DELIVERED).all() and run.trace.codes.min() > 0
    assert all(len(bu) == 16 for bu in run.bursts[:-1])


def test_sensor_faults_and_fifo():
    run = emulate(_sim(), SensorConfig(odr_hz=25, duration_s=60.0, drop_prob=0.05, gaps=((20.0, 5.0),),
                                       fifo_depth=32, watermark=8, seed=2))
    st_ = run.trace.status
    assert (st_ == DROPPED).mean() == pytest.approx(0.05, abs=0.02)
    assert (st_ == 2).sum() == pytest.approx(5 * 25 - 32, abs=8)  # the stall overflows the FIFO
    assert max(len(b) for b in run.bursts) == 32
    assert all(np.all(np.diff(b.timestamps_s) > 0) for b in run.bursts)
    ts = np.concatenate([b.timestamps_s for b in run.bursts])
    assert np.all(np.diff(ts) > 0)


def test_sensor_config_validation():
    with pytest.raises(ValueError, match="jitter_s"):
        SensorConfig(odr_hz=125, jitter_s=0.002)
    with pytest.raises(ValueError, match="watermark"):
        SensorConfig(fifo_depth=8, watermark=16)
    with pytest.raises(ValueError, match="drop_prob"):
        SensorConfig(drop_prob=1.0)
    with pytest.raises(ValueError, match="gaps"):
        SensorConfig(gaps=((1.0, -2.0),))


# ----------------------------------------------------------------------------- bad input


def test_bad_input_clear_errors():
    with pytest.raises(InvalidSignalError, match="too low"):
        Streamer(StreamConfig(odr_hz=10))
    with pytest.raises(InvalidSignalError, match="mode"):
        StreamConfig(odr_hz=25, mode="fast")
    s = Streamer(StreamConfig(odr_hz=25))
    t = np.arange(8) / 25
    with pytest.raises(InvalidSignalError, match="NaN"):
        s.push(np.array([1.0, np.nan, 3, 4, 5, 6, 7, 8]), t)
    with pytest.raises(InvalidSignalError, match="strictly increasing"):
        s.push(np.arange(8), t[::-1])
    with pytest.raises(InvalidSignalError, match="dtype"):
        s.push(np.ones(8, bool), t)
    with pytest.raises(InvalidSignalError, match="dtype"):
        s.push(np.ones(8, complex), t)
    with pytest.raises(InvalidSignalError, match="dtype"):
        s.push(np.array(["a"] * 8), t)
    with pytest.raises(InvalidSignalError, match="1-D"):
        s.push(np.ones((2, 4)), t)
    with pytest.raises(InvalidSignalError, match="8 codes but 7"):
        s.push(np.ones(8), t[:7])
    with pytest.raises(InvalidSignalError, match="NaN/Inf"):
        s.push(np.ones(8), np.where(t > 0.1, np.nan, t))
    with pytest.raises(InvalidSignalError, match="infinite"):
        s.push(np.array([1.0, np.inf, 3, 4, 5, 6, 7, 8]), t)
    with pytest.raises(InvalidSignalError, match="wrong rate"):
        s.push(np.arange(8), np.arange(8) / 50)  # 50 Hz data into a 25 Hz stream
    with pytest.raises(InvalidSignalError, match="wrong rate"):
        s.push(np.arange(8), np.arange(8) / 12.5)  # 12.5 Hz data
    s.push(np.arange(8), t)  # a good burst
    with pytest.raises(InvalidSignalError, match="non-monotonic"):
        s.push(np.arange(8), t)
    with pytest.raises(InvalidSignalError, match="half a period"):
        s.push(np.arange(1), t[-1:] + 0.01)
    s.push(np.arange(8), t + 8 / 25)  # the stream continues after refused bursts


def test_offline_windows_helper():
    run = emulate(_sim(), SensorConfig(odr_hz=50, duration_s=30.0))
    off = offline_windows(run.trace.codes, 50, 10.0)
    assert off.x.shape == (3, 1250) and off.ok.all()
    flat = offline_windows(np.full(1000, 5.0), 50, 10.0)
    assert not flat.ok.any() and "flat" in flat.reason[0]
    assert np.isnan(flat.x).all()


def test_interpolated_is_soft_flag():
    run = emulate(_sim(), SensorConfig(odr_hz=25, duration_s=60.0, drop_prob=0.01, seed=4))
    ws = Streamer(StreamConfig(odr_hz=25, hop_s=5.0)).run(run.bursts)
    soft = [w for w in ws if w.flags == FLAG_INTERPOLATED]
    assert soft and all(w.ok and w.x is not None for w in soft)
