"""Per-layer parity of int8 models built with brevitas: SQNR of every activation point of the
fake-quantized deploy graph (:class:`~anyppg_edge.deploy.quantize.DeployNet1D`) against the float
deploy graph, and, for an int8 TFLite file, its SQNR against float and its agreement with brevitas in
quantization steps (:func:`layer_parity_table`; :func:`worst_layers`: where to look first).

Used by the export report (:mod:`anyppg_edge.deploy.export.build`) and, for the deploy graph's
activations (:func:`torch_activations`), by the TFLite localisation of
:mod:`anyppg_edge.deploy.parity.localize`. The SQNR itself is
:func:`~anyppg_edge.deploy.parity.tolerances.sqnr_db`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anyppg_edge.deploy.parity.tolerances import sqnr_db

__all__ = ["layer_parity_table", "tflite_point_tensors", "torch_activations", "worst_layers"]


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
