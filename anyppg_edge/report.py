"""Small helpers for the markdown/JSON reports every command writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyppg_edge.io import atomic_write_text, write_json

__all__ = ["atomic_write_text", "markdown_table", "write_json"]


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_(none)_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
