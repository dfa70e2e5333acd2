"""Refuse what cannot be right (issue 22, signal/input part): every absurd input ends in a clear error
(its class and a phrase of its message asserted), a hard flag, or a correct result, never a silent
wrong output, and no numpy warning leaks.

1. Values that overflow the float32 chain (preprocessing functions, Streamer bursts and windows).
2. Encoders cast first, then check; their embeddings are checked for NaN/Inf.
3. Windows that are not z-scored are refused by encoders (``check_normalized=False`` overrides).
4. A contract whose ``artifact_kind`` is not the graph's, a malformed contract, a second zip archive.
5. Absurd native sample rates are refused before any work.

The encoder tests use hand-built ONNX graphs (onnx.helper, milliseconds) and, where TensorFlow is
installed, two tiny TFLite files converted once per module.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import time
import warnings
import zipfile

import numpy as np
import pytest

from anyppg_edge import model_input as mi
from anyppg_edge import preprocessing as pp
from anyppg_edge.contract import CONTRACT_KEY, InputContract
from anyppg_edge.deploy import contract_io
from anyppg_edge.errors import CheckpointError, ContractMismatchError, InvalidSignalError
from anyppg_edge.stream.streamer import (
    FLAG_NAMES,
    FLAG_OVERFLOW,
    HARD_FLAGS,
    StreamConfig,
    Streamer,
)

L = pp.DEFAULT_CONFIG.window_samples
EMB = 8
SHA = "ef" * 32


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """No numpy RuntimeWarning (overflow, invalid value) may leak from the code under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def _pulse(sr: float, n: int, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / sr
    noise = np.random.default_rng(seed).standard_normal(n)
    return np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 2.4 * t + 0.5) + 0.05 * noise


def _zscored(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, L)) + np.sin(np.linspace(0, 60, L))
    return ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# 1. overflow in the preprocessing chain
# --------------------------------------------------------------------------------------------------

# (scale, phrase): 1e20 overflows the float32 variance, 1e38 its sum, 1e39 the cast to float32,
# 1e308 the float64 band-pass itself.
OVERFLOWS = [
    (1e20, "standard deviation overflows float32"),
    (1e38, "mean overflows float32"),
    (1e39, "cast to float32"),
    (1e300, "cast to float32"),
    (1e308, "filter (float64)"),
]


@pytest.mark.parametrize("kind", ["ppg", "ecg"])
@pytest.mark.parametrize("scale, phrase", OVERFLOWS)
def test_window_chain_refuses_overflow(kind, scale, phrase):
    with np.errstate(over="ignore"):
        x = _pulse(64, 640) * scale
    fn = pp.preprocess_ppg_window if kind == "ppg" else pp.preprocess_ecg_window
    with pytest.raises(InvalidSignalError, match=re.escape(phrase)) as e:
        fn(x, 64)
    assert "rescale" in str(e.value)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 3e4, 1e15])
def test_window_chain_is_scale_invariant_where_it_can_be(scale):
    # (the flat-line gate has an absolute threshold: off here, for the 1e-3 V signal)
    ref = pp.preprocess_ppg_window(_pulse(64, 640), 64, check_quality=False)
    got = pp.preprocess_ppg_window(_pulse(64, 640) * scale, 64, check_quality=False)
    assert np.isfinite(got).all() and np.abs(got - ref).max() < 1e-3


def test_constant_window_is_refused_not_zeroed():
    with pytest.raises(InvalidSignalError, match="flat after filtering"):
        pp.preprocess_ppg_window(np.zeros(640), 64, check_quality=False)
    with pytest.raises(InvalidSignalError, match="flat"):  # the gate says it first
        pp.preprocess_ppg_window(np.zeros(640), 64)
    np.testing.assert_array_equal(pp.zscore(np.ones(5)), np.zeros(5))  # plain zscore keeps its contract


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda: pp.zscore(np.array([1e20, -2e20, 3e20], np.float32)), "standard deviation overflows float32"),
        (lambda: pp.zscore(np.array([1.0, np.nan])), "NaN/Inf"),
        (lambda: pp.resample_to_target(np.full(640, 3e38, np.float32), 64), "overflows in the resampling"),
        (lambda: pp.ppg_bandpass(_pulse(64, 640) * 1e308, 64), "band-pass filter"),
        (lambda: pp.ecg_filter(_pulse(125, 1250) * 1e308, 125), "ECG filter"),
        (lambda: pp.ecg_is_inverted(_pulse(125, 1250) * 1e300, 125), "cast to float32"),
    ],
)
def test_public_steps_refuse_overflow(call, phrase):
    with pytest.raises(InvalidSignalError, match=re.escape(phrase)):
        with np.errstate(over="ignore"):  # only the test's own scaling may overflow silently
            call()


