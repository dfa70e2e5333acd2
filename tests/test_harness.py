"""Firmware harness end to end (issue 6): replay reports, the main job's ``harness_summary``, and the
``python -m firmware_harness`` commands (replay, summary, bench)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
from anyppg_edge.eval.heart_rate import HrTrainingSet, fit_hr_head
from anyppg_edge.stream import emulate, fault_config
from anyppg_edge.stream.harness import harness_summary
from anyppg_edge.stream.replay import BARS, load_recording, replay

ROOT = Path(__file__).resolve().parent.parent
INT8 = ROOT / "runs" / "export" / "student-watch" / "student-watch.int8.tflite"
FLOAT_CKPT = ROOT / "runs" / "distill_watch" / "best.pt"


@pytest.fixture(scope="module")
def student():
    from anyppg_edge.models.loading import load_encoder

    model = (load_encoder(FLOAT_CKPT) if FLOAT_CKPT.is_file() else load_encoder(None, "student-watch")).encoder
    return model


@pytest.fixture(scope="module")
def encoder(student):
    """The int8 TFLite student when this checkout has exported it, else the float student (PyTorch)."""
    from anyppg_edge.deploy.runtime import open_encoder

    if INT8.is_file():
        pytest.importorskip("ai_edge_litert")
        return open_encoder(INT8, threads=1)
    return open_encoder(student)


def test_replay_real_recording_with_faults(shared, encoder, student, tmp_path):
    """Real wrist PPG (IEEE SPC 2015) with +50 ppm drift, 1 % drops, jitter, a reset and a host stall."""
    from anyppg_edge.data import load_shared_recordings

    recs = load_shared_recordings()
    target = next(r for r in recs if r.subject_id.endswith("DATA_05"))
    head = fit_hr_head(encoder, [r for r in recs if r.subject_id.endswith(("DATA_01", "DATA_02", "bidmc_01"))])
    run = emulate(target, fault_config(25.0, 150.0, stall_s=3.0, seed=5))
    res = replay(run, encoder, hop_s=5.0, float_encoder=student, hr_head=head)
    s = res.summary
    print({k: s[k] for k in ("n_windows", "n_ok", "flag_counts", "n_affected", "n_clean_unaffected",
                             "cos_vs_offline_same_encoder", "cos_vs_float_offline_recording", "hr_mae_bpm")})
    assert s["n_windows"] == 29 and s["n_affected"] > 0
    assert s["all_affected_flagged"]
    assert s["flag_counts"]["reset"] >= 1 and s["flag_counts"]["gap"] >= 1
    if s["n_clean_unaffected"]:
        assert s["parity_max_abs_clean"] <= BARS["parity_max_abs_float64"]
        assert s["cos_vs_offline_same_encoder_clean"]["min"] > 0.99999
    assert s["cos_vs_offline_same_encoder"]["min"] > 0.99  # interpolated windows included
    assert s["cos_float_stream_vs_offline"]["min"] > 0.99
    assert abs(s["drift_ppm_estimated"] - 50.0) < 5
    assert np.isfinite(s["hr_mae_bpm"]) and s["hr_n"] == s["n_ok"]
    assert s["latency_ms"]["p50"] > 0
    res.rows[0]["index"] == 0  # noqa: B015
    from anyppg_edge.stream.replay import write_replay_report

    paths = write_replay_report(res, tmp_path)
    for key in ("json", "md", "signal", "cosine", "hr"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0
    js = json.loads(paths["json"].read_text())
    assert len(js["windows"]) == 29 and js["summary"]["all_affected_flagged"]


def test_harness_summary(student, tmp_path):
    """The main job's entry point, on simulated recordings (fast): every bar present and passing."""
    recs = [simulate_pair(SimulatorConfig(duration_s=70.0, seed=s), subject_id=f"sim/h{s}") for s in (11, 12, 13)]
    summary = harness_summary(student, student, recs, tmp_path, rates_hz=(25.0, 64.0), parity_duration_s=40.0,
                              max_fault_recordings=1)
    bars = summary["bars"]
    for name in ("parity_max_abs_float64", "parity_max_abs_float32_device", "parity_min_cosine_float_model_reference",
                 "parity_min_cosine_float_model_device", "chunking_invariant", "faults_all_affected_flagged"):
        assert bars[name]["pass"] is True, (name, bars[name])
    assert [p["odr_hz"] for p in summary["parity"]] == [25.0, 64.0]
    assert len(summary["faults"]) == 1 and summary["faults"][0]["hr_head"]["subjects"] == 2
    assert (tmp_path / "harness_report.md").is_file() and (tmp_path / "harness_summary.json").is_file()
    assert (tmp_path / "replays" / "sim_h11" / "replay.md").is_file()
    assert "Parity without faults" in (tmp_path / "harness_report.md").read_text()


