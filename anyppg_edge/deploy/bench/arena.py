"""What each arena lever buys: TFLite Micro's measured arena of registered models, export by export.

For every model the int8 TFLite is exported four times, each adding one lever, and TFLM's arena is
measured on each file (:func:`anyppg_edge.deploy.tflm.measure_arena`):

1. the pre-activation BN as a grouped CONV_2D (groups == channels), ops in the converter's order;
2. + the BN as DEPTHWISE_CONV_2D (the op every TFLM release and CMSIS-NN support);
3. + ops in the order of least peak activation memory (TFLM plans online);
4. + TFLM's offline arena plan for that order (the export default).

TFLM's arena depends on the graph's shapes, ops and quantization layout, not on the weight values:
the models are seeded initialisations quantized (PTQ) on seeded windows, so the table needs no
checkpoint and reruns identically (``python -m export arena``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

LEVERS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("BN as grouped CONV_2D, converter order", {"memory": "converter", "affine_depthwise": False}),
    ("+ BN as DEPTHWISE_CONV_2D", {"memory": "converter"}),
    ("+ least-peak op order", {"memory": "ordered"}),
    ("+ offline arena plan (default)", {"memory": "planned"}),
)


def arena_levers(models: Sequence[str], out_dir: str | Path, seed: int = 0) -> list[dict[str, Any]]:
    """One row per model x lever: TFLM arena (total, head, tail), its change from the row above, and
    the watch tier's verdict (arena ≤ 64 KiB). ``models``: registry names, or model-config JSON files
    (a registry config with other widths: candidates measured before they are registered)."""
    import torch

    from anyppg_edge.contract import InputContract
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.quantize import quantize_ptq
    from anyppg_edge.deploy.tflm import measure_arena, op_requirements
    from anyppg_edge.models import create_model
    from anyppg_edge.models.budget import TIERS, budget
    from anyppg_edge.models.registry import get_model_spec

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    limit = TIERS["watch"].max_arena_bytes
    rows = []
    for name in models:
        if str(name).endswith(".json"):  # a candidate config, not (yet) in the registry
            import json

            from anyppg_edge.models.registry import register_model

            name = register_model(json.loads(Path(name).read_text()), overwrite=True).name
        spec = get_model_spec(name)
        torch.manual_seed(seed)
        model = create_model(name).eval()
        x = np.random.default_rng(seed).standard_normal((16, 1, spec.input_samples)).astype(np.float32)
        q = quantize_ptq(model, [x], spec.input_samples)
        est = budget(name).tflm_arena_estimate_bytes
        prev = None
        for label, kw in LEVERS:
            path = out / f"{name}.{kw['memory']}{'' if kw.get('affine_depthwise', True) else '.grouped'}.int8.tflite"
            contract = InputContract.for_model(name, "tflite-int8", model.out_dim, "", spec.preprocess_config())
            export_tflite(q, path, contract, **kw)
            a = measure_arena(path)
            ops = op_requirements(path)
            rows.append({
                "model": name,
                "lever": label,
                "arena B": a.min_arena_bytes,
                "head B": a.head_bytes,
                "tail B": a.tail_bytes,
                "change B": 0 if prev is None else a.min_arena_bytes - prev,
                "32-bit MCU B (est.)": a.mcu32_bytes,
                "ops": sum(ops.counts.values()),
                "grouped CONV_2D": ops.grouped_conv2d,
                "budget estimate B": est,
                "watch tier": "fits" if a.min_arena_bytes <= limit else f"over by {a.min_arena_bytes - limit:,}",
            })
            prev = a.min_arena_bytes
    return rows


def artifact_arena_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per int8 ``.tflite`` file as exported: TFLM's measured arena (total, head, tail), its
    contract's window and the watch tier's verdict."""
    from anyppg_edge.deploy.contract_io import read_tflite_contract_zip
    from anyppg_edge.deploy.tflm import measure_arena, op_requirements
    from anyppg_edge.models.budget import TIERS

    limit = TIERS["watch"].max_arena_bytes
    rows = []
    for p in map(Path, paths):
        c = read_tflite_contract_zip(p)
        a = measure_arena(p)
        rows.append({
            "model": c.model_name,
            "lever": f"as exported ({p.name})",
            "input": f"{c.window_samples} samples at {c.sample_rate_hz} Hz",
            "arena B": a.min_arena_bytes,
            "head B": a.head_bytes,
            "tail B": a.tail_bytes,
            "32-bit MCU B (est.)": a.mcu32_bytes,
            "ops": sum(op_requirements(p).counts.values()),
            "watch tier": "fits" if a.min_arena_bytes <= limit else f"over by {a.min_arena_bytes - limit:,}",
        })
    return rows


def arena_levers_markdown(rows: Sequence[dict[str, Any]]) -> str:
    from anyppg_edge.deploy.tflm import tflm_version
    from anyppg_edge.models.budget import TIERS
    from anyppg_edge.report import markdown_table

    return (
        f"TFLite Micro arena (tflite-micro {tflm_version()}, host build, 64-bit; smallest arena that allocates, "
        "bisection to 16 B) of each model's int8 export, one lever added per row (a given .tflite: as exported). "
        f"Watch tier: arena ≤ {TIERS['watch'].max_arena_bytes:,} B.\n\n"
        + markdown_table(list(rows))
    )
