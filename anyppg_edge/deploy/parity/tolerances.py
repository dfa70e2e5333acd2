"""Parity of exported artifacts against the float PyTorch model: one tolerance table, embedding
metrics, and per-layer SQNR / quantization-step agreement for int8 models.

``TOLERANCES`` is the single named table every parity check in the toolkit reads (tests, the export
report, the parity command of :mod:`anyppg_edge.deploy.parity.suite`); ``TOLERANCE_FOR_KIND`` says
which row applies to which artifact, and :func:`tolerance_row` switches float artifacts to the
``gpu-vs-cpu-float`` row when the reference (golden set) was computed on a GPU.

A row's keys are ``<metric>_<min|max>`` over the metrics of :func:`embedding_parity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# One named tolerance table (issue bars): float artifacts must reproduce the float model; int8
# artifacts must keep its geometry (cosine over real windows).
# GPU vs CPU float: the same float32 model on two devices (TF32 off, deterministic algorithms) differs
# by accumulation order only, so the bound is relative to the embedding scale. Streaming vs offline:
# the streaming harness's embedding of a window against the offline embedding of the same window
# (provisional, int8-like geometry bound, until the streaming harness's own error budget is measured).
TOLERANCES: dict[str, dict[str, float]] = {
    "float-vs-float": {"max_abs_max": 1e-4},
    "int8-vs-float": {"cos_mean_min": 0.99, "cos_p1_min": 0.97},
    "gpu-vs-cpu-float": {"rel_max_abs_max": 1e-4, "cos_min_min": 0.99999},
    "streaming-vs-offline": {"cos_mean_min": 0.99, "cos_p1_min": 0.97},
    # Per-layer weights of an artifact vs its source's BN-folded weights (parity --check-weights and
    # localisation): intact float artifacts are bit-exact or > 140 dB; per-channel int8 weights
    # 35-53 dB on the intact exports (QAT moves them a little).
    "float-weights-vs-source": {"weight_sqnr_db_min": 60.0},
    "int8-weights-vs-source": {"weight_sqnr_db_min": 25.0},
}
TOLERANCE_FOR_KIND: dict[str, str] = {
    "pytorch-float": "float-vs-float",
    "onnx-float": "float-vs-float",
    "tflite-float": "float-vs-float",
    "onnx-int8": "int8-vs-float",
    "tflite-int8": "int8-vs-float",
    "brevitas-int8": "int8-vs-float",
    "streaming": "streaming-vs-offline",
}
# A float artifact measured against a golden set made on a GPU is held to this row instead.
GPU_REFERENCE_ROW = "gpu-vs-cpu-float"


def tolerance_row(kind: str, reference_device: str = "cpu") -> str:
    """Name of the :data:`TOLERANCES` row for an artifact of ``kind`` compared with a reference
    computed on ``reference_device`` (``"cpu"`` or ``"cuda"``)."""
    if kind not in TOLERANCE_FOR_KIND:
        raise KeyError(f"no tolerance row for artifact kind {kind!r}; known kinds: {sorted(TOLERANCE_FOR_KIND)}")
    row = TOLERANCE_FOR_KIND[kind]
    if str(reference_device).startswith("cuda") and row == "float-vs-float":
        return GPU_REFERENCE_ROW
    return row


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-30)


def embedding_parity(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Max/mean abs error and cosine mean / 1st percentile / min over windows."""
    ref, tst = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"embedding shapes differ: reference {ref.shape}, test {tst.shape}")
    cos = cosine_rows(ref, tst)
    err = np.abs(ref - tst)
    return {
        "n_windows": len(ref),
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "ref_max_abs_value": float(np.abs(ref).max()),
        "rel_max_abs": float(err.max() / max(float(np.abs(ref).max()), 1e-30)),
        "cos_mean": float(cos.mean()),
        "cos_p1": float(np.percentile(cos, 1)),
        "cos_min": float(cos.min()),
    }


def weight_tolerance_row(kind: str) -> str:
    """Row of :data:`TOLERANCES` for the per-layer weights of an artifact of ``kind``."""
    return "int8-weights-vs-source" if "int8" in kind else "float-weights-vs-source"


