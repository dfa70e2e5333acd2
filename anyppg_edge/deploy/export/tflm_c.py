"""Firmware-ready TensorFlow Lite Micro output for one ``.tflite`` artifact (issue 17, item 4).

:func:`write_tflm_project` writes, into one folder, what a TFLM firmware project needs to run the
encoder:

* ``model_data.h`` / ``model_data.cc``: the whole ``.tflite`` file (contract appendix included, which
  TFLM ignores) as an ``alignas(16) const unsigned char`` array and its length;
* ``model_ops.h``: ``kAnyppgOpCount`` and ``AnyppgRegisterOps()``, which registers exactly the
  model's builtin ops on a ``tflite::MicroMutableOpResolver<kAnyppgOpCount>``;
* ``model_config.h``: the arena size measured by the host's TFLM allocator
  (:func:`anyppg_edge.deploy.tflm.measure_arena`), the I/O sizes and quantization read from the
  model's own tensors (checked against its input contract), and the input contract as a comment;
* ``main.cc``: a minimal example that allocates, invokes and dequantizes one window;
* ``README.md``: how to drop the files into a TFLM project, with the same figures.

Everything is rendered from one :class:`TflmProject` collected from the artifact, so the numbers in
the headers, the example and the README cannot disagree. The op-name table
(:data:`TFLM_RESOLVER_METHODS`) is explicit: an op it does not list is refused by name, never
guessed.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anyppg_edge import __version__
from anyppg_edge.contract import InputContract
from anyppg_edge.errors import ContractMismatchError, DataFormatError, MissingFileError, UnknownNameError

__all__ = [
    "TFLM_RESOLVER_METHODS",
    "TflmProject",
    "collect_tflm_project",
    "render_tflm_project",
    "resolver_method",
    "symbol_for",
    "write_tflm_project",
]

# TFLite builtin operator (schema name) -> tflite::MicroMutableOpResolver method that registers it.
# Transcribed from tensorflow/tflite-micro's tensorflow/lite/micro/micro_mutable_op_resolver.h (2025;
# the builtin Add* methods only: custom ops such as the signal library are not builtins). Each method
# takes an optional registration (an optimised kernel, e.g. CMSIS-NN's) and returns TfLiteStatus.
TFLM_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}

_WIDTH = 100  # comment lines are wrapped here
FILES = ("model_data.h", "model_data.cc", "model_ops.h", "model_config.h", "main.cc", "README.md")
_BYTES_PER_LINE = 12


def resolver_method(op_name: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers the TFLite builtin ``op_name``; an op the
    table does not hold (a custom op, or one TFLM has no builtin kernel for) is refused by name."""
    method = TFLM_RESOLVER_METHODS.get(op_name)
    if method is None:
        raise UnknownNameError(
            f"TFLite op {op_name!r} has no tflite::MicroMutableOpResolver method in anyppg-edge's table "
            "(a custom op, or no builtin TFLM kernel): re-export the model without it, or register it by hand"
        )
    return method


def symbol_for(model_name: str, artifact_kind: str) -> str:
    """C identifier of the model array: ``g_<model name>_<int8|float>_model_data``, every run of
    characters outside ``[A-Za-z0-9]`` made one underscore (no leading digit, no double underscore)."""
    kind = "int8" if artifact_kind.endswith("int8") else "float"
    stem = re.sub(r"[^0-9A-Za-z]+", "_", model_name).strip("_").lower() or "model"
    return f"g_{stem}_{kind}_model_data"


