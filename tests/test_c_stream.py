"""The generated C99 streaming preprocessor (issue 19, item 1) against the Python streamer.

Bars: flags identical to ``Streamer(mode="device")`` on every scenario and rate; windows max abs
<= 1e-4 vs the Python float32 device path and <= 1e-3 vs the float64 reference (z-scored units); int8
inputs identical in >= 99.9 % of samples and never more than 1 step apart. Built with ``-Werror
-pedantic``, and once with AddressSanitizer + UndefinedBehaviorSanitizer through a small driver.
Compile parts skip only when gcc is missing and ``CI`` is unset.
"""

from __future__ import annotations

import functools
import os
import re
import shutil

import numpy as np
import pytest
from scipy import signal

from anyppg_edge import preprocessing as pp
from anyppg_edge.contract import InputContract, QuantParams
from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
from anyppg_edge.errors import InvalidSignalError
from anyppg_edge.stream import SensorConfig, StreamConfig, Streamer, emulate, fault_config
from anyppg_edge.stream import c_stream as cs
from anyppg_edge.stream import streamer as py_streamer

RATES = (25.0, 50.0, 64.0, 100.0, 125.0)
HOP_S = 5.0
ADC_BITS = 18
QUANT = QuantParams(scale=0.0390625, zero_point=-3)  # a typical int8 input scale (5 sigma over 128 steps)
MAX_ABS_DEVICE, MAX_ABS_REFERENCE = 1e-4, 1e-3


def _need_gcc() -> None:
    from prerequisites import require

    require(shutil.which(os.environ.get("CC") or "gcc"), "no C compiler (gcc) on PATH")


@functools.cache
def _sim(duration_s: float = 125.0, seed: int = 1):
    return simulate_pair(SimulatorConfig(duration_s=duration_s, seed=seed, motion_artifact_rate_per_min=1.0))


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """One generated + compiled preprocessor per rate (int8 output on): ``{odr: (lib, src_dir, info)}``."""
    _need_gcc()
    out = {}
    for odr in RATES:
        d = tmp_path_factory.mktemp(f"cstream{int(odr)}")
        info = cs.generate_c_preprocessor(pp.DEFAULT_CONFIG, odr, HOP_S, d, adc_bits=ADC_BITS, input_quant=QUANT)
        out[odr] = (cs.build_stream_library(d), d, info)
    return out


def _python(bursts, odr: float, mode: str, hop_s: float = HOP_S):
    return Streamer(StreamConfig(odr_hz=odr, hop_s=hop_s, mode=mode, adc_bits=ADC_BITS)).run(bursts)


def _compare(c_wins, bursts, odr: float, hop_s: float = HOP_S) -> dict:
    """Flags, window values and int8 inputs of the C windows vs the Python device and reference modes."""
    dev, ref = _python(bursts, odr, "device", hop_s), _python(bursts, odr, "reference", hop_s)
    assert [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in c_wins] == [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in dev]
    assert [w.start_sample for w in c_wins] == [w.start_sample for w in dev]
    assert [(w.n_filled, w.n_missing) for w in c_wins] == [(w.n_filled, w.n_missing) for w in dev]
    assert [(w.flags, w.x is None) for w in dev] == [(w.flags, w.x is None) for w in ref]
    d_dev = d_ref = 0.0
    q_same = q_total = q_step = 0
    for a, b, r in zip(c_wins, dev, ref, strict=True):
        assert (a.x is None) == (b.x is None) == (a.q is None)
        if b.x is None:
            continue
        assert a.x.dtype == np.float32 and a.x.shape == (pp.DEFAULT_CONFIG.window_samples,)
        d_dev = max(d_dev, float(np.abs(a.x - b.x).max()))
        d_ref = max(d_ref, float(np.abs(a.x - r.x).max()))
        qp = QUANT.quantize(b.x).astype(np.int16)
        q_same += int(np.count_nonzero(a.q == qp))
        q_total += qp.size
        q_step = max(q_step, int(np.abs(a.q.astype(np.int16) - qp).max()))
    assert d_dev <= MAX_ABS_DEVICE and d_ref <= MAX_ABS_REFERENCE, (d_dev, d_ref)
    if q_total:
        assert q_same >= 0.999 * q_total and q_step <= 1, (q_same, q_total, q_step)
    return {"n": len(dev), "n_ok": sum(w.x is not None for w in dev), "dev": d_dev, "ref": d_ref,
            "flags": sorted({w.flags for w in dev}), "int8_same": q_same / max(q_total, 1)}


def _run_c(libs, odr: float, bursts):
    return cs.CStreamer(libs[odr][0], pp.DEFAULT_CONFIG.window_samples).run(bursts)


# ----------------------------------------------------------------------------- generation


def test_generated_flag_bits_are_the_streamers(tmp_path):
    import re

    cs.generate_c_preprocessor(pp.DEFAULT_CONFIG, 25.0, HOP_S, tmp_path, adc_bits=ADC_BITS)
    text = (tmp_path / "anyppg_stream_config.h").read_text()
    defined = {m[1].lower(): int(m[2]) for m in re.finditer(r"#define ANYPPG_FLAG_([A-Z]+) (\d+)u", text)}
    assert defined == {name: bit for bit, name in py_streamer.FLAG_NAMES.items()}
    assert f"#define ANYPPG_HARD_FLAGS {py_streamer.HARD_FLAGS}u" in text


@pytest.mark.parametrize("odr", RATES)
def test_tables_come_from_the_python_designs(odr):
    """The header's constants are the streamer's own: SOS, padding, resample_poly's FIR (the table
    reproduces ``resample_poly`` on float32 input exactly), window and hop lengths."""
    cfg = pp.DEFAULT_CONFIG
    t = cs.stream_tables(cfg, odr, HOP_S, adc_bits=ADC_BITS)
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=HOP_S, mode="device"))
    assert (t.n_win, t.n_hop, t.padlen, t.max_fill, t.n_settle) == (s.n_win, s.n_hop, s._padlen, s.max_fill, s.n_settle)
    assert (t.up, t.down) == (s._up, s._down)
    np.testing.assert_array_equal(t.sos32, s._sos32)
    np.testing.assert_array_equal(t.zi32, s._zi32)
    x = np.random.default_rng(0).standard_normal(t.n_win).astype(np.float32)
    want = signal.resample_poly(x, t.up, t.down) if (t.up, t.down) != (1, 1) else x
    got = np.zeros(t.n_out, np.float32)
    for m in range(t.n_out):  # the C loop, in numpy (float32 accumulation in the same order)
        yy = m + t.n_pre_remove
        xi, ph = yy * t.down // t.up, yy * t.down % t.up
        base = xi - t.h_per_phase + 1
        acc = np.float32(0.0)
        for j in range(max(base, 0), min(xi, t.n_win - 1) + 1):
            acc = np.float32(acc + x[j] * t.h_trans_flip[ph * t.h_per_phase + j - base])
        got[m] = acc
    np.testing.assert_array_equal(got, want)


