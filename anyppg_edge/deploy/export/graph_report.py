"""Graph reports for exported artifacts: what ops a ``.tflite`` / ``.onnx`` file really contains.

Parsed straight from the files (the TFLite flatbuffer via ``ai_edge_litert.schema_py_generated``,
ONNX via ``onnx``); no interpreter or session is created, so a report never depends on which
delegate or graph optimisation a runtime would apply.

The TFLite report's key verdict is ``fully_int8``: no *float compute op*, i.e. no op other than
QUANTIZE/DEQUANTIZE that reads or writes a non-constant float tensor (float weights that an op
dequantizes internally do not count, float activations do), and all compute-op activations are
int8 (plus int32/int64/bool index and shape tensors). Float model I/O is allowed when it is
converted by QUANTIZE at the input and DEQUANTIZE at the output.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anyppg_edge.contract import CONTRACT_KEY
from anyppg_edge.errors import DataFormatError
from anyppg_edge.report import markdown_table

__all__ = ["graph_report_markdown", "onnx_graph_report", "tflite_graph_report"]

CONTRACT_FILE_NAME = f"{CONTRACT_KEY}.json"  # same as anyppg_edge.deploy.export.metadata.CONTRACT_FILE_NAME
TFLITE_METADATA_NAME = "TFLITE_METADATA"  # Model.metadata entry that tflite-support writes
_FLOAT_TYPES = {"float32", "float16", "float64", "bfloat16"}
_INT8_ACTIVATION_TYPES = {"int8", "int32", "int64", "bool"}  # int32/int64/bool: indices, shapes, masks
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


# -- TFLite -------------------------------------------------------------------------------------
@functools.cache
def _tflite_enums() -> tuple[dict[int, str], dict[int, str]]:
    from ai_edge_litert import schema_py_generated as s

    ops = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    return ops, types


def tflite_graph_report(path: str | Path) -> dict[str, Any]:
    """Op census, dtypes, float compute ops and the fully-int8 verdict of a ``.tflite`` file."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TFLite model not found: {path}")
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise DataFormatError(
            f"{path} is not a TFLite flatbuffer (file identifier {buf[4:8]!r}, expected b'TFL3')"
        )
    model = fu.read_model_from_bytearray(bytearray(buf))  # resolves out-of-flatbuffer (offset) buffers
    op_names, type_names = _tflite_enums()

    def op_name(opcode_index: int) -> str:
        oc = model.operatorCodes[opcode_index]
        name = op_names.get(fu.get_builtin_code_from_operator_code(oc), f"BUILTIN_{oc.builtinCode}")
        if name == "CUSTOM":
            code = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            return code
        return name

    def is_custom(opcode_index: int) -> bool:
        return (
            op_names.get(fu.get_builtin_code_from_operator_code(model.operatorCodes[opcode_index]))
            == "CUSTOM"
        )

    buffers = model.buffers or []

    def is_const(t: Any) -> bool:
        if getattr(t, "isVariable", False):
            return False
        b = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
        return b is not None and b.data is not None and len(b.data) > 0

    census: Counter[str] = Counter()
    tensor_dtypes: Counter[str] = Counter()
    activation_dtypes: Counter[str] = Counter()
    compute_activation_dtypes: Counter[str] = Counter()
    custom_ops: Counter[str] = Counter()
    float_compute: list[dict[str, Any]] = []
    int8_weights = float_weights = n_tensors = n_ops = 0

    for gi, g in enumerate(model.subgraphs or []):
        tensors = g.tensors or []
        n_tensors += len(tensors)
        for t in tensors:
            dt = type_names.get(t.type, str(t.type))
            tensor_dtypes[dt] += 1
            if is_const(t):
                int8_weights += dt == "int8"
                float_weights += dt in _FLOAT_TYPES
            else:
                activation_dtypes[dt] += 1
        for oi, op in enumerate(g.operators or []):
            n_ops += 1
            name = op_name(op.opcodeIndex)
            census[name] += 1
            if is_custom(op.opcodeIndex):
                custom_ops[name] += 1
            if name in _BOUNDARY_OPS:
                continue
            live = [
                tensors[i]
                for i in list(op.inputs or []) + list(op.outputs or [])
                if i >= 0 and not is_const(tensors[i])
            ]
            live_types = [type_names.get(t.type, str(t.type)) for t in live]
            compute_activation_dtypes.update(set(live_types))
            floats = sorted(
                {_tensor_name(t) for t, dt in zip(live, live_types, strict=True) if dt in _FLOAT_TYPES}
            )
            if floats:
                float_compute.append({"subgraph": gi, "index": oi, "op": name, "float_tensors": floats[:4]})

    g0 = model.subgraphs[0] if model.subgraphs else None
    io_desc = {
        side: [_tflite_io(g0.tensors[i], type_names) for i in (getattr(g0, side) or [])] if g0 else []
        for side in ("inputs", "outputs")
    }
    metadata_names = [_str(m.name) for m in (model.metadata or [])]
    from anyppg_edge.deploy.contract_io import packed_files

    packed = packed_files(buf)
    integer_only = n_ops > 0 and not float_compute
    fully_int8 = (
        integer_only
        and compute_activation_dtypes.get("int8", 0) > 0
        and set(compute_activation_dtypes) <= _INT8_ACTIVATION_TYPES
    )
    flex = {k: v for k, v in custom_ops.items() if k.startswith("Flex")}
    return {
        "format": "tflite",
        "name": path.name,
        "path": str(path),
        "file_size_bytes": len(buf),
        "n_subgraphs": len(model.subgraphs or []),
        "n_ops": n_ops,
        "n_tensors": n_tensors,
        "op_census": dict(census.most_common()),
        "custom_ops": dict(custom_ops.most_common()),
        "flex_ops": flex,
        "n_flex_ops": sum(flex.values()),
        "tensor_dtypes": dict(tensor_dtypes.most_common()),
        "activation_dtypes": dict(activation_dtypes.most_common()),
        "float_compute_ops": float_compute,
        "n_float_compute_ops": len(float_compute),
        "integer_only": integer_only,
        "fully_int8": fully_int8,
        "n_transpose": census.get("TRANSPOSE", 0),
        "n_reshape": census.get("RESHAPE", 0),
        "n_quantize": census.get("QUANTIZE", 0),
        "n_dequantize": census.get("DEQUANTIZE", 0),
        "n_int8_weight_tensors": int(int8_weights),
        "n_float_weight_tensors": int(float_weights),
        "inputs": io_desc["inputs"],
        "outputs": io_desc["outputs"],
        "metadata_names": metadata_names,
        "metadata_present": TFLITE_METADATA_NAME in metadata_names,
        "packed_associated_files": packed,
        "has_contract": CONTRACT_FILE_NAME in packed,
    }


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


