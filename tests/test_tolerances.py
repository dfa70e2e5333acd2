"""The one tolerance table (issue 16): every parity bar of the library is a row of
``anyppg_edge.deploy.parity.tolerances.TOLERANCES``, and no module writes a tolerance number of its own.

Light: numpy and the standard library only (no torch / TFLite), so it runs everywhere.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest

from anyppg_edge.deploy.parity.tolerances import (
    STREAM_MODE_ROWS,
    TOLERANCE_FOR_KIND,
    TOLERANCES,
    row_failures,
    tolerance,
)

ROOT = Path(__file__).resolve().parents[1]
# The packages of the library (pyproject: [tool.setuptools.packages.find]).
LIBRARY = ("anyppg_edge", "export", "firmware_harness", "calibration_data")
TABLE = Path("anyppg_edge/deploy/parity/tolerances.py")

# Rule 1: a float in [0.9, 1) is a cosine (or correlation) bar unless it is one of these
# non-tolerance uses: Adam's betas, and random draws (e.g. a heart rate in beats per second).
COSINE_LIKE = (0.9, 1.0)
NOT_A_TOLERANCE_CALLS = {"uniform", "normal", "integers", "beta"}
NOT_A_TOLERANCE_TARGETS = re.compile(r"betas?$")
# Rules 2 and 3: a number compared with, or bound to a name of, a parity metric.
METRICS = re.compile(r"cosine|cos|max_abs|sqnr|rel_err|int8_same_frac|int8_max_step")
BOUNDS = re.compile(r"min|max|tol|bar|threshold|floor|bound|limit|parity")


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _number(node.operand)
        return None if v is None else -v
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _is_metric_bound_name(name: str) -> bool:
    """``cos_min_min``, ``parity_min_cosine_float_model``, ``max_abs_tol``: a metric token and a
    bound token; ``cosine_weight`` (a loss weight) or ``parity_duration_s`` are not."""
    name = name.lower()
    if not METRICS.search(name):
        return False
    return bool(BOUNDS.search(METRICS.sub("_", name)))


def tolerance_literals(source: str, filename: str = "<src>") -> list[str]:
    """Every place in ``source`` that writes a parity tolerance as a number (see the three rules)."""
    tree = ast.parse(source, filename)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node

    def excused(node: ast.AST) -> bool:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.Call):
                f = node.func
                fname = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                if fname in NOT_A_TOLERANCE_CALLS:
                    return True
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            if any(isinstance(t, ast.Name) and NOT_A_TOLERANCE_TARGETS.search(t.id) for t in targets):
                return True
            if isinstance(node, ast.stmt):
                return False
        return False

    found: list[str] = []

    def hit(node: ast.AST, why: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {why}")

    for node in ast.walk(tree):
        v = _number(node) if isinstance(node, ast.Constant) else None
        if v is not None and COSINE_LIKE[0] <= v < COSINE_LIKE[1] and not excused(node):
            hit(node, f"cosine-like literal {v:g}")
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_number(s) is not None for s in sides) and any(
                _number(s) is None and METRICS.search(ast.unparse(s).lower()) for s in sides
            ):
                hit(node, f"metric compared with a literal: {ast.unparse(node)}")
        pairs: list[tuple[str, ast.AST | None]] = []
        if isinstance(node, ast.Dict):
            pairs += [(k.value, v_) for k, v_ in zip(node.keys, node.values, strict=True)
                      if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        elif isinstance(node, ast.keyword) and node.arg:
            pairs.append((node.arg, node.value))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            pairs += [(t.id, node.value) for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.arguments):
            pos = node.posonlyargs + node.args
            pairs += [(a.arg, d) for a, d in zip(pos[len(pos) - len(node.defaults):], node.defaults, strict=True)]
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        for name, value in pairs:
            if value is not None and _number(value) is not None and _is_metric_bound_name(name):
                hit(value, f"{name} = {ast.unparse(value)}")
    return found


def _library_files() -> list[Path]:
    files = [p for pkg in LIBRARY for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert files and any(p.relative_to(ROOT) == TABLE for p in files)
    return files


# ------------------------------------------------------------------------------------------- the scan


def test_no_tolerance_number_outside_the_table():
    found = []
    for p in _library_files():
        rel = p.relative_to(ROOT)
        if rel != TABLE:
            found += tolerance_literals(p.read_text(encoding="utf-8"), str(rel))
    assert not found, "tolerance numbers outside TOLERANCES (add a row to the table and read it):\n" + "\n".join(found)


def test_the_table_itself_is_seen_by_the_scan():
    """The scan finds every bound of the table in tolerances.py: it would find them anywhere else."""
    found = tolerance_literals((ROOT / TABLE).read_text(encoding="utf-8"), str(TABLE))
    n_bounds = sum(len(row) for row in TOLERANCES.values())
    assert len([f for f in found if "_min = " in f or "_max = " in f]) == n_bounds


@pytest.mark.parametrize(
    "snippet",
    [
        "ok = cos.mean() >= 0.99\n",
        "BARS = {'parity_min_cosine': 0.9999}\n",
        "if 0.97 > metrics['cos_p1']:\n    pass\n",
        "def check(emb, max_abs_tol=1e-4):\n    pass\n",
        "assert err_max_abs <= 1e-5\n",
        "row = {'weight_sqnr_db_min': 25.0}\n",
        "if sqnr < 25:\n    pass\n",
        "report(threshold=0.995)\n",
        "x = -0.95 if False else 0.0\n",
    ],
)
def test_scan_catches_a_planted_tolerance(snippet):
    assert tolerance_literals(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "betas: tuple[float, float] = (0.9, 0.999)\n",
        "hr = rng.uniform(0.9, 1.8)\n",
        "cosine_weight: float = 1.0\n",
        "def f(parity_duration_s=120.0):\n    pass\n",
        "cos = cosine_rows(a, b)\nbad = cos < TOLERANCES['int8-vs-float']['cos_p1_min']\n",
        "eps = 1e-8\n",
    ],
)
def test_scan_lets_non_tolerances_through(snippet):
    assert not tolerance_literals(snippet), tolerance_literals(snippet)


# -------------------------------------------------------------------------------- streaming rows


def test_streaming_bars_are_the_table_rows():
    from anyppg_edge.stream.replay import BARS

    ref, dev = TOLERANCES["stream-reference-vs-offline"], TOLERANCES["stream-device-vs-offline"]
    assert BARS["parity_max_abs_float64"] == ref["max_abs_max"] == 1e-5
    assert BARS["parity_max_abs_float32_device"] == dev["max_abs_max"] == 1e-3
    assert BARS["parity_min_cosine_float_model"] == ref["cos_min_min"] == 0.9999
    assert BARS["parity_min_cosine_float_model_device"] == dev["cos_min_min"] == 0.9999
    # the parity suite's `streaming` artifact kind keeps its own (int8-like) row
    assert TOLERANCE_FOR_KIND["streaming"] == "streaming-vs-offline"
    assert TOLERANCES["streaming-vs-offline"] == {"cos_mean_min": 0.99, "cos_p1_min": 0.97}
    assert set(STREAM_MODE_ROWS.values()) <= set(TOLERANCES)


def test_row_failures_on_parity_report_metrics():
    """The stream rows bound the per-mode metrics of ``stream.replay.parity_report`` as they are."""
    assert row_failures(STREAM_MODE_ROWS["reference"], {"max_abs": 0.0, "cos_min": 1.0}) == []
    fails = row_failures(STREAM_MODE_ROWS["device"], {"max_abs": 2e-3, "cos_min": 0.99999})
    assert len(fails) == 1 and fails[0].startswith("max_abs = 0.002") and "max 0.001" in fails[0]
    assert row_failures(STREAM_MODE_ROWS["reference"], {"max_abs": 0.0, "cos_min": math.nan})  # NaN fails
    assert tolerance("int8-vs-float", "cos_p1_min") == 0.97
    with pytest.raises(KeyError, match="no tolerance row"):
        tolerance("streamed", "cos_min_min")
    with pytest.raises(KeyError, match="has no"):
        tolerance("int8-vs-float", "cos_min_min")


def test_every_row_is_well_formed():
    for name, row in TOLERANCES.items():
        assert row, name
        for key, bound in row.items():
            metric, side = key.rsplit("_", 1)
            assert side in ("min", "max") and metric, (name, key)
            assert isinstance(bound, float) and math.isfinite(bound), (name, key)