def tolerance_failures(kind: str, metrics: dict[str, float], reference_device: str = "cpu") -> list[str]:
    """Which bounds of the :data:`TOLERANCES` row of ``kind`` (see :func:`tolerance_row`) ``metrics``
    violates (empty: pass)."""
    row = TOLERANCES[tolerance_row(kind, reference_device)]
    fails = []
    for key, bound in row.items():
        metric, side = key.rsplit("_", 1)
        v = metrics[metric]
        if (side == "max" and not v <= bound) or (side == "min" and not v >= bound):
            fails.append(f"{metric} = {v:.6g} (tolerance: {side} {bound:g})")
    return fails


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - test)^2)`` in dB."""
    r = np.asarray(reference, np.float64).ravel()
    e = r - np.asarray(test, np.float64).ravel()
    noise = float((e * e).sum())
    sig = float((r * r).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(sig, 1e-300) / noise)


# ------------------------------------------------------------------------------ activations


def torch_activations(dmodel, windows: np.ndarray) -> dict[str, np.ndarray]:
    """Output of every activation point of a :class:`~anyppg_edge.deploy.quantize.DeployNet1D`
    (float: the float value there; quant: the fake-quantized value), channel-first, flattened per window."""
    import torch

    from anyppg_edge.deploy.quantize import _val

    x = torch.as_tensor(np.asarray(windows, np.float32).reshape(-1, 1, dmodel.spec_input_samples))
    acts: dict[str, np.ndarray] = {}
    handles = []
    for name in dmodel.act_points:

        def hook(mod, inp, out, name=name):
            acts[name] = _val(out).detach().numpy().reshape(len(x), -1).astype(np.float32)

        handles.append(dmodel.q[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            dmodel.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return acts


def _tflite_channel_first(a: np.ndarray) -> np.ndarray:
    """TFLite NHWC ``[1, 1, L, C]`` → ``[1, C*L]`` in PyTorch's ``[C, L]`` order; other ranks flatten."""
    if a.ndim == 4:
        a = np.transpose(a[:, 0], (0, 2, 1))
    return a.reshape(len(a), -1)


def tflite_point_tensors(path: str, dmodel, act_quant: dict[str, Any]) -> dict[str, int]:
    """Map each (non-sigmoid) activation point to the int8 TFLite tensor carrying it: the tensor with
    the same quantization scale and element count, first in execution order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True)
    details = {d["index"]: d for d in it.get_tensor_details()}
    order: list[int] = []
    for op in it._get_ops_details():
        order += [i for i in op["outputs"] if i >= 0 and i not in order]
    sizes = _torch_sizes(dmodel)
    found: dict[str, int] = {}
    for name, aq in act_quant.items():
        if not aq.signed:  # sigmoid points share TFLite's fixed 1/256 grid: not identifiable by scale
            continue
        for idx in order:
            d = details[idx]
            scales = d["quantization_parameters"]["scales"]
            if d["dtype"] != np.int8 or len(scales) != 1:
                continue
            if abs(float(scales[0]) - aq.scale) <= 1e-6 * aq.scale and int(np.prod(d["shape"])) == sizes[name]:
                found[name] = idx
                break
    return found


def _torch_sizes(dmodel) -> dict[str, int]:
    acts = torch_activations(dmodel, np.zeros((1, dmodel.spec_input_samples), np.float32))
    return {k: v.shape[1] for k, v in acts.items()}


def layer_parity_table(
    float_model,
    q_model,
    windows: np.ndarray,
    tflite_path: str | None = None,
) -> list[dict[str, Any]]:
    """Per activation point: SQNR (dB) of the brevitas fake-quant model vs the float deploy graph,
    and when an int8 TFLite file is given, its SQNR vs float and its agreement with brevitas in
    quantization steps (max |Δq| and share of identical int8 values)."""
    from anyppg_edge.deploy.quantize import activation_quant_params

    windows = np.asarray(windows, np.float32).reshape(-1, q_model.spec_input_samples)
    f_acts = torch_activations(float_model, windows)
    q_acts = torch_activations(q_model, windows)
    act_quant = activation_quant_params(q_model, windows[:1])
    tfl: dict[str, np.ndarray] = {}
    if tflite_path is not None:
        tfl = _tflite_activations(tflite_path, q_model, act_quant, windows)
    rows = []
    for name in q_model.act_points:
        aq = act_quant[name]
        row: dict[str, Any] = {
            "point": name,
            "elements": f_acts[name].shape[1],
            "scale": aq.scale,
            "sqnr_brevitas_db": round(sqnr_db(f_acts[name], q_acts[name]), 2),
        }
        if name in tfl:
            t = tfl[name]
            row["sqnr_tflite_db"] = round(sqnr_db(f_acts[name], t), 2)
            steps = np.abs(np.round(t / aq.scale) - np.round(q_acts[name] / aq.scale))
            row["tflite_vs_brevitas_max_steps"] = int(steps.max())
            row["tflite_eq_brevitas_pct"] = round(100.0 * float((steps == 0).mean()), 2)
        rows.append(row)
    return rows


def _tflite_activations(path: str, q_model, act_quant: dict[str, Any], windows: np.ndarray) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    points = tflite_point_tensors(path, q_model, act_quant)
    it = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    zps = {d["index"]: d["quantization"][1] for d in it.get_tensor_details()}
    out: dict[str, list[np.ndarray]] = {k: [] for k in points}
    for w in windows:
        x = w.reshape(inp["shape"])
        if inp["dtype"] == np.int8:
            s, z = inp["quantization"]
            x = np.clip(np.round(x / s) + z, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))
        it.invoke()
        for name, idx in points.items():
            q = it.get_tensor(idx).astype(np.float32) - zps[idx]
            out[name].append(_tflite_channel_first(q * act_quant[name].scale))
    return {k: np.concatenate(v) for k, v in out.items()}


def worst_layers(rows: Sequence[dict[str, Any]], key: str = "sqnr_brevitas_db", n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` activation points with the lowest SQNR: where to look first when int8 parity fails."""
    finite = [r for r in rows if key in r and np.isfinite(r[key])]
    return sorted(finite, key=lambda r: r[key])[:n]
