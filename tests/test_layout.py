"""The fixed top level and the one-way dependency rule: export/ and firmware_harness/ may import
anyppg_edge, never the reverse."""

from __future__ import annotations

import re

from anyppg_edge.paths import REPO_ROOT

TOP_LEVEL = ("anyppg_edge", "export", "firmware_harness", "calibration_data", "tests", "pyproject.toml", "README.md")


def test_fixed_top_level_exists():
    missing = [name for name in TOP_LEVEL if not (REPO_ROOT / name).exists()]
    assert not missing, missing


def test_library_never_imports_the_outer_packages():
    pattern = re.compile(r"^\s*(from|import)\s+(export|firmware_harness|calibration_data)\b", re.M)
    offenders = [
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "anyppg_edge").rglob("*.py")
        if pattern.search(p.read_text())
    ]
    assert not offenders, offenders
