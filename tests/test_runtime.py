"""TFLiteEncoder: LiteRT interpreter behind the Encoder interface, with the contract from TFLite metadata.

Tiny stand-in encoders ([1, 1, 1250] -> features -> dense -> [1, 8]) are converted once per module
with the TFLiteConverter: float I/O, and full int8 with int8 I/O (to exercise the input
quantization and output dequantization). The contract is attached with
:func:`anyppg_edge.deploy.export.metadata.write_tflite_metadata`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from anyppg_edge.contract import InputContract, QuantParams  # noqa: E402
from anyppg_edge.deploy import runtime as rt  # noqa: E402
from anyppg_edge.deploy.contract_io import read_contract  # noqa: E402
from anyppg_edge.deploy.export import metadata as md  # noqa: E402
from anyppg_edge.errors import ContractMismatchError, InvalidSignalError  # noqa: E402
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig  # noqa: E402

EMB = 8
L = DEFAULT_CONFIG.window_samples
SHA = "cd" * 32


class _Tiny(tf.Module):
    """means over ten 1 s blocks, max and min -> dense -> tanh."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.constant(rng.normal(0, 0.5, (12, EMB)).astype(np.float32))
        self.b = tf.constant(rng.normal(0, 0.1, (EMB,)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 1, L], tf.float32)])
    def __call__(self, x):
        h = tf.reshape(x, [1, L])
        blocks = tf.reduce_mean(tf.reshape(h, [1, 10, L // 10]), axis=2)
        feats = tf.concat(
            [blocks, tf.reduce_max(h, 1, keepdims=True), tf.reduce_min(h, 1, keepdims=True)], axis=1
        )
        return tf.tanh(tf.matmul(feats, self.w) + self.b)


def _windows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, L)) + np.sin(np.linspace(0, 60, L))
    return ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)


def _io_quant(path) -> tuple[QuantParams | None, QuantParams | None]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return rt._tensor_quant(it.get_input_details()[0]), rt._tensor_quant(it.get_output_details()[0])


@pytest.fixture(scope="module")
def tiny():
    return _Tiny()


@pytest.fixture(scope="module")
def models(tiny, tmp_path_factory):
    try:
        md._tflite_support()
    except ImportError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp("tflite")
    cf = tiny.__call__.get_concrete_function()
    (out / "raw_float.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_concrete_functions([cf], tiny).convert()
    )

    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], tiny)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([w.reshape(1, 1, L)] for w in _windows(32, 1))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    (out / "raw_int8.tflite").write_bytes(conv.convert())

    paths = {}
    for kind in ("float", "int8"):
        raw = out / f"raw_{kind}.tflite"
        in_q, out_q = _io_quant(raw)
        contract = InputContract.for_model(
            "tiny-tf", f"tflite-{kind}", EMB, SHA, input_quant=in_q, output_quant=out_q
        )
        paths[kind] = md.write_tflite_metadata(raw, contract, out / f"tiny.{kind}.tflite")
        paths[f"raw_{kind}"] = raw
    return paths


def test_float_tflite_matches_tf(models, tiny):
    x = _windows(5, 2)
    ref = np.concatenate([tiny(w.reshape(1, 1, L)).numpy() for w in x])
    for xnn in (True, False):
        enc = rt.TFLiteEncoder(models["float"], use_xnnpack=xnn)
        assert enc.kind == "tflite-float" and enc.name == "tiny-tf" and enc.input_quant is None
        got = enc.embed(x)
        assert got.dtype == np.float32 and got.shape == (5, EMB)
        np.testing.assert_allclose(got, ref, atol=1e-5)
        np.testing.assert_allclose(enc.embed(x[:, None, :]), got, atol=0)
    assert read_contract(models["float"]).source_checkpoint_sha256 == SHA
    assert isinstance(rt.open_encoder(models["float"]), rt.TFLiteEncoder)


def test_int8_tflite_quantizes_io(models, tiny):
    x = _windows(6, 3)
    enc = rt.open_encoder(models["int8"], threads=1)
    assert enc.kind == "tflite-int8"
    assert enc.input_quant.dtype == "int8" and enc.output_quant.dtype == "int8"
    assert enc.contract.input_quant == enc.input_quant
    got = enc.embed(x)
    # the same as quantize -> invoke -> dequantize by hand
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(models["int8"]))
    it.allocate_tensors()
    (i,), (o,) = it.get_input_details(), it.get_output_details()
    manual = []
    for w in x:
        it.set_tensor(i["index"], enc.input_quant.quantize(w.reshape(1, 1, L)))
        it.invoke()
        manual.append(enc.output_quant.dequantize(it.get_tensor(o["index"]))[0])
    np.testing.assert_array_equal(got, np.stack(manual))
    # and close to the float TF model (a few output LSBs)
    ref = np.concatenate([tiny(w.reshape(1, 1, L)).numpy() for w in x])
    assert np.abs(got - ref).max() <= 6 * enc.output_quant.scale


def test_tflite_contract_mismatch_and_missing(models):
    with pytest.raises(ContractMismatchError, match="ppg_band_hz"):
        rt.TFLiteEncoder(models["float"], cfg=PreprocessConfig(ppg_band_hz=(0.5, 9.0)))
    with pytest.raises(ContractMismatchError, match="window"):
        rt.open_encoder(models["int8"], cfg=PreprocessConfig(window_s=8.0))
    with pytest.raises(ContractMismatchError, match="no input contract"):
        rt.TFLiteEncoder(models["raw_float"])
    enc = rt.TFLiteEncoder(models["raw_int8"], allow_missing_contract=True)
    assert enc.kind == "tflite-int8" and enc.contract.extra["contract"].startswith("assumed")
    np.testing.assert_array_equal(
        enc.embed(_windows(2, 4)), rt.TFLiteEncoder(models["int8"]).embed(_windows(2, 4))
    )


def test_tflite_contract_must_match_tensor_quant(models, tmp_path):
    c = read_contract(models["int8"])
    bad = dataclasses.replace(c, input_quant=QuantParams(c.input_quant.scale * 2, c.input_quant.zero_point))
    # the metadata writer refuses a contract that misstates the input scale ...
    with pytest.raises(ContractMismatchError):
        md.write_tflite_metadata(models["raw_int8"], bad, tmp_path / "bad.tflite")

    # ... and so does the encoder, should such a file exist anyway
    class _Lying(rt.TFLiteEncoder):
        def _read_contract(self):
            return bad

    with pytest.raises(ContractMismatchError, match="input quantization"):
        _Lying(models["int8"])
    with pytest.raises(ContractMismatchError, match="input quantization"):
        _Lying(models["float"])  # a float input tensor, a contract claiming int8


def test_tflite_bad_input(models):
    enc = rt.TFLiteEncoder(models["int8"])
    x = _windows(2, 6)
    x[0, 3] = np.nan
    with pytest.raises(InvalidSignalError, match="NaN"):
        enc.embed(x)
    with pytest.raises(InvalidSignalError, match="dtype"):
        enc.embed(np.zeros((1, L), np.int8))
    with pytest.raises(InvalidSignalError, match="1250 samples"):
        enc.embed(np.zeros((1, 625), np.float32))