def test_hr_training_set_leaves_subject_out(student):
    from anyppg_edge.deploy.runtime import open_encoder

    enc = open_encoder(student)
    recs = [simulate_pair(SimulatorConfig(duration_s=40.0, seed=s, mean_hr_bpm=hr), subject_id=f"sim/hr{s}")
            for s, hr in ((1, 60.0), (2, 90.0))]
    data = HrTrainingSet.build(enc, recs)
    assert set(data.subject) == {"sim/hr1", "sim/hr2"} and data.emb.shape[0] == data.hr_bpm.size
    head = fit_hr_head(enc, data, exclude_subject="sim/hr1")
    assert head.subjects == ["sim/hr2"] and head.n_train == int((data.subject == "sim/hr2").sum())


def test_replay_hr_reference_is_the_probes(student):
    """The replay's per-window reference HR is the probe's on the same windows (one policy,
    anyppg_edge.eval.heart_rate), here through the ECG route (the recording has no HR trace)."""
    from anyppg_edge.data import Recording
    from anyppg_edge.data.windows import extract_windows
    from anyppg_edge.eval.heart_rate import window_reference_hr_bpm
    from anyppg_edge.stream import SensorConfig

    sim = simulate_pair(SimulatorConfig(duration_s=62.0, seed=21), subject_id="sim/ref")
    rec = Recording(sim.subject_id, sim.dataset, sim.channels, {k: v for k, v in sim.meta.items() if not k.startswith("hr_")})
    res = replay(emulate(rec, SensorConfig(odr_hz=25.0, duration_s=60.0, seed=0)), student, hop_s=5.0)
    ws = extract_windows(rec, hop_s=5.0, ecg_quality=False)
    ref, source = window_reference_hr_bpm(ws, [rec])
    assert set(source) == {"ecg"} and np.isfinite(ref).all()
    np.testing.assert_array_equal([r["t_true_start_s"] for r in res.rows], ws.start_s)
    np.testing.assert_array_equal([r["hr_ref_bpm"] for r in res.rows], ref)


def test_load_recording_specs(shared):
    assert load_recording("shared:DATA_01").subject_id == "ieee_spc2015/DATA_01"
    assert load_recording("shared:bidmc").dataset == "bidmc"
    assert load_recording("sim:4", sim_duration_s=20.0).duration_s == pytest.approx(20.0)
    from anyppg_edge.errors import DataFormatError

    with pytest.raises(DataFormatError, match="matches 8"):
        load_recording("shared:DATA_0")


# ----------------------------------------------------------------------------- CLI


def test_cli_replay(student, tmp_path):
    import torch

    from anyppg_edge.cli.harness import main

    ckpt = tmp_path / "student.pt"
    torch.save(student.state_dict(), ckpt)
    art = str(INT8) if INT8.is_file() else str(ckpt)
    out = tmp_path / "replay"
    rc = main(["replay", "--artifact", art, "--recording", "sim:2", "--duration-s", "60", "--odr-hz", "25",
               "--hop-s", "5", "--faults", "--float-checkpoint", str(ckpt), "--float-model", "student-watch",
               "--out", str(out)])
    assert rc == 0
    js = json.loads((out / "replay.json").read_text())
    s = js["summary"]
    assert s["all_affected_flagged"] and s["n_windows"] == 11 and s["odr_hz"] == 25.0
    assert s["hr_head"]["subjects"] == 6 and np.isfinite(s["hr_mae_bpm"])
    assert (out / "replay_signal.png").is_file() and (out / "replay.md").is_file()


def test_cli_replay_causal_no_faults(student, tmp_path, capsys):
    import torch

    from anyppg_edge.cli.harness import main

    ckpt = tmp_path / "student.pt"
    torch.save(student.state_dict(), ckpt)
    rc = main(["replay", "--artifact", str(ckpt), "--recording", "sim:3", "--duration-s", "40", "--odr-hz", "64",
               "--hop-s", "2", "--mode", "causal", "--float-model", "student-watch", "--no-float", "--no-hr",
               "--no-plot", "--out", str(tmp_path)])
    assert rc == 0
    s = json.loads((tmp_path / "replay.json").read_text())["summary"]
    assert s["mode"] == "causal" and s["n_windows"] == 16 and s["n_affected"] == 0
    assert 0 < s["algorithmic_latency_s"] < 0.5
    assert "replayed sim/seed3 at 64 Hz" in capsys.readouterr().out


def test_cli_bench_small(tmp_path, capsys):
    from anyppg_edge.cli.harness import main

    args = ["bench", "--duration-s", "60", "--e2e-duration-s", "60", "--rates", "25", "64", "--out", str(tmp_path)]
    if INT8.is_file():
        args += ["--artifact", str(INT8)]
    else:
        args += ["--no-e2e"]
    assert main(args) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert [r["odr_hz"] for r in res["preprocessing"] if r["mode"] == "reference"] == [25.0, 64.0]
    assert all(r["windows"] == 6 and r["realtime_factor"] > 0 for r in res["preprocessing"])
    if INT8.is_file():
        assert res["end_to_end"]["windows"] == 11 and res["end_to_end"]["end_to_end_s"] > 0
    assert "Streaming preprocessing" in capsys.readouterr().out
