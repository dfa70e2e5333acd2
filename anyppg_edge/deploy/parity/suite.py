"""The parity suite: does an artifact compute what the float model computes?

One entry point for every artifact and path (``python -m export parity``, :func:`run_parity`):

1. **Embedding parity** (:func:`artifact_parity`): the artifact is opened with
   :func:`~anyppg_edge.deploy.runtime.open_encoder` (its input contract is checked against the
   golden set's preprocessing config, and its source checkpoint sha256 against the golden set's,
   :func:`check_same_source`), embeds the golden windows, and is held to the row of the one
   tolerance table :data:`~anyppg_edge.deploy.parity.tolerances.TOLERANCES` that its kind selects
   (:func:`~anyppg_edge.deploy.parity.tolerances.tolerance_row`: float artifacts against a golden set
   made on a GPU use ``gpu-vs-cpu-float``). Artifacts: ``.onnx`` / ``.tflite`` files, a PyTorch
   checkpoint (``.pt``, kind ``pytorch-float``: the float model on this host's CPU, e.g. against a
   GPU golden set), a ``.npy`` of embeddings of the golden windows written by another runtime path
   (kind ``streaming`` by default: the streaming harness output), or another golden set ``.npz`` of
   the same model and windows (kind ``golden-float``: the CPU golden set against a GPU one is held to
   ``gpu-vs-cpu-float``).
2. **Localisation** (:func:`~anyppg_edge.deploy.parity.localize.localize`), when parity fails (or
   on request): per-layer comparison with the source model, naming the first layer where the error
   jumps and the layers whose weights differ from the source's (``check_weights`` makes the latter a
   failure). Matching rules: :mod:`anyppg_edge.deploy.parity.localize`.
3. **Downstream parity** (:func:`~anyppg_edge.deploy.parity.downstream.downstream_parity`): HR probe
   and retrieval R@1 of the float model and each artifact side by side on ``../shared``.
4. **Reports** (:func:`~anyppg_edge.deploy.parity.report.write_parity_report`): markdown, HTML, JSON
   and a histogram of per-window cosine.

:func:`parity_table_for` is the one-call table for the end of the main job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.parity.downstream import downstream_parity
from anyppg_edge.deploy.parity.golden import GoldenSet, load_golden_set
from anyppg_edge.deploy.parity.localize import localize
from anyppg_edge.deploy.parity.report import TABLE_COLUMNS, write_parity_report
from anyppg_edge.deploy.parity.tolerances import (
    TOLERANCES,
    cosine_rows,
    embedding_parity,
    row_failures,
    tolerance_failures,
    tolerance_row,
    weight_tolerance_row,
)
from anyppg_edge.errors import ContractMismatchError
from anyppg_edge.report import markdown_table

log = logging.getLogger(__name__)

__all__ = [
    "ArtifactParity",
    "SourceMismatchError",
    "artifact_parity",
    "check_same_source",
    "integer_reference_parity",
    "parity_table_for",
    "run_parity",
]



class SourceMismatchError(ContractMismatchError):
    """Artifact, golden set and source checkpoint do not come from the same weights."""


# --------------------------------------------------------------------------------------------------
# embedding parity
# --------------------------------------------------------------------------------------------------


@dataclass
class ArtifactParity:
    """Parity of one artifact against a golden set."""

    label: str
    path: str
    kind: str
    tolerance: str  # row of TOLERANCES
    metrics: dict[str, float]
    failures: list[str]
    cosines: np.ndarray
    contract: dict[str, Any] = field(default_factory=dict)
    worst_windows: list[dict[str, Any]] = field(default_factory=list)
    localisation: dict[str, Any] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    runtime: str = ""  # "tflm" for the TensorFlow Lite Micro row of an int8 TFLite, else its default runtime

    @property
    def passed(self) -> bool:
        return not self.failures

    def failure_message(self) -> str:
        return f"FAIL {self.label} ({self.kind}): " + "; ".join(self.failures)

    def table_row(self) -> dict[str, Any]:
        return {
            "artifact": self.label,
            "file": Path(self.path).name,
            "kind": self.kind,
            "tolerance": self.tolerance,
            **{k: self.metrics[k] for k in ("max_abs", "rel_max_abs", "cos_mean", "cos_p1", "cos_min")},
            "pass": self.passed,
            "failures": "; ".join(self.failures),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.table_row(),
            "path": self.path,
            "metrics": self.metrics,
            "contract": self.contract,
            "worst_windows": self.worst_windows,
            "localisation": self.localisation,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "runtime": self.runtime,
        }


def _kind_of_suffix(path: Path) -> str | None:
    return {".pt": "pytorch-float", ".pth": "pytorch-float", ".npy": "streaming",
            ".npz": "golden-float"}.get(path.suffix.lower())


def _golden_cfg(golden: GoldenSet):
    from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

    d = golden.provenance.get("preprocess")
    return PreprocessConfig.from_dict(d) if d else DEFAULT_CONFIG


def check_same_source(
    what: str, model_name: str, sha: str, golden: GoldenSet, embedding_dim: int | None = None
) -> list[str]:
    """Raise :class:`SourceMismatchError` when ``what`` (model ``model_name`` from checkpoint ``sha``)
    was not made from the golden set's weights; returns notes for checks that could not be made."""
    notes = []
    gsha = golden.checkpoint_sha256
    if not sha:
        notes.append(f"{what}: no source checkpoint sha256 recorded; not checked against the golden set")
    elif gsha and sha != gsha:
        raise SourceMismatchError(
            f"{what} was made from checkpoint sha256 {sha[:16]}… ({model_name}), the golden set from "
            f"{gsha[:16]}… ({golden.model_name}): not the same weights, parity is meaningless. Make a "
            "golden set from the artifact's source checkpoint (`python -m export golden`)."
        )
    if embedding_dim is not None and embedding_dim != golden.embeddings.shape[1]:
        raise SourceMismatchError(
            f"{what} outputs {embedding_dim}-d embeddings, the golden set holds {golden.embeddings.shape[1]}-d ones"
        )
    return notes


