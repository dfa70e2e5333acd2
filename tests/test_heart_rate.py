"""The one reference-HR policy (anyppg_edge.eval.heart_rate): the estimators, the policy's order and
parameters, the former call sites (probe, replay, calibration) agreeing on the same windows, and the
ECG R-peak HR against the IEEE SPC 2015 BPM0 trace."""

from __future__ import annotations

import re

import numpy as np
import pytest

from anyppg_edge.data import Recording, SimulatorConfig, load_shared_recordings, simulate_pair
from anyppg_edge.data.windows import extract_windows
from anyppg_edge.deploy.calibration import HR_POLICY, build_calibration_set
from anyppg_edge.eval.heart_rate import (
    REFERENCE_POLICY,
    HrPolicy,
    ecg_heart_rate_bpm,
    recording_reference_hr_bpm,
    reference_heart_rates,
    reference_hr_from_trace,
    window_reference_hr_bpm,
)
from anyppg_edge.paths import REPO_ROOT


def _without_trace(rec: Recording) -> Recording:
    meta = {k: v for k, v in rec.meta.items() if not k.startswith("hr_")}
    return Recording(rec.subject_id, rec.dataset, rec.channels, meta)


# ----------------------------------------------------------------------------- the estimators


def test_reference_hr_from_trace_maps_by_window_time():
    trace = np.arange(20, dtype=float) + 60.0  # entry k covers [2k, 2k + 8) s
    # a 10 s window starting at t0 holds entries t0/2 and t0/2 + 1 entirely; their mean is centred on it
    got = reference_hr_from_trace([0.0, 4.0, 10.0, 40.0], trace)
    assert got[:3] == pytest.approx([60.5, 62.5, 65.5])
    assert np.isnan(got[3])  # past the end of the trace
    # trace windows longer than ours: the entry with the nearest centre (within half a step)
    long = reference_hr_from_trace([0.0, 3.0, 5.0], trace, trace_window_s=12.0, window_s=10.0)
    assert long == pytest.approx([60.0, 61.0, 62.0])


@pytest.mark.parametrize("hr_bpm,seed", [(55.0, 1), (75.0, 2), (100.0, 3)])
def test_ecg_heart_rate_matches_simulator(hr_bpm, seed):
    rec = simulate_pair(SimulatorConfig(duration_s=60.0, mean_hr_bpm=hr_bpm, seed=seed))
    ws = extract_windows(rec, hop_s=5.0, ecg_quality=False)
    est = ecg_heart_rate_bpm(ws.ecg)
    r = rec.meta["r_peaks_s"]
    truth = np.array([60.0 / np.median(np.diff(r[(r >= t0) & (r < t0 + 10.0)])) for t0 in ws.start_s])
    assert np.isfinite(est).all()
    assert np.max(np.abs(est - truth)) < 2.0
    # the trace route (simulator ground truth in the IEEE BPM0 layout) agrees too
    ref, source = window_reference_hr_bpm(ws, [rec])
    assert set(source) == {"trace"} and np.max(np.abs(ref - truth)) < 5.0


def test_ecg_heart_rate_nan_for_too_few_peaks():
    assert np.isnan(ecg_heart_rate_bpm(np.zeros((1, 1250)))).all()


# ----------------------------------------------------------------------------- the policy


@pytest.fixture(scope="module")
def sim_windows():
    rec = simulate_pair(SimulatorConfig(duration_s=60.0, mean_hr_bpm=72.0, seed=4), subject_id="sim/policy")
    return rec, extract_windows(rec, hop_s=10.0, ecg_quality=False)


def test_policy_order_trace_then_ecg_then_ppg(sim_windows):
    rec, ws = sim_windows
    n = len(ws)
    ecg_hr = ecg_heart_rate_bpm(ws.ecg)
    # trace first; the ECG only where the trace has no entry (past its end here)
    short = {**rec.meta, "hr_bpm_trace": rec.meta["hr_bpm_trace"][:10]}  # covers [0, 26) s
    hr, src = reference_heart_rates(ws.start_s, ecg=ws.ecg, ppg=ws.ppg, meta=short)
    covered = ws.start_s + 10.0 <= 26.0
    assert list(src) == ["trace" if c else "ecg-rpeaks" for c in covered]
    np.testing.assert_array_equal(hr[~covered], ecg_hr[~covered])
    # no usable ECG: NaN under the evaluation reference, the PPG spectral peak where the policy says so
    flat = np.zeros_like(ws.ecg)
    hr, src = reference_heart_rates(ws.start_s, ecg=flat, ppg=ws.ppg)
    assert np.isnan(hr).all() and set(src) == {"none"}
    hr, src = reference_heart_rates(ws.start_s, ecg=flat, ppg=ws.ppg, policy=HR_POLICY)
    assert set(src) == {"ppg-spectral"} and np.all(np.abs(hr - ecg_hr) < 8.0)
    # has_ecg=False skips the ECG even when it is there
    hr, src = reference_heart_rates(ws.start_s, ecg=ws.ecg, ppg=ws.ppg, has_ecg=np.zeros(n, bool), policy=HR_POLICY)
    assert set(src) == {"ppg-spectral"}
    # valid_bpm: an ECG HR outside the range is a failed detection
    lo = float(np.min(ecg_hr)) + 0.01
    hr, src = reference_heart_rates(ws.start_s, ecg=ws.ecg, policy=HrPolicy(valid_bpm=(lo, 240.0)))
    assert list(src) == ["ecg-rpeaks" if h >= lo else "none" for h in ecg_hr]
    # use_trace=False ignores the trace
    hr, src = reference_heart_rates(ws.start_s, ecg=ws.ecg, meta=rec.meta, policy=HrPolicy(use_trace=False))
    assert set(src) == {"ecg-rpeaks"} and np.array_equal(hr, ecg_hr)