def test_header_has_the_contract_and_no_free_constants(tmp_path):
    cfg = pp.DEFAULT_CONFIG
    contract = InputContract.for_model("student-watch-slim", "tflite-int8", 64, "0" * 64)
    contract = InputContract.from_dict({**contract.to_dict(), "input_quant": {"scale": 0.05, "zero_point": 2}})
    info = cs.generate_c_preprocessor(cfg, 64.0, 2.0, tmp_path, adc_bits=16, contract=contract)
    h = (tmp_path / "anyppg_stream_config.h").read_text()
    assert "student-watch-slim" in h and cfg.config_hash() in h and "resample_poly" in h and "z-score" in h
    defs = dict(re.findall(r"#define (ANYPPG_\w+) (\S+)", h))
    assert defs["ANYPPG_STREAM_N_WIN"] == "640" and defs["ANYPPG_STREAM_N_HOP"] == "128"
    assert defs["ANYPPG_STREAM_UP"] == "125" and defs["ANYPPG_STREAM_DOWN"] == "64"
    assert defs["ANYPPG_STREAM_HAS_QUANT"] == "1" and defs["ANYPPG_STREAM_INPUT_ZERO_POINT"] == "(2)"
    assert defs["ANYPPG_STREAM_FULL_SCALE"] == "65535.0" and defs["ANYPPG_FLAG_RESET"] == "32u"
    assert info["padlen"] == int(defs["ANYPPG_STREAM_PADLEN"]) > 0
    src = (tmp_path / "anyppg_stream.c").read_text()
    assert "malloc" not in src and "free(" not in src
    # every number in the C source is a small literal (loop bounds, 0/1/2, 0.5 rounding): the figures
    # of the chain live in the generated header only
    nums = {float(v) for v in re.findall(r"(?<![\w.])(\d+\.?\d*(?:e\d+)?)f?(?![\w.])", src)}
    assert nums <= {0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 48.0, 128.0, 1e6, 127.0}, sorted(nums)
    with pytest.raises(Exception, match=r"(?i)contract|mismatch|rate"):
        cs.generate_c_preprocessor(pp.PreprocessConfig(target_sample_rate_hz=100), 64.0, 2.0, tmp_path,
                                   contract=contract)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("odr", RATES)
def test_clean_simulated_every_rate(libs, odr):
    run = emulate(_sim(), SensorConfig(odr_hz=odr, adc_bits=ADC_BITS, duration_s=60.0))
    r = _compare(_run_c(libs, odr, run.bursts), run.bursts, odr)
    print(f"clean sim {odr:g} Hz: {r}")
    assert r["n"] == 11 and r["n_ok"] == 11 and r["flags"] == [0]


@pytest.mark.parametrize("odr", RATES)
def test_faults_every_rate(libs, odr):
    """Drift 50 ppm, 1 % drops, jitter, a reset, a 3 s stall (FIFO overflow), 1.5 s saturation."""
    run = emulate(_sim(), fault_config(odr, 120.0, drift_ppm=-50.0, drop_prob=0.01, stall_s=3.0,
                                       saturate_s=1.5, seed=3))
    r = _compare(_run_c(libs, odr, run.bursts), run.bursts, odr)
    print(f"faults {odr:g} Hz: {r}")
    f = py_streamer
    seen = 0
    for bit in r["flags"]:
        seen |= bit
    assert seen & f.FLAG_GAP and seen & f.FLAG_RESET and seen & f.FLAG_SATURATION and seen & f.FLAG_INTERPOLATED
    assert r["n_ok"] >= 3


@pytest.mark.parametrize("odr", RATES)
def test_shared_recordings_every_rate(libs, odr, shared):
    from anyppg_edge.stream.replay import load_recording

    for spec in ("shared:DATA_03", "shared:bidmc_01", "shared:neurokit"):
        run = emulate(load_recording(spec), SensorConfig(odr_hz=odr, adc_bits=ADC_BITS, duration_s=40.0,
                                                         start_s=30.0, jitter_s=0.2 / (12 * odr), seed=2))
        r = _compare(_run_c(libs, odr, run.bursts), run.bursts, odr)
        print(f"{spec} {odr:g} Hz: {r}")
        assert r["n"] == 7


@pytest.mark.parametrize("odr", (25.0, 125.0))
def test_drift_flag(libs, odr):
    """+5 % drift in 4-sample bursts (too short for the burst rate check): every window ``drift``."""
    base = SensorConfig(odr_hz=odr, drift_ppm=50_000.0)
    run = emulate(_sim(), SensorConfig(odr_hz=odr, drift_ppm=50_000.0, watermark=4, duration_s=30.0,
                                       jitter_s=0.9 * base.max_jitter_s, seed=1))
    c = cs.CStreamer(libs[odr][0], pp.DEFAULT_CONFIG.window_samples)
    wins = c.run(run.bursts)
    r = _compare(wins, run.bursts, odr)
    assert r["flags"] == [py_streamer.FLAG_DRIFT] and r["n"] >= 4
    s = Streamer(StreamConfig(odr_hz=odr, hop_s=HOP_S, mode="device", adc_bits=ADC_BITS))
    s.run(run.bursts)
    assert c.drift_ppm == pytest.approx(s.estimated_drift_ppm, rel=1e-9)


