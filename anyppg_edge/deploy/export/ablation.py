"""How Swish, sigmoid and SE survive int8: the alternatives, measured on the same windows.

Net1D's SE gates and Swish activations are the classic place where int8 collapses (sigmoid gates,
wide dynamic ranges). :func:`swish_ablation` measures, against the float model, on the same
calibration iterator and evaluation windows:

* the exported scheme (every point int8, sigmoid outputs on TFLite's fixed 1/256 LOGISTIC grid);
* keeping specific ops at higher precision (16-bit sigmoid outputs; the whole SE branch at 16 bit;
  every activation at 16 bit as an upper bound of what activation precision can buy);
* hard-sigmoid / hard-swish in place of sigmoid / Swish — first its approximation error alone (float),
  then int8 PTQ, then after QAT retraining against the original (SiLU) float model.

PTQ rows are calibration only; QAT rows use the same trainer and loss as the export.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.parity.tolerances import embedding_parity
from anyppg_edge.deploy.quantize import (
    QatConfig,
    QuantVariant,
    build_deploy_model,
    float_embeddings,
    qat_finetune,
    quantize_ptq,
)

log = logging.getLogger(__name__)

VARIANTS: tuple[QuantVariant, ...] = (
    QuantVariant("int8, quantized sigmoid on the 1/256 LOGISTIC grid (exported)"),
    QuantVariant("int8, sigmoid outputs kept at 16 bit", wide_points=("_sig", "_gate")),
    QuantVariant("int8, SE branch kept at 16 bit", wide_points=("_se_", "_seh_")),
    QuantVariant("all activations at 16 bit (upper bound)", wide_points=("",)),
    QuantVariant("hard-sigmoid / hard-swish, int8", hard_sigmoid=True),
)


def swish_ablation(
    model,
    calibration_windows: np.ndarray,
    eval_windows: np.ndarray,
    qat_windows: np.ndarray | None = None,
    qat_steps: int = 0,
    out_dir: str | Path = "runs/ablation",
    batch_size: int = 16,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Rows ``{variant, stage, cos_mean, cos_p1, cos_min, max_abs}`` vs the float model's embeddings."""
    L = int(np.shape(eval_windows)[-1])
    calib = np.asarray(calibration_windows, np.float32).reshape(-1, L)
    evalw = np.asarray(eval_windows, np.float32).reshape(-1, L)
    ref = float_embeddings(model, evalw)

    def batches():
        for i in range(0, len(calib), batch_size):
            yield calib[i : i + batch_size, None]

    def row(variant: str, stage: str, emb: np.ndarray) -> dict[str, Any]:
        m = embedding_parity(ref, emb)
        r = {"variant": variant, "stage": stage, **{k: m[k] for k in ("cos_mean", "cos_p1", "cos_min", "max_abs")}}
        log.info("%s [%s]: cos mean %.5f", variant, stage, m["cos_mean"])
        return r

    rows = []
    hard = VARIANTS[-1]
    rows.append(row("hard-sigmoid / hard-swish, float (approximation alone)", "float",
                    float_embeddings(build_deploy_model(model, L, variant=hard), evalw)))
    ptq_models: dict[str, Any] = {}
    for v in VARIANTS:
        q = quantize_ptq(model, batches(), L, variant=v)
        ptq_models[v.name] = q
        rows.append(row(v.name, "PTQ", float_embeddings(q, evalw)))
    if qat_steps > 0 and qat_windows is not None:
        for v in (VARIANTS[0], hard):
            qcfg = QatConfig(steps=qat_steps, batch_size=32, seed=seed, progress=False,
                             out_dir=str(Path(out_dir) / ("qat-hard" if v.hard_sigmoid else "qat-int8")),
                             checkpoint_every_steps=qat_steps)
            q, _ = qat_finetune(copy.deepcopy(ptq_models[v.name]), model, qat_windows, qcfg)
            rows.append(row(v.name, f"QAT {qat_steps} steps", float_embeddings(q, evalw)))
    return rows
