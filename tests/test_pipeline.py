"""The main job end to end, and the window extraction it is built on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge import preprocessing as pp
from anyppg_edge.cli import main
from anyppg_edge.data import read_ieee_spc2015, simulate_pair
from anyppg_edge.data.simulator import SimulatorConfig
from anyppg_edge.data.windows import extract_windows
from anyppg_edge.errors import InvalidSignalError
from anyppg_edge.models import create_model
from anyppg_edge.models.encode import check_model_input, encode_windows


def test_extract_windows_matches_reference_per_window():
    rec = simulate_pair(SimulatorConfig(duration_s=60.0, sample_rate_hz=64.0, seed=3))
    ws = extract_windows(rec, hop_s=5.0, ecg_quality=False)
    # (60 - 10) / 5 + 1 windows, all clean in a noise-light simulation
    assert len(ws) + sum(ws.rejected.values()) == 11
    assert ws.ppg.shape[1:] == (1250,) and ws.ppg.dtype == np.float32
    i = 3
    a = round(ws.start_s[i] * 64)
    ref = pp.preprocess_ppg_window(rec.ppg.data[a : a + 640], 64.0)
    np.testing.assert_array_equal(ws.ppg[i], ref)


def test_extract_windows_flags_bad_windows_instead_of_passing_them():
    rec = simulate_pair(SimulatorConfig(duration_s=40.0, sample_rate_hz=125.0, seed=1))
    rec.ppg.data[100:120] = np.nan  # window 0
    rec.ppg.data[1300:2400] = rec.ppg.data[1300]  # window 1 mostly flat
    ws = extract_windows(rec, ecg_quality=False)
    assert ws.rejected["non-finite"] == 1 and ws.rejected["flat"] == 1
    assert len(ws) == 2 and list(ws.start_s) == [20.0, 30.0]


def test_extract_windows_corrects_inverted_ecg(shared):
    rec = read_ieee_spc2015(shared / "data" / "ieee_spc2015" / "DATA_04_TYPE02.mat")
    upright = extract_windows(rec, ecg_quality=False)
    rec.ecg.data[:] = -rec.ecg.data
    corrected = extract_windows(rec, ecg_quality=False)
    np.testing.assert_allclose(corrected.ecg, upright.ecg, atol=1e-6)
    uncorrected = extract_windows(rec, ecg_quality=False, correct_polarity=False)
    assert np.abs(uncorrected.ecg + upright.ecg).max() < 1e-4


def test_model_input_checks():
    with pytest.raises(InvalidSignalError, match="1250 samples"):
        check_model_input(np.zeros((2, 1000), np.float32), 1250)
    with pytest.raises(InvalidSignalError, match="NaN/Inf"):
        check_model_input(np.full((2, 1250), np.nan, np.float32), 1250)
    with pytest.raises(InvalidSignalError, match="real numbers"):
        check_model_input(np.zeros((2, 1250), complex), 1250)
    with pytest.raises(InvalidSignalError, match="shape"):
        check_model_input(np.zeros((2, 3, 1250), np.float32), 1250)
    emb = encode_windows(create_model("tiny"), np.random.default_rng(0).standard_normal((5, 1250)), progress=False)
    assert emb.shape == (5, 64) and np.isfinite(emb).all()


def test_demo_end_to_end_on_embedded_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ANYPPG_SHARED", str(tmp_path / "nowhere"))  # embedded default only
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--model", "tiny", "--sim-subjects", "4", "--sim-duration-s", "60",
            "--pretrain-steps", "4", "--distill-steps", "3", "--export-qat-steps", "2",
            "--bench-runs", "3"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_windows"] == np.load(out / "embeddings.npy").shape[0] > 0
    assert summary["weights"].startswith("random init")
    assert summary["pretrain"]["steps"] == 4
    retrieval = summary["pretrain"]["retrieval"]
    assert {"model", "spectral_baseline"} <= set(retrieval) and retrieval["n_windows"] > 0
    report = (out / "report.md").read_text()
    assert report.startswith("# anyppg-edge main job report") and "spectral_baseline" in report
    # the watch-tier student distilled from that teacher, with its budget and retention tables
    kd = summary["distill"]
    assert kd["student"] == "student-watch-slim" and kd["steps"] == 3
    assert kd["retention"]["budget"][0]["watch"] == "ok" and "retrieval" in kd["retention"]
    assert "## Distillation" in report and "cosine(student, teacher)" in report and "spectral peak" in report
    assert (out / "demo.png").stat().st_size > 10_000
    # QAT + export of that student and PTQ export of the teacher: four artifacts each, at parity with
    # their float models; the latency table; the report ends with the parity table vs golden sets
    for role in ("student", "teacher"):
        ex = summary["export"][role]
        assert set(ex["artifacts"]) >= {"onnx-float", "onnx-int8", "tflite-float", "tflite-int8"}
        assert all(Path(p).is_file() for p in ex["artifacts"].values())
        assert ex["parity_pass"], ex["parity"]
    assert (out / "export" / "student-watch-slim" / "export_report.md").is_file()
    # TFLM: the student's int8 TFLite in the watch tier's arena, bit-identical to LiteRT's reference kernels
    tflm = summary["export"]["student"]["tflm"]
    assert tflm["arena"]["min_arena_bytes"] <= 65_536 and tflm["integer_reference"]["bit_identical"]
    assert "### TensorFlow Lite Micro" in report
    assert "## QAT + export" in report and "## Latency per 10 s window" in report
    assert all(r["p50_ms"] > 0 and not r["error"] for r in summary["bench"]), summary["bench"]
    # 4 artifacts x 3 models, and each int8 TFLite in TFLM: a [TFLM] row and TFLM vs LiteRT's reference kernels
    assert len(summary["parity"]) == 18 and all(r["pass"] for r in summary["parity"]), summary["parity"]
    assert sum(r["artifact"].endswith("[TFLM vs LiteRT ref]") for r in summary["parity"]) == 3
    # the native-rate student beside it: distilled from the same teacher on the same rows at 25 Hz, exported
    # with a 25 Hz contract, in TFLM within 32 KiB, and side by side with the 125 Hz student
    nat = summary["distill_native"]
    assert nat["student"] == "student-watch-25hz" and nat["input_sample_rate_hz"] == 25
    assert nat["retention"]["n_heldout_windows"] == kd["retention"]["n_heldout_windows"]
    ex = summary["export"]["native"]
    assert ex["parity_pass"] and ex["tflm"]["arena"]["min_arena_bytes"] <= 32_768
    from anyppg_edge.deploy.contract_io import read_contract

    c25 = read_contract(ex["artifacts"]["tflite-int8"])
    assert (c25.sample_rate_hz, c25.window_samples) == (25, 250)
    assert [r["input Hz"] for r in summary["tradeoff"]] == [125, 25] and "## Native-rate student" in report
    assert (out / "tradeoff" / "tradeoff.md").is_file() and (out / "c_encoder_native" / "c_report.json").is_file()
    # ... and on a 25 Hz sensor: the harness with faults and the firmware bundle, at its own rate only
    checks = summary["native_checks"]
    assert checks["harness_bars"]["faults_all_affected_flagged"]["pass"] and checks["harness_bars"]["parity_max_abs_float64"]["pass"]
    assert checks["firmware"]["pass"] and checks["firmware"]["rates_hz"] == [25.0], checks["firmware"]
    # the watch student's generated C encoder: bit-identical to TFLM on the host (and the boards when installed)
    c = summary["c_encoder"]
    assert c["passed"] and all(r["bit_identical"] for r in c["comparisons"] if r["tolerance"] == "int8-c-vs-tflm")
    assert "## Generated C encoder" in report
    # the firmware bundle (C preprocessor + C encoder) driven by the harness at every rate
    assert summary["firmware"]["pass"], summary["firmware"]["failures"]
    assert summary["firmware"]["rates_hz"] == [25.0, 50.0, 64.0, 100.0, 125.0] and "## Firmware bundle" in report
    # the GPU round trip rehearsed on this CPU: carry folder (random-init tiny teacher, both students),
    # the GPU check's dry run, every exported artifact of the three models against its golden sets
    gr = summary["gpu_rehearsal"]
    assert gr["check_passed"] and gr["parity_passed"], gr
    assert gr["models"] == ["tiny", "student-watch-slim", "student-watch-25hz"]
    # per model: CPU golden set + 4 artifacts + TFLM, and the checkpoint on the CPU (the random-init teacher has no file)
    assert gr["parity_rows"] == 3 * 6 + 2
    assert "## GPU round trip, rehearsed on this CPU" in report
    assert report.rstrip().splitlines()[-1].startswith("|")  # ends with the parity table
    # the firmware harness replayed the recordings through emulated sensors into the int8 student
    bars = summary["harness"]["bars"]
    assert bars and not any(b["pass"] is False for b in bars.values()), bars  # None: nothing to measure
    assert bars["parity_max_abs_float64"]["pass"] and bars["faults_all_affected_flagged"]["pass"]
    assert "## Firmware harness" in report
    # the data preparation is resumable: a second run reuses every shard
    assert main([*args, "--no-export"]) == 0


def test_demo_uses_real_shared_data_and_golden_weights(shared, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--sim-subjects", "1", "--sim-duration-s", "20", "--no-plot",
                 "--pretrain-steps", "2", "--distill-steps", "2", "--export-qat-steps", "2",
                 "--bench-runs", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    report = (out / "report.md").read_text()
    for name in ("ieee_spc2015", "bidmc", "neurokit", "simulator"):
        assert name in report
    assert summary["n_windows"] > 300
    assert summary["weights"].endswith("net1d_anyppg_released.state_dict.pt")
    assert summary["embedding_shape"][1] == 512
    assert summary["export"]["teacher"]["parity_pass"] and summary["export"]["student"]["parity_pass"]