def _ppg(n: int, odr: float, t0: float = 0.0):
    tt = np.arange(n) / odr
    x = 3000 * np.sin(2 * np.pi * 1.3 * tt) + 800 * np.sin(2 * np.pi * 2.6 * tt + 0.4) + 2**17
    return np.round(x).astype(np.int32), t0 + tt


class _B:
    def __init__(self, codes, ts, reset=False):
        self.codes, self.timestamps_s, self.reset = codes, ts, reset


def _chunks(x, t, size, reset_first=False):
    return [_B(x[i : i + size], t[i : i + size], reset_first and i == 0) for i in range(0, x.size, size)]


def _edge_bursts(odr: float) -> list:
    """Short gaps inside and across bursts (interpolated / gap), a flat and a railed stretch, one-sample
    bursts, a reset without dead time, and jumps of 1e3 s and (inside a burst) 1e7 s."""
    n = int(200 * odr)
    x, t = _ppg(n, odr, t0=1.7e9)
    x[int(40 * odr) : int(48 * odr)] = 2**17  # flat
    x[int(60 * odr) : int(61 * odr)] = 2**18 - 1  # rail
    keep = np.ones(n, bool)
    keep[int(20 * odr) : int(20 * odr) + 2] = False  # short gap: interpolated
    keep[int(30 * odr) : int(30 * odr) + 15] = False  # gap
    keep[int(70 * odr) + 3] = False  # inside a burst
    head = np.flatnonzero(keep[: int(80 * odr)])
    bursts = _chunks(x[head], t[head], 7)
    bursts += [_B(x[i : i + 1], t[i : i + 1]) for i in range(int(80 * odr), int(90 * odr))]
    bursts += _chunks(x[int(90 * odr) : int(120 * odr)], t[int(90 * odr) : int(120 * odr)], 16, reset_first=True)
    x2, t2 = _ppg(int(40 * odr), odr, t0=float(t[int(120 * odr) - 1]) + 1e3 + 0.013)
    bursts += _chunks(x2[:-3], t2[:-3], 33)
    x3, t3 = _ppg(int(40 * odr), odr, t0=float(t2[-1]) + 1e7 + 0.4 / odr)
    bursts.append(_B(np.concatenate([x2[-3:], x3[:5]]), np.concatenate([t2[-3:], t3[:5]])))
    bursts += _chunks(x3[5:], t3[5:], 16)
    return bursts


def _check_edge_flags(r: dict) -> None:
    seen = 0
    for bit in r["flags"]:
        seen |= bit
    f = py_streamer
    assert seen & f.FLAG_GAP and seen & f.FLAG_INTERPOLATED and seen & f.FLAG_FLAT and seen & f.FLAG_SATURATION
    assert seen & f.FLAG_RESET


@pytest.mark.parametrize("odr", (25.0, 64.0))
def test_edge_scenarios(libs, odr):
    bursts = _edge_bursts(odr)
    r = _compare(_run_c(libs, odr, bursts), bursts, odr)
    print(f"edge scenarios {odr:g} Hz: {r}")
    _check_edge_flags(r)
    assert r["n_ok"] >= 10


