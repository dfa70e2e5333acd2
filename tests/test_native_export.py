"""The export / parity chain for a native-rate model (issue 20): ``student-watch-25hz`` reads what a
25 Hz sensor delivers, so its contract, calibration, QAT, golden and parity windows are the 25 Hz
native windows (:func:`anyppg_edge.data.native_rate.model_input_recording`), never 125 Hz windows
resampled; 125 Hz models keep exactly the config they had."""

from __future__ import annotations

import numpy as np
import pytest

from anyppg_edge.config import model_preprocess_config
from anyppg_edge.data.native_rate import native_rate_windows
from anyppg_edge.errors import ContractMismatchError
from anyppg_edge.models.registry import get_model_spec
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

NATIVE = "student-watch-25hz"


@pytest.fixture(scope="module")
def cfg25() -> PreprocessConfig:
    return model_preprocess_config(get_model_spec(NATIVE))


@pytest.fixture(scope="module")
def recs(shared):
    from anyppg_edge.data import load_shared_recordings

    return load_shared_recordings(shared / "data")


def test_model_config_rule(tmp_path, cfg25):
    """25 Hz spec: the base chain at 25 Hz, 250-sample windows, nothing else changed; a 125 Hz spec
    gets the base config itself (default or --config JSON)."""
    import dataclasses

    from anyppg_edge.cli.export import _model_config

    assert (cfg25.target_sample_rate_hz, cfg25.window_s, cfg25.window_samples) == (25, 10.0, 250)
    assert dataclasses.replace(cfg25, target_sample_rate_hz=125) == DEFAULT_CONFIG
    assert model_preprocess_config(get_model_spec("student-watch-50hz")).window_samples == 500
    assert model_preprocess_config(get_model_spec("student-watch-slim")) is DEFAULT_CONFIG
    assert model_preprocess_config(None) is DEFAULT_CONFIG
    custom = PreprocessConfig(ppg_band_hz=(0.5, 4.0))
    path = tmp_path / "cfg.json"
    path.write_text(custom.to_json())
    assert model_preprocess_config(get_model_spec("student-watch-slim"), path) == custom
    assert model_preprocess_config(get_model_spec(NATIVE), path) == dataclasses.replace(custom, target_sample_rate_hz=25)
    assert _model_config(NATIVE, path) == model_preprocess_config(get_model_spec(NATIVE), path)  # the CLI's


def test_golden_and_calibration_windows_are_the_native_windows(recs, cfg25):
    """Golden and calibration windows of the 25 Hz contract are exactly the sensor-sampled windows of
    their starts (native_rate_windows), not resampled 125 Hz windows; the calibration's HR labels
    come from the 125 Hz ECG."""
    from anyppg_edge.deploy.calibration import build_calibration_set
    from anyppg_edge.deploy.parity.golden import golden_windows_from_recordings

    by_id = {r.subject_id: r for r in recs}
    w, ids, desc = golden_windows_from_recordings(recs, n=12, cfg=cfg25, source="../shared")
    assert w.shape == (12, 250) and "25 Hz sensor" in desc
    for x, i in zip(w, ids, strict=True):
        sid, t0 = i.rsplit("@", 1)
        nw = native_rate_windows(by_id[sid], [float(t0.rstrip("s"))], 25, DEFAULT_CONFIG)
        assert nw.ok.all() and np.array_equal(nw.x[0], x), i

    rec = next(r for r in recs if r.dataset.startswith("ieee"))
    cs = build_calibration_set([[rec]], n_windows=8, seed=0, cfg=cfg25, hop_s=10.0, ecg_quality=False, progress=False)
    assert cs.windows.shape == (8, 250) and cs.manifest["sample_rate_hz"] == 25 and "native_rate" in cs.manifest
    nw = native_rate_windows(rec, cs.start_s, 25, DEFAULT_CONFIG)
    assert nw.ok.all() and np.array_equal(nw.x, cs.windows)
    assert (cs.hr_source == "ecg-rpeaks").mean() >= 0.5  # R peaks found on the 125 Hz ECG


