"""The generated C99 int8 encoder (issue 18, part 1): bit-identical to TensorFlow Lite Micro on real
windows (embeddings, the QUANTIZE'd model input, and every op's int8 output tensor), within the int8
tolerance row of the float model, warning-free under -Werror, clean under ASan + UBSan, integer-only
inside the network, no heap, and an op it has no kernel for refused by name.

The model is the watch student (student-watch-slim) with real-window BN statistics and PTQ on real
windows of ../shared, as in test_tflm.py. Compile steps skip when no C compiler is installed, except
under CI=true, where that is a failure."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections import defaultdict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from anyppg_edge.deploy.export.c_encoder import (  # noqa: E402
    CEncoder,
    build_host_driver,
    build_host_library,
    compile_object,
    generate_c_encoder,
    logistic_table,
    object_sizes,
    quantize_multiplier,
    run_host_driver,
)
from anyppg_edge.deploy.parity.tolerances import embedding_parity, tolerance_failures  # noqa: E402
from anyppg_edge.deploy.quantize import float_embeddings  # noqa: E402
from anyppg_edge.deploy.runtime import TflmEncoder  # noqa: E402
from anyppg_edge.deploy.tflm import tflm_interpreter  # noqa: E402
from anyppg_edge.errors import UnknownNameError  # noqa: E402

WATCH_FLASH = 200 * 1024


@pytest.fixture(scope="module")
def cc() -> str:
    from prerequisites import require

    exe = shutil.which(os.environ.get("CC", "gcc"))
    require(exe, "no C compiler (gcc) on PATH")
    return exe


@pytest.fixture(scope="module")
def generated(slim_int8, tmp_path_factory):
    out = tmp_path_factory.mktemp("c_encoder")
    return generate_c_encoder(slim_int8[1], out), out


@pytest.fixture(scope="module")
def c_encoder(generated, cc):
    _, out = generated
    return CEncoder(build_host_library(out, cc=cc))


def _tflm_submodel(path, keep_ops, outputs, inputs=None, shapes=None):
    """TFLM interpreter for ``path`` cut to the ops ``keep_ops`` with graph ``outputs`` (and ``inputs``;
    ``shapes`` overrides tensor shapes); no offline arena plan (the lifetimes change)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    g = m.subgraphs[0]
    g.operators = [g.operators[k] for k in keep_ops]
    g.outputs = list(outputs)
    if inputs is not None:
        g.inputs = list(inputs)
    for t, shape in (shapes or {}).items():
        g.tensors[t].shape = np.array(shape, np.int32)
        g.tensors[t].shapeSignature = None
    m.metadata = [md for md in m.metadata if md.name != b"OfflineMemoryAllocation"]
    it, _, _ = tflm_interpreter(bytes(fu.convert_object_to_bytearray(m)), arena_bytes=4 << 20)
    return it


def test_embeddings_bit_identical_to_tflm_and_within_int8_tolerance(slim_int8, generated, c_encoder, ieee_windows):
    model, path = slim_int8
    report, _ = generated
    x = ieee_windows
    z_tflm = TflmEncoder(path, arena_bytes=1 << 20).embed(x)
    z_c = c_encoder.embed(x)
    assert np.array_equal(z_c, z_tflm)  # float embeddings, bit for bit
    # int8: the C network on the C-quantized input vs TFLM's int8 output (DEQUANTIZE is exact to invert)
    s, zp = report["output_quant"]["scale"], report["output_quant"]["zero_point"]
    q_tflm = np.round(z_tflm.astype(np.float64) / s).astype(np.int64) + zp
    q_c = c_encoder.encode_int8(c_encoder.quantize(x)).astype(np.int64)
    assert np.array_equal(q_c, q_tflm)
    # the model input: C's QUANTIZE vs TFLM's QUANTIZE op
    it = _tflm_submodel(path, [0], [_quantize_output(path)])
    for w, qc in zip(x, c_encoder.quantize(x), strict=True):
        it.set_input(w.reshape(1, 1, -1), 0)
        it.invoke()
        assert np.array_equal(np.asarray(it.get_output(0)).reshape(-1), qc)
    # vs the float model: the int8 row
    assert not tolerance_failures("tflite-int8", embedding_parity(float_embeddings(model, x[:, None]), z_c))


def _quantize_output(path) -> int:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    return int(m.subgraphs[0].operators[0].outputs[0])


def _op_names(path) -> tuple[list[str], object]:
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[max(oc.builtinCode, oc.deprecatedBuiltinCode)] for oc in m.operatorCodes]
    return [codes[op.opcodeIndex] for op in m.subgraphs[0].operators], m


def test_every_op_output_bit_identical_to_tflm(slim_int8, generated, cc, ieee_windows):
    """Each op's int8 output tensor, C (trace build) vs TFLM (every activation made a graph output),
    on the same int8 model input: max |diff| per op type, in int8 steps, is 0."""
    _, path = slim_int8
    _, out = generated
    enc = CEncoder(build_host_library(out, cc=cc, trace=True))
    names, m = _op_names(path)
    g = m.subgraphs[0]
    int8_out = [(int(op.outputs[0]), names[k]) for k, op in enumerate(g.operators) if g.tensors[int(op.outputs[0])].type == 9]
    it = _tflm_submodel(path, range(len(g.operators)), [t for t, _ in int8_out])
    worst: dict[str, int] = defaultdict(int)
    checked: dict[str, int] = defaultdict(int)
    for w in ieee_windows[:6]:
        it.set_input(w.reshape(1, 1, -1), 0)
        it.invoke()
        ref = {t: np.asarray(it.get_output(i)).reshape(-1).astype(int) for i, (t, _) in enumerate(int8_out)}
        got = enc.trace(ref[int8_out[0][0]].astype(np.int8))  # the C network fed TFLM's QUANTIZE output
        for t, op in int8_out[1:]:
            if op == "RESHAPE":
                continue
            worst[op] = max(worst[op], int(np.abs(got[t].astype(int) - ref[t]).max()))
            checked[op] += 1
    assert set(checked) == {"ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD"}
    assert dict(worst) == dict.fromkeys(checked, 0), dict(worst)


