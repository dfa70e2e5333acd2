"""TFLite metadata (the input contract inside the .tflite file) and the graph reports.

Tiny stand-in encoders (conv1d + swish + mean + dense, [1, 1, 1250] -> [1, 16]) are converted once
per module with the TFLiteConverter: float, and full int8 with int8 I/O."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from anyppg_edge.contract import CONTRACT_KEY, InputContract, QuantParams  # noqa: E402
from anyppg_edge.deploy.contract_io import CONTRACT_FILE_NAME, read_tflite_contract_zip  # noqa: E402
from anyppg_edge.deploy.export import graph_report as gr  # noqa: E402
from anyppg_edge.deploy.export import metadata as md  # noqa: E402
from anyppg_edge.errors import ContractMismatchError, DataFormatError  # noqa: E402
from anyppg_edge.preprocessing import PreprocessConfig  # noqa: E402

EMB = 16
SHA = "ab" * 32


def _tflite_support_or_skip():
    try:
        return md._tflite_support()
    except ImportError as e:
        pytest.skip(str(e))


class _Tiny(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.constant(rng.normal(0, 0.5, (3, 1, 8)).astype(np.float32))
        self.d = tf.constant(rng.normal(0, 0.3, (8, EMB)).astype(np.float32))
        self.b = tf.constant(rng.normal(0, 0.1, (EMB,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 1, 1250], tf.float32)])
    def __call__(self, x):
        h = tf.nn.conv1d(tf.reshape(x, [1, 1250, 1]), self.w, stride=2, padding="SAME")
        h = h * tf.sigmoid(h)
        return tf.matmul(tf.reduce_mean(h, axis=1), self.d) + self.b


def _windows(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 1, 1, 1250)).astype(np.float32)


def _run(model, x):
    """Run a TFLite file or buffer on float windows, (de)quantizing int8 I/O."""
    interp = Interpreter(model_path=str(model), num_threads=1)
    interp.allocate_tensors()
    (i,), (o,) = interp.get_input_details(), interp.get_output_details()
    outs = []
    for w in x:
        if i["dtype"] == np.int8:
            s, z = i["quantization"]
            w = np.clip(np.round(w / s) + z, -128, 127).astype(np.int8)
        interp.set_tensor(i["index"], w)
        interp.invoke()
        outs.append(interp.get_tensor(o["index"]).copy())
    return np.stack(outs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    module = _Tiny()
    cf = module.__call__.get_concrete_function()

    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    (out / "float.tflite").write_bytes(conv.convert())

    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([w] for w in _windows(16, 1))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (out / "int8.tflite").write_bytes(conv.convert())

    # weights stored outside the flatbuffer (Buffer.offset), as ai-edge-quantizer writes them
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    conv._experimental_use_buffer_offset = True
    (out / "offset.tflite").write_bytes(conv.convert())
    return out


def _quant(path, side):
    interp = Interpreter(model_path=str(path))
    d = (interp.get_input_details() if side == "input" else interp.get_output_details())[0]
    return QuantParams(scale=float(d["quantization"][0]), zero_point=int(d["quantization"][1]))


def _contract(models, name):
    path = models / f"{name}.tflite"
    kw = {}
    if name == "int8":
        kw = {"input_quant": _quant(path, "input"), "output_quant": _quant(path, "output")}
    kind = "tflite-int8" if name == "int8" else "tflite-float"
    return InputContract.for_model(f"tiny-{name}", kind, EMB, SHA, extra={"note": "test"}, **kw)


@pytest.fixture(scope="module")
def annotated(models):
    """Each model with metadata written next to it: {name: (src, dst, contract)}."""
    _tflite_support_or_skip()
    out = {}
    for name in ("float", "int8", "offset"):
        src, dst = models / f"{name}.tflite", models / f"{name}_md.tflite"
        c = _contract(models, name)
        md.write_tflite_metadata(src, c, dst)
        out[name] = (src, dst, c)
    return out


# -- metadata ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["float", "int8", "offset"])
def test_contract_round_trip_and_identical_output(annotated, name):
    src, dst, c = annotated[name]
    # tflite-support's schema would drop offset buffers ("Input tensor lacks data"): re-serialised first
    assert md._needs_reserialise(src.read_bytes()) == (name == "offset")
    assert md.read_tflite_contract(dst) == c
    assert read_tflite_contract_zip(dst) == c  # the runtimes' TensorFlow-free reader agrees
    with pytest.raises(ContractMismatchError, match="no input contract"):
        read_tflite_contract_zip(src)
    x = _windows(4, 2)
    np.testing.assert_array_equal(_run(dst, x), _run(src, x))
    assert dst.stat().st_size - src.stat().st_size < 20_000  # a few KB of metadata and JSON


def test_metadata_fields_read_back_with_displayer(annotated):
    tfs = _tflite_support_or_skip()
    _, dst, c = annotated["int8"]
    disp = tfs.metadata.MetadataDisplayer.with_model_file(str(dst))
    meta = json.loads(disp.get_metadata_json())
    assert meta == md.tflite_metadata_json(dst)
    assert meta["name"] == "tiny-int8" and meta["version"] == c.model_version
    assert meta["author"] == "anyppg-edge" and meta["license"] == "Apache-2.0"
    for needle in (
        "125 Hz",
        "1250 samples",
        "Butterworth",
        "z-score",
        "tflite-int8",
        SHA,
        f"{EMB}-dimensional",
    ):
        assert needle in meta["description"], needle
    (assoc,) = meta["associated_files"]
    assert assoc["name"] == CONTRACT_FILE_NAME and assoc["type"] == "DESCRIPTIONS"
    (sub,) = meta["subgraph_metadata"]
    (inp,), (outp,) = sub["input_tensor_metadata"], sub["output_tensor_metadata"]
    assert inp["name"] == "ppg" and outp["name"] == "embedding"
    assert "FeatureProperties" in inp["content"]["content_properties_type"]
    assert f"scale={c.input_quant.scale!r}" in inp["description"]
    assert f"zero_point={c.input_quant.zero_point}" in inp["description"]
    assert "stats" in inp and len(inp["stats"]["min"]) == 1
    assert disp.get_packed_associated_file_list() == [CONTRACT_FILE_NAME]
    assert InputContract.from_json(disp.get_associated_file_buffer(CONTRACT_FILE_NAME)) == c


def test_rewriting_metadata_replaces_it(annotated, tmp_path):
    _, dst, c = annotated["float"]
    c2 = dataclasses.replace(c, model_name="renamed")
    md.write_tflite_metadata(dst.read_bytes(), c2, tmp_path / "again.tflite")
    assert md.read_tflite_contract(tmp_path / "again.tflite") == c2


@pytest.mark.filterwarnings("ignore:File, 'anyppg_edge.input_contract.json', does not exist in the metadata")
def test_missing_or_malformed_contract_raises(models, annotated, tmp_path):
    tfs = _tflite_support_or_skip()
    with pytest.raises(ContractMismatchError, match="no TFLite metadata"):
        md.read_tflite_contract(models / "float.tflite")
    with pytest.raises(ContractMismatchError, match="no TFLite metadata"):
        md.tflite_metadata_json(models / "float.tflite")

    # metadata, but no contract file
    buf = (models / "float.tflite").read_bytes()
    bare = tfs.writer.MetadataWriter.create_from_metadata_info(bytearray(buf)).populate()
    (tmp_path / "bare.tflite").write_bytes(bytes(bare))
    with pytest.raises(ContractMismatchError, match="no input contract"):
        md.read_tflite_contract(tmp_path / "bare.tflite")

    # a contract file that is not a contract
    bad = tmp_path / CONTRACT_FILE_NAME
    for text in ("{not json", json.dumps({"schema": "something/else"}), "[1, 2]"):
        bad.write_text(text)
        populated = tfs.writer.MetadataWriter.create_from_metadata_info(
            bytearray(buf), associated_files=[str(bad)]
        ).populate()
        (tmp_path / "bad.tflite").write_bytes(bytes(populated))
        with pytest.raises(ContractMismatchError):
            md.read_tflite_contract(tmp_path / "bad.tflite")

    (tmp_path / "junk.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(DataFormatError, match="not a TFLite flatbuffer"):
        md.read_tflite_contract(tmp_path / "junk.tflite")


def test_contract_check_against_preprocess_config(annotated):
    _, dst, _ = annotated["float"]
    md.read_tflite_contract(dst, cfg=PreprocessConfig())  # the defaults it was written with
    contract = md.read_tflite_contract(dst)
    with pytest.raises(ContractMismatchError, match="target_sample_rate_hz"):
        contract.check(PreprocessConfig(target_sample_rate_hz=100))
    with pytest.raises(ContractMismatchError, match="ppg_band_hz"):
        md.read_tflite_contract(dst, cfg=PreprocessConfig(ppg_band_hz=(0.5, 4.0)))


def test_write_refuses_a_contract_that_does_not_describe_the_model(models, tmp_path):
    _tflite_support_or_skip()
    out = tmp_path / "x.tflite"
    float_c, int8_c = _contract(models, "float"), _contract(models, "int8")
    with pytest.raises(ContractMismatchError, match="input_quant"):  # int8 model, float contract
        md.write_tflite_metadata(
            models / "int8.tflite", dataclasses.replace(float_c, artifact_kind="tflite-int8"), out
        )
    bad_scale = dataclasses.replace(int8_c, input_quant=QuantParams(scale=1.0, zero_point=0))
    with pytest.raises(ContractMismatchError, match="input_quant"):
        md.write_tflite_metadata(models / "int8.tflite", bad_scale, out)
    with pytest.raises(ContractMismatchError, match="embedding_dim"):
        md.write_tflite_metadata(models / "float.tflite", dataclasses.replace(float_c, embedding_dim=32), out)
    with pytest.raises(ContractMismatchError, match="input shape"):
        md.write_tflite_metadata(
            models / "float.tflite", dataclasses.replace(float_c, input_shape=(1, 1250, 1)), out
        )
    with pytest.raises(ContractMismatchError, match="artifact_kind"):
        md.write_tflite_metadata(
            models / "float.tflite", dataclasses.replace(float_c, artifact_kind="onnx-float"), out
        )
    with pytest.raises(DataFormatError):
        md.write_tflite_metadata(b"not a model at all", float_c, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


# -- graph reports ----------------------------------------------------------------------------
def test_float_graph_report(models):
    r = gr.tflite_graph_report(models / "float.tflite")
    assert r["format"] == "tflite" and r["file_size_bytes"] == (models / "float.tflite").stat().st_size
    assert r["n_float_compute_ops"] > 0 and not r["fully_int8"] and not r["integer_only"]
    assert {"CONV_2D", "LOGISTIC", "MUL", "MEAN", "FULLY_CONNECTED"} <= set(r["op_census"])
    assert r["inputs"][0]["dtype"] == "float32" and r["inputs"][0]["quant"] is None
    assert r["inputs"][0]["shape"] == [1, 1, 1250] and r["outputs"][0]["shape"] == [1, EMB]
    assert r["n_int8_weight_tensors"] == 0 and r["n_float_weight_tensors"] >= 3
    assert r["metadata_present"] is False and r["has_contract"] is False


def test_int8_graph_report(models, annotated):
    r = gr.tflite_graph_report(models / "int8.tflite")
    assert r["fully_int8"] and r["integer_only"] and r["float_compute_ops"] == []
    assert r["n_flex_ops"] == 0 and r["custom_ops"] == {}
    assert r["n_int8_weight_tensors"] >= 2
    for side, t in (("input", r["inputs"][0]), ("output", r["outputs"][0])):
        q = _quant(models / "int8.tflite", side)
        assert t["dtype"] == "int8" and t["quant"] == {
            "scale": pytest.approx(q.scale),
            "zero_point": q.zero_point,
        }
    r_md = gr.tflite_graph_report(annotated["int8"][1])
    assert r_md["metadata_present"] and r_md["has_contract"] and r_md["fully_int8"]
    assert r_md["op_census"] == r["op_census"]
    r_off = gr.tflite_graph_report(models / "offset.tflite")  # offset buffers are still seen as weights
    assert (
        r_off["n_float_weight_tensors"]
        == gr.tflite_graph_report(models / "float.tflite")["n_float_weight_tensors"]
    )


def test_onnx_graph_report_and_markdown(models, tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")

    class TinyTorch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(1, 8, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(8, EMB)

        def forward(self, x):
            h = self.conv(x)
            return self.fc((h * torch.sigmoid(h)).mean(-1))

    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        TinyTorch().eval(),
        (torch.zeros(1, 1, 1250),),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["ppg"],
        output_names=["embedding"],
    )
    m = onnx.load(str(path))
    c = InputContract.for_model("tiny-onnx", "onnx-float", EMB, SHA)
    onnx.helper.set_model_props(m, {CONTRACT_KEY: c.to_json()})
    onnx.save(m, str(path))

    r = gr.onnx_graph_report(path)
    assert r["format"] == "onnx" and r["has_contract"] and r["file_size_bytes"] == path.stat().st_size
    assert r["op_census"].get("Conv") == 1 and r["n_quantize_linear"] == 0 == r["n_dequantize_linear"]
    assert r["n_int8_weights"] == 0 and r["n_float_weights"] >= 4
    assert r["inputs"][0] == {"name": "ppg", "shape": [1, 1, 1250], "dtype": "float"}

    text = gr.graph_report_markdown([gr.tflite_graph_report(models / "int8.tflite"), r])
    assert text.startswith("| artifact |") and "int8.tflite" in text and "tiny.onnx" in text
    assert "\n- `int8.tflite`: " in text and "CONV_2D×1" in text and "Conv×1" in text


def test_ensure_libusb_names_both_fixes_when_missing(monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("libusb preload only matters on Linux")

    def no_lib(*args, **kwargs):
        raise OSError("cannot open shared object file")

    monkeypatch.setattr(md.ctypes, "CDLL", no_lib)
    monkeypatch.setitem(sys.modules, "libusb_package", None)  # import fails
    with pytest.raises(ImportError, match=r"libusb-1\.0\.so\.0") as e:
        md.ensure_libusb.__wrapped__()
    assert "pip install libusb-package" in str(e.value) and "apt-get install libusb-1.0-0" in str(e.value)