def test_flat_ratio_of_huge_values_is_finite_and_quiet():
    assert pp.flat_ratio(_pulse(64, 640) * 1e300, 64) == 0.0


# --------------------------------------------------------------------------------------------------
# 1b. the Streamer
# --------------------------------------------------------------------------------------------------


def _push_all(s: Streamer, x: np.ndarray, odr: float, burst: int = 25) -> list:
    t = np.arange(x.size) / odr
    out = []
    for i in range(0, x.size, burst):
        out += s.push(x[i : i + burst], t[i : i + burst])
    return out + s.flush()


def test_overflow_flag_is_a_named_hard_flag():
    assert FLAG_NAMES[FLAG_OVERFLOW] == "overflow" and FLAG_OVERFLOW & HARD_FLAGS
    import anyppg_edge.stream.streamer as st

    assert "FLAG_OVERFLOW" in st.__all__


@pytest.mark.parametrize("mode", ["reference", "device", "causal"])
def test_streamer_flags_or_gets_right_huge_float_codes(mode):
    odr = 25.0
    codes = 30000 + 500 * _pulse(odr, int(40 * odr))
    clean = _push_all(Streamer(StreamConfig(odr_hz=odr, mode=mode)), codes, odr)
    huge = _push_all(Streamer(StreamConfig(odr_hz=odr, mode=mode)), codes * 1e20, odr)
    assert len(clean) == len(huge) >= 5 and all(w.ok for w in clean)
    for c, h in zip(clean, huge, strict=True):
        if mode == "causal":  # float64 all the way: the right answer
            assert h.ok and np.abs(h.x - c.x).max() < 1e-3
        else:  # the float32 chain overflows: a hard flag, no model input
            assert h.flags & FLAG_OVERFLOW and not h.ok and h.x is None and "overflow" in h.flag_names


@pytest.mark.parametrize("scale", [1e39, 1e300])
def test_streamer_refuses_samples_beyond_float32(scale):
    s = Streamer(StreamConfig(odr_hz=25.0))
    t = np.arange(25) / 25.0
    with pytest.raises(InvalidSignalError, match="beyond the float32 range"):
        s.push(np.full(25, 30000.0) * scale, t)
    with pytest.raises(InvalidSignalError, match="infinite"):  # as Inf already was
        s.push(np.full(25, np.inf), t)


def test_streamer_flags_overflow_in_device_mode_with_nan_policy_flag():
    odr = 25.0
    codes = (30000 + 500 * _pulse(odr, int(20 * odr))) * 1e30
    codes[5] = np.nan
    ws = _push_all(Streamer(StreamConfig(odr_hz=odr, mode="device", nan_policy="flag")), codes, odr)
    assert ws and all(not w.ok for w in ws)
    assert all(w.flags & FLAG_OVERFLOW for w in ws if w.start_sample > 5)


@pytest.mark.parametrize("mode", ["reference", "device", "causal"])
def test_streamer_flags_a_constant_window_when_the_gates_are_off(mode):
    cfg = pp.PreprocessConfig(flat_max_ratio=1.0, saturation_max_ratio=1.0)  # gates can never fire
    ws = _push_all(Streamer(StreamConfig(odr_hz=25.0, mode=mode), cfg), np.full(250, 30000.0), 25.0)
    # not an "ok" window of zeros or of amplified rounding noise
    assert len(ws) == 1 and not ws[0].ok and ws[0].flag_names == ["flat"]


@pytest.mark.parametrize("level", [1.0, 3e4, 8e6, 4e9])
@pytest.mark.parametrize("sr", [25, 64, 125, 1000])
def test_constant_windows_are_flat_not_noise(level, sr):
    """A constant window filters to rounding noise (~1e-14 of its level), not to exact zeros: refused,
    not blown up to unit variance."""
    with pytest.raises(InvalidSignalError, match="flat after filtering"):
        pp.preprocess_ppg_window(np.full(10 * sr, level), sr, check_quality=False)