def _tensor_name(t: Any) -> str:
    return _str(t.name) if t.name is not None else "?"


def _tflite_io(t: Any, type_names: dict[int, str]) -> dict[str, Any]:
    dtype = type_names.get(t.type, str(t.type))
    q = t.quantization
    quant = None
    if q is not None and q.scale is not None and len(q.scale) > 0:
        scales = [float(v) for v in q.scale]
        zps = [int(v) for v in (q.zeroPoint if q.zeroPoint is not None else [0] * len(scales))]
        quant = (
            {"scale": scales[0], "zero_point": zps[0]}
            if len(scales) == 1
            else {"scale": scales, "zero_point": zps}
        )
    shape = [int(v) for v in (t.shape if t.shape is not None else [])]
    return {"name": _tensor_name(t), "shape": shape, "dtype": dtype, "quant": quant}


# -- ONNX ---------------------------------------------------------------------------------------
def onnx_graph_report(path: str | Path) -> dict[str, Any]:
    """Op census, Q/DQ counts, initializer dtypes and the contract check of an ``.onnx`` file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / ValueError depending on the damage
        raise DataFormatError(f"{path} is not a readable ONNX model: {e}") from e
    dtype_name = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}

    census: Counter[str] = Counter()
    init_dtypes: Counter[str] = Counter()
    init_bytes: Counter[str] = Counter()
    external_files: set[str] = set()

    def count_tensor(t: Any) -> None:
        dt = dtype_name.get(t.data_type, str(t.data_type))
        init_dtypes[dt] += 1
        n = 1
        for d in t.dims:
            n *= int(d)
        try:
            init_bytes[dt] += n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except (KeyError, TypeError, ValueError):  # undefined / string / sub-byte types: count, no size
            init_bytes[dt] += 0
        if t.data_location == onnx.TensorProto.EXTERNAL:
            external_files.update(e.value for e in t.external_data if e.key == "location")

    def walk(graph: Any) -> None:
        for t in graph.initializer:
            count_tensor(t)
        for node in graph.node:
            name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            census[name] += 1
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR and node.op_type == "Constant":
                    count_tensor(a.t)
                elif a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub)

    walk(model.graph)
    for fn in model.functions:  # local functions (dynamo export without inlining)
        for node in fn.node:
            census[f"{fn.name}/{node.op_type}"] += 1
    ext_bytes = sum((path.parent / f).stat().st_size for f in external_files if (path.parent / f).is_file())
    props = {p.key: p.value for p in model.metadata_props}
    float_weights = sum(v for k, v in init_dtypes.items() if k in _FLOAT_TYPES | {"float", "double"})
    return {
        "format": "onnx",
        "name": path.name,
        "path": str(path),
        "file_size_bytes": path.stat().st_size + ext_bytes,
        "external_data_files": sorted(external_files),
        "opsets": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "n_ops": sum(census.values()),
        "op_census": dict(census.most_common()),
        "n_quantize_linear": census.get("QuantizeLinear", 0),
        "n_dequantize_linear": census.get("DequantizeLinear", 0),
        "n_pad": census.get("Pad", 0),
        "n_transpose": census.get("Transpose", 0),
        "n_reshape": census.get("Reshape", 0),
        "initializer_dtypes": dict(init_dtypes.most_common()),
        "initializer_bytes": dict(init_bytes.most_common()),
        "n_int8_weights": init_dtypes.get("int8", 0) + init_dtypes.get("uint8", 0),
        "n_float_weights": int(float_weights),
        "inputs": [_onnx_io(v, dtype_name) for v in model.graph.input],
        "outputs": [_onnx_io(v, dtype_name) for v in model.graph.output],
        "metadata_keys": sorted(props),
        "metadata_present": bool(props),
        "has_contract": CONTRACT_KEY in props,
    }


def _onnx_io(v: Any, dtype_name: dict[int, str]) -> dict[str, Any]:
    tt = v.type.tensor_type
    shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in tt.shape.dim]
    return {"name": v.name, "shape": shape, "dtype": dtype_name.get(tt.elem_type, str(tt.elem_type))}


# -- markdown -----------------------------------------------------------------------------------
def graph_report_markdown(reports: Sequence[dict[str, Any]]) -> str:
    """One table across artifacts, then one op-census line per artifact."""
    rows = []
    for r in reports:
        tfl = r["format"] == "tflite"
        rows.append(
            {
                "artifact": r["name"],
                "format": r["format"],
                "size (MB)": round(r["file_size_bytes"] / 1e6, 3),
                "ops": r["n_ops"],
                "float compute ops": r["n_float_compute_ops"] if tfl else "-",
                "fully int8": ("yes" if r["fully_int8"] else "no") if tfl else "-",
                "Q / DQ": f"{r['n_quantize']} / {r['n_dequantize']}"
                if tfl
                else f"{r['n_quantize_linear']} / {r['n_dequantize_linear']}",
                "transpose": r["n_transpose"],
                "reshape": r["n_reshape"],
                "pad": r["op_census"].get("PAD", 0) if tfl else r["n_pad"],
                "int8 weights": r["n_int8_weight_tensors"] if tfl else r["n_int8_weights"],
                "flex": r["n_flex_ops"] if tfl else "-",
                "I/O": " → ".join(_io_label(r[side]) for side in ("inputs", "outputs")),
                "contract": "yes" if r["has_contract"] else "no",
            }
        )
    lines = []
    for r in reports:
        census = ", ".join(f"{k}×{v}" for k, v in r["op_census"].items()) or "(no ops)"
        lines.append(f"- `{r['name']}`: {census}")
    return markdown_table(rows) + "\nOp census:\n\n" + "\n".join(lines) + "\n"


def _io_label(tensors: Sequence[dict[str, Any]]) -> str:
    parts = []
    for t in tensors:
        q = t.get("quant")
        if q and not isinstance(q["scale"], list):
            parts.append(f"{t['dtype']}(s={q['scale']:.4g}, zp={q['zero_point']})")
        else:
            parts.append(str(t["dtype"]))
    return ", ".join(parts) or "-"