def artifact_parity(
    artifact: str | Path,
    golden: GoldenSet | str | Path,
    kind: str | None = None,
    label: str | None = None,
    threads: int = 1,
    model_name: str | None = None,
    runtime: str | None = None,
) -> ArtifactParity:
    """Embed the golden windows with ``artifact`` and compare with the golden embeddings.

    ``.onnx`` / ``.tflite``: opened by :func:`open_encoder` with the golden set's preprocessing
    config (contract mismatch: :class:`ContractMismatchError`); ``.pt``: a checkpoint of registry
    model ``model_name`` (default: the golden set's) run as ``pytorch-float`` on the CPU; ``.npy``:
    embeddings ``[N, D]`` of the golden windows, in golden order (``kind`` default ``streaming``).
    ``runtime``: the runtime of a file (``open_encoder``'s: ``tflm`` runs a ``.tflite`` in TensorFlow
    Lite Micro). Raises :class:`SourceMismatchError` when the artifact's source checkpoint is not the golden's."""
    from anyppg_edge.contract import InputContract
    from anyppg_edge.deploy.runtime import open_encoder

    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    path = Path(artifact)
    if not path.is_file():
        raise FileNotFoundError(f"artifact not found: {path}")
    cfg = _golden_cfg(golden)
    t0 = time.time()
    contract: dict[str, Any] = {}
    notes: list[str] = []
    suffix_kind = _kind_of_suffix(path)
    ref_device = golden.device_type  # which device the reference was computed on (selects the row)
    if suffix_kind == "golden-float":  # another golden set of the same model and windows (CPU vs GPU float)
        from anyppg_edge.deploy.parity.golden import golden_as_artifact

        other = golden_as_artifact(path, golden)
        notes += check_same_source(str(path), other.model_name, other.checkpoint_sha256, golden, other.embeddings.shape[1])
        notes.append(f"{path.name}: golden set made on {other.device_type}, reference made on {golden.device_type}")
        if "cuda" in (other.device_type, golden.device_type):
            ref_device = "cuda"
        emb = other.embeddings
        kind = kind or "golden-float"
    elif suffix_kind == "streaming":
        emb = np.load(path, allow_pickle=False)
        if emb.shape != golden.embeddings.shape:
            raise ContractMismatchError(
                f"{path}: embeddings of shape {emb.shape}, the golden set has {golden.embeddings.shape} "
                "(one row per golden window, in golden order)"
            )
        kind = kind or "streaming"
        notes.append(f"{path.name}: precomputed embeddings, no contract or source checkpoint to check")
    elif suffix_kind == "pytorch-float":
        from anyppg_edge.models.loading import load_encoder

        name = model_name or golden.model_name
        loaded = load_encoder(path, name)
        model, sha = loaded.encoder, loaded.sha256
        notes += check_same_source(str(path), name, sha, golden, int(model.out_dim))
        c = InputContract.for_model(name, "pytorch-float", int(model.out_dim), sha, cfg)
        enc = open_encoder(model, cfg, contract=c, threads=threads)
        contract = c.to_dict()
        emb = enc.embed(golden.windows)
        kind = kind or "pytorch-float"
    else:
        enc = open_encoder(path, cfg, threads=threads) if runtime in (None, "litert") else open_encoder(path, cfg, runtime=runtime)
        c = enc.contract
        contract = c.to_dict()
        if golden.model_name and c.model_name != golden.model_name:
            notes.append(f"{path.name} is model {c.model_name!r}, the golden set {golden.model_name!r}")
        notes += check_same_source(str(path), c.model_name, c.source_checkpoint_sha256, golden, enc.embedding_dim)
        emb = enc.embed(golden.windows)
        kind = kind or enc.kind
    row = tolerance_row(kind, ref_device)
    m = embedding_parity(golden.embeddings, emb)
    cos = cosine_rows(golden.embeddings, emb)
    worst = [
        {"window": str(golden.window_ids[i]), "index": int(i), "cos": float(cos[i])}
        for i in np.argsort(cos)[: min(5, len(cos))]
    ]
    return ArtifactParity(
        label=label or path.name,
        path=str(path),
        kind=kind,
        tolerance=row,
        metrics=m,
        failures=[f"{f} [tolerance row {row!r}]" for f in tolerance_failures(kind, m, ref_device)],
        cosines=cos,
        contract=contract,
        worst_windows=worst,
        seconds=time.time() - t0,
        notes=notes,
        runtime=runtime or "",
    )


def integer_reference_parity(artifact: str | Path, windows: np.ndarray, cfg: Any = None) -> dict[str, Any]:
    """An int8 ``.tflite`` in TensorFlow Lite Micro vs LiteRT's reference kernels on ``windows``: held
    to the bit-identical row ``int8-tflm-vs-litert-ref``. LiteRT's default path (XNNPACK) is measured
    against TFLM beside it and reported, not bounded: it requantizes with its own rounding."""
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.preprocessing import DEFAULT_CONFIG

    cfg = cfg or DEFAULT_CONFIG
    tflm = open_encoder(artifact, cfg, runtime="tflm")
    ref = open_encoder(artifact, cfg, reference_kernels=True).embed(windows)
    xnn = open_encoder(artifact, cfg).embed(windows)
    z = tflm.embed(windows)
    row = "int8-tflm-vs-litert-ref"
    m = embedding_parity(ref, z)
    mx = embedding_parity(z, xnn)
    return {
        "artifact": Path(artifact).name,
        "tolerance": row,
        "n_windows": len(z),
        "bit_identical": bool(np.array_equal(z, ref)),
        "tflm_vs_litert_ref_max_abs": m["max_abs"],
        "xnnpack_vs_tflm_max_abs": mx["max_abs"],
        "xnnpack_vs_tflm_cos_min": mx["cos_min"],
        "arena": tflm.arena.to_dict() if tflm.arena is not None else None,
        "failures": [f"{f} [tolerance row {row!r}]" for f in row_failures(row, m)],
        "note": "XNNPACK and LiteRT's optimised builtin kernels requantize with their own rounding "
        "(e.g. fused fixed-point paths), so they differ from the reference integer arithmetic by a few "
        "int8 steps; TFLM and BUILTIN_REF share the reference kernels",
    }


# --------------------------------------------------------------------------------------------------
# the run: parity of several artifacts, localisation, downstream, reports
# --------------------------------------------------------------------------------------------------