# ----------------------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class TensorIO:
    """One model input/output as TFLM sees it: dtype (``int8``/``float32``), elements, quantization."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None
    zero_point: int | None

    @property
    def elements(self) -> int:
        n = 1
        for v in self.shape:
            n *= int(v)
        return n

    @property
    def is_int8(self) -> bool:
        return self.dtype == "int8"


@dataclass(frozen=True)
class OpUse:
    name: str  # TFLite builtin name
    method: str  # MicroMutableOpResolver method
    versions: tuple[int, ...]
    nodes: int


@dataclass(frozen=True)
class TflmProject:
    """Everything the generated files say, collected once from the artifact."""

    source: str  # file name of the .tflite
    model_bytes: bytes
    sha256: str
    symbol: str
    contract: InputContract
    input: TensorIO
    output: TensorIO
    model_is_int8: bool
    schema_version: int
    ops: tuple[OpUse, ...]
    grouped_conv2d: int
    min_runtime_version: str
    op_note: str
    arena: Any  # anyppg_edge.deploy.tflm.ArenaReport
    tflm_version: str
    # int8 quantization at the model's boundary ops when its I/O is float: the QUANTIZE output and the
    # DEQUANTIZE input ((scale, zero point), None for int8 I/O or a float model)
    inner_input_quant: tuple[float, int] | None = None
    inner_output_quant: tuple[float, int] | None = None

    @property
    def guard(self) -> str:
        return self.symbol.upper().removeprefix("G_").removesuffix("_MODEL_DATA")

    def contract_rows(self) -> list[tuple[str, str]]:
        """(field, value) of the input contract as the comment block and the README print it."""
        c, cfg = self.contract, self.contract.preprocess
        rows = [
            ("model", f"{c.model_name} ({c.artifact_kind}, anyppg-edge {c.model_version})"),
            ("embedding", f"{c.embedding_dim} values ({self.output.dtype})"),
            ("sample rate", f"{c.sample_rate_hz} Hz"),
            ("window", f"{c.window_s:g} s = {c.window_samples} samples, one channel (PPG)"),
            ("band-pass filter", c.filter or f"PPG band {cfg.get('ppg_band_hz')} Hz, order {cfg.get('ppg_filter_order')}"),
            ("normalization", c.normalization or f"per-window z-score, eps {cfg.get('zscore_eps')}"),
            ("input", _io_text(self.input, "QUANTIZE")),
            ("output", _io_text(self.output, "DEQUANTIZE")),
            ("preprocess config sha256", c.preprocess_config_hash),
            ("source checkpoint sha256", c.source_checkpoint_sha256),
            ("tflite file", f"{self.source}, {len(self.model_bytes):,} B, sha256 {self.sha256}"),
            ("tflite-micro checked", f"{self.tflm_version} (host build, reference kernels)"),
            ("min runtime version", self.min_runtime_version or "not recorded"),
            ("ops (nodes)", ", ".join(f"{o.name}({o.nodes})" for o in self.ops)),
            ("grouped CONV_2D", self.op_note),
        ]
        return rows

    def to_report(self, out_dir: Path) -> dict[str, Any]:
        return {
            "out_dir": str(out_dir),
            "files": [str(out_dir / f) for f in FILES],
            "source": self.source,
            "sha256": self.sha256,
            "model_bytes": len(self.model_bytes),
            "symbol": self.symbol,
            "model_name": self.contract.model_name,
            "artifact_kind": self.contract.artifact_kind,
            "input": asdict(self.input),
            "output": asdict(self.output),
            "ops": {o.name: o.method for o in self.ops},
            "op_count": len(self.ops),
            "grouped_conv2d": self.grouped_conv2d,
            "min_runtime_version": self.min_runtime_version,
            "arena": self.arena.to_dict(),
            "arena_summary": self.arena.summary(),
            "tflm_version": self.tflm_version,
        }


def _io_text(t: TensorIO, boundary_op: str) -> str:
    if t.is_int8:
        return f"{t.dtype} {list(t.shape)}, scale {_c_float(t.scale)[:-1]}, zero point {t.zero_point}"
    return f"{t.dtype} {list(t.shape)} (float I/O: the model runs {boundary_op} itself)"


def _boundary_quant(buf: bytes) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """(scale, zero point) of the int8 tensor after the graph input's QUANTIZE and before the graph
    output's DEQUANTIZE: what a float-I/O int8 model computes on at its ends."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(buf, 0)
    g = m.Subgraphs(0)
    gin, gout = g.Inputs(0), g.Outputs(0)

    def quant(idx: int) -> tuple[float, int] | None:
        q = g.Tensors(idx).Quantization()
        if g.Tensors(idx).Type() != s.TensorType.INT8 or q is None or q.ScaleLength() == 0:
            return None
        return float(q.Scale(0)), int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0

    qin = qout = None
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if name == s.BuiltinOperator.QUANTIZE and op.Inputs(0) == gin:
            qin = quant(op.Outputs(0))
        if name == s.BuiltinOperator.DEQUANTIZE and op.Outputs(0) == gout:
            qout = quant(op.Inputs(0))
    return qin, qout


def _io_tensors(buf: bytes) -> tuple[TensorIO, TensorIO, int]:
    from ai_edge_litert import schema_py_generated as s

    try:
        m = s.Model.GetRootAs(buf, 0)
        g = m.Subgraphs(0)
        n_in, n_out = g.InputsLength(), g.OutputsLength()
    except Exception as e:  # flatbuffers raises struct/index errors on a foreign file
        raise DataFormatError(f"not a readable TFLite flatbuffer: {e}") from e
    if (n_in, n_out) != (1, 1):
        raise DataFormatError(f"expected one input and one output tensor, the model has {n_in} and {n_out}")
    types = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}

    def io(index: int) -> TensorIO:
        t = g.Tensors(index)
        shape = t.ShapeAsNumpy()
        q = t.Quantization()
        quantized = q is not None and q.ScaleLength() > 0
        return TensorIO(
            (t.Name() or b"").decode(),
            types.get(t.Type(), f"type{t.Type()}"),
            tuple(int(v) for v in shape) if not isinstance(shape, int) else (),
            float(q.Scale(0)) if quantized else None,
            int(q.ZeroPoint(0)) if quantized and q.ZeroPointLength() > 0 else (0 if quantized else None),
        )

    return io(g.Inputs(0)), io(g.Outputs(0)), int(m.Version())


def _check_io(path: Path, c: InputContract, t: TensorIO, q: Any, what: str, elements: int) -> None:
    problems = []
    if t.dtype not in ("int8", "float32"):
        problems.append(f"{what} tensor is {t.dtype}; the generated example handles int8 and float32")
    if t.elements != elements:
        problems.append(f"{what} tensor has {t.elements} values, the contract says {elements}")
    if t.is_int8 and t.scale is None:
        problems.append(f"{what} tensor is int8 without quantization parameters")
    if t.is_int8 != (q is not None):
        problems.append(f"{what} tensor is {t.dtype} but the contract's {what}_quant is {q!r}")
    elif q is not None and t.scale is not None and (
        abs(q.scale - t.scale) > 1e-6 * abs(t.scale) or q.zero_point != t.zero_point
    ):
        problems.append(
            f"{what} quantization: model scale {t.scale!r}, zero point {t.zero_point}; contract {q.scale!r}, {q.zero_point}"
        )
    if problems:
        raise ContractMismatchError(
            f"{path}: the model and its input contract disagree: " + "; ".join(problems) + ". Re-export the artifact"
        )


def collect_tflm_project(tflite_path: str | Path) -> TflmProject:
    """Read, check and measure the artifact: contract, I/O tensors, ops (each mapped to its resolver
    method), and the smallest arena TFLM allocates it in."""
    from anyppg_edge.deploy.contract_io import read_tflite_contract_zip
    from anyppg_edge.deploy.tflm import measure_arena, op_requirements, tflm_version

    path = Path(tflite_path)
    if not path.is_file():
        raise MissingFileError(f"TFLite model not found: {path}")
    if path.suffix.lower() != ".tflite":
        raise DataFormatError(f"{path}: `export tflm` takes a .tflite model, got {path.suffix or 'no suffix'!r}")
    try:
        contract = read_tflite_contract_zip(path)
    except ContractMismatchError as e:
        raise ContractMismatchError(
            f"{e}. The firmware headers are generated from the artifact's input contract: export the model with "
            "`python -m export all` (or attach a contract with anyppg_edge.deploy.export.metadata.write_tflite_metadata)"
        ) from e
    if contract.artifact_kind not in ("tflite-int8", "tflite-float"):
        raise ContractMismatchError(f"{path}: its contract says {contract.artifact_kind!r}, not a TFLite artifact")
    buf = path.read_bytes()
    inp, out, schema_version = _io_tensors(buf)
    _check_io(path, contract, inp, contract.input_quant, "input", contract.window_samples)
    _check_io(path, contract, out, contract.output_quant, "output", contract.embedding_dim)
    req = op_requirements(buf)
    if req.custom_ops:
        raise UnknownNameError(
            f"{path} holds custom ops {req.custom_ops}: TFLM has no builtin kernel for them; re-export without them"
        )
    ops = tuple(OpUse(n, resolver_method(n), tuple(v), req.counts[n]) for n, v in req.ops.items())
    arena = measure_arena(buf)
    inner_in, inner_out = _boundary_quant(buf)
    return TflmProject(
        source=path.name,
        model_bytes=buf,
        sha256=hashlib.sha256(buf).hexdigest(),
        symbol=symbol_for(contract.model_name, contract.artifact_kind),
        contract=contract,
        input=inp,
        output=out,
        model_is_int8=contract.artifact_kind == "tflite-int8",
        schema_version=schema_version,
        ops=ops,
        grouped_conv2d=req.grouped_conv2d,
        min_runtime_version=req.min_runtime_version,
        op_note=req.note,
        arena=arena,
        tflm_version=tflm_version(),
        inner_input_quant=None if inp.is_int8 else inner_in,
        inner_output_quant=None if out.is_int8 else inner_out,
    )


# ------------------------------------------------------------------------------------- rendering


def _c_float(v: float | None) -> str:
    """A C++ float literal of ``v`` as float32: the shortest decimal that parses back to the same
    float32 (numpy's float32 repr), so the constant equals the model's own scale exactly."""
    import math

    import numpy as np

    f = np.float32(v or 0.0)
    if not math.isfinite(float(f)):
        raise DataFormatError(f"non-finite quantization scale {v!r} in the model")
    text = str(f)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def _comment(text: str, prefix: str = "// ", width: int = _WIDTH) -> list[str]:
    """``text`` as ``//`` lines wrapped at ``width`` columns; a trailing backslash (a line splice in
    C++) is dropped."""
    out = []
    for line in str(text).splitlines() or [""]:
        for part in textwrap.wrap(line, width - len(prefix), break_on_hyphens=False) or [""]:
            out.append((prefix + part).rstrip().rstrip("\\").rstrip())
    return out


def _banner(d: TflmProject, what: str) -> list[str]:
    return [
        f"// {what}",
        f"// Generated by anyppg-edge {__version__} (`python -m export tflm {d.source} --out DIR`)",
        f"// from {d.source}, sha256 {d.sha256}.",
        "// Do not edit: regenerate.",
    ]


def _model_data_h(d: TflmProject) -> str:
    g = f"ANYPPG_{d.guard}_MODEL_DATA_H_"
    return "\n".join([
        *_banner(d, f"The {d.contract.model_name} encoder ({d.contract.artifact_kind}) as a C array."),
        f"#ifndef {g}",
        f"#define {g}",
        "",
        "// The .tflite flatbuffer, 16-byte aligned, byte for byte (its metadata appendix included: TFLM",
        "// ignores it). Keep it in flash: tflite::GetModel() reads it in place.",
        f"extern const unsigned char {d.symbol}[];",
        f"extern const unsigned int {d.symbol}_len;  // {len(d.model_bytes)} bytes",
        "",
        f"#endif  // {g}",
        "",
    ])


def _model_data_cc(d: TflmProject) -> str:
    b = d.model_bytes
    rows = [
        "  " + ", ".join(f"0x{x:02x}" for x in b[i : i + _BYTES_PER_LINE]) + ","
        for i in range(0, len(b), _BYTES_PER_LINE)
    ]
    return "\n".join([
        *_banner(d, f"The {d.contract.model_name} encoder ({d.contract.artifact_kind}) as a C array."),
        '#include "model_data.h"',
        "",
        f"alignas(16) const unsigned char {d.symbol}[] = {{",
        *rows,
        "};",
        f"const unsigned int {d.symbol}_len = {len(b)};",
        "",
    ])


def _model_ops_h(d: TflmProject) -> str:
    g = f"ANYPPG_{d.guard}_MODEL_OPS_H_"
    body = []
    for i, o in enumerate(d.ops):
        vers = ", ".join(str(v) for v in o.versions)
        call = f"resolver.{o.method}();"
        body.append(f"  {'TfLiteStatus status = ' if i == 0 else 'status = '}{call}  // {o.name}: {o.nodes} node(s), op version {vers}")
        body.append("  if (status != kTfLiteOk) return status;")
    if not body:
        body = ["  (void)resolver;"]
    return "\n".join([
        *_banner(d, f"The builtin ops of {d.contract.model_name}: register exactly these."),
        f"#ifndef {g}",
        f"#define {g}",
        "",
        '#include "tensorflow/lite/c/common.h"',
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        *_comment(d.op_note),
        f"constexpr int kAnyppgOpCount = {len(d.ops)};",
        "",
        "// Registers the model's ops on `resolver`, stopping at the first failure. Pass an optimised",
        "// registration (e.g. a CMSIS-NN kernel) to a method by hand to replace a reference kernel.",
        "inline TfLiteStatus AnyppgRegisterOps(tflite::MicroMutableOpResolver<kAnyppgOpCount>& resolver) {",
        *body,
        "  return kTfLiteOk;",
        "}",
        "",
        f"#endif  // {g}",
        "",
    ])


def _model_config_h(d: TflmProject) -> str:
    g = f"ANYPPG_{d.guard}_MODEL_CONFIG_H_"
    a, c = d.arena, d.contract
    contract_block = ["// Input contract (what a window must look like before it is fed):"]
    key_width = max(len(k) for k, _ in d.contract_rows()) + 1
    for k, v in d.contract_rows():
        indent = "//   " + " " * (key_width + 1)
        for i, line in enumerate(_comment(v, indent)):
            contract_block.append(f"//   {k + ':':<{key_width}} " + line[len(indent):] if i == 0 else line)
    io_lines = []
    for t, what in ((d.input, "Input"), (d.output, "Output")):
        io_lines += [
            f"constexpr bool kAnyppg{what}IsInt8 = {'true' if t.is_int8 else 'false'};",
            f"constexpr float kAnyppg{what}Scale = {_c_float(t.scale)};"
            + ("" if t.is_int8 else "  // unused: float tensor"),
            f"constexpr int32_t kAnyppg{what}ZeroPoint = {t.zero_point or 0};"
            + ("" if t.is_int8 else "  // unused: float tensor"),
        ]
    float_io_note = (
        [
            "// Float I/O: the int8 model QUANTIZEs its input and DEQUANTIZEs its output inside (ops QUANTIZE /",
            "// DEQUANTIZE); feed float32 and read float32. The int8 quantization at those two ops (what the",
            "// network computes on; e.g. to quantize a window on the way in from a fixed-point front end):",
            *(
                [f"constexpr float kAnyppgModelInputScale = {_c_float(d.inner_input_quant[0])};",
                 f"constexpr int32_t kAnyppgModelInputZeroPoint = {d.inner_input_quant[1]};"]
                if d.inner_input_quant else []
            ),
            *(
                [f"constexpr float kAnyppgModelOutputScale = {_c_float(d.inner_output_quant[0])};",
                 f"constexpr int32_t kAnyppgModelOutputZeroPoint = {d.inner_output_quant[1]};"]
                if d.inner_output_quant else []
            ),
        ]
        if d.model_is_int8 and not (d.input.is_int8 or d.output.is_int8)
        else []
    )
    zscore_eps = float(c.preprocess.get("zscore_eps", 0.0))
    return "\n".join([
        *_banner(d, f"Sizes, quantization and the input contract of {c.model_name} for TFLM."),
        f"#ifndef {g}",
        f"#define {g}",
        "",
        "#include <cstddef>",
        "#include <cstdint>",
        "",
        *contract_block,
        "",
        f"// Tensor arena: the smallest arena in which the host's 64-bit TFLM ({d.tflm_version},",
        "// reference kernels) allocates this model, found by bisection over its allocator:",
        f"//   head {a.head_bytes} B (activation plan) + tail {a.tail_bytes} B (persistent: quantization",
        f"//   data, node structs, eval tensors); recording allocator total {a.total_bytes} B.",
        f"// On a 32-bit MCU pointer-sized structs shrink: about {a.mcu32_bytes} B (an upper bound).",
        "// Optimised kernels (CMSIS-NN) may ask for scratch buffers of their own: check",
        "// interpreter.arena_used_bytes() on the target.",
        f"constexpr size_t kAnyppgArenaBytes = {a.min_arena_bytes};",
        "",
        f"constexpr int kAnyppgSampleRateHz = {c.sample_rate_hz};",
        f"constexpr int kAnyppgInputLength = {d.input.elements};  // samples per window ({c.window_s:g} s)",
        f"constexpr int kAnyppgEmbeddingDim = {d.output.elements};",
        f"constexpr float kAnyppgZscoreEps = {_c_float(zscore_eps)};",
        *float_io_note,
        *io_lines,
        "",
        f"#endif  // {g}",
        "",
    ])