# --------------------------------------------------------------------------------------------------
# 5. absurd sample rates
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1e9, 1e5, 10_000.5, 1e300])
def test_absurd_rates_are_refused_at_once(rate):
    t0 = time.perf_counter()
    for call in (
        lambda: pp.resample_to_target(np.zeros(1000), rate),
        lambda: pp.resample_factors(rate),
        lambda: pp.window_length_samples(rate),
        lambda: pp.preprocess_ppg_window(np.zeros(1000), rate),
        lambda: Streamer(StreamConfig(odr_hz=rate)),
    ):
        with pytest.raises(InvalidSignalError, match="implausible"):
            call()
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("rate", [pp.MAX_SAMPLE_RATE_HZ, 4096.0, 9999.7])
def test_high_but_plausible_rates_still_resample(rate):
    y = pp.resample_to_target(np.sin(np.arange(int(10 * rate)) / 50.0), rate)
    assert y.shape == (L,) and np.isfinite(y).all()


def test_reference_streamer_refuses_an_unstable_band_pass_when_built():
    with pytest.raises(InvalidSignalError, match="unstable"):
        Streamer(StreamConfig(odr_hz=5000.0, mode="reference"))
    Streamer(StreamConfig(odr_hz=5000.0, mode="device"))  # SOS form: stable


# --------------------------------------------------------------------------------------------------
# 3. what "z-scored" means, measured on real windows
# --------------------------------------------------------------------------------------------------


def _assert_well_inside_bounds(w: np.ndarray) -> None:
    mean, std = mi.window_stats(w)
    assert mi.not_normalized(w).size == 0
    # at least 1000x inside every bound (measured: |mean| <= 3e-8, |std - 1| <= 3e-7)
    assert np.abs(mean).max() < mi.ZSCORE_MEAN_MAX / 1000
    assert np.abs(std - 1).max() < min(1 - mi.ZSCORE_STD_MIN, mi.ZSCORE_STD_MAX - 1) / 1000


def test_calibration_windows_are_well_inside_the_bounds():
    from anyppg_edge.deploy.calibration import load_default_calibration_set

    _assert_well_inside_bounds(load_default_calibration_set().windows)


def test_shared_windows_are_well_inside_the_bounds(shared):
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.windows import extract_windows

    w = np.concatenate([extract_windows(r, ecg_quality=False).ppg for r in load_shared_recordings(shared)])
    assert len(w) > 300
    _assert_well_inside_bounds(w)


@pytest.mark.parametrize("mode", ["reference", "device", "causal"])
def test_streamed_windows_are_well_inside_the_bounds(mode):
    odr = 25.0
    ws = _push_all(Streamer(StreamConfig(odr_hz=odr, mode=mode)), 30000 + 500 * _pulse(odr, int(40 * odr)), odr)
    _assert_well_inside_bounds(np.stack([w.x for w in ws if w.ok]))


@pytest.mark.parametrize(
    "windows, accepted",
    [
        (_zscored(3), True),
        (np.zeros((2, L), np.float32), True),  # what the z-score makes of a constant window
        (np.random.default_rng(0).standard_normal((4, L)).astype(np.float32), True),  # unit noise
        (30000 + 500 * _zscored(2), False),  # raw ADC codes
        (500 * _zscored(2), False),  # filtered, not scaled
        (1e-3 * _zscored(2), False),  # volts
        (_zscored(2) + 1.0, False),  # an offset
        (np.full((1, L), 0.1, np.float32), False),  # a constant that is not zero
    ],
)
def test_check_normalized_bounds(windows, accepted):
    if accepted:
        mi.check_normalized(windows)
    else:
        with pytest.raises(InvalidSignalError, match="not z-scored") as e:
            mi.check_normalized(windows)
        assert "check_normalized=False" in str(e.value)


# --------------------------------------------------------------------------------------------------
# hand-built ONNX encoders
# --------------------------------------------------------------------------------------------------