def run_parity(
    artifacts: Sequence[str | Path] | Mapping[str, str | Path],
    golden: GoldenSet | str | Path,
    out_dir: str | Path | None = None,
    source_model: Any = None,
    checkpoint: str | Path | None = None,
    localize_mode: str = "auto",
    localize_windows: int = 8,
    downstream: bool = False,
    downstream_kw: Mapping[str, Any] | None = None,
    kind: str | None = None,
    threads: int = 1,
    plot: bool = True,
    check_weights: bool = False,
    tflm: bool = True,
) -> dict[str, Any]:
    """Parity of every artifact against ``golden``; every int8 ``.tflite`` also in TensorFlow Lite
    Micro (``tflm``: a row ``<label> [TFLM]`` against the golden set, and
    :func:`integer_reference_parity`, bit-identical to LiteRT's reference kernels); localisation (``localize_mode``: ``"auto"`` =
    failing artifacts only, ``"always"``, ``"never"``; needs ``source_model``, the Net1D the
    artifacts were exported from); optional downstream parity; reports in ``out_dir``.
    ``check_weights``: localise every artifact and fail those whose weights differ from the
    source's (needs ``source_model``).

    Returns the report dict (``passed``: every artifact within tolerance)."""
    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    items = list(artifacts.items()) if isinstance(artifacts, Mapping) else [(Path(a).name, a) for a in artifacts]
    results: list[ArtifactParity] = []
    integer_ref: list[dict[str, Any]] = []
    for label, p in items:
        res = artifact_parity(p, golden, kind=kind, label=label, threads=threads)
        results.append(res)
        log.info("%s: %s", label, "pass" if res.passed else res.failure_message())
        if tflm and res.kind == "tflite-int8":
            res_m = artifact_parity(p, golden, kind=kind, label=f"{label} [TFLM]", runtime="tflm")
            results.append(res_m)
            log.info("%s: %s", res_m.label, "pass" if res_m.passed else res_m.failure_message())
            integer_ref.append(integer_reference_parity(p, golden.windows, _golden_cfg(golden)))
    notes: list[str] = []
    if check_weights and source_model is None:
        raise ValueError("check_weights needs the source model (--checkpoint)")
    for res in results:
        want = check_weights or localize_mode == "always" or (localize_mode == "auto" and not res.passed)
        if not want or res.runtime == "tflm" or Path(res.path).suffix.lower() not in (".onnx", ".tflite"):
            continue
        if source_model is None:
            notes.append(f"{res.label}: not localised (give the source checkpoint: --checkpoint)")
            continue
        n = min(localize_windows, len(golden))
        res.localisation = localize(res.path, source_model, golden.windows[:n], kind=res.kind)
        if check_weights and res.localisation["weights_differ"]:
            row = weight_tolerance_row(res.kind)
            res.failures.append(
                f"weights differ from the source checkpoint (tolerance row {row!r}: weight SQNR min "
                f"{TOLERANCES[row]['weight_sqnr_db_min']:g} dB) at "
                + ", ".join(f"{w['layer']} ({w['weight_sqnr_db']:.1f} dB)" for w in res.localisation["weights_differ"][:5])
            )
    report: dict[str, Any] = {
        "golden": {
            "path": str(golden.path) if golden.path else "",
            "description": golden.describe(),
            "provenance": {k: v for k, v in golden.provenance.items() if k != "preprocess"},
        },
        "tolerances": {r.tolerance: TOLERANCES[r.tolerance] for r in results},
        "artifacts": [r.to_dict() for r in results],
        "rows": [r.table_row() for r in results],
        "integer_reference": integer_ref,
        "passed": all(r.passed for r in results) and not any(x["failures"] for x in integer_ref),
        "failures": [r.failure_message() for r in results if not r.passed]
        + [f"FAIL {x['artifact']} (TFLM vs LiteRT reference kernels): " + "; ".join(x["failures"]) for x in integer_ref if x["failures"]],
        "notes": [n for r in results for n in r.notes] + notes,
    }
    if downstream:
        if source_model is None:
            raise ValueError("downstream parity needs the source model (--checkpoint)")
        report["downstream"] = downstream_parity(
            {label: p for label, p in items if Path(p).suffix.lower() in (".onnx", ".tflite")},  # results also hold [TFLM] rows
            source_model,
            checkpoint,
            threads=threads,
            **{"cfg": _golden_cfg(golden), **dict(downstream_kw or {})},
        )
    if out_dir is not None:
        report["files"] = write_parity_report(report, results, out_dir, plot=plot)
    return report


def parity_table_for(
    artifacts: Mapping[str, str | Path], golden: GoldenSet | str | Path, threads: int = 1
) -> tuple[list[dict[str, Any]], str]:
    """``(rows, markdown)``: parity of every artifact (label → path) against ``golden`` with the
    verdict of the tolerance table; an int8 ``.tflite`` also in TensorFlow Lite Micro (a ``[TFLM]``
    row, and a row of TFLM vs LiteRT's reference kernels, bit-identical); for the main job's report."""
    golden = golden if isinstance(golden, GoldenSet) else load_golden_set(golden)
    rows = []
    for label, p in artifacts.items():
        try:
            res = artifact_parity(p, golden, label=label, threads=threads)
            rows.append(res.table_row())
            if res.kind == "tflite-int8":
                rows.append(artifact_parity(p, golden, label=f"{label} [TFLM]", runtime="tflm").table_row())
                ir = integer_reference_parity(p, golden.windows, _golden_cfg(golden))
                rows.append({"artifact": f"{label} [TFLM vs LiteRT ref]", "file": Path(p).name, "kind": "tflite-int8",
                             "tolerance": ir["tolerance"], "max_abs": ir["tflm_vs_litert_ref_max_abs"],
                             "pass": not ir["failures"],
                             "failures": "; ".join(ir["failures"]) or f"XNNPACK vs TFLM max abs {ir['xnnpack_vs_tflm_max_abs']:.3g}"})
        except (ContractMismatchError, FileNotFoundError, ValueError) as e:
            rows.append({"artifact": label, "file": Path(p).name, "kind": "?", "tolerance": "-", "pass": False,
                         "failures": f"not evaluated: {type(e).__name__}: {e}"})
    md = (
        f"Parity vs the golden set ({golden.describe()}); tolerances "
        "`anyppg_edge.deploy.parity.tolerances.TOLERANCES`.\n\n"
        + markdown_table(rows, [*TABLE_COLUMNS, "failures"])
    )
    return rows, md
