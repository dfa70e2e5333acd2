"""ONNX export (float and int8 QDQ), the contract in metadata_props, and the ONNX/PyTorch encoders.

The student (``student-watch``, seeded random weights, randomized BatchNorm statistics) is exported
once per module. Its 1250-sample input makes every identity MaxPool see an odd length
(625 → 313 → 157 → 79 → 40): exactly the case onnxruntime's ``Pad_Fusion`` gets wrong, so the parity
test also checks that these inputs would catch it.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from anyppg_edge.contract import CONTRACT_KEY, InputContract  # noqa: E402
from anyppg_edge.data.simulator import simulate_cohort  # noqa: E402
from anyppg_edge.data.windows import extract_windows  # noqa: E402
from anyppg_edge.deploy import runtime as rt  # noqa: E402
from anyppg_edge.deploy.contract_io import read_contract  # noqa: E402
from anyppg_edge.deploy.export import onnx as ox  # noqa: E402
from anyppg_edge.errors import ContractMismatchError, InvalidSignalError  # noqa: E402
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig  # noqa: E402

SHA = "ab" * 32
L = DEFAULT_CONFIG.window_samples


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def contract(student):
    return InputContract.for_model("student-watch", "pytorch-float", student.out_dim, SHA)


@pytest.fixture(scope="module")
def windows():
    """48 preprocessed simulator windows (z-scored, 1250 samples): 32 for calibration, 16 to test."""
    recs = simulate_cohort(4, duration_s=120.0, seed=3)
    w = np.concatenate([extract_windows(r, ecg_quality=False).ppg for r in recs])
    assert len(w) >= 40
    return w.astype(np.float32)


@pytest.fixture(scope="module")
def float_onnx(student, contract, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "student.onnx"
    assert ox.export_onnx_float(student, path, contract) == path
    return path


@pytest.fixture(scope="module")
def int8_onnx(float_onnx, windows):
    cal = windows[:32, None, :]
    out = float_onnx.with_name("student.int8.onnx")
    ox.quantize_onnx_int8(float_onnx, out, (cal[i : i + 8] for i in range(0, 32, 8)), activation_type="s8")
    return out


# -- float export -------------------------------------------------------------------------------


def test_float_onnx_matches_torch(student, float_onnx, windows):
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3, L)).astype(np.float32)
    x = np.concatenate([windows[32:37], noise, np.zeros((1, L), np.float32)])[:, None, :]
    assert student.static_length is None and not student.training  # export restored both
    with torch.no_grad():
        ref = student(torch.from_numpy(x)).numpy()

    enc = rt.OnnxEncoder(float_onnx)
    assert enc.kind == "onnx-float" and enc.name == "student-watch"
    got = enc.embed(x)
    assert got.dtype == np.float32 and got.shape == (len(x), 128)
    assert np.abs(got - ref).max() <= 1e-4
    # dynamic batch: one window at a time and [N, L] input give the same
    np.testing.assert_allclose(enc.embed(x[:1, 0]), got[:1], atol=1e-5)
    # canary: these inputs are sensitive to ORT's Pad_Fusion (zero Pad folded into MaxPool's -inf
    # pads). If this stops failing with default options, ORT fixed it and the workaround can go.
    naive = ort.InferenceSession(str(float_onnx), providers=["CPUExecutionProvider"])
    assert np.abs(naive.run(None, {"ppg": x})[0] - ref).max() > 1e-3


def test_float_onnx_graph_and_metadata(float_onnx, contract):
    m = onnx.load(str(float_onnx))
    (inp,), (out,) = m.graph.input, m.graph.output
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("ppg", ["batch", 1, L])
    assert (out.name, dims(out)) == ("embedding", ["batch", 128])
    assert m.producer_name == "anyppg-edge" and "ppg" in m.doc_string and CONTRACT_KEY in m.doc_string
    props = {p.key: p.value for p in m.metadata_props}
    assert props["artifact_kind"] == "onnx-float" and props["window_samples"] == str(L)
    assert props["sample_rate_hz"] == "125" and props["source_checkpoint_sha256"] == SHA
    assert props["preprocess_config_hash"] == DEFAULT_CONFIG.config_hash()
    # the explicit zero pads of the identity path are still in the file (not folded into MaxPool)
    pools = [n for n in m.graph.node if n.op_type == "MaxPool"]
    assert pools and all(
        list(onnx.helper.get_attribute_value(a)) == [0, 0]
        for n in pools
        for a in n.attribute
        if a.name == "pads"
    )


def test_contract_round_trip(float_onnx, contract, tmp_path):
    got = ox.read_onnx_contract(float_onnx)
    assert got == read_contract(float_onnx)
    assert got.artifact_kind == "onnx-float" and got.extra["dynamic_batch"] is True
    assert dataclasses.replace(got, artifact_kind=contract.artifact_kind, extra={}) == contract
    # write_onnx_contract replaces the contract (and keeps the model runnable)
    copy = tmp_path / "copy.onnx"
    shutil.copy(float_onnx, copy)
    new = dataclasses.replace(got, model_name="renamed", extra={"note": "x"})
    ox.write_onnx_contract(copy, new)
    assert ox.read_onnx_contract(copy) == new
    m = onnx.load(str(copy))
    assert sum(p.key == CONTRACT_KEY for p in m.metadata_props) == 1
    assert rt.open_encoder(copy).name == "renamed"


def test_mismatching_cfg_is_refused(float_onnx):
    with pytest.raises(ContractMismatchError, match="ppg_band_hz"):
        rt.OnnxEncoder(float_onnx, cfg=PreprocessConfig(ppg_band_hz=(0.5, 9.0)))
    with pytest.raises(ContractMismatchError, match="window"):
        rt.open_encoder(float_onnx, cfg=PreprocessConfig(window_s=8.0))


def test_missing_or_malformed_contract_is_refused(float_onnx, tmp_path):
    m = onnx.load(str(float_onnx))
    del m.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(m, str(bare))
    with pytest.raises(ContractMismatchError, match="no input contract"):
        rt.OnnxEncoder(bare)
    with pytest.raises(ContractMismatchError, match="no input contract"):
        ox.read_onnx_contract(bare)
    enc = rt.OnnxEncoder(bare, allow_missing_contract=True)  # explicit opt-in: assumed contract
    assert enc.contract.extra["contract"].startswith("assumed")
    x = np.random.default_rng(1).standard_normal((2, L)).astype(np.float32)
    np.testing.assert_array_equal(enc.embed(x), rt.OnnxEncoder(float_onnx).embed(x))
    with pytest.raises(ContractMismatchError, match="samples"):  # the model's own length still counts
        rt.OnnxEncoder(bare, cfg=PreprocessConfig(window_s=8.0), allow_missing_contract=True)

    onnx.helper.set_model_props(m, {CONTRACT_KEY: "{not json"})
    bad = tmp_path / "bad.onnx"
    onnx.save(m, str(bad))
    with pytest.raises(ContractMismatchError, match=r"malformed|not valid JSON"):
        rt.OnnxEncoder(bad, allow_missing_contract=True)  # a broken contract is never waived


# -- int8 --------------------------------------------------------------------------------------


def test_int8_onnx_quantization(float_onnx, int8_onnx, windows):
    c = ox.read_onnx_contract(int8_onnx)
    q = c.extra["quantization"]
    assert c.artifact_kind == "onnx-int8" and c.input_quant is None and c.output_quant is None
    assert q["activation_type"] == "int8" and q["weight_type"] == "int8" and q["format"] == "QDQ"
    assert q["onnxruntime_version"] == ort.__version__ and q["calibration_windows"] == 32
    assert not q["reduce_range"]

    m = onnx.load(str(int8_onnx))
    assert any(n.op_type == "QuantizeLinear" for n in m.graph.node)
    assert sum(n.op_type == "Pad" for n in m.graph.node) == 9  # pre-processing kept the zero pads

    x = windows[32:]
    ref = rt.OnnxEncoder(float_onnx).embed(x)
    for allowed in (False, True):
        enc = rt.OnnxEncoder(int8_onnx, int8_allowed=allowed)
        assert enc.kind == "onnx-int8"
        assert _cos(enc.embed(x), ref).min() >= 0.99

    report = ox.onnx_int8_execution(int8_onnx, int8_allowed=True)
    assert report["execution_provider"] == "CPUExecutionProvider"
    assert report["fully_int8_conv"] and report["int8_ops"]["QLinearConv"] == report["conv_total"] > 0
    assert report["ops_by_provider"]["CPUExecutionProvider"]["QLinearConv"] == report["conv_total"]
    float_report = ox.onnx_int8_execution(float_onnx, profile=False)
    assert float_report["conv_int8"] == 0 and not float_report["int8_ops"]


def test_int8_options(float_onnx, windows, tmp_path):
    out = ox.quantize_onnx_int8(
        # ragged batches (5 + 3): ORT's histogram collector cannot stack them, the reader re-batches
        float_onnx, tmp_path / "u8.onnx", [windows[:5], windows[5:8]], activation_type="u8", calibrate_method="percentile"
    )
    q = ox.read_onnx_contract(out).extra["quantization"]
    assert q["activation_type"] == "uint8" and q["reduce_range"] is True and q["calibration_windows"] == 8
    assert q["calibrate_method"] == "Percentile"
    with pytest.raises(ValueError, match="calibrate_method"):
        ox.quantize_onnx_int8(float_onnx, tmp_path / "x.onnx", [windows[:8]], calibrate_method="mse")
    with pytest.raises(ValueError, match="no windows"):
        ox.quantize_onnx_int8(float_onnx, tmp_path / "x.onnx", [])
    with pytest.raises(ValueError, match="activation_type"):
        ox.quantize_onnx_int8(float_onnx, tmp_path / "x.onnx", [windows[:8]], activation_type="s16")
    with pytest.raises(ContractMismatchError, match="onnx-int8"):
        ox.quantize_onnx_int8(out, tmp_path / "again.onnx", [windows[:8]])


# -- encoders and input checks ---------------------------------------------------------------------


def test_bad_input_is_refused(student, float_onnx):
    encs = [rt.OnnxEncoder(float_onnx), rt.open_encoder(student)]
    good = np.zeros((2, L), np.float32)
    nan = good.copy()
    nan[1, 5] = np.nan
    inf = good.copy()
    inf[0, 0] = np.inf
    for enc in encs:
        for bad, msg in [
            (nan, "NaN"),
            (inf, "NaN/Inf"),
            (np.zeros((2, 2, L), np.float32), "shape"),
            (np.zeros((2, L, 1), np.float32), "shape"),
            (np.zeros((2, 1000), np.float32), "1250 samples"),
            (np.zeros((2, L), np.int16), "dtype"),
            (np.array([["a"] * L]), "dtype"),
        ]:
            with pytest.raises(InvalidSignalError, match=msg):
                enc.embed(bad)
        assert enc.embed(np.zeros((0, L), np.float32)).shape == (0, 128)


def test_torch_encoder_and_dispatch(student, float_onnx, contract, tmp_path):
    enc = rt.open_encoder(student)
    assert isinstance(enc, rt.TorchEncoder) and enc.kind == "pytorch-float" and enc.embedding_dim == 128
    x = np.random.default_rng(2).standard_normal((3, 1, L)).astype(np.float32)
    np.testing.assert_allclose(enc.embed(x), rt.open_encoder(float_onnx).embed(x), atol=1e-4)
    assert rt.open_encoder(student, contract=contract).contract == contract
    with pytest.raises(ContractMismatchError, match="ppg_band_hz"):
        rt.open_encoder(student, cfg=PreprocessConfig(ppg_band_hz=(0.5, 9.0)), contract=contract)
    with pytest.raises(ValueError, match="cannot open"):
        rt.open_encoder(tmp_path / "model.pt")
    with pytest.raises(FileNotFoundError):
        rt.open_encoder(tmp_path / "missing.onnx")
    with pytest.raises(TypeError):
        rt.open_encoder(42)


def test_runtime_input_check_needs_no_torch():
    """The device runtimes validate windows with the numpy-only check the PyTorch encoders use."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from anyppg_edge.deploy.runtime import validate_windows; "
        "validate_windows(np.zeros((2, 1250), np.float32), 1250); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    for bad in (np.full((1, L), np.nan), np.zeros((1, 3, L)), np.zeros((1, 10)), np.zeros((1, L), bool)):
        with pytest.raises(InvalidSignalError):
            rt.validate_windows(bad, L)