def _onnx_model(kind: str, weight: float = 0.05, gain: float = 1.0):
    """``[batch, 1, L]`` -> reshape -> (int8: QuantizeLinear/DequantizeLinear) -> MatMul W -> * gain."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(0, weight, (L, EMB)).astype(np.float32)
    if kind == "nan":
        w[3, 2] = np.nan
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.array([-1, L], np.int64), "shape"),
        numpy_helper.from_array(np.array(gain, np.float32), "gain"),
        numpy_helper.from_array(np.array(0.05, np.float32), "s"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = []
    src = "ppg"
    if kind == "int8":
        nodes += [
            helper.make_node("QuantizeLinear", ["ppg", "s", "zp"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["dq"]),
        ]
        src = "dq"
    nodes += [
        helper.make_node("Reshape", [src, "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Mul", ["mm", "gain"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("ppg", TensorProto.FLOAT, ["batch", 1, L])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMB])],
        inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _save_onnx(m, path, contract: InputContract | None = None, props: dict | None = None):
    import onnx

    del m.metadata_props[:]
    if contract is not None:
        props = contract_io.contract_props(contract)
    if props is not None:
        onnx.helper.set_model_props(m, props)
    onnx.save(m, str(path))
    return path


def _contract(kind: str) -> InputContract:
    return InputContract.for_model("tiny", kind, EMB, SHA)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("sanity_onnx")
    return {
        "float": _save_onnx(_onnx_model("float"), d / "float.onnx", _contract("onnx-float")),
        "int8": _save_onnx(_onnx_model("int8"), d / "int8.onnx", _contract("onnx-int8")),
        "big": _save_onnx(_onnx_model("float", gain=1e30), d / "big.onnx", _contract("onnx-float")),
        "nan": _save_onnx(_onnx_model("nan"), d / "nan.onnx", _contract("onnx-float")),
        "dir": d,
    }


def test_onnx_op_types_without_onnx_match_onnx(onnx_files):
    import onnx

    from anyppg_edge.deploy import runtime as rt

    for name in ("float", "int8"):
        ops = {n.op_type for n in onnx.load(str(onnx_files[name])).graph.node}
        assert rt._onnx_op_types(onnx_files[name]) == ops
    assert rt._onnx_kind(onnx_files["int8"]) == "onnx-int8" and rt._onnx_kind(onnx_files["float"]) == "onnx-float"
    junk = onnx_files["dir"] / "junk.onnx"
    junk.write_bytes(b"\xff" * 40)
    assert rt._onnx_kind(junk) is None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_encoder_casts_then_checks(onnx_files, dtype):
    from anyppg_edge.deploy.runtime import open_encoder

    enc = open_encoder(onnx_files["float"])
    x = _zscored(3).astype(dtype)
    assert np.isfinite(enc.embed(x)).all()
    if dtype == np.float64:
        x[1, 7] = 1e300  # finite in float64, Inf in float32
        with pytest.raises(InvalidSignalError, match=r"windows \[1\].*overflow float32"):
            enc.embed(x)
        with pytest.raises(InvalidSignalError, match="overflow float32"):  # not a normalisation matter
            enc.embed(x, check_normalized=False)
    x[2, 0] = np.nan
    with pytest.raises(InvalidSignalError, match="NaN"):
        enc.embed(x)


@pytest.mark.parametrize(
    "bad, phrase",
    [
        (lambda: 30000 + 500 * _zscored(2, 1), "mean 3e"),  # raw ADC codes
        (lambda: 500 * _zscored(2, 1), "std 500"),
        (lambda: 1e-3 * _zscored(2, 1), "std 0.001"),
    ],
)
def test_encoder_refuses_windows_that_are_not_zscored(onnx_files, bad, phrase):
    from anyppg_edge.deploy.runtime import open_encoder

    enc = open_encoder(onnx_files["int8"])  # int8 would clip them silently
    x = bad().astype(np.float32)
    with pytest.raises(InvalidSignalError, match="not z-scored") as e:
        enc.embed(x)
    assert phrase in str(e.value) and "check_normalized=False" in str(e.value)
    # the named override: per call, or for the encoder
    assert enc.embed(x, check_normalized=False).shape == (2, EMB)
    assert open_encoder(onnx_files["int8"], check_normalized=False).embed(x).shape == (2, EMB)


def test_torch_encoder_refuses_windows_that_are_not_zscored():
    torch = pytest.importorskip("torch")
    from anyppg_edge.deploy.runtime import open_encoder

    class Lin(torch.nn.Module):
        out_dim = EMB

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(L, EMB)

        def forward(self, x):
            return self.fc(x.flatten(1))

    enc = open_encoder(Lin().eval())
    with pytest.raises(InvalidSignalError, match="not z-scored"):
        enc.embed(30000 + 500 * _zscored(1))
    assert open_encoder(Lin().eval(), check_normalized=False).embed(30000 + 500 * _zscored(1)).shape == (1, EMB)


def test_nonfinite_embeddings_name_the_windows(onnx_files):
    from anyppg_edge.deploy.runtime import open_encoder

    x = _zscored(3)
    x[1] *= 1e20  # finite in float32, overflows the model's * 1e30
    enc = open_encoder(onnx_files["big"], check_normalized=False)
    with pytest.raises(InvalidSignalError, match=r"NaN/Inf embeddings for windows \[1\].*not z-scored"):
        enc.embed(x)
    assert np.isfinite(enc.embed(x[[0, 2]])).all()


def test_nonfinite_embeddings_of_good_windows_blame_the_model(onnx_files):
    from anyppg_edge.deploy.runtime import open_encoder

    with pytest.raises(CheckpointError, match=r"windows \[0, 1\].*model itself is broken"):
        open_encoder(onnx_files["nan"]).embed(_zscored(2))


# --------------------------------------------------------------------------------------------------
# 4. contracts: kind against graph, malformed fields, a second archive
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "graph, claimed, phrase",
    [
        ("float", "onnx-int8", "has no QuantizeLinear"),
        ("int8", "onnx-float", "has QuantizeLinear"),
        ("float", "tflite-float", "'onnx-float'"),
        ("float", "pytorch-float", "'onnx-float'"),
    ],
)
def test_onnx_contract_kind_must_match_the_graph(onnx_files, tmp_path, graph, claimed, phrase):
    from anyppg_edge.deploy.runtime import open_encoder

    path = _save_onnx(_onnx_model(graph), tmp_path / "lying.onnx", _contract(claimed))
    with pytest.raises(ContractMismatchError, match="artifact_kind") as e:
        open_encoder(path)
    assert phrase in str(e.value)


def test_onnx_without_contract_gets_the_graph_kind(onnx_files, tmp_path):
    from anyppg_edge.deploy.runtime import open_encoder

    for graph, kind in (("float", "onnx-float"), ("int8", "onnx-int8")):
        bare = _save_onnx(_onnx_model(graph), tmp_path / f"bare_{graph}.onnx")
        assert open_encoder(bare, allow_missing_contract=True).kind == kind


@pytest.mark.parametrize(
    "field, value, phrase",
    [
        ("preprocess", None, "preprocess must be an object"),
        ("preprocess", [], "preprocess must be an object"),
        ("embedding_dim", "8", "embedding_dim must be a positive integer"),
        ("input_shape", [1, 1, 0], "input_shape"),
        ("preprocess_config_hash", None, "preprocess_config_hash must be a string"),
        ("extra", None, "extra must be an object"),
        ("input_quant", {"scale": -1.0, "zero_point": 0}, "positive scale"),
        ("artifact_kind", "onnx-fp16", "artifact_kind must be one of"),
    ],
)
def test_malformed_contract_fields_are_contract_errors(onnx_files, tmp_path, field, value, phrase):
    from anyppg_edge.deploy.runtime import open_encoder

    d = _contract("onnx-float").to_dict()
    d[field] = value
    text = json.dumps(d)
    with pytest.raises(ContractMismatchError, match="malformed input contract") as e:
        contract_io.parse_contract(text, "x")
    assert phrase in str(e.value)
    path = _save_onnx(_onnx_model("float"), tmp_path / "bad.onnx", props={CONTRACT_KEY: text})
    for kw in ({}, {"allow_missing_contract": True}):  # a broken contract is never waived
        with pytest.raises(ContractMismatchError, match=phrase):
            open_encoder(path, **kw)


def _zip_with(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, text)
    return buf.getvalue()


def test_count_zip_archives_ignores_stray_signatures():
    one = _zip_with("a.json", "{}")
    assert contract_io.count_zip_archives(one) == 1
    assert contract_io.count_zip_archives(one + _zip_with("b.json", "{}")) == 2
    # the signature alone, as model weights may hold it by chance, is not an archive
    weights = b"\x00" * 100 + b"PK\x05\x06" + b"\x00" * 40 + b"PK\x05\x06" + bytes(range(30))
    assert contract_io.count_zip_archives(weights) == 0
    assert contract_io.count_zip_archives(weights + one) == 1


# --------------------------------------------------------------------------------------------------
# TFLite (TensorFlow converts two tiny models once)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    from anyppg_edge.deploy import runtime as rt
    from anyppg_edge.deploy.export import metadata as md

    try:
        md._tflite_support()
    except ImportError as e:
        pytest.skip(str(e))

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.constant(np.random.default_rng(0).normal(0, 0.05, (L, EMB)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([1, 1, L], tf.float32)])
        def __call__(self, x):
            return tf.tanh(tf.matmul(tf.reshape(x, [1, L]), self.w))

    module = Tiny()
    cf = module.__call__.get_concrete_function()
    d = tmp_path_factory.mktemp("sanity_tflite")
    raw = {"float": d / "raw_float.tflite", "int8": d / "raw_int8.tflite"}
    raw["float"].write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([cf], module).convert())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([w.reshape(1, 1, L)] for w in _zscored(16, 1))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    raw["int8"].write_bytes(conv.convert())

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(raw["int8"]))
    q_in, q_out = rt._tensor_quant(it.get_input_details()[0]), rt._tensor_quant(it.get_output_details()[0])
    out = {}
    for name, src, kind, quant in [
        ("float", "float", "tflite-float", {}),
        ("int8", "int8", "tflite-int8", {"input_quant": q_in, "output_quant": q_out}),
        # the writer checks shapes and I/O quantization, not the kind: these files can exist
        ("int8_claims_float", "int8", "tflite-float", {"input_quant": q_in, "output_quant": q_out}),
        ("float_claims_int8", "float", "tflite-int8", {}),
    ]:
        c = InputContract.for_model("tiny-tf", kind, EMB, SHA, **quant)
        out[name] = md.write_tflite_metadata(raw[src], c, d / f"{name}.tflite")
    return out


def test_tflite_contract_kind_must_match_the_model(tflite_files):
    from anyppg_edge.deploy.runtime import open_encoder

    assert open_encoder(tflite_files["float"]).kind == "tflite-float"
    assert open_encoder(tflite_files["int8"]).kind == "tflite-int8"
    with pytest.raises(ContractMismatchError, match=r"says artifact_kind 'tflite-float'.*has int8 tensors"):
        open_encoder(tflite_files["int8_claims_float"])
    with pytest.raises(ContractMismatchError, match=r"says artifact_kind 'tflite-int8'.*has no int8 tensor"):
        open_encoder(tflite_files["float_claims_int8"])


def test_tflite_second_archive_is_refused(tflite_files, tmp_path):
    from anyppg_edge.deploy.runtime import open_encoder

    good = tflite_files["float"]
    spoof = dataclasses.replace(contract_io.read_contract(good), model_name="spoofed")
    bad = tmp_path / "two_archives.tflite"
    bad.write_bytes(good.read_bytes() + _zip_with(contract_io.CONTRACT_FILE_NAME, spoof.to_json()))
    assert zipfile.ZipFile(bad).read(contract_io.CONTRACT_FILE_NAME)  # zipfile alone would read the spoof
    for call in (lambda: contract_io.read_tflite_contract_zip(bad), lambda: open_encoder(bad)):
        with pytest.raises(ContractMismatchError, match="2 appended zip archives"):
            call()


@pytest.mark.parametrize("name", ["float", "int8"])
def test_tflite_input_checks(tflite_files, name):
    from anyppg_edge.deploy.runtime import open_encoder

    enc = open_encoder(tflite_files[name])
    x = _zscored(2).astype(np.float64)
    assert np.isfinite(enc.embed(x)).all()
    x[0, 3] = 1e300
    with pytest.raises(InvalidSignalError, match="overflow float32"):
        enc.embed(x)
    with pytest.raises(InvalidSignalError, match="not z-scored"):
        enc.embed(30000 + 500 * _zscored(1))