@pytest.mark.parametrize("hop_s", (2.0, 10.0, 12.5))
def test_other_hops(tmp_path, hop_s):
    """Hops shorter than, equal to and longer than the window (edge scenarios at 25 Hz, no int8)."""
    _need_gcc()
    odr = 25.0
    info = cs.generate_c_preprocessor(pp.DEFAULT_CONFIG, odr, hop_s, tmp_path, adc_bits=ADC_BITS)
    assert info["quant"] is None
    c = cs.CStreamer(cs.build_stream_library(tmp_path), pp.DEFAULT_CONFIG.window_samples)
    bursts = _edge_bursts(odr)
    wins = c.run(bursts)
    assert all(w.q is None for w in wins)
    dev = _python(bursts, odr, "device", hop_s)
    assert [(w.index, w.flags, w.start_sample, w.t_start_s, w.t_end_s) for w in wins] == [(w.index, w.flags, w.start_sample, w.t_start_s, w.t_end_s) for w in dev]
    assert all((a.x is None and b.x is None) or np.abs(a.x - b.x).max() <= MAX_ABS_DEVICE
               for a, b in zip(wins, dev, strict=True))
    seen = 0
    for w in dev:
        seen |= w.flags
    f = py_streamer
    assert seen & f.FLAG_GAP and seen & f.FLAG_INTERPOLATED and seen & f.FLAG_RESET  # (a 12.5 s hop misses the rail)


@pytest.mark.parametrize("sizes", ([1], [150], [3, 40, 1, 17]))
def test_chunking_invariance(libs, sizes):
    """Any FIFO burst pattern of a fault run (64 Hz): the same windows, bit for bit."""
    from anyppg_edge.stream.harness import rechunk

    run = emulate(_sim(), fault_config(64.0, 60.0, drift_ppm=50.0, drop_prob=0.01, stall_s=3.0, saturate_s=1.5,
                                       seed=5))
    ref = _run_c(libs, 64.0, run.bursts)
    got = _run_c(libs, 64.0, rechunk(run.bursts, sizes))
    assert [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in got] == [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in ref]
    assert all((a.x is None and b.x is None) or np.array_equal(a.x, b.x) for a, b in zip(got, ref, strict=True))


def test_window_timestamps_of_filled_and_missing_slots(libs):
    """Window timestamps where they are estimated: every hop-start slot (a window's first) dropped,
    with the next one (interpolated: ``t0 + dt * (j / (gap + 1))``) or with its neighbours past the fill limit
    (missing: ``t0 + period * j``), over a drifting, jittered host clock; and a jump past the ring.
    C and Python agree to the last bit."""
    odr = 25.0
    n_hop = int(HOP_S * odr)
    x, _ = _ppg(int(200 * odr), odr)
    rng = np.random.default_rng(3)
    t = 1234.5678 + np.arange(x.size) / odr * (1 + 37e-6) + rng.normal(0.0, 1e-4, x.size)
    keep = np.ones(x.size, bool)
    keep[n_hop::n_hop] = keep[n_hop + 1 :: n_hop] = False  # two slots (the fill limit at 25 Hz): interpolated
    for k in range(3 * n_hop, x.size - 10, 4 * n_hop):
        keep[k - 2 : k + 3] = False  # five slots: missing
    t[int(150 * odr) :] += 400.0  # a jump past the ring
    xs, ts = x[keep], t[keep]
    bursts = [_B(xs[i : i + 9], ts[i : i + 9]) for i in range(0, xs.size, 9)]
    c = cs.CStreamer(libs[odr][0], pp.DEFAULT_CONFIG.window_samples).run(bursts)
    py = _python(bursts, odr, "device")
    assert sum(w.n_filled > 0 for w in py) > 10 and sum(w.n_missing > 0 for w in py) > 10
    assert [(w.index, w.t_start_s, w.t_end_s) for w in c] == [(w.index, w.t_start_s, w.t_end_s) for w in py]
    starts = {round(w.start_sample) for w in py}
    assert any(s % n_hop == 0 and not keep[s] for s in starts if s < keep.size)  # estimated first slots


