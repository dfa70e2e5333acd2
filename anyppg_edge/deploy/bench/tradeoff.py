"""The input-rate trade-off table: 125 Hz and native-rate (25 / 50 Hz) watch students side by side.

Each row joins what the stages of one student already wrote:

* the distillation run (``retention.json`` of ``distill --recipe ...``): params, MACs per window,
  R@1 retention, cosine to the teacher and the HR-probe MAE, all on the same held-out windows (the
  val+test subjects of the shards; a native-rate student reads the same rows at its rate);
* the export run (``export_report.json`` of ``export all``): TFLite Micro's measured arena (host,
  64-bit; and the 32-bit estimate beside it) and the int8 TFLite's parity with its float model on
  the held-out ``../shared`` windows;
* optionally the generated C encoder's report (``c_report.json`` of ``export c``): Cortex-M4
  instructions per window on qemu, plain C and with the DSP (SMLAD) path.

Host int8 latency is measured here, in one process for every row (1 thread, the int8 TFLite through
LiteRT), so the rows compare on one machine; :func:`tradeoff_table` writes the markdown and JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyppg_edge.errors import MissingFileError

__all__ = ["TradeoffRun", "plot_tradeoff", "tradeoff_markdown", "tradeoff_rows", "tradeoff_table"]


@dataclass(frozen=True)
class TradeoffRun:
    """Where one student's reports are: its distillation run, its export folder, its C report folder."""

    distill_dir: Path
    export_dir: Path
    c_dir: Path | None = None


def _read(path: Path, made_by: str) -> dict[str, Any]:
    if not path.is_file():
        raise MissingFileError(f"{path} not found: run `{made_by}` first")
    return json.loads(path.read_text())


def _c_counts(c_dir: Path | None) -> dict[str, int | None]:
    out: dict[str, int | None] = {"plain C": None, "DSP (SMLAD)": None}
    if c_dir is None:
        return out
    rep = _read(Path(c_dir) / "c_report.json", "python -m export c MODEL ...")
    for b in rep.get("boards", []):
        if b.get("board") == "cortex-m4" and b.get("path") in out:
            out[b["path"]] = int(b["instructions/window"])
    return out


def tradeoff_rows(runs: list[TradeoffRun], latency_runs: int = 50) -> list[dict[str, Any]]:
    """One row per student (see the module docstring); latency measured here, 1 thread."""
    import numpy as np

    from anyppg_edge.deploy.bench.device import synthetic_windows
    from anyppg_edge.deploy.bench.latency import bench_artifacts
    from anyppg_edge.deploy.contract_io import read_contract

    rows = []
    for run in runs:
        ret = _read(Path(run.distill_dir) / "retention.json", "python -m anyppg_edge distill --recipe ...")
        exp = _read(Path(run.export_dir) / "export_report.json", "python -m export all --model ...")
        tfl = Path(exp["artifacts"]["tflite-int8"])
        if not tfl.is_file():
            tfl = Path(run.export_dir) / tfl.name
        contract = read_contract(tfl)
        int8 = next(p for p in exp["parity"] if p["artifact"] == "tflite-int8")
        arena = (exp.get("tflm") or {}).get("arena") or {}
        b = ret["budget"][0]
        r = ret.get("retrieval") or {}
        hr = ret["hr_probe"]
        windows = synthetic_windows(16, contract.window_samples, fs=float(contract.sample_rate_hz))
        lat = bench_artifacts([tfl], np.asarray(windows, np.float32), threads=1, warmup=5, runs=latency_runs,
                              cfg=contract.preprocess_config, measure_flops=False)[0]
        c = _c_counts(run.c_dir)
        rows.append({
            "model": exp["model"],
            "input Hz": contract.sample_rate_hz,
            "samples/window": contract.window_samples,
            "params": b["params"],
            "MMACs/window": b["MMACs/window"],
            "TFLM arena B (host, measured)": arena.get("min_arena_bytes"),
            "TFLM arena B (32-bit est.)": arena.get("mcu32_bytes"),
            "int8 latency ms (p50, 1 thread)": None if lat.get("error") else round(lat["latency_ms"]["p50"], 3),
            "M4 instr/window (plain C)": c["plain C"],
            "M4 instr/window (DSP)": c["DSP (SMLAD)"],
            "R@1 retention": None if not r else round(r["R@1_retention"], 3),
            "cos to teacher (mean)": round(ret["cosine"]["mean"], 3),
            "HR MAE bpm (teacher)": f"{hr['student']['MAE']:.2f} ({hr['teacher']['MAE']:.2f})",
            "int8 cos mean / p1": f"{int8['cos_mean']:.4f} / {int8['cos_p1']:.4f}",
            "held-out windows": ret["n_heldout_windows"],
        })
    return rows


def tradeoff_markdown(rows: list[dict[str, Any]]) -> str:
    from anyppg_edge.report import markdown_table

    return markdown_table(rows) + "\n"


_COSTS = (("MMACs/window", "MACs per window (M)", 1.0), ("TFLM arena B (host, measured)", "TFLM arena (kB)", 1e-3),
          ("M4 instr/window (DSP)", "Cortex-M4 instructions per window, DSP path (M)", 1e-6))


def plot_tradeoff(rows: list[dict[str, Any]], path: str | Path) -> Path | None:
    """What each student costs (MACs, TFLM arena, Cortex-M4 instructions: bars) against what it keeps
    (cosine to the teacher: the line), one group per student; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [f"{r['model'].removeprefix('student-watch-')}\n{r['input Hz']} Hz" for r in rows]
    costs = [(label, scale, [r.get(key) for r in rows]) for key, label, scale in _COSTS]
    costs = [(label, scale, vals) for label, scale, vals in costs if all(v is not None for v in vals)]
    fig, axes = plt.subplots(1, len(costs) + 1, figsize=(3.4 * (len(costs) + 1), 3.6))
    for ax, (label, scale, vals) in zip(axes, costs, strict=False):
        ax.bar(range(len(rows)), [v * scale for v in vals], color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(rows)), names, fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    ax = axes[-1]
    ax.plot(range(len(rows)), [r["cos to teacher (mean)"] for r in rows], "o-", label="cosine to teacher")
    ret = [r["R@1 retention"] for r in rows]
    if all(v is not None for v in ret):
        ax.plot(range(len(rows)), ret, "s--", label="R@1 retention (noisy)")
    ax.set_xticks(range(len(rows)), names, fontsize=7)
    ax.set_title("what the student keeps (held-out windows)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tradeoff_table(runs: list[TradeoffRun], out_dir: str | Path, latency_runs: int = 50,
                   plot: bool = True) -> list[dict[str, Any]]:
    """:func:`tradeoff_rows`, written as ``tradeoff.md``, ``tradeoff.json`` and (``plot``)
    ``tradeoff.png`` in ``out_dir``."""
    from anyppg_edge.report import atomic_write_text, write_json

    rows = tradeoff_rows(runs, latency_runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "tradeoff.json", {"rows": rows, "runs": [{k: str(v) for k, v in vars(r).items()} for r in runs]})
    png = plot_tradeoff(rows, out / "tradeoff.png") if plot else None
    atomic_write_text(out / "tradeoff.md", tradeoff_markdown(rows) + (f"\n![trade-off]({png.name})\n" if png else ""))
    return rows
