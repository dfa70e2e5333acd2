"""The parity suite: does an artifact compute what the float model computes?

One entry point for every artifact and path (``python -m export parity``, :func:`run_parity`):

1. **Embedding parity** (:func:`artifact_parity`): the artifact is opened with
   :func:`~anyppg_edge.deploy.runtime.open_encoder` (its input contract is checked against the
   golden set's preprocessing config, and its source checkpoint sha256 against the golden set's),
   embeds the golden windows, and is held to the row of the one tolerance table
   :data:`~anyppg_edge.deploy.parity.tolerances.TOLERANCES` that its kind selects
   (:func:`~anyppg_edge.deploy.parity.tolerances.tolerance_row`: float artifacts against a golden set made on
   a GPU use ``gpu-vs-cpu-float``). Artifacts: ``.onnx`` / ``.tflite`` files, a PyTorch checkpoint
   (``.pt``, kind ``pytorch-float``: the float model on this host's CPU, e.g. against a GPU golden
   set), or a ``.npy`` of embeddings of the golden windows written by another runtime path (kind
   ``streaming`` by default: the streaming harness output).
2. **Localisation** (:func:`localize`), when parity fails (or on request): per-layer comparison of
   the artifact's intermediate tensors with the source model's, naming the first layer where the
   error jumps, plus a layer-by-layer comparison of the artifact's weights with the source model's
   (BN-folded) weights. Matching rules:

   * **ONNX** (float or int8 QDQ): every ``Conv`` / ``Gemm`` / ``MatMul`` / ``BatchNormalization``
     node's output is added as a graph output of a temporary copy, run in onnxruntime with
     ``Pad_Fusion`` disabled (:func:`~anyppg_edge.deploy.runtime.ort_session`). Each node is
     matched to a module of the source :class:`~anyppg_edge.models.net1d.Net1D` (forward hooks on
     its ``Conv1d`` / ``Linear`` / ``BatchNorm1d`` modules) **by the name of its weight initializer**
     (traced back through ``DequantizeLinear``; the exporter keeps the ``state_dict`` names, e.g.
     ``stage_list.2.block_list.0.conv2.conv.weight``); a node whose weight name is not a module of
     the source model falls back to the next unmatched module of the same op category **in
     execution order with the same output shape**. A ``Conv`` node not followed by a
     ``BatchNormalization`` node is compared with the output of the BN that consumes the conv's
     output in PyTorch (the exporter folded it: ``first_conv+first_bn``, ``conv1+bn2``,
     ``conv2+bn3``).
   * **TFLite** (float or int8): the ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` ops
     in the interpreter's execution order (``experimental_preserve_all_tensors``, no delegate) are
     matched one for one with the weight layers of the float deploy graph
     (:class:`~anyppg_edge.deploy.quantize.DeployNet1D`, which the TFLite exporter rebuilds op for
     op) in execution order (``first``; per block ``affine``, ``conv1``, ``conv2``, ``conv3``,
     ``se_fc1``, ``se_fc2``), each pair required to have the same output shape; their outputs
     (dequantized for int8) are compared with the deploy graph's activation at that point.

   Per layer: SQNR (dB) of the artifact's tensor against the reference, relative L2 error, and the
   SQNR of its weights against the source's folded weights. The **first jump** is the first layer
   whose SQNR falls :data:`JUMP_DB` dB or more below the lowest SQNR of the layers before it (SQNRs
   capped at :data:`SQNR_CEILING_DB` of the kind: above it a layer counts as error-free). Layers
   whose weight SQNR is below the ``*-weights-vs-source`` row of ``TOLERANCES`` are listed as
   ``weights_differ``; ``check_weights`` (``--check-weights``) makes that a failure: an embedding
   tolerance alone can miss a corrupted layer deep in a residual branch (measured: the watch
   student's int8 TFLite with one grouped conv's int8 weights replaced by random values still has
   cosine 0.996 to the float model).
3. **Downstream parity** (:func:`downstream_parity`): the HR linear probe (ridge, subject-grouped
   nested CV, reference HR from the ECG: the IEEE SPC ``BPM0`` trace where a recording has one, the
   window's ECG R peaks otherwise) and retrieval R@1, computed with the float model and with each
   artifact on the same ``../shared`` windows, side by side. Retrieval: PPG→ECG when the source
   checkpoint brings an ECG tower (a CLIP pretraining checkpoint: its ``ppg_proj`` on the
   encoder's output as query, its ECG embeddings as gallery; a distillation checkpoint with a CLIP
   head: the student's ``clip_head`` as query, its CLIP teacher's ECG embeddings as gallery; the
   heads run in float PyTorch on the artifact's embeddings, only the encoder is deployed). For a
   PPG-only encoder (e.g. the released weights, no ECG tower): **PPG→PPG-of-the-float-model**
   retrieval: query = the artifact's embedding of a window, gallery = the float model's embeddings
   of the windows of the pool; the float model scores R@1 = 1 by construction, the artifact's R@1 is
   the share of windows whose own float embedding is the nearest in a pool of ``pool_size``.
4. **Reports** (:func:`write_parity_report`): markdown, self-contained HTML, JSON and a histogram
   of per-window cosine (``1 - cos``, per artifact).

:func:`parity_table_for` is the one-call table for the end of the main job.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.parity.golden import GoldenSet, load_golden_set
from anyppg_edge.deploy.parity.tolerances import (
    TOLERANCES,
    cosine_rows,
    embedding_parity,
    sqnr_db,
    tolerance_failures,
    tolerance_row,
    weight_tolerance_row,
)
from anyppg_edge.errors import ContractMismatchError
from anyppg_edge.io import atomic_write_text, write_json
from anyppg_edge.report import markdown_table

log = logging.getLogger(__name__)

__all__ = [
    "JUMP_DB",
    "SQNR_CEILING_DB",
    "ArtifactParity",
    "SourceMismatchError",
    "artifact_parity",
    "downstream_parity",
    "first_error_jump",
    "localize",
    "onnx_layer_comparison",
    "parity_table_for",
    "render_parity_markdown",
    "run_parity",
    "tflite_layer_comparison",
    "write_parity_report",
]

# A layer whose SQNR falls this far below every earlier layer's is where the error "jumps". Measured
# on the intact exports of the released teacher and the watch student (runs/export, 8 real windows):
# the largest drop below the running minimum is 6.3 dB for int8 artifacts and 0 dB for float ones
# (float rounding, > 120 dB everywhere); one conv's weights x10 or negated drops 20 dB or more.
JUMP_DB = 12.0
# Capped SQNR: above this a layer counts as error-free (float rounding for float artifacts; for int8
# ones the SQNR of the first int8 layers, 24-38 dB on the intact exports).
SQNR_CEILING_DB = {"float": 60.0, "int8": 30.0}
RANDOM_INIT = "random-init"
TABLE_COLUMNS = ["artifact", "kind", "tolerance", "max_abs", "cos_mean", "cos_p1", "cos_min", "pass"]
LAYER_COLUMNS = ["index", "layer", "op", "shape", "sqnr_db", "rel_err", "weight_sqnr_db", "jump_db"]


class SourceMismatchError(ContractMismatchError):
    """Artifact, golden set and source checkpoint do not come from the same weights."""


# --------------------------------------------------------------------------------------------------
# embedding parity
# --------------------------------------------------------------------------------------------------


@dataclass
class ArtifactParity:
    """Parity of one artifact against a golden set."""

    label: str
    path: str
    kind: str
    tolerance: str  # row of TOLERANCES
    metrics: dict[str, float]
    failures: list[str]
    cosines: np.ndarray
    contract: dict[str, Any] = field(default_factory=dict)
    worst_windows: list[dict[str, Any]] = field(default_factory=list)
    localisation: dict[str, Any] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def failure_message(self) -> str:
        return f"FAIL {self.label} ({self.kind}): " + "; ".join(self.failures)

    def table_row(self) -> dict[str, Any]:
        return {
            "artifact": self.label,
            "file": Path(self.path).name,
            "kind": self.kind,
            "tolerance": self.tolerance,
            **{k: self.metrics[k] for k in ("max_abs", "rel_max_abs", "cos_mean", "cos_p1", "cos_min")},
            "pass": self.passed,
            "failures": "; ".join(self.failures),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.table_row(),
            "path": self.path,
            "metrics": self.metrics,
            "contract": self.contract,
            "worst_windows": self.worst_windows,
            "localisation": self.localisation,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def _kind_of_suffix(path: Path) -> str | None:
    return {".pt": "pytorch-float", ".pth": "pytorch-float", ".npy": "streaming"}.get(path.suffix.lower())


def _golden_cfg(golden: GoldenSet):
    from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

    d = golden.provenance.get("preprocess")
    return PreprocessConfig.from_dict(d) if d else DEFAULT_CONFIG


def check_same_source(
    what: str, model_name: str, sha: str, golden: GoldenSet, embedding_dim: int | None = None
) -> list[str]:
    """Raise :class:`SourceMismatchError` when ``what`` (model ``model_name`` from checkpoint ``sha``)
    was not made from the golden set's weights; returns notes for checks that could not be made."""
    notes = []
    gsha = golden.checkpoint_sha256
    if not sha:
        notes.append(f"{what}: no source checkpoint sha256 recorded; not checked against the golden set")
    elif gsha and sha != gsha:
        raise SourceMismatchError(
            f"{what} was made from checkpoint sha256 {sha[:16]}… ({model_name}), the golden set from "
            f"{gsha[:16]}… ({golden.model_name}): not the same weights, parity is meaningless. Make a "
            "golden set from the artifact's source checkpoint (`python -m export golden`)."
        )
    if embedding_dim is not None and embedding_dim != golden.embeddings.shape[1]:
        raise SourceMismatchError(
            f"{what} outputs {embedding_dim}-d embeddings, the golden set holds {golden.embeddings.shape[1]}-d ones"
        )
    return notes