def test_refused_bursts_leave_the_state(libs):
    odr = 25.0
    c = cs.CStreamer(libs[odr][0], pp.DEFAULT_CONFIG.window_samples)
    x, t = _ppg(600, odr)
    c.push(x[:100], t[:100])
    py = Streamer(StreamConfig(odr_hz=odr, hop_s=HOP_S, mode="device"))
    py.push(x[:100], t[:100])
    for codes, ts in ((x[100:110], t[100:110][::-1]),  # decreasing
                      (x[100:110], t[100:110] * 0 + t[99]),  # not after the previous burst
                      (x[100:110], t[99] + (0.3 + np.arange(10)) / odr),  # starts 0.3 periods after it
                      (x[100:120], t[100] + np.arange(20) / (1.2 * odr)),  # 20 % fast
                      (x[100:102], np.array([t[100], t[100] + 0.1 / odr])),  # duplicated
                      (x[100:102], np.array([t[100], np.nan])),
                      (x[100:102], np.array([t[100], t[100] + 1e20])),  # no exact slot count
                      (x[100:101], np.array([t[99] + 1e20]))):  # as a jump from the previous burst
        for reset in (False, True):  # refused with a reset too: the reset is not armed
            with pytest.raises(InvalidSignalError):
                c.push(codes, ts, reset=reset)
            with pytest.raises(InvalidSignalError):
                py.push(codes, ts, reset=reset)
    got, got_py = c.push(x[100:], t[100:]), py.push(x[100:], t[100:])
    ref = _python([_B(x[:100], t[:100]), _B(x[100:], t[100:])], odr, "device")
    assert len(ref) >= 3 and not any(w.flags for w in ref)  # no window flagged: no reset was armed
    for out in (got, got_py):
        assert [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in out] == [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in ref]
        assert all(np.array_equal(a.x, b.x) for a, b in zip(out, ref, strict=True))


# ----------------------------------------------------------------------------- build and memory


def test_memory_fixed_and_reported(libs):
    for odr, (lib, _, info) in libs.items():
        c = cs.CStreamer(lib, pp.DEFAULT_CONFIG.window_samples)
        assert info["ring_bytes"] + info["work_bytes"] <= c.state_bytes <= info["ring_bytes"] + info["work_bytes"] + 256
        print(f"{odr:g} Hz: state {c.state_bytes} B, tables {info['table_bytes']} B")
        assert c.state_bytes <= 40 * 1024


def test_sanitizer_driver_matches_library(libs, tmp_path):
    """-fsanitize=address,undefined (abort on the first report) on a fault run at 64 Hz, a clean one
    and the edge scenarios (jumps of 1e3 and 1e7 s) at 25 Hz: same windows as the shared library."""
    for odr, run in ((64.0, emulate(_sim(), fault_config(64.0, 60.0, drop_prob=0.02, stall_s=2.0, saturate_s=1.0,
                                                          seed=4))),
                     (25.0, emulate(_sim(), SensorConfig(odr_hz=25.0, duration_s=30.0))),
                     (25.0, _B(None, None))):
        bursts = _edge_bursts(odr) if isinstance(run, _B) else run.bursts
        exe = cs.build_stream_driver(libs[odr][1], sanitize=True)
        got, stdout = cs.run_stream_driver(exe, bursts, pp.DEFAULT_CONFIG.window_samples, tmp_path)
        want = _run_c(libs, odr, bursts)
        assert f"state_bytes {cs.CStreamer(libs[odr][0], 1250).state_bytes}" in stdout
        assert [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in got] == [(w.index, w.flags, w.t_start_s, w.t_end_s) for w in want]
        assert all((a.x is None and b.x is None) or np.array_equal(a.x, b.x) for a, b in zip(got, want, strict=True))


def test_cortex_m4_build_and_memory(libs, tmp_path):
    """The same sources cross-compile for Cortex-M4F with -Werror -pedantic; flash (code + tables) and
    the state's size on the target, per rate (reported; the firmware bars are issue 19 item 4's)."""
    if not shutil.which("arm-none-eabi-gcc") or not shutil.which("arm-none-eabi-size"):
        pytest.skip("no arm-none-eabi toolchain")
    for odr, (_, src, info) in libs.items():
        m = cs.cortexm_sizes(src, "cortex-m4", tmp_path)
        print(f"cortex-m4 {odr:g} Hz: {m}")
        assert m["static_ram_bytes"] == 0  # all RAM is the caller's anyppg_stream_t
        assert info["ring_bytes"] + info["work_bytes"] <= m["state_bytes"] <= 40 * 1024
        assert info["table_bytes"] < m["flash_bytes"] <= info["table_bytes"] + 16 * 1024
