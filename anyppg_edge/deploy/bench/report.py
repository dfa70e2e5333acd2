"""Reports of latency results (:mod:`anyppg_edge.deploy.bench.latency`, the device runner, parsed
``benchmark_model`` / ``litert-benchmark`` logs): speed-ups over a baseline measured in the same run
(these machines are noisy: ratios within one run are the figures that count), the markdown table,
the fp32-floor table, a plot of the latency distributions, and ``bench.json`` / ``.csv`` / ``.md`` /
``.png`` written together. ``bench.json`` is strictly valid JSON (a failed artifact's NaN latencies
are null there).
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.bench.core import BENCH_SCHEMA, json_safe

__all__ = ["bench_markdown", "floor_markdown", "plot_latencies", "speedups", "write_bench_report"]


def _ok(r: dict[str, Any]) -> bool:
    return not r.get("error") and math.isfinite(r["latency_ms"].get("p50") or math.nan)


def _baseline_index(results: Sequence[dict[str, Any]], baseline: str | int | None) -> int | None:
    ok = [i for i, r in enumerate(results) if _ok(r)]
    if not ok:
        return None
    if isinstance(baseline, int):
        return baseline
    if isinstance(baseline, str):
        for i in ok:
            if results[i]["name"] == baseline or results[i].get("artifact") == baseline:
                return i
        for i in ok:
            if baseline in results[i]["name"]:
                return i
        raise KeyError(f"baseline {baseline!r} is not among the results: {[r['name'] for r in results]}")
    for i in ok:  # default: the PyTorch eager model, else the first result
        if results[i].get("runtime") == "pytorch-eager":
            return i
    return ok[0]


def speedups(
    results: Sequence[dict[str, Any]], baseline: str | int | None = None
) -> tuple[str | None, list[float | None]]:
    """(baseline name, p50 speed-up of every result over it): ``baseline p50 / result p50``."""
    b = _baseline_index(results, baseline)
    if b is None:
        return None, [None] * len(results)
    base = results[b]["latency_ms"]["p50"]
    return results[b]["name"], [base / r["latency_ms"]["p50"] if _ok(r) else None for r in results]


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _rows(
    results: Sequence[dict[str, Any]], baseline: str | int | None
) -> tuple[str | None, list[dict[str, Any]]]:
    bname, ups = speedups(results, baseline)
    rows = []
    for r, up in zip(results, ups, strict=True):
        lat, s = r["latency_ms"], r.get("settings") or {}
        rows.append(
            {
                "artifact": r["name"],
                "kind": r.get("artifact_kind"),
                "runtime": r.get("runtime"),
                "threads": s.get("threads"),
                "xnnpack": s.get("xnnpack"),
                "size_mb": r["file_bytes"] / 1e6 if r.get("file_bytes") else None,
                "load_ms": r.get("load_ms"),
                "first_ms": r.get("first_inference_ms"),
                "p50_ms": lat.get("p50"),
                "p90_ms": lat.get("p90"),
                "p99_ms": lat.get("p99"),
                "mean_ms": lat.get("mean"),
                "min_ms": lat.get("min"),
                "peak_rss_mb": r.get("peak_rss_mb"),
                "rss_delta_mb": r.get("rss_delta_mb"),
                "mmacs": r["macs"] / 1e6 if r.get("macs") else None,
                "fp32_floor_ms": r.get("fp32_floor_ms"),
                "p50_over_floor": r.get("p50_over_fp32_floor"),
                "speedup": up,
                "error": r.get("error"),
            }
        )
    return bname, rows


def bench_markdown(results: Sequence[dict[str, Any]], baseline: str | int | None = None) -> str:
    """The results as markdown: the latency table with speed-ups over ``baseline`` (default: the
    PyTorch eager model, else the first result), the fp32 floor of every model next to the measured
    int8 p50s, and the environment."""
    bname, rows = _rows(results, baseline)
    cols = [
        ("artifact", "artifact"), ("kind", "kind"), ("runtime", "runtime"), ("threads", "threads"),
        ("xnnpack", "XNNPACK"), ("size_mb", "size MB"), ("load_ms", "load ms"), ("p50_ms", "p50 ms"),
        ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"), ("min_ms", "min ms"),
        ("peak_rss_mb", "peak RSS MB"), ("rss_delta_mb", "ΔRSS MB"), ("speedup", f"× vs {bname}"),
    ]  # fmt: skip
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for k, _ in cols:
            v = row[k]
            if k == "xnnpack":
                v = "—" if v is None else ("on" if v else "off")
            elif k == "speedup" and v is not None:
                v = f"{v:.2f}×"
            cells.append(_f(v) if not isinstance(v, str) else v)
        out.append("| " + " | ".join(cells) + " |")
    errors = [(r["artifact"], r["error"]) for r in rows if r["error"]]
    text = "\n".join(out) + "\n"
    if errors:
        text += "\n**Failed:**\n" + "".join(f"- {a}: {e}\n" for a, e in errors)
    text += "\n" + floor_markdown(results)
    env = next((r.get("environment") for r in results if r.get("environment")), None)
    if env:
        p = env["packages"]
        text += (
            f"\nMachine: {env['cpu_model']} ({env['machine']}, {env['cores']} cores, flags: "
            f"{', '.join(env['cpu_flags']) or 'none of interest'}), {env['os']}, Python {env['python']}; "
            + ", ".join(f"{k} {v}" for k, v in p.items() if v)
            + f". Load average at start: {env.get('loadavg')}.\n"
        )
    r0 = results[0] if results else {}
    text += (
        f"\nOne window of {r0.get('window_samples', '?')} samples per run (batch 1), "
        f"{r0.get('warmup')} warm-up runs, {r0.get('runs')} timed runs cycling through "
        f"{r0.get('n_windows')} windows; each artifact in {'a fresh process' if r0.get('isolated') else 'this process'}. "
        "Ratios between rows of this table are the figures to quote; absolute times move with the machine's load.\n"
    )
    return text


def floor_markdown(results: Sequence[dict[str, Any]]) -> str:
    """Per model: MACs, fp32 floor (``2 x MACs / one core's measured peak FLOP/s``) and the measured
    p50 of each of its artifacts as a multiple of that floor (int8 artifacts can beat it)."""
    rows = [r for r in results if _ok(r) and r.get("fp32_floor_ms")]
    if not rows:
        return "_(no fp32 floor: MACs or peak FLOP/s unknown)_\n"
    flops = rows[0]["peak_flops_one_core"]
    out = [
        f"fp32 floor = 2 × MACs / {flops / 1e9:.1f} GFLOP/s (measured single-thread fp32 GEMM peak of one core):",
        "",
        "| model | MMACs/window | fp32 floor ms | artifact | kind | p50 ms | p50 / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.get("model_name") or "", r["name"])):
        out.append(
            f"| {r.get('model_name')} | {r['macs'] / 1e6:.2f} | {r['fp32_floor_ms']:.3g} | {r['name']} | "
            f"{r.get('artifact_kind')} | {r['latency_ms']['p50']:.3g} | {r['p50_over_fp32_floor']:.2f} |"
        )
    return "\n".join(out) + "\n"


def plot_latencies(results: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Box plot (whiskers p1–p99, outliers shown) of the per-run latencies of every artifact."""
    rows = [r for r in results if _ok(r) and r.get("samples_ms")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [np.asarray(r["samples_ms"]) for r in rows]
    labels = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.6))
    box = {"whis": (1, 99), "showfliers": True, "flierprops": {"markersize": 2, "alpha": 0.5}}
    try:
        ax.boxplot(data, orientation="horizontal", **box)  # matplotlib >= 3.10
    except TypeError:
        ax.boxplot(data, vert=False, **box)
    ax.set_yticks(range(1, len(rows) + 1), labels, fontsize=8)
    ax.invert_yaxis()
    lo, hi = min(d.min() for d in data), max(d.max() for d in data)
    if hi / max(lo, 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per 10 s window, ms (batch 1)")
    env = rows[0].get("environment") or {}
    th = (rows[0].get("settings") or {}).get("threads")
    ax.set_title(f"{env.get('cpu_model', '')}, {th} thread(s): box p25–p75, whiskers p1–p99", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_bench_report(
    results: Sequence[dict[str, Any]],
    out_dir: str | Path,
    baseline: str | int | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``bench.json`` (every result, samples included), ``bench.csv`` (one row per result),
    ``bench.md`` (:func:`bench_markdown`) and ``bench.png`` (:func:`plot_latencies`) into ``out_dir``."""
    from anyppg_edge.io import atomic_write_text, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bname, rows = _rows(results, baseline)
    paths: dict[str, Path] = {}
    doc = {
        "schema": BENCH_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "baseline": bname,
        "results": list(results),
    }
    paths["json"] = write_json(out / "bench.json", json_safe(doc))
    buf = io.StringIO()
    wr = csv.DictWriter(
        buf, fieldnames=[*rows[0].keys(), "model_name", "environment"] if rows else ["artifact"]
    )
    wr.writeheader()
    for row, r in zip(rows, results, strict=True):
        env = r.get("environment") or {}
        wr.writerow(
            {
                **row,
                "model_name": r.get("model_name"),
                "environment": f"{env.get('cpu_model')}; {env.get('os')}",
            }
        )
    paths["csv"] = atomic_write_text(out / "bench.csv", buf.getvalue())
    paths["md"] = atomic_write_text(
        out / "bench.md", "# Latency benchmark\n\n" + bench_markdown(results, baseline)
    )
    if plot:
        png = plot_latencies(results, out / "bench.png")
        if png is not None:
            paths["png"] = png
    return paths


def bench_summary_text(results: Sequence[dict[str, Any]], baseline: str | int | None = None) -> str:
    """The speed-ups over the baseline and each model's fp32 floor, as ``export bench`` prints them."""
    lines: list[str] = []
    bname, ups = speedups(results, baseline)
    lines.append(f"Speed-up over {bname} (ratio of p50s in this run):")
    for r, up in zip(results, ups, strict=True):
        lines.append(f"  {r['name']}: " + (f"{up:.2f}x (p50 {r['latency_ms']['p50']:.3f} ms)" if up else f"failed: {r['error']}"))
    flops = next((r["peak_flops_one_core"] for r in results if r.get("peak_flops_one_core")), None)
    if flops:
        lines.append(f"fp32 floor = 2 x MACs / {flops / 1e9:.1f} GFLOP/s (single-thread fp32 GEMM peak of one core, measured now):")
    by_model: dict[str, list] = {}
    for r in results:
        if r.get("fp32_floor_ms"):
            by_model.setdefault(r["model_name"], []).append(r)
    for name, rs in by_model.items():
        floor = rs[0]["fp32_floor_ms"]
        int8 = [r for r in rs if (r.get("artifact_kind") or "").endswith("int8") and math.isfinite(r["latency_ms"]["p50"])]
        meas = "; ".join(f"{r['name']} p50 {r['latency_ms']['p50']:.3f} ms = {r['p50_over_fp32_floor']:.2f}x floor" for r in int8)
        lines.append(f"  {name}: {rs[0]['macs'] / 1e6:.2f} MMACs -> fp32 floor {floor:.3f} ms; int8 measured: {meas or 'no int8 artifact'}")
    return "\n".join(lines)