def _main_cc(d: TflmProject) -> str:
    fill = (
        [
            "  // Quantize with the input tensor's scale and zero point (round half away from zero, saturate).",
            "  for (int i = 0; i < kAnyppgInputLength; ++i) {",
            "    const long q = std::lround(window[i] / kAnyppgInputScale) + kAnyppgInputZeroPoint;",
            "    input->data.int8[i] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));",
            "  }",
        ]
        if d.input.is_int8
        else [
            "  for (int i = 0; i < kAnyppgInputLength; ++i) input->data.f[i] = window[i];",
        ]
    )
    check_params = (
        [
            "  if (input->params.scale != kAnyppgInputScale || input->params.zero_point != kAnyppgInputZeroPoint ||",
            "      output->params.scale != kAnyppgOutputScale || output->params.zero_point != kAnyppgOutputZeroPoint) {",
            '    MicroPrintf("model_config.h does not belong to this model (I/O quantization differs)");',
            "    return 1;",
            "  }",
        ]
        if d.input.is_int8 and d.output.is_int8
        else [
            "  if (input->params.scale != kAnyppgInputScale || input->params.zero_point != kAnyppgInputZeroPoint) {",
            '    MicroPrintf("model_config.h does not belong to this model (input quantization differs)");',
            "    return 1;",
            "  }",
        ]
        if d.input.is_int8
        else [
            "  if (output->params.scale != kAnyppgOutputScale || output->params.zero_point != kAnyppgOutputZeroPoint) {",
            '    MicroPrintf("model_config.h does not belong to this model (output quantization differs)");',
            "    return 1;",
            "  }",
        ]
        if d.output.is_int8
        else []
    )
    read = (
        "    const float value = static_cast<float>(output->data.int8[i] - kAnyppgOutputZeroPoint) * kAnyppgOutputScale;"
        if d.output.is_int8
        else "    const float value = output->data.f[i];"
    )
    c_types = {True: ("kTfLiteInt8", "int8_t"), False: ("kTfLiteFloat32", "float")}
    in_t, out_t = c_types[d.input.is_int8], c_types[d.output.is_int8]
    return "\n".join([
        *_banner(d, f"Minimal TFLM example for {d.contract.model_name}: allocate, fill one window, invoke, dequantize."),
        "#include <cmath>",
        "#include <cstddef>",
        "#include <cstdint>",
        "",
        '#include "model_config.h"',
        '#include "model_data.h"',
        '#include "model_ops.h"',
        '#include "tensorflow/lite/c/common.h"',
        '#include "tensorflow/lite/micro/micro_interpreter.h"',
        '#include "tensorflow/lite/micro/micro_log.h"',
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        '#include "tensorflow/lite/micro/system_setup.h"',
        '#include "tensorflow/lite/schema/schema_generated.h"',
        "",
        "namespace {",
        "",
        "// The tensor arena: the measured minimum (model_config.h), 16-byte aligned.",
        "alignas(16) uint8_t g_tensor_arena[kAnyppgArenaBytes];",
        "float g_window[kAnyppgInputLength];",
        "",
        "// Placeholder window: a synthetic 72-bpm pulse, z-scored as the contract requires. Replace it with a",
        "// real PPG window: band-passed and resampled to kAnyppgSampleRateHz as model_config.h describes, then",
        "// z-scored here.",
        "void FillWindow(float* window) {",
        "  constexpr float kTwoPi = 6.28318530718f;",
        "  double sum = 0.0;",
        "  for (int i = 0; i < kAnyppgInputLength; ++i) {",
        "    const float t = static_cast<float>(i) / static_cast<float>(kAnyppgSampleRateHz);",
        "    window[i] = std::sin(kTwoPi * 1.2f * t) + 0.3f * std::sin(kTwoPi * 2.4f * t);",
        "    sum += window[i];",
        "  }",
        "  const double mean = sum / kAnyppgInputLength;",
        "  double var = 0.0;",
        "  for (int i = 0; i < kAnyppgInputLength; ++i) var += (window[i] - mean) * (window[i] - mean);",
        "  const double sd = std::sqrt(var / kAnyppgInputLength);  // population std",
        "  for (int i = 0; i < kAnyppgInputLength; ++i) {",
        "    window[i] = static_cast<float>((window[i] - mean) / (sd + static_cast<double>(kAnyppgZscoreEps)));",
        "  }",
        "}",
        "",
        "}  // namespace",
        "",
        "int main() {",
        "  tflite::InitializeTarget();",
        f"  const tflite::Model* model = tflite::GetModel({d.symbol});",
        "  if (model->version() != TFLITE_SCHEMA_VERSION) {",
        '    MicroPrintf("model schema version %d, this TFLM reads %d", static_cast<int>(model->version()),',
        "                TFLITE_SCHEMA_VERSION);",
        "    return 1;",
        "  }",
        "  static tflite::MicroMutableOpResolver<kAnyppgOpCount> resolver;",
        "  if (AnyppgRegisterOps(resolver) != kTfLiteOk) {",
        '    MicroPrintf("op registration failed");',
        "    return 1;",
        "  }",
        "  static tflite::MicroInterpreter interpreter(model, resolver, g_tensor_arena, kAnyppgArenaBytes);",
        "  if (interpreter.AllocateTensors() != kTfLiteOk) {",
        '    MicroPrintf("AllocateTensors failed: arena of %u bytes too small?",',
        "                static_cast<unsigned>(kAnyppgArenaBytes));",
        "    return 1;",
        "  }",
        "  TfLiteTensor* input = interpreter.input(0);",
        "  TfLiteTensor* output = interpreter.output(0);",
        f"  if (input == nullptr || input->type != {in_t[0]} ||",
        f"      input->bytes != static_cast<size_t>(kAnyppgInputLength) * sizeof({in_t[1]}) || output == nullptr ||",
        f"      output->type != {out_t[0]} ||",
        f"      output->bytes != static_cast<size_t>(kAnyppgEmbeddingDim) * sizeof({out_t[1]})) {{",
        '    MicroPrintf("unexpected I/O tensors: model_config.h does not belong to this model");',
        "    return 1;",
        "  }",
        *check_params,
        "",
        "  FillWindow(g_window);",
        "  const float* window = g_window;",
        *fill,
        "  if (interpreter.Invoke() != kTfLiteOk) {",
        '    MicroPrintf("Invoke failed");',
        "    return 1;",
        "  }",
        "  for (int i = 0; i < kAnyppgEmbeddingDim; ++i) {",
        read,
        '    MicroPrintf("embedding[%d] = %f", i, static_cast<double>(value));',
        "  }",
        '  MicroPrintf("arena used %u of %u bytes", static_cast<unsigned>(interpreter.arena_used_bytes()),',
        "              static_cast<unsigned>(kAnyppgArenaBytes));",
        "  return 0;",
        "}",
        "",
    ])