def test_policies_in_use_keep_their_values():
    assert REFERENCE_POLICY == HrPolicy(use_trace=True, valid_bpm=None, ppg_fallback=False)
    assert HR_POLICY == HrPolicy(use_trace=False, valid_bpm=(30.0, 240.0), ppg_fallback=True, ppg_band_hz=(0.7, 3.5))


def test_window_reference_keeps_its_source_labels(sim_windows):
    """The parity suite counts ``"trace"`` and ``"ecg"``: a window where the ECG was tried is ``"ecg"``."""
    rec, ws = sim_windows
    _, src = window_reference_hr_bpm(ws, [rec])
    assert set(src) == {"trace"}
    _, src = window_reference_hr_bpm(ws, [rec], prefer_trace=False)
    assert set(src) == {"ecg"}


# ----------------------------------------------------------------------------- the former call sites


def _three_call_sites(rec: Recording, hop_s: float = 10.0):
    """Reference HR of the same windows as the probe, the replay and the calibration set see them."""
    ws = extract_windows(rec, hop_s=hop_s, ecg_quality=False)
    probe, probe_src = window_reference_hr_bpm(ws, [rec])  # eval.probe / parity suite / HR head
    replay, replay_src = recording_reference_hr_bpm(rec, ws.start_s)  # stream.replay
    cs = build_calibration_set([[rec]], n_windows=len(ws), hop_s=hop_s, ecg_quality=False, progress=False)
    order = np.argsort(cs.start_s)
    np.testing.assert_array_equal(cs.start_s[order], ws.start_s)  # the same windows
    probe_ecg, _ = window_reference_hr_bpm(ws, [rec], prefer_trace=False)
    return ws, probe, probe_src, replay, replay_src, cs.hr_bpm[order], cs.hr_source[order], probe_ecg


def _assert_agree(rec: Recording) -> None:
    _, probe, probe_src, replay, replay_src, cal, cal_src, probe_ecg = _three_call_sites(rec)
    np.testing.assert_array_equal(probe, replay)  # same policy: identical
    assert list(probe_src) == ["ecg" if s in ("ecg-rpeaks", "none") else s for s in replay_src]
    # calibration: the same ECG R-peak HR where it is valid, no trace (HR_POLICY)
    ecg = cal_src == "ecg-rpeaks"
    assert ecg.any()
    np.testing.assert_array_equal(cal[ecg], probe_ecg[ecg])
    bad = ~np.isfinite(probe_ecg) | (probe_ecg < 30.0) | (probe_ecg > 240.0)
    np.testing.assert_array_equal(~ecg, bad)  # the PPG fallback exactly where the ECG gives none
    if rec.meta.get("hr_bpm_trace") is None:
        np.testing.assert_array_equal(probe[ecg], cal[ecg])


def test_call_sites_agree_on_simulated_windows():
    rec = simulate_pair(SimulatorConfig(duration_s=60.0, seed=7), subject_id="sim/agree")
    _assert_agree(rec)
    _assert_agree(_without_trace(rec))  # ECG route in the probe and the replay too


@pytest.mark.parametrize("subject", ["bidmc_01", "DATA_03"])
def test_call_sites_agree_on_real_windows(shared, subject):
    rec = next(r for r in load_shared_recordings() if r.subject_id.endswith(subject))
    _assert_agree(rec)


def test_ecg_rpeak_hr_matches_ieee_bpm_trace(shared):
    """Known HR: on the IEEE SPC 2015 recordings (rest -> run -> rest, 60-90 bpm of range each), the
    ECG R-peak HR of the policy (trace off) agrees with the dataset's ECG-derived ``BPM0`` trace."""
    diffs = []
    for rec in load_shared_recordings():
        if rec.dataset != "ieee_spc2015":
            continue
        ws = extract_windows(rec, hop_s=10.0, ecg_quality=False)
        trace, src = window_reference_hr_bpm(ws, [rec])
        assert set(src) == {"trace"} and np.ptp(trace) > 50.0
        ecg, src = recording_reference_hr_bpm(rec, ws.start_s, policy=HrPolicy(use_trace=False))
        assert set(src) == {"ecg-rpeaks"}
        d = np.abs(ecg - trace)
        assert np.median(d) < 1.5, (rec.subject_id, np.median(d))
        diffs.append(d)
    d = np.concatenate(diffs)
    assert len(diffs) == 8 and d.size > 200
    assert np.percentile(d, 95) < 3.0 and d.max() < 8.0  # measured: median 0.71, p95 1.76, max 5.6 bpm


def test_eval_never_imports_stream_deploy_or_train():
    pattern = re.compile(r"^\s*(from|import)\s+anyppg_edge\.(stream|deploy|train)\b", re.M)
    offenders = [p.name for p in (REPO_ROOT / "anyppg_edge" / "eval").glob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders
