"""A calibration set in markdown: per-subject rows, then the HR-bin x quality-level table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anyppg_edge.deploy.calibration.build import HR_BIN_LABELS, QUALITY_LEVELS
from anyppg_edge.deploy.calibration.store import CalibrationSet
from anyppg_edge.report import markdown_table

__all__ = ["calibration_summary_markdown"]


def calibration_summary_markdown(cs: CalibrationSet, out: Path | None = None) -> str:
    """Markdown summary of a set: per-subject rows, then the HR-bin x quality-level table."""
    m = cs.manifest
    rows = []
    for ds, sid in sorted(set(zip(cs.dataset.tolist(), cs.subject_id.tolist(), strict=True))):
        sel = (cs.dataset == ds) & (cs.subject_id == sid)
        hr = cs.hr_bpm[sel]
        rows.append(
            {
                "dataset": ds,
                "subject": sid,
                "windows": int(sel.sum()),
                "HR min": round(float(hr.min()), 1),
                "HR max": round(float(hr.max()), 1),
                "quality median": round(float(np.median(cs.quality[sel])), 3),
                "HR from ECG": int((cs.hr_source[sel] == "ecg-rpeaks").sum()),
            }
        )
    grid = []
    for b in HR_BIN_LABELS:
        row: dict = {"HR bin (bpm)": b}
        for q in QUALITY_LEVELS:
            row[f"q-{q}"] = int(((cs.hr_bin == b) & (cs.quality_level == q)).sum())
        row["total"] = int((cs.hr_bin == b).sum())
        grid.append(row)
    edges = ", ".join(f"{e:.3f}" for e in m.get("quality_tertile_edges", []))
    rej = ", ".join(f"{k} {v}" for k, v in m.get("rejected", {}).items()) or "-"
    lines = [
        f"# Calibration set: {m['count']} windows "
        f"({m['window_samples']} samples at {m['sample_rate_hz']} Hz)",
        "",
        f"sources {m['sources']}, seed {m['seed']}, candidates {m['candidates']['labelled']}, "
        f"rejected by quality gates: {rej}",
        f"quality tertile edges: {edges}; preprocessing config {m['preprocess_config_hash'][:12]}",
        f"sha256 {m['sha256']}",
        "",
        markdown_table(rows),
        markdown_table(grid),
    ]
    if out is not None:
        lines.append(f"written to {out}")
    return "\n".join(lines)
