"""BN folding, brevitas PTQ/QAT and the TFLite export route (issue 5), on real windows of ../shared.

Bars checked here on the watch-tier student (fast); the released teacher's full export is in
``test_export_teacher_bars`` (slow)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("tensorflow")

from anyppg_edge.contract import InputContract  # noqa: E402
from anyppg_edge.deploy.export.graph_report import tflite_graph_report  # noqa: E402
from anyppg_edge.deploy.export.tflite import export_tflite  # noqa: E402
from anyppg_edge.deploy.parity.layers import layer_parity_table  # noqa: E402
from anyppg_edge.deploy.parity.tolerances import (  # noqa: E402
    TOLERANCES,
    embedding_parity,
    tolerance_failures,
)
from anyppg_edge.deploy.quantize import (  # noqa: E402
    QatConfig,
    activation_quant_params,
    build_deploy_model,
    float_embeddings,
    qat_finetune,
    quantize_ptq,
)
from anyppg_edge.deploy.runtime import TFLiteEncoder, read_contract  # noqa: E402
from anyppg_edge.errors import ContractMismatchError  # noqa: E402
from anyppg_edge.models import create_model  # noqa: E402
from anyppg_edge.preprocessing import PreprocessConfig  # noqa: E402

FLOAT_TOL = TOLERANCES["float-vs-float"]["max_abs_max"]


@pytest.fixture(scope="module")
def real_windows(shared) -> np.ndarray:
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.windows import extract_windows

    recs = load_shared_recordings(shared / "data")
    picked = [r for r in recs if r.dataset.lower().startswith("ieee")][:2] + [
        r for r in recs if not r.dataset.lower().startswith("ieee")
    ][:2]
    ws = np.concatenate([extract_windows(r, hop_s=5.0, ecg_quality=False).ppg for r in picked])
    rng = np.random.default_rng(0)
    return ws[rng.permutation(len(ws))[:96]].astype(np.float32)


@pytest.fixture(scope="module")
def student(real_windows) -> torch.nn.Module:
    """student-watch with non-trivial BN statistics (running stats from real windows)."""
    torch.manual_seed(0)
    m = create_model("student-watch")
    m.train()
    with torch.no_grad():
        for i in range(0, 64, 16):
            m(torch.as_tensor(real_windows[i : i + 16, None]))
    return m.eval()


@pytest.fixture(scope="module")
def ptq(student, real_windows):
    calib = real_windows[:48, None]
    return quantize_ptq(student, (calib[i : i + 16] for i in range(0, 48, 16)))


def _contract(kind: str, dim: int = 128) -> InputContract:
    return InputContract.for_model("student-watch", kind, dim, "0" * 64)


def test_fold_matches_net1d_student_and_golden_teacher(student, real_windows, shared):
    x = real_windows[:8]
    d = build_deploy_model(student)
    assert np.abs(float_embeddings(d, x) - float_embeddings(student, x)).max() <= 1e-5
    teacher = create_model("anyppg-released", checkpoint=shared / "reference" / "net1d_anyppg_released.state_dict.pt")
    dt = build_deploy_model(teacher)
    assert np.abs(float_embeddings(dt, x[:4]) - float_embeddings(teacher, x[:4])).max() <= 1e-5


def test_deploy_graph_has_no_float_bn_and_named_points(ptq):
    # every BN is gone: folded into convs or a depthwise 1x1 conv (per-channel int8 + int32 bias)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in ptq.modules())
    aq = activation_quant_params(ptq)
    assert set(aq) == set(ptq.act_points)
    sig = [v for k, v in aq.items() if k.endswith("_sig") or k.endswith("_gate")]
    assert sig and all(v.scale == pytest.approx(1 / 256) and not v.signed for v in sig)
    assert all(v.zero_point == 0 and v.bit_width == 8 for v in aq.values())


def test_float_tflite_matches_pytorch(student, real_windows, tmp_path):
    p = export_tflite(build_deploy_model(student), tmp_path / "s.float.tflite", _contract("tflite-float"))
    enc = TFLiteEncoder(p)
    m = embedding_parity(float_embeddings(student, real_windows[:16]), enc.embed(real_windows[:16]))
    assert m["max_abs"] <= FLOAT_TOL, m
    assert enc.contract.artifact_kind == "tflite-float"


@pytest.mark.parametrize("int8_io", [False, True])
def test_int8_tflite_is_fully_int8_with_brevitas_scales(student, ptq, real_windows, tmp_path, int8_io):
    p = export_tflite(ptq, tmp_path / "s.int8.tflite", _contract("tflite-int8"), int8_io=int8_io)
    g = tflite_graph_report(p)
    assert g["fully_int8"], g["float_compute_ops"]
    assert g["n_flex_ops"] == 0 and not g["custom_ops"]
    assert g["n_transpose"] == 0
    assert g["has_contract"]
    brevitas_in = activation_quant_params(ptq)["input"]
    c = read_contract(p)
    if int8_io:
        assert g["inputs"][0]["dtype"] == "int8"
        assert c.input_quant is not None and c.input_quant.scale == pytest.approx(brevitas_in.scale, rel=1e-6)
    else:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(p))
        quant_out = [op["outputs"][0] for op in it._get_ops_details() if op["op_name"] == "QUANTIZE"]
        scale = it.get_tensor_details()[quant_out[0]]["quantization"][0]
        assert scale == pytest.approx(brevitas_in.scale, rel=1e-6)
    # the file computes what brevitas computes: same int8 values at (nearly) every point
    rows = layer_parity_table(build_deploy_model(student), ptq, real_windows[60:64], str(p))
    matched = [r for r in rows if "tflite_eq_brevitas_pct" in r]
    assert len(matched) >= 0.7 * len(rows)
    assert max(r["tflite_vs_brevitas_max_steps"] for r in matched) <= 1
    assert min(r["tflite_eq_brevitas_pct"] for r in matched) >= 99.0
    emb = TFLiteEncoder(p).embed(real_windows[48:])
    m = embedding_parity(float_embeddings(student, real_windows[48:]), emb)
    assert not tolerance_failures("tflite-int8", m), m


def test_qat_reduces_quantization_error(student, ptq, real_windows, tmp_path):
    train = real_windows[:64]
    before = embedding_parity(float_embeddings(student, train), float_embeddings(ptq, train))
    qat, _ = qat_finetune(
        copy.deepcopy(ptq),
        student,
        train,
        QatConfig(steps=30, batch_size=16, lr=1e-4, warmup_steps=3, out_dir=str(tmp_path / "qat"), progress=False),
    )
    after = embedding_parity(float_embeddings(student, train), float_embeddings(qat, train))
    assert after["cos_mean"] > before["cos_mean"], (before, after)
    assert (tmp_path / "qat" / "last.pt").is_file()


def test_tolerance_table_verdicts():
    good = {"max_abs": 1e-6, "cos_mean": 0.999, "cos_p1": 0.99, "cos_min": 0.98}
    assert tolerance_failures("tflite-float", good) == []
    assert tolerance_failures("tflite-int8", good) == []
    assert tolerance_failures("onnx-float", {**good, "max_abs": 2e-4})
    bad = tolerance_failures("onnx-int8", {**good, "cos_p1": 0.9})
    assert len(bad) == 1 and "cos_p1" in bad[0]


def test_export_refuses_wrong_contract_kind(student, tmp_path):
    with pytest.raises(ValueError, match="tflite-float"):
        export_tflite(build_deploy_model(student), tmp_path / "x.tflite", _contract("tflite-int8"))


def test_cli_check_rejects_mismatching_contract(student, tmp_path):
    p = export_tflite(build_deploy_model(student), tmp_path / "s.float.tflite", _contract("tflite-float"))
    cfg_path = tmp_path / "other.json"
    cfg_path.write_text(PreprocessConfig(ppg_band_hz=(0.5, 4.0)).to_json())
    root = Path(__file__).resolve().parents[1]
    ok = subprocess.run([sys.executable, "-m", "export", "check", str(p)], cwd=root, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "export", "check", str(p), "--config", str(cfg_path)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "ppg_band_hz" in bad.stderr
    with pytest.raises(ContractMismatchError):
        TFLiteEncoder(p, cfg=PreprocessConfig(ppg_band_hz=(0.5, 4.0)))


def test_load_encoder_rejects_truncated_and_missing_checkpoints(shared, tmp_path):
    from anyppg_edge.errors import CheckpointError, MissingFileError
    from anyppg_edge.models.loading import load_encoder

    src = (shared / "reference" / "net1d_anyppg_released.state_dict.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(src[: len(src) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_encoder(bad, "anyppg-released")
    with pytest.raises(MissingFileError, match="not found"):
        load_encoder(tmp_path / "nope.pt", "anyppg-released")
    loaded = load_encoder(shared / "reference" / "net1d_anyppg_released.state_dict.pt", "anyppg-released")
    assert len(loaded.sha256) == 64 and loaded.encoder.out_dim == 512 and loaded.kind == "state_dict"


def test_swish_ablation_measures_the_alternatives(student, real_windows):
    from anyppg_edge.deploy.export.ablation import VARIANTS, swish_ablation
    from anyppg_edge.deploy.quantize import QuantVariant

    rows = swish_ablation(student, real_windows[:32], real_windows[64:80])
    by = {(r["variant"], r["stage"]): r for r in rows}
    exported = by[(VARIANTS[0].name, "PTQ")]
    wide = by[("all activations at 16 bit (upper bound)", "PTQ")]
    assert wide["cos_mean"] > exported["cos_mean"]  # activation precision is what int8 loses
    assert by[("hard-sigmoid / hard-swish, float (approximation alone)", "float")]["cos_mean"] < 1.0
    with pytest.raises(ValueError, match="ablation"):
        export_tflite(
            build_deploy_model(student, variant=QuantVariant("x", hard_sigmoid=True)),
            "/tmp/never.tflite",
            _contract("tflite-float"),
        )
