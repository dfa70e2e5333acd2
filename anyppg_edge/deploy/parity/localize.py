"""Per-layer localisation: where inside an exported artifact does it stop computing what its source
model computes? (:func:`localize`; the parity suite, :mod:`anyppg_edge.deploy.parity.suite`, calls it
for failing artifacts or on request.)

Per-layer comparison of the artifact's intermediate tensors with the source model's, naming the first
layer where the error jumps, plus a layer-by-layer comparison of the artifact's weights with the
source model's (BN-folded) weights. Matching rules:

* **ONNX** (float or int8 QDQ, :func:`onnx_layer_comparison`): every ``Conv`` / ``Gemm`` /
  ``MatMul`` / ``BatchNormalization`` node's output is added as a graph output of a temporary copy,
  run in onnxruntime with ``Pad_Fusion`` disabled (:func:`~anyppg_edge.deploy.runtime.ort_session`).
  Each node is matched to a module of the source :class:`~anyppg_edge.models.net1d.Net1D` (forward
  hooks on its ``Conv1d`` / ``Linear`` / ``BatchNorm1d`` modules) **by the name of its weight
  initializer** (traced back through ``DequantizeLinear``; the exporter keeps the ``state_dict``
  names, e.g. ``stage_list.2.block_list.0.conv2.conv.weight``); a node whose weight name is not a
  module of the source model falls back to the next unmatched module of the same op category **in
  execution order with the same output shape**. A ``Conv`` node not followed by a
  ``BatchNormalization`` node is compared with the output of the BN that consumes the conv's output
  in PyTorch (the exporter folded it: ``first_conv+first_bn``, ``conv1+bn2``, ``conv2+bn3``).
* **TFLite** (float or int8, :func:`tflite_layer_comparison`): the ``CONV_2D`` /
  ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` ops in the interpreter's execution order
  (``experimental_preserve_all_tensors``, no delegate) are matched one for one with the weight layers
  of the float deploy graph (:class:`~anyppg_edge.deploy.quantize.DeployNet1D`, which the TFLite
  exporter rebuilds op for op) in execution order (``first``; per block ``affine``, ``conv1``,
  ``conv2``, ``conv3``, ``se_fc1``, ``se_fc2``), each pair required to have the same output shape;
  their outputs (dequantized for int8) are compared with the deploy graph's activation at that point.

Per layer: SQNR (dB) of the artifact's tensor against the reference, relative L2 error, and the SQNR
of its weights against the source's folded weights. The **first jump** (:func:`first_error_jump`) is
the first layer whose SQNR falls :data:`JUMP_DB` dB or more below the lowest SQNR of the layers
before it (SQNRs capped at :data:`SQNR_CEILING_DB` of the kind: above it a layer counts as
error-free). Layers whose weight SQNR is below the ``*-weights-vs-source`` row of
:data:`~anyppg_edge.deploy.parity.tolerances.TOLERANCES` are listed as ``weights_differ``;
``check_weights`` (``--check-weights``) makes that a failure: an embedding tolerance alone can miss a
corrupted layer deep in a residual branch (measured: the watch student's int8 TFLite with one grouped
conv's int8 weights replaced by random values still has cosine 0.996 to the float model).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.parity.tolerances import TOLERANCES, sqnr_db, weight_tolerance_row

__all__ = [
    "JUMP_DB",
    "SQNR_CEILING_DB",
    "deploy_layer_points",
    "first_error_jump",
    "localize",
    "net1d_layer_outputs",
    "onnx_layer_comparison",
    "tflite_layer_comparison",
]

# A layer whose SQNR falls this far below every earlier layer's is where the error "jumps". Measured
# on the intact exports of the released teacher and the watch student (runs/export, 8 real windows):
# the largest drop below the running minimum is 6.3 dB for int8 artifacts and 0 dB for float ones
# (float rounding, > 120 dB everywhere); one conv's weights x10 or negated drops 20 dB or more.
JUMP_DB = 12.0
# Capped SQNR: above this a layer counts as error-free (float rounding for float artifacts; for int8
# ones the SQNR of the first int8 layers, 24-38 dB on the intact exports).
SQNR_CEILING_DB = {"float": 60.0, "int8": 30.0}


# --------------------------------------------------------------------------------------------------
# localisation: PyTorch references
# --------------------------------------------------------------------------------------------------


@dataclass
class _TorchLayer:
    name: str  # module name in the model (``stage_list.0.block_list.0.conv1.conv``)
    category: str  # conv / linear / bn
    module: Any
    output: np.ndarray  # [N, ...]
    folded_bn: str | None = None  # name of the BN that consumes this conv's output
    folded_output: np.ndarray | None = None


def _display(name: str) -> str:
    return name.removesuffix(".conv")


def net1d_layer_outputs(model: Any, windows: np.ndarray) -> list[_TorchLayer]:
    """Outputs of every ``Conv1d`` / ``Linear`` / ``BatchNorm1d`` of ``model`` in execution order
    (forward hooks, eval mode), with, for a conv whose output feeds a BN directly, that BN's output."""
    import torch
    from torch import nn

    cats = ((nn.Conv1d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm1d, "bn"))
    layers: list[_TorchLayer] = []
    raw: dict[int, _TorchLayer] = {}  # id(output tensor) -> layer that produced it
    alive: list[Any] = []  # every hooked output stays alive during the pass: ids are never reused
    handles = []

    def hook(mod, inp, out, name: str, cat: str) -> None:
        alive.append(out)
        layer = _TorchLayer(name, cat, mod, out.detach().float().numpy().copy())
        if cat == "bn" and inp and id(inp[0]) in raw:
            src = raw[id(inp[0])]
            if src.category == "conv" and src.folded_bn is None:
                src.folded_bn, src.folded_output = name, layer.output
        raw[id(out)] = layer
        layers.append(layer)

    for name, mod in model.named_modules():
        for typ, cat in cats:
            if isinstance(mod, typ):
                handles.append(mod.register_forward_hook(lambda m, i, o, n=name, c=cat: hook(m, i, o, n, c)))
    was = model.training
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(windows, np.float32)[:, None, :]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return layers


def _folded_weight(layer: _TorchLayer, modules: Mapping[str, Any]) -> np.ndarray:
    from anyppg_edge.deploy.quantize import fold_bn

    w = layer.module.weight
    if layer.category == "conv" and layer.folded_bn is not None:
        w, _ = fold_bn(layer.module.weight, layer.module.bias, modules[layer.folded_bn])
    return w.detach().double().numpy()


# --------------------------------------------------------------------------------------------------
# localisation: ONNX
# --------------------------------------------------------------------------------------------------

_ONNX_LAYER_OPS = {"Conv": "conv", "Gemm": "linear", "MatMul": "linear", "BatchNormalization": "bn"}


def _onnx_weight(inits: Mapping[str, Any], producers: Mapping[str, Any], name: str) -> tuple[str, np.ndarray | None]:
    """(base initializer name, float value) of a node input: an initializer, or a DequantizeLinear
    of one (per-axis scales applied)."""
    from onnx import numpy_helper

    if name in inits:
        return name, numpy_helper.to_array(inits[name]).astype(np.float64)
    prod = producers.get(name)
    if prod is None or prod.op_type != "DequantizeLinear" or prod.input[0] not in inits:
        return name, None
    q = numpy_helper.to_array(inits[prod.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(inits[prod.input[1]]).astype(np.float64) if prod.input[1] in inits else None
    zp = np.zeros(1)
    if len(prod.input) > 2 and prod.input[2] in inits:
        zp = numpy_helper.to_array(inits[prod.input[2]]).astype(np.float64)
    if scale is None:
        return prod.input[0], None
    axis = next((a.i for a in prod.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), (zp.reshape(shape) if zp.size > 1 else zp)
    return prod.input[0], (q - zp) * scale


def _module_of_param(param: str) -> str:
    base = param.removesuffix("_quantized")
    for suf in (".weight", ".bias"):
        if base.endswith(suf):
            return base[: -len(suf)]
    return base


def onnx_layer_comparison(path: str | Path, model: Any, windows: np.ndarray) -> list[dict[str, Any]]:
    """Per ``Conv``/``Gemm``/``MatMul``/``BatchNormalization`` node of an ONNX artifact (graph order):
    its output vs the matched Net1D module's (module docstring: matching rule), and its weights vs
    the module's (BN-folded) weights."""
    import onnx

    from anyppg_edge.deploy.runtime import ort_session

    m = onnx.load_model(str(path))
    g = m.graph
    layers = net1d_layer_outputs(model, windows)
    by_name = {t.name: t for t in layers}
    modules = dict(model.named_modules())
    consumers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    nodes = [n for n in g.node if n.op_type in _ONNX_LAYER_OPS]
    existing = {o.name for o in g.output}
    for n in nodes:
        if n.output[0] not in existing:
            g.output.append(onnx.helper.make_tensor_value_info(n.output[0], onnx.TensorProto.FLOAT, None))
    sess = ort_session(m.SerializeToString(), threads=1)
    in_name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    x = np.ascontiguousarray(np.asarray(windows, np.float32)[:, None, :])
    names = [n.output[0] for n in nodes]
    if isinstance(fixed, int):
        per = [sess.run(names, {in_name: x[i : i + 1]}) for i in range(len(x))]
        outs = [np.concatenate([p[k] for p in per]) for k in range(len(names))]
    else:
        outs = sess.run(names, {in_name: x})

    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    for k, (n, out) in enumerate(zip(nodes, outs, strict=True)):
        cat = _ONNX_LAYER_OPS[n.op_type]
        base, w_val = _onnx_weight(inits, producers, n.input[1])  # Conv/Gemm weight, BatchNormalization scale
        mod_name = _module_of_param(base)
        match = "name"
        ref_layer = by_name.get(mod_name)
        if ref_layer is None or ref_layer.category != cat or mod_name in used:
            match = "order+shape"
            ref_layer = next(
                (t for t in layers if t.category == cat and t.name not in used
                 and (t.folded_output if t.folded_output is not None else t.output).shape == out.shape),
                None,
            )
        row: dict[str, Any] = {"index": k, "node": n.name, "op": n.op_type, "shape": list(out.shape[1:])}
        if ref_layer is None:
            rows.append({**row, "layer": f"(unmatched {n.op_type} {n.name})", "match": "none"})
            continue
        used.add(ref_layer.name)
        folded = cat == "conv" and ref_layer.folded_bn is not None and "BatchNormalization" not in consumers.get(n.output[0], [])
        if folded:  # that BN has no node of its own in the graph
            used.add(ref_layer.folded_bn)
        ref = ref_layer.folded_output if folded else ref_layer.output
        label = _display(ref_layer.name) + (f" (+{ref_layer.folded_bn.rsplit('.', 1)[-1]} folded)" if folded else "")
        row.update({"layer": label, "module": ref_layer.name, "match": match})
        if ref.shape != out.shape:
            rows.append({**row, "note": f"shape {list(out.shape)} vs PyTorch {list(ref.shape)}"})
            continue
        row.update(_act_metrics(ref, out))
        if w_val is not None:
            if cat == "bn":
                ref_w = ref_layer.module.weight.detach().double().numpy()
            else:
                tmp = _TorchLayer(ref_layer.name, cat, ref_layer.module, ref, ref_layer.folded_bn if folded else None)
                ref_w = _folded_weight(tmp, modules)
            if n.op_type == "MatMul" or (n.op_type == "Gemm" and not _gemm_trans_b(n)):
                w_val = w_val.T
            if w_val.shape == ref_w.shape:
                row["weight_sqnr_db"] = _round_db(sqnr_db(ref_w, w_val))
        rows.append(row)
    return rows


def _gemm_trans_b(node: Any) -> bool:
    return any(a.name == "transB" and a.i == 1 for a in node.attribute)


def _round_db(v: float) -> float:
    return float(round(v, 2)) if np.isfinite(v) else float(v)


def _act_metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, Any]:
    r = np.asarray(ref, np.float64)
    o = np.asarray(out, np.float64)
    d = r - o
    return {
        "sqnr_db": _round_db(sqnr_db(r, o)),
        "rel_err": float(np.linalg.norm(d) / max(np.linalg.norm(r), 1e-30)),
        "max_abs": float(np.abs(d).max()),
    }


# --------------------------------------------------------------------------------------------------
# localisation: TFLite
# --------------------------------------------------------------------------------------------------

_TFLITE_LAYER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def deploy_layer_points(dmodel: Any, block_names: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """``(deploy layer name, activation point of its output, Net1D module)`` of every weight layer of
    a :class:`DeployNet1D`, in execution order (``block_names``: the Net1D blocks' module names)."""
    out = [("first", "first_pre", "first_conv (+first_bn folded)")]
    for i, mods in enumerate(dmodel.blocks):
        blk = block_names[i] if i < len(block_names) else f"block {i}"
        if "affine" in mods:
            out.append((f"b{i}_affine", f"b{i}_a0_pre", f"{blk}.bn1"))
        out += [
            (f"b{i}_conv1", f"b{i}_a1_pre", f"{blk}.conv1 (+bn2 folded)"),
            (f"b{i}_conv2", f"b{i}_a2_pre", f"{blk}.conv2 (+bn3 folded)"),
            (f"b{i}_conv3", f"b{i}_conv3", f"{blk}.conv3"),
            (f"b{i}_se_fc1", f"b{i}_seh_pre", f"{blk}.se_fc1"),
            (f"b{i}_se_fc2", f"b{i}_se_fc2", f"{blk}.se_fc2"),
        ]
    return out


def _net1d_block_names(model: Any) -> list[str]:
    from anyppg_edge.models.net1d import BasicBlock

    return [name for name, m in model.named_modules() if isinstance(m, BasicBlock)]


def _tflite_filter_to_torch(w: np.ndarray, ref_shape: tuple[int, ...]) -> np.ndarray:
    """TFLite conv filter ``[out, 1, k, in/g]`` (depthwise: ``[1, 1, k, out]``) → PyTorch layout."""
    if w.ndim == 4:
        if w.shape[0] == 1 and len(ref_shape) == 3 and ref_shape[0] != 1:  # depthwise [1, 1, k, C]
            w = np.transpose(w[0], (2, 0, 1))  # [C, 1, k]
        else:
            w = np.transpose(w[:, 0], (0, 2, 1))  # [out, in/g, k]
    if len(ref_shape) == 2:
        w = w.reshape(ref_shape[0], -1)
    return w


def _dequant(detail: dict[str, Any], q: np.ndarray) -> np.ndarray:
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), np.float64)
    if np.dtype(detail["dtype"]).kind not in "iu" or scales.size == 0:
        return np.asarray(q, np.float64)
    zps = np.asarray(qp.get("zero_points", np.zeros_like(scales)), np.float64)
    if scales.size == 1:
        return (q.astype(np.float64) - zps[0]) * scales[0]
    shape = [1] * q.ndim
    shape[int(qp.get("quantized_dimension", 0))] = -1
    return (q.astype(np.float64) - zps.reshape(shape)) * scales.reshape(shape)


def tflite_layer_comparison(path: str | Path, model: Any, windows: np.ndarray) -> list[dict[str, Any]]:
    """Per conv / FC op of a TFLite artifact (execution order): its output (dequantized for int8) vs
    the float deploy graph's activation at the matched point, and its weights vs the folded weights
    (module docstring: matching rule)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from anyppg_edge.deploy.parity.layers import _tflite_channel_first, torch_activations
    from anyppg_edge.deploy.quantize import build_deploy_model, layer_weights

    windows = np.asarray(windows, np.float32)
    L = windows.shape[-1]
    dmodel = build_deploy_model(model, L)
    points = deploy_layer_points(dmodel, _net1d_block_names(model))
    acts = torch_activations(dmodel, windows)
    weights = layer_weights(dmodel)
    it = Interpreter(
        model_path=str(path),
        experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        num_threads=1,
    )
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops = [op for op in it._get_ops_details() if op["op_name"] in _TFLITE_LAYER_OPS]
    inp = it.get_input_details()[0]
    outs: list[list[np.ndarray]] = [[] for _ in ops]
    for w in windows:
        x = w.reshape(inp["shape"])
        if np.dtype(inp["dtype"]) == np.int8:
            s, z = inp["quantization"]
            x = np.clip(np.round(x / s) + z, -128, 127)
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))
        it.invoke()
        for k, op in enumerate(ops):
            idx = op["outputs"][0]
            outs[k].append(_tflite_channel_first(_dequant(details[idx], it.get_tensor(idx))))
    rows: list[dict[str, Any]] = []
    for k, op in enumerate(ops):
        out = np.concatenate(outs[k])
        row: dict[str, Any] = {"index": k, "op": op["op_name"], "node": details[op["outputs"][0]]["name"][:60],
                               "shape": [int(v) for v in details[op["outputs"][0]]["shape"][1:]]}
        if k >= len(points):
            rows.append({**row, "layer": "(unmatched: more conv ops than the deploy graph)", "match": "none"})
            continue
        name, point, net1d = points[k]
        ref = acts[point]
        row.update({"layer": f"{name} = {net1d}", "module": name, "match": "order+shape"})
        if ref.shape != out.shape:
            rows.append({**row, "match": "none", "note": f"shape {list(out.shape)} vs deploy point {point} {list(ref.shape)}"})
            # order broken: the rest cannot be trusted
            for j in range(k + 1, len(ops)):
                rows.append({"index": j, "op": ops[j]["op_name"], "layer": "(not matched: order broken above)", "match": "none"})
            break
        row.update(_act_metrics(ref, out))
        ref_w = weights[name]["weight"].astype(np.float64)
        w_idx = op["inputs"][1]
        try:
            w_val = _tflite_filter_to_torch(_dequant(details[w_idx], it.get_tensor(w_idx)), ref_w.shape)
        except ValueError:
            w_val = None
        if w_val is not None and w_val.shape == ref_w.shape:
            row["weight_sqnr_db"] = _round_db(sqnr_db(ref_w, w_val))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# localisation: verdict
# --------------------------------------------------------------------------------------------------


def _family(kind: str) -> str:
    return "int8" if "int8" in kind else "float"


def first_error_jump(rows: Sequence[dict[str, Any]], kind: str, jump_db: float = JUMP_DB) -> dict[str, Any] | None:
    """The first layer whose SQNR falls ``jump_db`` or more below the lowest (capped) SQNR of the
    layers before it; adds ``jump_db`` to every row. None when no layer does."""
    cap = SQNR_CEILING_DB[_family(kind)]
    best = cap
    first = None
    for r in rows:
        s = r.get("sqnr_db")
        if s is None:
            continue
        s = min(float(s), cap)
        r["jump_db"] = round(best - s, 2)
        if first is None and best - s >= jump_db:
            first = r
        best = min(best, s)
    return first


def localize(
    artifact: str | Path,
    model: Any,
    windows: np.ndarray,
    kind: str | None = None,
    jump_db: float = JUMP_DB,
) -> dict[str, Any]:
    """Per-layer comparison of ``artifact`` with its source ``model`` (a Net1D) on ``windows``; names
    the first layer where the error jumps (``first_jump``) and the layers whose weights differ from
    the source's (``weights_differ``), with a one-line ``verdict``."""
    path = Path(artifact)
    t0 = time.time()
    suffix = path.suffix.lower()
    if kind is None:
        from anyppg_edge.deploy.contract_io import read_contract

        kind = read_contract(path).artifact_kind
    if suffix == ".onnx":
        rows = onnx_layer_comparison(path, model, windows)
        method = "onnxruntime intermediate outputs (Pad_Fusion off) vs PyTorch forward hooks on the source Net1D"
    elif suffix == ".tflite":
        rows = tflite_layer_comparison(path, model, windows)
        method = "TFLite intermediate tensors (preserve_all_tensors, no delegate) vs the float deploy graph of the source"
    else:
        raise ValueError(f"{path}: localisation needs an .onnx or .tflite artifact")
    first = first_error_jump(rows, kind, jump_db)
    w_floor = TOLERANCES[weight_tolerance_row(kind)]["weight_sqnr_db_min"]
    weights_differ = [
        {"layer": r["layer"], "weight_sqnr_db": r["weight_sqnr_db"]}
        for r in rows
        if r.get("weight_sqnr_db") is not None and r["weight_sqnr_db"] < w_floor
    ]
    matched = [r for r in rows if r.get("sqnr_db") is not None]
    worst = min(matched, key=lambda r: r["sqnr_db"]) if matched else None
    if first is not None:
        prev = [r for r in matched if r["index"] < first["index"]]
        before = f"{min(min(r['sqnr_db'] for r in prev), SQNR_CEILING_DB[_family(kind)]):.1f} dB" if prev else "the input"
        verdict = (
            f"first layer where the error jumps: {first['layer']} (SQNR {first['sqnr_db']:.1f} dB after "
            f"{before} before it, a {first['jump_db']:.1f} dB drop)"
        )
    elif worst is not None:
        verdict = (
            f"no layer where the error jumps by {jump_db:g} dB: it grows gradually; lowest SQNR "
            f"{worst['sqnr_db']:.1f} dB at {worst['layer']}"
        )
    else:
        verdict = "no layer could be matched to the source model"
    if weights_differ:
        verdict += "; weights differ from the source at " + ", ".join(
            f"{w['layer']} ({w['weight_sqnr_db']:.1f} dB)" for w in weights_differ[:5]
        )
    return {
        "artifact": str(path),
        "kind": kind,
        "method": method,
        "n_windows": len(windows),
        "jump_db": jump_db,
        "sqnr_ceiling_db": SQNR_CEILING_DB[_family(kind)],
        "weight_sqnr_floor_db": w_floor,
        "first_jump": first,
        "worst_layer": worst,
        "weights_differ": weights_differ,
        "matched_layers": len(matched),
        "layers": rows,
        "verdict": verdict,
        "seconds": round(time.time() - t0, 2),
    }