def _md_cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _readme(d: TflmProject) -> str:
    a, c = d.arena, d.contract
    ops = [
        f"| {o.name} | `{o.method}()` | {', '.join(map(str, o.versions))} | {o.nodes} |" for o in d.ops
    ]
    contract = [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in d.contract_rows()]
    io = (
        f"int8 input (scale {_c_float(d.input.scale)[:-1]}, zero point {d.input.zero_point}): quantize the "
        "z-scored window with them, as `main.cc` does"
        if d.input.is_int8
        else "float32 input: write the z-scored window as floats"
        + (" (the model quantizes it itself)" if d.model_is_int8 else "")
    )
    io_out = (
        f"int8 output (scale {_c_float(d.output.scale)[:-1]}, zero point {d.output.zero_point}): "
        "dequantize `(q - zero_point) * scale`"
        if d.output.is_int8
        else "float32 output" + (" (the model dequantizes it itself)" if d.model_is_int8 else "")
    )
    return "\n".join([
        f"# {c.model_name} on TensorFlow Lite Micro",
        "",
        f"Generated by anyppg-edge {__version__} from `{d.source}` (sha256 `{d.sha256}`) with",
        f"`python -m export tflm {d.source} --out DIR`. Do not edit the files: regenerate them.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        f"| `model_data.h`, `model_data.cc` | the model, `{d.symbol}[]` ({len(d.model_bytes):,} B, "
        f"`alignas(16)`) and `{d.symbol}_len` |",
        f"| `model_ops.h` | `kAnyppgOpCount` ({len(d.ops)}) and `AnyppgRegisterOps()` for "
        "`tflite::MicroMutableOpResolver<kAnyppgOpCount>` |",
        "| `model_config.h` | `kAnyppgArenaBytes`, input length, embedding dim, I/O quantization, the input "
        "contract as a comment |",
        "| `main.cc` | a minimal example: allocate, fill one window, invoke, dequantize, print |",
        "",
        "## Drop it into a TFLM project",
        "",
        "1. Copy `model_data.h`, `model_data.cc`, `model_ops.h` and `model_config.h` into your sources and "
        "compile `model_data.cc` with them (C++17). TFLM's include root (the folder holding `tensorflow/`) "
        "must be on the include path.",
        f"2. Provide a 16-byte aligned arena of `kAnyppgArenaBytes` ({a.min_arena_bytes:,} B): "
        "`alignas(16) static uint8_t arena[kAnyppgArenaBytes];`.",
        "3. Build the resolver and the interpreter:",
        "",
        "```cpp",
        "static tflite::MicroMutableOpResolver<kAnyppgOpCount> resolver;",
        "if (AnyppgRegisterOps(resolver) != kTfLiteOk) { /* handle */ }",
        f"static tflite::MicroInterpreter interpreter(tflite::GetModel({d.symbol}), resolver, arena, kAnyppgArenaBytes);",
        "interpreter.AllocateTensors();",
        "```",
        "",
        f"4. Feed one window of `kAnyppgInputLength` ({d.input.elements}) samples: {io}.",
        f"5. `interpreter.Invoke()`, then read `kAnyppgEmbeddingDim` ({d.output.elements}) values: {io_out}.",
        "",
        "`main.cc` does all of this with a synthetic window; build it with your TFLM port to check the set-up.",
        "",
        "## Arena",
        "",
        f"{a.summary()}.",
        "",
        f"`kAnyppgArenaBytes` = {a.min_arena_bytes:,} B is the smallest arena in which the host's 64-bit TFLM "
        f"(tflite-micro {d.tflm_version}, reference kernels) allocates the model, found by bisection: head "
        f"{a.head_bytes:,} B (the activation plan) and tail {a.tail_bytes:,} B (per-channel quantization data, "
        f"node structs, eval tensors). On a 32-bit MCU the pointer-sized structs shrink: about "
        f"{a.mcu32_bytes:,} B. Optimised kernels (CMSIS-NN) may request scratch buffers of their own: check "
        "`interpreter.arena_used_bytes()` on the target.",
        "",
        "## Ops",
        "",
        "| TFLite op | resolver method | op versions | nodes |",
        "|---|---|---|---|",
        *ops,
        "",
        f"{d.op_note}.",
        "",
        "## Input contract",
        "",
        "| field | value |",
        "|---|---|",
        *contract,
        "",
    ])


_RENDERERS = {
    "model_data.h": _model_data_h,
    "model_data.cc": _model_data_cc,
    "model_ops.h": _model_ops_h,
    "model_config.h": _model_config_h,
    "main.cc": _main_cc,
    "README.md": _readme,
}


def render_tflm_project(d: TflmProject) -> dict[str, str]:
    """File name -> text of every generated file (nothing written)."""
    return {name: _RENDERERS[name](d) for name in FILES}


def write_tflm_project(tflite_path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Write the TFLM firmware files for ``tflite_path`` into ``out_dir`` (atomically, file by file)
    and return the report: files, symbol, ops → resolver methods, measured arena, I/O."""
    from anyppg_edge.io import atomic_write_text

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataFormatError(f"--out {out} is a file, not a folder")
    d = collect_tflm_project(tflite_path)
    for name, text in render_tflm_project(d).items():
        atomic_write_text(out / name, text)
    return d.to_report(out)
