"""Parity reports (:func:`write_parity_report`): markdown, self-contained HTML, JSON and a histogram
of per-window cosine (``1 - cos``, per artifact) of a :func:`~anyppg_edge.deploy.parity.suite.run_parity`
report.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anyppg_edge.deploy.parity.downstream import DOWNSTREAM_COLUMNS
from anyppg_edge.io import atomic_write_text, write_json
from anyppg_edge.report import markdown_table

if TYPE_CHECKING:
    from anyppg_edge.deploy.parity.suite import ArtifactParity

__all__ = [
    "LAYER_COLUMNS",
    "TABLE_COLUMNS",
    "plot_cosine_histogram",
    "render_parity_html",
    "render_parity_markdown",
    "write_parity_report",
]

TABLE_COLUMNS = ["artifact", "kind", "tolerance", "max_abs", "cos_mean", "cos_p1", "cos_min", "pass"]
LAYER_COLUMNS = ["index", "layer", "op", "shape", "sqnr_db", "rel_err", "weight_sqnr_db", "jump_db"]


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