def test_default_calibration_refused_for_a_native_model(cfg25, capsys):
    from anyppg_edge.cli.export import main
    from anyppg_edge.deploy.calibration import load_default_calibration_set

    with pytest.raises(ContractMismatchError, match=r"native-rate one \(25 Hz, 250 samples\).*--calibration shared"):
        load_default_calibration_set(cfg25)
    assert load_default_calibration_set().windows.shape[1] == 1250  # 125 Hz models: the committed set
    assert main(["all", "--model", NATIVE, "--calibration", "default", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "committed default calibration set holds 125 Hz windows" in err and "sampled like its sensor" in err


def test_export_of_a_native_model_carries_its_contract(recs, cfg25, tmp_path, bn_model):
    """A random-init student-watch-25hz through export_all: every artifact's contract says 25 Hz /
    250 samples, parity holds under the tolerance table, TFLM runs it bit-identical to LiteRT's
    reference kernels in a measured arena; the arena command and the bench read the window from the
    contract."""
    pytest.importorskip("brevitas")
    pytest.importorskip("tensorflow")

    from anyppg_edge.cli.export import _bench_groups
    from anyppg_edge.deploy.bench.arena import artifact_arena_rows
    from anyppg_edge.deploy.contract_io import read_contract
    from anyppg_edge.deploy.export.build import export_all
    from anyppg_edge.deploy.export.config import ExportConfig
    from anyppg_edge.deploy.model_windows import model_ppg_windows

    ieee = [r for r in recs if r.dataset.startswith("ieee")][:2]
    w = np.concatenate([model_ppg_windows(r, cfg25, hop_s=10.0).ppg for r in ieee]).astype(np.float32)
    m = bn_model(NATIVE, w)
    ecfg = ExportConfig(out_dir=tmp_path, qat_steps=2, qat_batch_size=8, layer_windows=2, export_ptq_tflite=False,
                        progress=False, plot=False, preprocess=cfg25)
    rep = export_all(m, NATIVE, "0" * 64, w[:24], w[:24], w[24:48], ecfg)
    assert rep["parity_pass"], rep["parity"]
    for p in rep["artifacts"].values():
        c = read_contract(p)
        assert (c.sample_rate_hz, c.window_samples, c.preprocess_config) == (25, 250, cfg25), p
    ir = rep["tflm"]["integer_reference"]
    assert ir["bit_identical"] and ir["tolerance"] == "int8-tflm-vs-litert-ref"
    arena = rep["tflm"]["arena"]["min_arena_bytes"]
    assert 0 < arena < 64 * 1024
    int8 = rep["artifacts"]["tflite-int8"]
    row = artifact_arena_rows([int8])[0]
    assert row["arena B"] == arena and row["input"] == "250 samples at 25 Hz"
    groups = _bench_groups([int8, ("pytorch", m, NATIVE)], NATIVE)
    assert [(g.window_samples, len(items)) for g, items in groups] == [(250, 2)]


def test_tradeoff_command_refuses_bad_rows(tmp_path, capsys):
    from anyppg_edge.cli.export import main as export_main

    assert export_main(["tradeoff", "--row", str(tmp_path), "--out", str(tmp_path / "t")]) == 2
    assert "DISTILL_DIR EXPORT_DIR [C_DIR]" in capsys.readouterr().err
    # a run without its report: the command that makes it, not a traceback
    assert export_main(["tradeoff", "--row", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "t")]) != 0
    err = capsys.readouterr().err
    assert "retention.json not found" in err and "distill" in err and "Traceback" not in err


def test_arena_of_a_candidate_config_file(tmp_path):
    """`export arena CAND.json`: a config not in the registry (the width search behind
    student-watch-25hz) measured like a registered one; the same shapes give the same arena."""
    pytest.importorskip("brevitas")
    pytest.importorskip("tflite_micro")
    import json

    from anyppg_edge.deploy.bench.arena import arena_levers

    d = get_model_spec(NATIVE).to_dict()
    d["name"] = "cand-same-shapes"
    path = tmp_path / "cand.json"
    path.write_text(json.dumps(d))
    rows = arena_levers([str(path), NATIVE], tmp_path / "out")
    final = {r["model"]: r["arena B"] for r in rows if r["lever"].endswith("(default)")}
    assert set(final) == {"cand-same-shapes", NATIVE} and final["cand-same-shapes"] == final[NATIVE] <= 32_768