def test_logistic_tables_match_tflm_on_all_256_inputs(slim_int8):
    """The generation-time fixed-point sigmoid (gemmlowp arithmetic, TFLM's input rescaling) equals
    TFLM's LOGISTIC on every int8 input, for every LOGISTIC op of the model (one TFLM run)."""
    _, path = slim_int8
    names, m = _op_names(path)
    g = m.subgraphs[0]
    ks = [k for k, n in enumerate(names) if n == "LOGISTIC"]
    ins = [int(g.operators[k].inputs[0]) for k in ks]
    outs = [int(g.operators[k].outputs[0]) for k in ks]
    it = _tflm_submodel(path, ks, outs, inputs=ins, shapes={t: [1, 1, 256, 1] for t in ins + outs})
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256, 1)
    for i in range(len(ins)):
        it.set_input(x, i)
    it.invoke()
    for i, t in enumerate(ins):
        q = g.tensors[t].quantization
        table = logistic_table(float(q.scale[0]), int(q.zeroPoint[0]))
        assert np.array_equal(np.asarray(it.get_output(i)).reshape(-1), table), f"LOGISTIC {i}"


def test_builds_clean_integer_only_no_heap_and_reports_memory(generated, c_encoder, cc, ieee_windows, tmp_path):
    report, out = generated
    obj = compile_object(out, "anyppg_model.c", tmp_path / "model.o", cc=cc)
    io_obj = compile_object(out, "anyppg_io.c", tmp_path / "io.o", cc=cc)
    nm = shutil.which("nm")
    assert nm, "binutils nm"
    syms = subprocess.run([nm, str(obj)], capture_output=True, text=True, check=True).stdout
    undefined = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    assert not any(s in syms.split() for s in ("malloc", "free", "calloc", "realloc")) and undefined == []
    io_undef = subprocess.run([nm, "-u", str(io_obj)], capture_output=True, text=True, check=True).stdout.split()
    assert {u for u in io_undef if u != "U"} <= {"anyppg_input", "anyppg_output", "anyppg_invoke"}
    if platform.machine() in ("x86_64", "AMD64"):  # the int8 network compiles without FP/SIMD registers
        compile_object(out, "anyppg_model.c", tmp_path / "gr.o", cc=cc, flags=("-O2", "-mgeneral-regs-only"))
    sizes = object_sizes(obj)
    assert sizes["bss"] == report["arena_bytes"] and sizes["data"] == 0  # the arena is the only RAM
    assert report["weight_and_bias_bytes"] < sizes["flash"] < WATCH_FLASH
    print(f"\nmodel object: flash {sizes['flash']:,} B (text+rodata), static arena {report['arena_bytes']:,} B")
    # ASan + UBSan through the host driver: same embeddings and int8 inputs as the shared library
    exe = build_host_driver(out, tmp_path / "drv_asan", cc=cc, sanitize=True)
    x = ieee_windows[:12]
    emb, q = run_host_driver(exe, x, report["embed_dim"], tmp_path)
    assert np.array_equal(emb, c_encoder.embed(x)) and np.array_equal(q, c_encoder.quantize(x))


def test_arena_is_the_lifetime_plan_of_the_int8_network(generated):
    """The static arena is the lifetime plan of the int8 network alone (the float window and
    embedding stay in the caller's buffers): at least the peak of live activations, at most the
    whole graph's offline plan (TFLM's head with that plan)."""
    from anyppg_edge.deploy.export.schedule import ActivationGraph, plan_offsets, read_model

    report, _ = generated
    model = read_model(open(report["model"], "rb").read())
    g = ActivationGraph(model)
    order = list(range(g.n))
    assert g.peak(order) <= report["arena_bytes"] <= plan_offsets(g, order)[1]
    assert report["ops"]["CONV_2D"] > 0 and report["macs"] > 1_000_000 and report["embed_dim"] == 112


def test_an_op_without_kernel_is_refused_by_name(slim_int8, tmp_path):
    from ai_edge_litert import schema_py_generated as s
    from ai_edge_litert.tools import flatbuffer_utils as fu

    _, path = slim_int8
    m = fu.read_model_from_bytearray(bytearray(path.read_bytes()))
    oc = s.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.HARD_SWISH
    oc.version = 1
    m.operatorCodes.append(oc)
    names, _ = _op_names(path)
    m.subgraphs[0].operators[names.index("LOGISTIC")].opcodeIndex = len(m.operatorCodes) - 1
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(fu.convert_object_to_bytearray(m)))
    with pytest.raises(UnknownNameError, match="HARD_SWISH"):
        generate_c_encoder(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_quantize_multiplier_follows_tflite():
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (3 << 29, 0)
    assert quantize_multiplier(2.0**-40) == (0, 0)  # below 2^-31: all bits would shift out
    m, e = quantize_multiplier(1.0 - 2.0**-40)  # rounds up to 2^31: halved, shift + 1
    assert (m, e) == (1 << 30, 1)


def test_cli_writes_the_sources(slim_int8, tmp_path):
    from anyppg_edge.cli.export import main

    assert main(["c", str(slim_int8[1]), "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["anyppg_encoder.h", "anyppg_io.c", "anyppg_model.c"]