def artifact_parity(
    artifact: str | Path,
    golden: GoldenSet | str | Path,
    kind: str | None = None,
    label: str | None = None,
    threads: int = 1,
    model_name: str | None = None,
) -> ArtifactParity:
    """Embed the golden windows with ``artifact`` and compare with the golden embeddings.

    ``.onnx`` / ``.tflite``: opened by :func:`open_encoder` with the golden set's preprocessing
    config (contract mismatch: :class:`ContractMismatchError`); ``.pt``: a checkpoint of registry
    model ``model_name`` (default: the golden set's) run as ``pytorch-float`` on the CPU; ``.npy``:
    embeddings ``[N, D]`` of the golden windows, in golden order (``kind`` default ``streaming``).
    Raises :class:`SourceMismatchError` when the artifact's source checkpoint is not the golden's."""
    from anyppg_edge.contract import InputContract
    from anyppg_edge.deploy.runtime import open_encoder

    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    path = Path(artifact)
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    cfg = _golden_cfg(golden)
    t0 = time.time()
    contract: dict[str, Any] = {}
    notes: list[str] = []
    suffix_kind = _kind_of_suffix(path)
    if suffix_kind == "streaming":
        emb = np.load(path, allow_pickle=False)
        if emb.shape != golden.embeddings.shape:
            raise ContractMismatchError(
                f"{path}: embeddings of shape {emb.shape}, the golden set has {golden.embeddings.shape} "
                "(one row per golden window, in golden order)"
            )
        kind = kind or "streaming"
        notes.append(f"{path.name}: precomputed embeddings, no contract or source checkpoint to check")
    elif suffix_kind == "pytorch-float":
        from anyppg_edge.deploy.export.build import load_net1d

        name = model_name or golden.model_name
        model, sha = load_net1d(name, path)
        notes += check_same_source(str(path), name, sha, golden, int(model.out_dim))
        c = InputContract.for_model(name, "pytorch-float", int(model.out_dim), sha, cfg)
        enc = open_encoder(model, cfg, contract=c, threads=threads)
        contract = c.to_dict()
        emb = enc.embed(golden.windows)
        kind = kind or "pytorch-float"
    else:
        enc = open_encoder(path, cfg, threads=threads)
        c = enc.contract
        contract = c.to_dict()
        if golden.model_name and c.model_name != golden.model_name:
            notes.append(f"{path.name} is model {c.model_name!r}, the golden set {golden.model_name!r}")
        notes += check_same_source(str(path), c.model_name, c.source_checkpoint_sha256, golden, enc.embedding_dim)
        emb = enc.embed(golden.windows)
        kind = kind or enc.kind
    row = tolerance_row(kind, golden.device_type)
    m = embedding_parity(golden.embeddings, emb)
    cos = cosine_rows(golden.embeddings, emb)
    worst = [
        {"window": str(golden.window_ids[i]), "index": int(i), "cos": float(cos[i])}
        for i in np.argsort(cos)[: min(5, len(cos))]
    ]
    return ArtifactParity(
        label=label or path.name,
        path=str(path),
        kind=kind,
        tolerance=row,
        metrics=m,
        failures=[f"{f} [tolerance row {row!r}]" for f in tolerance_failures(kind, m, golden.device_type)],
        cosines=cos,
        contract=contract,
        worst_windows=worst,
        seconds=time.time() - t0,
        notes=notes,
    )


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

    from anyppg_edge.deploy.parity.tolerances import _tflite_channel_first, torch_activations
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


# --------------------------------------------------------------------------------------------------
# downstream parity
# --------------------------------------------------------------------------------------------------


def _retrieval_side(checkpoint: str | Path | None) -> tuple[Any, Any, str]:
    """(query head: features -> embeddings, ECG embedder: ecg windows -> embeddings, description) from
    the source checkpoint; (None, None, why) for a PPG-only encoder."""
    import torch
    import torch.nn.functional as F

    if checkpoint is None:
        return None, None, "no source checkpoint given"
    path = Path(checkpoint)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    extra = (raw.get("extra_config") or {}) if isinstance(raw, dict) else {}

    def ecg_fn(clip):
        def run(ecg: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return np.concatenate([
                    clip.encode_ecg(torch.from_numpy(np.ascontiguousarray(ecg[i : i + 64, None]))).numpy()
                    for i in range(0, len(ecg), 64)
                ])
        return run

    if "clip" in extra:
        from anyppg_edge.train.distill import load_teacher

        t = load_teacher(path)

        def q(feat: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return F.normalize(t.clip.ppg_proj(torch.from_numpy(feat)), dim=-1).numpy()

        return q, ecg_fn(t.clip), f"PPG→ECG: CLIP checkpoint {path.name} (ppg_proj on the encoder output; its ECG tower)"
    if "distill" in extra:
        from anyppg_edge.paths import REPO_ROOT
        from anyppg_edge.train.distill import _sha256, load_student, load_teacher

        student = load_student(path)
        tinfo = extra.get("teacher") or {}
        src = tinfo.get("source")
        cands = [Path(src), REPO_ROOT / src] if src else []
        tpath = next((c for c in cands if c.is_file()), None)
        if student.clip_head is None or tpath is None or tinfo.get("kind") != "clip":
            return None, None, f"distillation checkpoint without a reachable CLIP teacher ({src})"
        if tinfo.get("sha256") and _sha256(tpath) != tinfo["sha256"]:
            return None, None, f"CLIP teacher {tpath} does not match the sha256 the student recorded"
        t = load_teacher(tpath)

        def q(feat: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return F.normalize(student.clip_head(torch.from_numpy(feat)), dim=-1).numpy()

        return q, ecg_fn(t.clip), (
            f"PPG→ECG: student clip_head on the encoder output; gallery = ECG embeddings of its CLIP teacher {tpath}"
        )
    return None, None, "PPG-only encoder (no ECG tower in the checkpoint)"


def downstream_parity(
    artifacts: Mapping[str, str | Path],
    model: Any,
    checkpoint: str | Path | None = None,
    hop_s: float = 5.0,
    max_windows: int | None = None,
    pool_size: int = 64,
    seed: int = 0,
    threads: int = 1,
    cfg: Any = None,
) -> dict[str, Any]:
    """HR linear probe and retrieval R@1 of the float ``model`` and of each artifact, side by side, on
    every ``../shared`` recording (windows every ``hop_s`` s; ``max_windows`` drawn at random when
    given). See the module docstring for the HR reference and the retrieval protocol."""
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.windows import WindowSet, extract_windows
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.eval.probe import linear_probe, window_reference_hr_bpm
    from anyppg_edge.eval.retrieval import pooled_retrieval
    from anyppg_edge.paths import shared_dir
    from anyppg_edge.preprocessing import DEFAULT_CONFIG

    cfg = cfg or DEFAULT_CONFIG
    t0 = time.time()
    recs = load_shared_recordings(shared_dir() / "data")
    ws = WindowSet.concat([extract_windows(r, cfg, hop_s=hop_s, ecg_quality=False) for r in recs])
    if max_windows is not None and len(ws) > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(len(ws), max_windows, replace=False))
        ws = WindowSet(ws.ppg[idx], ws.ecg[idx], ws.subject_id[idx], ws.dataset[idx], ws.start_s[idx])
    hr, hr_source = window_reference_hr_bpm(ws, recs, window_s=cfg.window_s)
    keep = np.isfinite(hr)
    groups = np.asarray(ws.subject_id).astype(str)
    query_head, ecg_embed, retrieval_desc = _retrieval_side(checkpoint)
    ecg_gallery = ecg_embed(ws.ecg.astype(np.float32)) if ecg_embed is not None else None

    feats = {"float (PyTorch)": open_encoder(model, cfg, threads=threads).embed(ws.ppg)}
    for label, p in artifacts.items():
        feats[label] = open_encoder(p, cfg, threads=threads).embed(ws.ppg)
    float_feat = feats["float (PyTorch)"]
    n_pool = min(pool_size, len(ws))
    rows = []
    for label, f in feats.items():
        probe = linear_probe(f[keep], hr[keep], groups[keep]).metrics
        if query_head is not None:
            ret = pooled_retrieval(query_head(f), ecg_gallery, pool_size=n_pool, seed=seed)
        else:
            ret = pooled_retrieval(f, float_feat, pool_size=n_pool, seed=seed)
        rows.append({
            "model": label,
            "HR MAE bpm": probe["MAE"],
            "HR r": probe["pearson_r"],
            "R@1": ret["R@1"],
            "R@5": ret["R@5"],
        })
    base = rows[0]
    for r in rows:
        r["ΔMAE bpm"] = r["HR MAE bpm"] - base["HR MAE bpm"]
        r["ΔR@1"] = r["R@1"] - base["R@1"]
    subjects = np.unique(groups[keep])
    return {
        "rows": rows,
        "n_windows": len(ws),
        "n_hr_windows": int(keep.sum()),
        "n_subjects": int(subjects.size),
        "hr_reference": {k: int((hr_source[keep] == k).sum()) for k in ("trace", "ecg")},
        "hr_reference_note": "IEEE SPC BPM0 trace (ECG-derived) where a recording has one, else the window's ECG R peaks",
        "retrieval": retrieval_desc if query_head is not None else (
            f"PPG→PPG-of-the-float-model ({retrieval_desc}): query = the model's embedding, gallery = the float "
            "model's embeddings of the pool's windows; the float row is 1 by construction"
        ),
        "pool_size": n_pool,
        "chance_R@1": 1.0 / n_pool,
        "hop_s": hop_s,
        "seconds": round(time.time() - t0, 1),
    }


DOWNSTREAM_COLUMNS = ["model", "HR MAE bpm", "ΔMAE bpm", "HR r", "R@1", "ΔR@1", "R@5"]


# --------------------------------------------------------------------------------------------------
# the run: parity of several artifacts, localisation, reports
# --------------------------------------------------------------------------------------------------


def run_parity(
    artifacts: Sequence[str | Path] | Mapping[str, str | Path],
    golden: GoldenSet | str | Path,
    out_dir: str | Path | None = None,
    source_model: Any = None,
    checkpoint: str | Path | None = None,
    localize_mode: str = "auto",
    localize_windows: int = 8,
    downstream: bool = False,
    downstream_kw: Mapping[str, Any] | None = None,
    kind: str | None = None,
    threads: int = 1,
    plot: bool = True,
    check_weights: bool = False,
) -> dict[str, Any]:
    """Parity of every artifact against ``golden``; localisation (``localize_mode``: ``"auto"`` =
    failing artifacts only, ``"always"``, ``"never"``; needs ``source_model``, the Net1D the
    artifacts were exported from); optional downstream parity; reports in ``out_dir``.
    ``check_weights``: localise every artifact and fail those whose weights differ from the
    source's (needs ``source_model``).

    Returns the report dict (``passed``: every artifact within tolerance)."""
    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    items = list(artifacts.items()) if isinstance(artifacts, Mapping) else [(Path(a).name, a) for a in artifacts]
    results: list[ArtifactParity] = []
    for label, p in items:
        res = artifact_parity(p, golden, kind=kind, label=label, threads=threads)
        results.append(res)
        log.info("%s: %s", label, "pass" if res.passed else res.failure_message())
    notes: list[str] = []
    if check_weights and source_model is None:
        raise ValueError("check_weights needs the source model (--checkpoint)")
    for res in results:
        want = check_weights or localize_mode == "always" or (localize_mode == "auto" and not res.passed)
        if not want or Path(res.path).suffix.lower() not in (".onnx", ".tflite"):
            continue
        if source_model is None:
            notes.append(f"{res.label}: not localised (give the source checkpoint: --checkpoint)")
            continue
        n = min(localize_windows, len(golden))
        res.localisation = localize(res.path, source_model, golden.windows[:n], kind=res.kind)
        if check_weights and res.localisation["weights_differ"]:
            row = weight_tolerance_row(res.kind)
            res.failures.append(
                f"weights differ from the source checkpoint (tolerance row {row!r}: weight SQNR min "
                f"{TOLERANCES[row]['weight_sqnr_db_min']:g} dB) at "
                + ", ".join(f"{w['layer']} ({w['weight_sqnr_db']:.1f} dB)" for w in res.localisation["weights_differ"][:5])
            )
    report: dict[str, Any] = {
        "golden": {
            "path": str(golden.path) if golden.path else "",
            "description": golden.describe(),
            "provenance": {k: v for k, v in golden.provenance.items() if k != "preprocess"},
        },
        "tolerances": {r.tolerance: TOLERANCES[r.tolerance] for r in results},
        "artifacts": [r.to_dict() for r in results],
        "rows": [r.table_row() for r in results],
        "passed": all(r.passed for r in results),
        "failures": [r.failure_message() for r in results if not r.passed],
        "notes": [n for r in results for n in r.notes] + notes,
    }
    if downstream:
        if source_model is None:
            raise ValueError("downstream parity needs the source model (--checkpoint)")
        report["downstream"] = downstream_parity(
            {label: p for (label, p), r in zip(items, results, strict=True) if Path(p).suffix.lower() in (".onnx", ".tflite")},
            source_model,
            checkpoint,
            threads=threads,
            **dict(downstream_kw or {}),
        )
    if out_dir is not None:
        report["files"] = write_parity_report(report, results, out_dir, plot=plot)
    return report


def parity_table_for(
    artifacts: Mapping[str, str | Path], golden: GoldenSet | str | Path, threads: int = 1
) -> tuple[list[dict[str, Any]], str]:
    """``(rows, markdown)``: parity of every artifact (label → path) against ``golden`` with the
    verdict of the tolerance table; for the end of the main job's report."""
    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    rows = []
    for label, p in artifacts.items():
        try:
            rows.append(artifact_parity(p, golden, label=label, threads=threads).table_row())
        except (ContractMismatchError, FileNotFoundError, ValueError) as e:
            rows.append({"artifact": label, "file": Path(p).name, "kind": "?", "tolerance": "-", "pass": False,
                         "failures": f"not evaluated: {type(e).__name__}: {e}"})
    md = (
        f"Parity vs the golden set ({golden.describe()}); tolerances "
        "`anyppg_edge.deploy.parity.tolerances.TOLERANCES`.\n\n"
        + markdown_table(rows, [*TABLE_COLUMNS, "failures"])
    )
    return rows, md


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def render_parity_markdown(report: dict[str, Any]) -> str:
    g = report["golden"]
    lines = [
        "# Parity report",
        "",
        f"Golden set: `{g['path']}`: {g['description']}.",
        "",
        "Verdict: " + ("**PASS** (every artifact within tolerance)" if report["passed"] else "**FAIL**"),
        "",
        "## Embedding parity (tolerances: `anyppg_edge.deploy.parity.tolerances.TOLERANCES`)",
        "",
        markdown_table(report["rows"], [*TABLE_COLUMNS, "failures"]),
        "Tolerance rows used: " + "; ".join(
            f"`{k}`: " + ", ".join(f"{m} {v:g}" for m, v in row.items()) for k, row in report["tolerances"].items()
        ),
        "",
    ]
    for f in report["failures"]:
        lines += [f"- {f}"]
    if report["failures"]:
        lines.append("")
    for a in report["artifacts"]:
        loc = a.get("localisation")
        if not loc:
            continue
        lines += [
            f"## Localisation: {a['artifact']}",
            "",
            f"{loc['verdict']}.",
            "",
            f"Method: {loc['method']}; {loc['n_windows']} golden windows; jump threshold {loc['jump_db']:g} dB, "
            f"SQNR ceiling {loc['sqnr_ceiling_db']:g} dB.",
            "",
            markdown_table(loc["layers"], LAYER_COLUMNS),
        ]
    if "downstream" in report:
        d = report["downstream"]
        lines += [
            "## Downstream parity (float model vs artifacts, same windows)",
            "",
            f"{d['n_windows']} windows of ../shared every {d['hop_s']:g} s; HR probe on {d['n_hr_windows']} windows of "
            f"{d['n_subjects']} subjects (reference: {d['hr_reference_note']}; {d['hr_reference']}); retrieval: "
            f"{d['retrieval']}; pools of {d['pool_size']} (chance R@1 {d['chance_R@1']:.3f}).",
            "",
            markdown_table(d["rows"], DOWNSTREAM_COLUMNS),
        ]
    for n in report.get("notes", []):
        lines.append(f"- {n}")
    return "\n".join(lines) + "\n"


def _html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            v = f"{v:.4g}"
        cls = ' class="fail"' if v is False else ' class="pass"' if v is True else ""
        return f"<td{cls}>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(r.get(c, "")) for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_parity_html(report: dict[str, Any], plot_path: str | None) -> str:
    g = report["golden"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Parity report</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}.fail{background:#fbb}.pass{background:#bfb}"
        "</style></head><body>",
        "<h1>Parity report</h1>",
        f"<p>Golden set <code>{html.escape(g['path'])}</code>: {html.escape(g['description'])}.</p>",
        f"<p><b>{'PASS' if report['passed'] else 'FAIL'}</b></p>",
        "<h2>Embedding parity</h2>",
        _html_table(report["rows"], [*TABLE_COLUMNS, "failures"]),
    ]
    if plot_path:
        data = base64.b64encode(Path(plot_path).read_bytes()).decode()
        parts.append(f"<img alt='per-window cosine' src='data:image/png;base64,{data}' style='max-width:100%'>")
    for a in report["artifacts"]:
        loc = a.get("localisation")
        if loc:
            parts += [f"<h2>Localisation: {html.escape(a['artifact'])}</h2>", f"<p>{html.escape(loc['verdict'])}</p>",
                      _html_table(loc["layers"], LAYER_COLUMNS)]
    if "downstream" in report:
        d = report["downstream"]
        parts += ["<h2>Downstream parity</h2>", f"<p>{html.escape(d['retrieval'])}</p>",
                  _html_table(d["rows"], DOWNSTREAM_COLUMNS)]
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_cosine_histogram(results: Sequence[ArtifactParity], path: str | Path) -> str | None:
    """Histogram of ``1 - cos`` (per window, vs the golden embeddings) for every artifact."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    floor = 1e-9
    for r in results:
        d = np.maximum(1.0 - r.cosines, floor)
        bins = np.logspace(np.log10(floor), 0, 60)
        ax.hist(d, bins=bins, histtype="step", lw=1.4, label=f"{r.label} ({'pass' if r.passed else 'FAIL'})")
    ax.set_xscale("log")
    ax.set_xlabel(f"1 - cosine(artifact, golden) per window (floored at {floor:g})")
    ax.set_ylabel("windows")
    ax.set_title("Parity vs the golden embeddings")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def write_parity_report(
    report: dict[str, Any], results: Sequence[ArtifactParity], out_dir: str | Path, plot: bool = True
) -> dict[str, str]:
    """``parity_report.{md,html,json}`` and ``parity_cosine_hist.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    png = plot_cosine_histogram(results, out / "parity_cosine_hist.png") if plot else None
    if png:
        files["plot"] = png
    md = render_parity_markdown(report)
    if png:
        md += f"\n![per-window cosine]({Path(png).name})\n"
    files["markdown"] = str(atomic_write_text(out / "parity_report.md", md))
    files["html"] = str(atomic_write_text(out / "parity_report.html", render_parity_html(report, png)))
    files["json"] = str(out / "parity_report.json")
    write_json(out / "parity_report.json", {**report, "files": files})
    return files
