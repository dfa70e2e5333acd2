"""The fixed top level, the one-way dependency rule between the library's layers, and no import cycle.

Layers, low to high: the base modules (errors, io, config, paths, report, preprocessing, contract,
model_input) < models < data < eval < train < deploy < stream < pipeline < cli. A module may import
its own layer and the layers below, never a layer above: at module level or inside a function alike.
export/, firmware_harness/ and calibration_data/ are the checkout's entry points over the library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from anyppg_edge.paths import REPO_ROOT

TOP_LEVEL = ("anyppg_edge", "export", "firmware_harness", "calibration_data", "tests", "pyproject.toml", "README.md")
LAYERS = ("base", "models", "data", "eval", "train", "deploy", "stream", "pipeline", "cli")
BASE = {"__init__", "errors", "io", "config", "paths", "report", "preprocessing", "contract", "model_input"}
LIB = REPO_ROOT / "anyppg_edge"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    if first == "__main__":
        first = "cli"
    if first in ("gpu_check", "gpu_parity"):  # the GPU half of the main job and its parity step, below the CLI
        first = "pipeline"
    return LAYERS.index("base" if first in BASE else first)


def library_imports(path: Path) -> set[str]:
    """Every ``anyppg_edge`` module ``path`` imports at run time, at module level or inside functions
    (imports under ``if TYPE_CHECKING:`` are for annotations only and never run)."""
    out: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("anyppg_edge")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("anyppg_edge"):
                continue
            for a in node.names:  # `from pkg import module` names a module when the file exists
                sub = f"{base}.{a.name}"
                out.add(sub if _exists(sub) else base)
    return out


def _exists(module: str) -> bool:
    p = REPO_ROOT / Path(*module.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): library_imports(p) for p in sorted(LIB.rglob("*.py"))}


def test_fixed_top_level_exists():
    missing = [name for name in TOP_LEVEL if not (REPO_ROOT / name).exists()]
    assert not missing, missing


def test_library_never_imports_the_outer_packages():
    pattern = re.compile(r"^\s*(from|import)\s+(export|firmware_harness|calibration_data)\b", re.M)
    offenders = [str(p.relative_to(REPO_ROOT)) for p in LIB.rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_layers_point_one_way():
    upward = [
        f"{mod} ({LAYERS[layer_of(mod)]}) imports {dep} ({LAYERS[layer_of(dep)]})"
        for mod, deps in import_graph().items()
        for dep in sorted(deps)
        if layer_of(dep) > layer_of(mod)
    ]
    assert not upward, "\n".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m == n or m not in graph:
                continue
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle_between_modules():
    # a package's __init__ re-exporting its modules is not a cycle of ideas: drop package -> own-module edges
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in import_graph().items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("mod, dep", [("anyppg_edge.models.net1d", "anyppg_edge.deploy.runtime"),
                                      ("anyppg_edge.preprocessing", "anyppg_edge.models")])
def test_layer_rule_catches_an_upward_import(mod, dep):
    assert layer_of(dep) > layer_of(mod)
