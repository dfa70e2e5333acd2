"""Step 3 of the GPU round trip (``gpu-check parity``): every artifact against the GPU model.

The GPU check (:mod:`anyppg_edge.gpu_check`) brings back one golden set per carried model
(``<model>.cuda.golden.npz``). :func:`gpu_parity` takes that folder and the carry folder it came
from, and for each carried model (teacher, student, native-rate student):

* verifies the returned golden set: the carried checkpoint (sha256) and the carried windows
  (same ids, bit-identical inputs), so it is the GPU model on this project's held-out windows;
* makes the CPU golden set of the same checkpoint and windows here (``export golden``'s format);
* finds the artifacts exported from that checkpoint: the ``export_report.json`` under the export
  roots (default ``runs/export``, ``runs/demo/export``) whose ``source_sha256`` is the checkpoint's;
* runs the parity suite (:func:`~anyppg_edge.deploy.parity.suite.run_parity`) with the GPU golden set
  as the reference: the checkpoint on this CPU, the CPU golden set and the float ONNX / TFLite
  artifacts under ``gpu-vs-cpu-float``, the int8 ones under their usual rows (and TFLM, bit-identical
  to LiteRT's reference kernels).

One table (``gpu_parity.md`` / ``.json``) says, per model, which artifacts passed which row and by
how much the GPU float model differs from the CPU one: the measured margin the provisional
``gpu-vs-cpu-float`` row is to be tightened from. Run on a CPU-made reference (the dry run of the
main job), the same code is a rehearsal: the float rows are then ``float-vs-float``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.errors import ContractMismatchError, DataFormatError, UsageError
from anyppg_edge.io import atomic_write_text, write_json
from anyppg_edge.paths import REPO_ROOT
from anyppg_edge.report import markdown_table

__all__ = ["DEFAULT_EXPORT_ROOTS", "SCHEMA", "find_export", "gpu_parity", "render_gpu_parity_markdown"]

SCHEMA = "anyppg-edge/gpu-parity/v1"
JSON_NAME, MD_NAME = "gpu_parity.json", "gpu_parity.md"
DEFAULT_EXPORT_ROOTS = ("runs/export", "runs/demo/export")
# the artifacts a model ships (the PTQ comparison artifacts of `export all` are not among them)
SHIPPED = ("onnx-float", "tflite-float", "onnx-int8", "tflite-int8")


def find_export(model: str, sha256: str, roots: Sequence[str | Path]) -> tuple[Path | None, dict[str, Path]]:
    """``(export folder, {kind: artifact})`` of the ``export all`` run of ``model`` from the checkpoint
    ``sha256``: a folder given directly, or one below a root, whose ``export_report.json`` names that
    model and source checkpoint. ``(None, {})`` when there is none."""
    candidates: list[Path] = []
    for root in map(Path, roots):
        if (root / "export_report.json").is_file():
            candidates.append(root)
        elif root.is_dir():
            candidates += sorted(p.parent for p in root.glob("*/export_report.json"))
    for folder in candidates:
        try:
            rep = json.loads((folder / "export_report.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rep.get("model") != model or rep.get("source_sha256") != sha256:
            continue
        found = {}
        for kind in SHIPPED:
            p = rep.get("artifacts", {}).get(kind)
            if p and (folder / Path(p).name).is_file():  # the report's paths are relative to where export ran
                found[kind] = folder / Path(p).name
        if found:
            return folder, found
    return None, {}


def _reference_for(returned: Path, model: str):
    """The returned golden set of ``model``: ``<model>.<device>.golden.npz`` (a CUDA one first)."""
    from anyppg_edge.deploy.parity.golden import load_golden_set

    files = sorted(returned.glob(f"{model}.*.golden.npz"), key=lambda p: (".cuda." not in p.name, p.name))
    return load_golden_set(files[0]) if files else None


def gpu_parity(
    returned_dir: str | Path,
    carry_dir: str | Path | None = None,
    out_dir: str | Path = "runs/parity/gpu",
    export_roots: Sequence[str | Path] | None = None,
    plot: bool = True,
    threads: int = 1,
    log_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Parity of every carried model's CPU float model, CPU golden set and exported artifacts
    against the golden sets a GPU check returned (see the module docstring). ``carry_dir``: the carry
    folder the check ran on (default: the one named in the returned ``gpu_check.json``, else
    ``runs/gpu_carry``). Returns the report (``passed``: every carried model had a returned golden set
    and every artifact is within its row); writes ``gpu_parity.{md,json}`` and one parity report per
    model under ``out_dir``."""
    from anyppg_edge.deploy.parity.golden import load_golden_windows, make_golden_set
    from anyppg_edge.deploy.parity.suite import check_same_source, run_parity
    from anyppg_edge.deploy.parity.tolerances import GPU_REFERENCE_ROW, TOLERANCES
    from anyppg_edge.gpu_check import DEFAULT_CARRY, load_carry
    from anyppg_edge.gpu_check import JSON_NAME as CHECK_JSON
    from anyppg_edge.models.loading import load_encoder
    from anyppg_edge.preprocessing import PreprocessConfig

    returned = Path(returned_dir)
    if not returned.is_dir():
        raise UsageError(f"no returned folder at {returned}: copy the GPU check's files (the `run` reply's files_at) "
                         "there, e.g. runs/gpu")
    check: dict[str, Any] = {}
    if (returned / CHECK_JSON).is_file():
        try:
            check = json.loads((returned / CHECK_JSON).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataFormatError(f"{returned / CHECK_JSON} is not valid JSON ({e}): copy the device's files again") from e
    if carry_dir is None:  # the folder the check ran on (the device's path is the checkout's path here)
        carry_dir = check.get("config", {}).get("carry_dir") or DEFAULT_CARRY
    carry = load_carry(carry_dir)
    roots = list(export_roots) if export_roots else [REPO_ROOT / r for r in DEFAULT_EXPORT_ROOTS]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models: list[dict[str, Any]] = []
    for role in carry.roles:
        path, model_name, entry = carry.checkpoint(role)
        m: dict[str, Any] = {"role": role, "model": model_name, "checkpoint_sha256": entry["sha256"],
                             "checkpoint_source": entry.get("source"), "rows": [], "integer_reference": [],
                             "failures": [], "notes": []}
        models.append(m)
        ref = _reference_for(returned, model_name)
        if ref is None:
            m["failures"].append(f"no golden set of {model_name} in {returned} (the device's golden section did not "
                                 "make it: see its gpu_check.md)")
            m["passed"] = False
            continue
        check_same_source(f"returned golden set {ref.path}", model_name, entry["sha256"], ref)
        windows, ids, meta = load_golden_windows(carry.golden_windows_for(role))
        if list(ref.window_ids) != ids or not np.array_equal(ref.windows, windows):
            raise ContractMismatchError(
                f"returned golden set {ref.path} is not of the carried windows {carry.golden_windows_for(role).name}: "
                f"name the carry folder the check ran on (--carry)")
        loaded = load_encoder(path, model_name, name_is_claim=False)
        pcfg = PreprocessConfig.from_dict(meta["preprocess"])
        cpu_golden = out / model_name / f"{model_name}.cpu.golden.npz"
        make_golden_set(loaded.encoder, model_name, loaded.sha256, windows, ids, cpu_golden, device="cpu", cfg=pcfg,
                        window_source=meta["description"],
                        created_by=f"anyppg-edge gpu-check parity (CPU reference of {ref.path.name})")
        artifacts: dict[str, Path] = {}
        if path is not None:
            artifacts[f"{path.name} (CPU float)"] = path
        artifacts["CPU golden set"] = cpu_golden
        folder, exported = find_export(model_name, entry["sha256"], roots)
        if folder is None:
            m["notes"].append(f"no artifacts exported from this checkpoint under {', '.join(map(str, roots))}: export "
                              f"them (`python -m export all --checkpoint {entry.get('source')}`) and run again")
        artifacts.update({p.name: p for p in exported.values()})
        m.update(reference=str(ref.path), reference_device=ref.provenance.get("device", {}), n_windows=len(ref),
                 export_dir=None if folder is None else str(folder))
        log_fn(f"{role}: {model_name} vs {ref.path.name} ({ref.device_type}): {len(artifacts)} artifacts"
               + (f" from {folder}" if folder else ""))
        rep = run_parity(artifacts, ref, out_dir=out / model_name, source_model=loaded.encoder, checkpoint=path,
                         plot=plot, threads=threads)
        m["rows"] = rep["rows"]
        m["integer_reference"] = [{k: x[k] for k in ("artifact", "bit_identical", "tflm_vs_litert_ref_max_abs")}
                                  for x in rep["integer_reference"]]
        m["failures"] += rep["failures"]
        m["notes"] += rep["notes"]
        m["passed"] = rep["passed"]
    reference_devices = sorted({m["reference_device"].get("type", "?") for m in models if "reference_device" in m})
    report = {
        "schema": SCHEMA,
        "returned": str(returned),
        "carry": str(carry.root),
        "check_passed": check.get("passed"),
        "reference_devices": reference_devices,
        "rehearsal": reference_devices != ["cuda"],
        "gpu_row": {GPU_REFERENCE_ROW: TOLERANCES[GPU_REFERENCE_ROW]},
        "models": models,
        "passed": bool(models) and all(m["passed"] for m in models),
        "files": [str(out / JSON_NAME), str(out / MD_NAME)],
    }
    write_json(out / JSON_NAME, report)
    atomic_write_text(out / MD_NAME, render_gpu_parity_markdown(report))
    return report


def _fmt(v: Any) -> Any:
    return f"{v:.3g}" if isinstance(v, float) else v


def render_gpu_parity_markdown(report: dict[str, Any]) -> str:
    """The table of :func:`gpu_parity`: one row per artifact, grouped by model."""
    from anyppg_edge.deploy.parity.tolerances import GPU_REFERENCE_ROW

    devs = ", ".join(report["reference_devices"]) or "none"
    lines = [f"# Parity against the GPU model ({'PASS' if report['passed'] else 'FAIL'})", "",
             f"Reference golden sets from `{report['returned']}` (made on: {devs}); carry folder `{report['carry']}`."]
    if report["rehearsal"]:
        lines += ["", "**Rehearsal:** the reference was not made on a GPU, so float artifacts are held to the "
                      f"float-vs-float row instead of `{GPU_REFERENCE_ROW}`; the round trip is the same."]
    rows = []
    for m in report["models"]:
        for r in m["rows"]:
            rows.append({"model": m["model"], "artifact": r["artifact"], "kind": r["kind"], "row": r["tolerance"],
                         **{k: _fmt(r[k]) for k in ("max_abs", "rel_max_abs", "cos_min")}, "pass": r["pass"]})
        for ir in m["integer_reference"]:
            rows.append({"model": m["model"], "artifact": f"{ir['artifact']} TFLM vs LiteRT ref",
                         "kind": "tflite-int8", "row": "int8-tflm-vs-litert-ref",
                         "max_abs": _fmt(ir["tflm_vs_litert_ref_max_abs"]), "rel_max_abs": "", "cos_min": "",
                         "pass": ir["bit_identical"]})
        if not m["rows"]:
            rows.append({"model": m["model"], "artifact": "(no reference)", "kind": "", "row": "", "max_abs": "",
                         "rel_max_abs": "", "cos_min": "", "pass": False})
    lines += ["", markdown_table(rows, ["model", "artifact", "kind", "row", "max_abs", "rel_max_abs", "cos_min", "pass"])]
    gpu_rows = [(m["model"], r) for m in report["models"] for r in m["rows"] if r["tolerance"] == GPU_REFERENCE_ROW]
    if gpu_rows:
        bound = report["gpu_row"][GPU_REFERENCE_ROW]
        worst = max(r["rel_max_abs"] for _, r in gpu_rows)
        lines += ["", f"`{GPU_REFERENCE_ROW}` (bounds {bound}): worst rel max abs {worst:.3g} over "
                      f"{len(gpu_rows)} float artifacts of {len({mm for mm, _ in gpu_rows})} models."]
    problems = [f"- {m['model']}: {x}" for m in report["models"] for x in m["failures"]]
    notes = [f"- {m['model']}: {x}" for m in report["models"] for x in m["notes"]]
    if problems:
        lines += ["", "Failures:", *problems]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"
