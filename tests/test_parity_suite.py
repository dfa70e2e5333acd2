"""The parity suite (issue 8): golden sets, the parity command, per-layer localisation, downstream parity.

Bar: ``python -m export parity`` fails (exit 1, a message naming the metric and its tolerance) on a
deliberately corrupted artifact and its localisation names the corrupted layer; it passes on the
intact artifacts. Artifacts are made here, once per module, from a seeded ``student-watch`` with
randomised BatchNorm statistics (saved as a state_dict: the "source checkpoint").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")
pytest.importorskip("brevitas")
pytest.importorskip("ai_edge_litert")

from anyppg_edge.cli.export import main as export_main  # noqa: E402
from anyppg_edge.contract import ARTIFACT_KINDS, InputContract, sha256_file  # noqa: E402
from anyppg_edge.deploy.parity.downstream import downstream_parity  # noqa: E402
from anyppg_edge.deploy.parity.golden import (  # noqa: E402
    deterministic_torch,
    load_golden_set,
    make_golden_set,
    provenance_path,
)
from anyppg_edge.deploy.parity.localize import localize  # noqa: E402
from anyppg_edge.deploy.parity.suite import artifact_parity, parity_table_for, run_parity  # noqa: E402
from anyppg_edge.deploy.parity.tolerances import (  # noqa: E402
    TOLERANCE_FOR_KIND,
    TOLERANCES,
    embedding_parity,
    tolerance_row,
    weight_tolerance_row,
)
from anyppg_edge.errors import DataFormatError  # noqa: E402
from anyppg_edge.models import create_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORRUPT_ONNX_PARAM = "stage_list.2.block_list.0.conv2.conv.weight"
CORRUPT_ONNX_LAYER = "stage_list.2.block_list.0.conv2"
CORRUPT_TFLITE_CONV = 20  # 21st conv op in execution order = deploy layer b3_conv2


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def windows():
    from anyppg_edge.data.simulator import simulate_cohort
    from anyppg_edge.data.windows import extract_windows

    recs = simulate_cohort(4, duration_s=120.0, seed=3)
    w = np.concatenate([extract_windows(r, ecg_quality=False).ppg for r in recs]).astype(np.float32)
    assert len(w) >= 44
    return w


@pytest.fixture(scope="module")
def art(student, windows, tmp_path_factory):
    """Source checkpoint, CPU golden set (20 windows) and the four artifacts."""
    from anyppg_edge.deploy.export.onnx import export_onnx_float, quantize_onnx_int8
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.quantize import build_deploy_model, quantize_ptq

    d = tmp_path_factory.mktemp("parity")
    ckpt = d / "student.state_dict.pt"
    torch.save(student.state_dict(), ckpt)
    sha = sha256_file(ckpt)
    gw = windows[24:44]
    golden = make_golden_set(
        student, "student-watch", sha, gw, [f"sim/{i}" for i in range(len(gw))], d / "golden.npz", device="cpu"
    )
    calib = windows[:24, None, :]

    def contract(kind: str) -> InputContract:
        return InputContract.for_model("student-watch", kind, student.out_dim, sha)

    f_onnx = export_onnx_float(student, d / "s.float.onnx", contract("onnx-float"))
    i_onnx = quantize_onnx_int8(f_onnx, d / "s.int8.onnx", (calib[i : i + 8] for i in range(0, 24, 8)))
    f_tfl = export_tflite(build_deploy_model(student), d / "s.float.tflite", contract("tflite-float"))
    ptq = quantize_ptq(student, (calib[i : i + 8] for i in range(0, 24, 8)))
    i_tfl = export_tflite(ptq, d / "s.int8.tflite", contract("tflite-int8"))
    return SimpleNamespace(
        dir=d, ckpt=ckpt, sha=sha, golden=golden, golden_path=d / "golden.npz",
        float_onnx=f_onnx, int8_onnx=i_onnx, float_tflite=f_tfl, int8_tflite=i_tfl,
    )


# ----------------------------------------------------------------------------------- corruption tools


def scale_onnx_initializer(src: Path, dst: Path, name: str, factor: float) -> Path:
    from onnx import numpy_helper

    m = onnx.load(str(src))
    for i, init in enumerate(m.graph.initializer):
        if init.name == name:
            w = numpy_helper.to_array(init)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array((w * factor).astype(w.dtype), name))
            break
    else:
        raise KeyError(name)
    onnx.save(m, str(dst))
    return dst


def patch_tflite_conv_weights(src: Path, dst: Path, conv_index: int, fn) -> str:
    """Change the weight buffer of the ``conv_index``-th conv op (execution order), located with
    ``flatbuffer_utils``, in place in a copy of the file (the metadata/contract appendix stays)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model(str(src))
    sg = model.subgraphs[0]
    convs = [op for op in sg.operators if fu.opcode_to_name(model, op.opcodeIndex) in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    t = sg.tensors[convs[conv_index].inputs[1]]
    old = bytes(model.buffers[t.buffer].data)
    raw = src.read_bytes()
    at = raw.find(old)
    assert at >= 0 and raw.find(old, at + 1) < 0, "weight buffer not unique in the file"
    dtype = {0: np.float32, 9: np.int8}[t.type]
    new = np.asarray(fn(np.frombuffer(old, dtype))).astype(dtype).tobytes()
    assert len(new) == len(old)
    dst.write_bytes(raw[:at] + new + raw[at + len(old) :])
    return t.name.decode() if isinstance(t.name, bytes) else str(t.name)


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    rc = export_main(["parity", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


# -------------------------------------------------------------------------------------- tolerance table


def test_tolerance_table_has_a_row_for_every_kind():
    kinds = set(ARTIFACT_KINDS) | {"brevitas-int8", "streaming"}
    assert kinds <= set(TOLERANCE_FOR_KIND)
    metrics = embedding_parity(np.ones((2, 3)), np.ones((2, 3)))
    for kind in kinds:
        for device in ("cpu", "cuda"):
            row = tolerance_row(kind, device)
            assert row in TOLERANCES
            for key in TOLERANCES[row]:
                metric, side = key.rsplit("_", 1)
                assert side in ("min", "max") and metric in metrics, key
        assert weight_tolerance_row(kind) in TOLERANCES
    assert tolerance_row("onnx-float", "cuda") == "gpu-vs-cpu-float"
    assert tolerance_row("tflite-int8", "cuda") == "int8-vs-float"
    assert tolerance_row("streaming") == "streaming-vs-offline"
    with pytest.raises(KeyError, match="no tolerance row"):
        tolerance_row("coreml-float")


# ---------------------------------------------------------------------------------------- golden sets


def test_golden_set_round_trip_and_provenance(art, student):
    g = load_golden_set(art.golden_path)
    np.testing.assert_array_equal(g.windows, art.golden.windows)
    np.testing.assert_array_equal(g.embeddings, art.golden.embeddings)
    assert g.window_ids.tolist() == [f"sim/{i}" for i in range(20)]
    with torch.no_grad():
        ref = student(torch.from_numpy(g.windows[:, None])).numpy()
    np.testing.assert_allclose(g.embeddings, ref, atol=1e-6)
    p = g.provenance
    assert p["checkpoint_sha256"] == art.sha and p["model_name"] == "student-watch"
    dev = p["device"]
    assert dev["type"] == "cpu" and dev["torch"] == torch.__version__ and dev["name"]
    assert dev["tf32_matmul"] is False and dev["tf32_cudnn"] is False and dev["deterministic_algorithms"] is True
    assert len(p["preprocess_config_hash"]) == 64 and p["created_by"] and p["created_at"]
    side = json.loads(provenance_path(art.golden_path).read_text())
    assert side["checksum_sha256"] == p["checksum_sha256"]


def test_golden_set_corruption_is_detected(art, tmp_path):
    raw = art.golden_path.read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    (tmp_path / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    with np.load(art.golden_path) as z:  # a consistent file whose embeddings were edited
        arrays = {k: z[k] for k in z.files}
    arrays["embeddings"] = arrays["embeddings"].copy()
    arrays["embeddings"][3, 5] += 1e-3
    np.savez(tmp_path / "edited.npz", **arrays)
    for name in ("flipped", "truncated", "edited"):
        with pytest.raises(DataFormatError):
            load_golden_set(tmp_path / f"{name}.npz")
    with pytest.raises(DataFormatError, match="checksum"):
        load_golden_set(tmp_path / "edited.npz")
    with pytest.raises(DataFormatError, match="not found"):
        load_golden_set(tmp_path / "missing.npz")
    rc = export_main(["parity", str(art.float_onnx), "--golden", str(tmp_path / "edited.npz"), "--out", str(tmp_path)])
    assert rc == 2


def test_deterministic_torch_restores_flags():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32)
    with deterministic_torch("cpu") as flags:
        assert flags["deterministic_algorithms"] and not flags["tf32_matmul"] and not flags["tf32_cudnn"]
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32) == before


# ---------------------------------------------------------------------------------- the parity command


def test_parity_passes_on_intact_artifacts(art, tmp_path, capsys):
    arts = [art.float_onnx, art.int8_onnx, art.float_tflite, art.int8_tflite]
    rc, out, err = _run_cli([*arts, "--golden", art.golden_path, "--out", tmp_path, "--checkpoint", art.ckpt,
                             "--localize", "--check-weights"], capsys)
    assert rc == 0, out + err
    assert "PASS: 5 artifact(s)" in out  # the int8 TFLite also runs in TFLM
    report = json.loads((tmp_path / "parity_report.json").read_text())
    assert report["passed"] and [r["kind"] for r in report["rows"]] == [
        "onnx-float", "onnx-int8", "tflite-float", "tflite-int8", "tflite-int8"
    ]
    assert report["rows"][4]["artifact"].endswith("[TFLM]")
    (ir,) = report["integer_reference"]
    assert ir["bit_identical"] and ir["tolerance"] == "int8-tflm-vs-litert-ref" and not ir["failures"]
    for a in report["artifacts"]:
        if a["artifact"].endswith("[TFLM]"):
            assert a["localisation"] is None  # localised once, as its LiteRT row
            continue
        loc = a["localisation"]
        assert loc["first_jump"] is None and not loc["weights_differ"], (a["artifact"], loc["verdict"])
        assert loc["matched_layers"] == 60  # student-watch: 1 + 10 blocks x 5 (+ 9 pre-activation BN)
        assert all(r["match"] != "none" for r in loc["layers"])
    for f in ("parity_report.md", "parity_report.html", "parity_cosine_hist.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "data:image/png;base64" in (tmp_path / "parity_report.html").read_text()


def test_corrupted_float_onnx_fails_and_is_localised(art, tmp_path):
    bad = scale_onnx_initializer(art.float_onnx, tmp_path / "s.float.onnx", CORRUPT_ONNX_PARAM, 10.0)
    # a real process: the exit status a CI job sees
    proc = subprocess.run(
        [sys.executable, "-m", "export", "parity", str(bad), "--golden", str(art.golden_path),
         "--out", str(tmp_path / "rep"), "--checkpoint", str(art.ckpt), "--no-plot"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL s.float.onnx (onnx-float)" in proc.stderr
    assert "max_abs = " in proc.stderr and "tolerance: max 0.0001" in proc.stderr and "float-vs-float" in proc.stderr
    assert f"first layer where the error jumps: {CORRUPT_ONNX_LAYER} (+bn3 folded)" in proc.stderr
    loc = json.loads((tmp_path / "rep" / "parity_report.json").read_text())["artifacts"][0]["localisation"]
    assert loc["first_jump"]["module"] == CORRUPT_ONNX_LAYER + ".conv" and loc["first_jump"]["match"] == "name"
    assert [w["layer"] for w in loc["weights_differ"]] == [f"{CORRUPT_ONNX_LAYER} (+bn3 folded)"]


def test_onnx_localisation_falls_back_to_order_and_shape(art, student, tmp_path):
    """Initializers renamed (no module names left): matching by execution order + output shape."""
    bad = scale_onnx_initializer(art.float_onnx, tmp_path / "c.onnx", CORRUPT_ONNX_PARAM, 10.0)
    m = onnx.load(str(bad))
    renames = {i.name: f"w{k}" for k, i in enumerate(m.graph.initializer)}
    for i in m.graph.initializer:
        i.name = renames[i.name]
    for n in m.graph.node:
        for j, name in enumerate(n.input):
            if name in renames:
                n.input[j] = renames[name]
    onnx.save(m, str(tmp_path / "renamed.onnx"))
    loc = localize(tmp_path / "renamed.onnx", student, art.golden.windows[:4], kind="onnx-float")
    assert all(r["match"] == "order+shape" for r in loc["layers"])
    assert loc["first_jump"]["module"] == CORRUPT_ONNX_LAYER + ".conv"


def test_corrupted_tflite_fails_and_is_localised(art, tmp_path, capsys):
    f_bad, i_bad = tmp_path / "bad.float.tflite", tmp_path / "bad.int8.tflite"
    patch_tflite_conv_weights(art.float_tflite, f_bad, CORRUPT_TFLITE_CONV, lambda w: w * 10)
    patch_tflite_conv_weights(art.int8_tflite, i_bad, 0, lambda w: -w.astype(np.int16).clip(-127, 127))
    rc, out, err = _run_cli([f_bad, i_bad, "--golden", art.golden_path, "--out", tmp_path, "--checkpoint", art.ckpt,
                             "--no-plot"], capsys)
    assert rc == 1, out + err
    assert "FAIL bad.float.tflite (tflite-float): max_abs = " in err
    assert "FAIL bad.int8.tflite (tflite-int8): cos_mean = " in err and "int8-vs-float" in err
    arts = json.loads((tmp_path / "parity_report.json").read_text())["artifacts"]
    f_loc, i_loc = arts[0]["localisation"], arts[1]["localisation"]
    assert f_loc["first_jump"]["module"] == "b3_conv2"
    assert "stage_list.2.block_list.1.conv2" in f_loc["first_jump"]["layer"]
    assert [w["layer"].split(" ")[0] for w in f_loc["weights_differ"]] == ["b3_conv2"]
    assert i_loc["first_jump"]["module"] == "first" and i_loc["first_jump"]["sqnr_db"] < 0
    assert [w["layer"].split(" ")[0] for w in i_loc["weights_differ"]] == ["first"]
    # the contract survived the in-place patch: the artifact was opened, checked and compared
    assert arts[1]["contract"]["source_checkpoint_sha256"] == art.sha


def test_int8_weight_corruption_deep_in_a_block_is_named(art, tmp_path):
    """A deep grouped conv with random int8 weights: localisation names it (embedding parity alone
    may not see it; --check-weights fails it)."""
    bad = tmp_path / "deep.int8.tflite"
    rng = np.random.default_rng(0)
    patch_tflite_conv_weights(art.int8_tflite, bad, CORRUPT_TFLITE_CONV, lambda w: rng.integers(-127, 128, w.shape))
    from anyppg_edge.models.loading import load_encoder

    model = load_encoder(art.ckpt, "student-watch").encoder
    rep = run_parity([bad], art.golden, source_model=model, check_weights=True, plot=False)
    a = rep["artifacts"][0]
    assert not rep["passed"] and "weights differ" in a["failures"] and "int8-weights-vs-source" in a["failures"]
    assert a["localisation"]["first_jump"]["module"] == "b3_conv2"


def test_source_mismatch_and_missing_checkpoint(art, student, tmp_path, capsys):
    other = make_golden_set(student, "student-watch", "f" * 64, art.golden.windows[:4], ["a", "b", "c", "d"],
                            tmp_path / "other.npz", device="cpu")
    rc, _out, err = _run_cli([art.float_onnx, "--golden", other.path, "--out", tmp_path], capsys)
    assert rc == 2 and "not the same weights" in err
    rc, _out, err = _run_cli([art.float_onnx, "--golden", art.golden_path, "--out", tmp_path, "--localize"], capsys)
    assert rc == 2 and "--checkpoint" in err
    wrong = tmp_path / "wrong.pt"
    torch.save(create_model("student-watch").state_dict(), wrong)
    rc, _out, err = _run_cli([art.float_onnx, "--golden", art.golden_path, "--out", tmp_path, "--checkpoint", wrong], capsys)
    assert rc == 2 and "not the same weights" in err


def test_streaming_embeddings_and_pytorch_checkpoint(art, tmp_path):
    rng = np.random.default_rng(0)
    good, bad = tmp_path / "stream_ok.npy", tmp_path / "stream_bad.npy"
    g = art.golden.embeddings
    np.save(good, g + 1e-3 * np.abs(g).mean() * rng.standard_normal(g.shape).astype(np.float32))
    np.save(bad, g + 1.0 * np.abs(g).mean() * rng.standard_normal(g.shape).astype(np.float32))
    rep = run_parity([good, bad, art.ckpt], art.golden, plot=False)
    kinds = {r["artifact"]: (r["kind"], r["tolerance"], r["pass"]) for r in rep["rows"]}
    assert kinds["stream_ok.npy"] == ("streaming", "streaming-vs-offline", True)
    assert kinds["stream_bad.npy"][2] is False
    assert kinds[art.ckpt.name] == ("pytorch-float", "float-vs-float", True)
    np.save(tmp_path / "short.npy", g[:3])
    with pytest.raises(ValueError, match="one row per golden window"):
        artifact_parity(tmp_path / "short.npy", art.golden)


def test_parity_table_for(art, tmp_path):
    missing = tmp_path / "missing.onnx"
    rows, md = parity_table_for(
        {"float ONNX": art.float_onnx, "int8 TFLite": art.int8_tflite, "gone": missing}, art.golden_path
    )
    assert [r["artifact"] for r in rows] == [
        "float ONNX", "int8 TFLite", "int8 TFLite [TFLM]", "int8 TFLite [TFLM vs LiteRT ref]", "gone"
    ]
    assert all(r["pass"] for r in rows[:4]) and not rows[4]["pass"]
    assert rows[3]["tolerance"] == "int8-tflm-vs-litert-ref" and rows[3]["max_abs"] == 0.0
    assert "not evaluated" in rows[4]["failures"]
    assert "| float ONNX |" in md and "golden set" in md and "float-vs-float" in md


# ------------------------------------------------------------------------------ real windows (../shared)


def test_golden_command_on_held_out_shared_windows(shared, art, tmp_path, capsys):
    out = tmp_path / "g.npz"
    rc = export_main(["golden", "--model", "student-watch", "--checkpoint", str(art.ckpt), "--out", str(out),
                      "--n", "12", "--device", "cpu"])
    assert rc == 0
    g = load_golden_set(out)
    assert len(g) == 12 and g.checkpoint_sha256 == art.sha and g.device_type == "cpu"
    assert "held-out" in g.provenance["window_source"] and "python -m export golden" in g.provenance["created_by"]
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.splits import recording_splits

    recs = load_shared_recordings(shared / "data")
    split = recording_splits(recs, seed=0)
    held = {r.subject_id for r in recs if split[f"{r.dataset}/{r.subject_id}"] != "train"}
    subjects = {i.rsplit("@", 1)[0] for i in g.window_ids}
    assert subjects and all(any(s.endswith(h) for h in held) for s in subjects)


def test_downstream_parity_side_by_side(shared, art, student):
    res = downstream_parity({"float ONNX": art.float_onnx}, student, art.ckpt, hop_s=10.0, max_windows=160)
    rows = {r["model"]: r for r in res["rows"]}
    assert set(rows) == {"float (PyTorch)", "float ONNX"}
    assert abs(rows["float ONNX"]["ΔMAE bpm"]) < 1e-3 and rows["float ONNX"]["ΔR@1"] == 0
    assert rows["float (PyTorch)"]["R@1"] == 1.0  # PPG→PPG-of-the-float-model: 1 by construction
    assert "PPG→PPG" in res["retrieval"] and res["n_subjects"] >= 5 and np.isfinite(rows["float ONNX"]["HR MAE bpm"])


def test_copy_keeps_contract(art, tmp_path):
    # a renamed copy is still the same artifact: the contract (not the file name) decides
    cp = tmp_path / "renamed.tflite"
    shutil.copy(art.float_tflite, cp)
    r = artifact_parity(cp, art.golden)
    assert r.passed and r.kind == "tflite-float"
