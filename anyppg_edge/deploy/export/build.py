"""One call from a trained Net1D to its four deployable artifacts, with graph and parity reports.

:func:`export_all`:

1. fold BN, build the deploy graph (float) and check it against the PyTorch model;
2. **float artifacts**: ONNX (dynamo export) and TFLite (TF-native rebuild), each with its contract;
3. **PTQ baseline**: brevitas calibration of every activation scale on the calibration iterator;
4. **QAT**: the PTQ model fine-tuned on the trainer with a distillation loss against the float model;
5. **int8 artifacts**: TFLite full-int8 carrying the QAT brevitas scales (plus the PTQ model's TFLite
   for comparison), and ONNX int8 QDQ (onnxruntime static quantization on the same calibration
   iterator; S8S8, the format ARM kernels execute as int8);
6. **reports**: graph report (op census, float compute ops, Flex ops, transposes, size), embedding
   parity of every artifact against the float PyTorch model on real windows with the verdict of
   :data:`~anyppg_edge.deploy.parity.tolerances.TOLERANCES`, and per-layer SQNR / TFLite-vs-brevitas step
   agreement for the int8 TFLite; markdown + JSON + a plot.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.contract import InputContract
from anyppg_edge.deploy.export.config import ExportConfig
from anyppg_edge.io import atomic_write_text, remove_stale_temporaries
from anyppg_edge.models.net1d import Net1D
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig
from anyppg_edge.report import markdown_table, write_json

log = logging.getLogger(__name__)


def _batches(windows: np.ndarray, batch_size: int):
    for i in range(0, len(windows), batch_size):
        yield windows[i : i + batch_size, None, :]


def export_all(
    model: Net1D,
    model_name: str,
    source_sha256: str,
    calibration_windows: np.ndarray,
    qat_windows: np.ndarray,
    eval_windows: np.ndarray,
    cfg: ExportConfig,
    eval_source: str = "",
) -> dict[str, Any]:
    """Export ``model`` to ONNX/TFLite float and int8 (see module docstring); returns the report dict
    (also written to ``cfg.out_dir/export_report.{json,md}``)."""
    from anyppg_edge.deploy.export.graph_report import (
        graph_report_markdown,
        onnx_graph_report,
        tflite_graph_report,
    )
    from anyppg_edge.deploy.export.onnx import export_onnx_float, onnx_int8_execution, quantize_onnx_int8
    from anyppg_edge.deploy.export.schedule import activation_peak_bytes
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.parity.layers import layer_parity_table, worst_layers
    from anyppg_edge.deploy.parity.suite import integer_reference_parity
    from anyppg_edge.deploy.parity.tolerances import embedding_parity, tolerance_failures
    from anyppg_edge.deploy.quantize import (
        QatConfig,
        build_deploy_model,
        float_embeddings,
        qat_finetune,
        quantize_ptq,
    )
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.deploy.tflm import op_requirements

    t0 = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    pp = cfg.preprocess
    L = pp.window_samples
    calib = np.ascontiguousarray(np.asarray(calibration_windows, np.float32).reshape(-1, L))
    evalw = np.ascontiguousarray(np.asarray(eval_windows, np.float32).reshape(-1, L))
    model = model.eval()
    timings: dict[str, float] = {}

    def contract(kind: str) -> InputContract:
        return InputContract.for_model(model_name, kind, model.out_dim, source_sha256, pp)

    def tick(name: str, start: float) -> None:
        timings[name] = round(time.time() - start, 2)
        log.info("%s: %.1f s", name, timings[name])

    # 1. deploy graph, float reference
    t = time.time()
    ref = float_embeddings(model, evalw)
    float_d = build_deploy_model(model, L)
    fold_err = float(np.abs(float_embeddings(float_d, evalw) - ref).max())
    tick("fold", t)

    # 2. float artifacts
    stem = model_name
    paths: dict[str, Path] = {}
    t = time.time()
    paths["onnx-float"] = export_onnx_float(model, out / f"{stem}.float.onnx", contract("onnx-float"))
    paths["tflite-float"] = export_tflite(float_d, out / f"{stem}.float.tflite", contract("tflite-float"))
    tick("float export", t)

    # 3. PTQ baseline, 4. QAT
    t = time.time()
    ptq = quantize_ptq(model, _batches(calib, cfg.calib_batch_size), L, progress=cfg.progress)
    tick("ptq calibration", t)
    t = time.time()
    qat = copy.deepcopy(ptq)
    qat_result: dict[str, Any] = {"steps": 0}
    if cfg.qat_steps > 0:
        qcfg = QatConfig(
            steps=cfg.qat_steps,
            batch_size=cfg.qat_batch_size,
            lr=cfg.qat_lr,
            seed=cfg.seed,
            out_dir=str(out / "qat"),
            progress=cfg.progress,
            checkpoint_every_steps=max(1, cfg.qat_steps // 2),
        )
        qat, res = qat_finetune(qat, model, np.asarray(qat_windows, np.float32).reshape(-1, L), qcfg)
        qat_result = {"steps": cfg.qat_steps, "lr": cfg.qat_lr, "train_windows": len(qat_windows),
                      **{k: v for k, v in res.items() if isinstance(v, int | float | str)}}
    tick("qat", t)

    # 5. int8 artifacts
    t = time.time()
    paths["tflite-int8"] = export_tflite(qat, out / f"{stem}.int8.tflite", contract("tflite-int8"), int8_io=cfg.int8_io)
    if cfg.export_ptq_tflite:
        paths["tflite-int8 (PTQ)"] = export_tflite(
            ptq, out / "ptq" / f"{stem}.int8-ptq.tflite", contract("tflite-int8"), int8_io=cfg.int8_io
        )
    paths["onnx-int8"] = quantize_onnx_int8(
        paths["onnx-float"],
        out / f"{stem}.int8.onnx",
        _batches(calib, cfg.calib_batch_size),
        activation_type=cfg.onnx_activation_type,
        calibrate_method=cfg.onnx_calibrate_method,
    )
    tick("int8 export", t)

    # 6. parity + graph reports
    t = time.time()
    parity_rows: list[dict[str, Any]] = []
    embeddings: dict[str, np.ndarray] = {}

    def add_row(label: str, kind: str, emb: np.ndarray, path: Path | None) -> None:
        m = embedding_parity(ref, emb)
        fails = tolerance_failures(kind, m)
        embeddings[label] = emb
        parity_rows.append(
            {
                "artifact": label,
                "kind": kind,
                "file": path.name if path else "",
                **{k: m[k] for k in ("max_abs", "cos_mean", "cos_p1", "cos_min")},
                "pass": not fails,
                "failures": "; ".join(fails),
            }
        )

    add_row("brevitas PTQ (fake-quant)", "brevitas-int8", float_embeddings(ptq, evalw), None)
    add_row("brevitas QAT (fake-quant)", "brevitas-int8", float_embeddings(qat, evalw), None)
    for label, p in paths.items():
        kind = label.split(" ")[0]
        enc = open_encoder(p, pp)
        add_row(label, kind, enc.embed(evalw), p)
    tick("parity", t)
    # 6b. the int8 TFLite on TensorFlow Lite Micro: parity, bit-exactness to LiteRT's reference
    # kernels, the measured arena and the ops (and versions) a firmware build must register
    t = time.time()
    tflm_int8 = paths["tflite-int8"]
    add_row("tflite-int8 [TFLM]", "tflite-int8", open_encoder(tflm_int8, pp, runtime="tflm").embed(evalw), tflm_int8)
    tflm = {
        "integer_reference": integer_reference_parity(tflm_int8, evalw, pp),
        "ops": op_requirements(tflm_int8).to_dict(),
        "schedule_peak_activation_bytes": activation_peak_bytes(tflm_int8.read_bytes()),
    }
    tflm["arena"] = tflm["integer_reference"].pop("arena")
    tick("tflm", t)
    t = time.time()
    n_l = min(cfg.layer_windows, len(evalw))
    layers = layer_parity_table(float_d, qat, evalw[:n_l], str(paths["tflite-int8"]))
    ptq_layers = layer_parity_table(float_d, ptq, evalw[:n_l])
    for row, prow in zip(layers, ptq_layers, strict=True):
        row["sqnr_ptq_db"] = prow["sqnr_brevitas_db"]
    tick("per-layer", t)
    graphs = []
    for label, p in paths.items():
        g = tflite_graph_report(p) if p.suffix == ".tflite" else onnx_graph_report(p)
        g["artifact"] = label
        graphs.append(g)
    ort_exec = onnx_int8_execution(paths["onnx-int8"])

    ablation_rows = None
    if cfg.ablation:
        from anyppg_edge.deploy.export.ablation import swish_ablation

        t = time.time()
        ablation_rows = swish_ablation(
            model, calib, evalw, np.asarray(qat_windows, np.float32).reshape(-1, L), cfg.qat_steps,
            out_dir=out / "ablation", seed=cfg.seed,
        )
        tick("ablation", t)

    by = {r["artifact"]: r for r in parity_rows}
    qat_vs_ptq = {
        "tflite_cos_mean_qat": by["tflite-int8"]["cos_mean"],
        "tflite_cos_mean_ptq": by.get("tflite-int8 (PTQ)", {}).get("cos_mean"),
        "brevitas_cos_mean_qat": by["brevitas QAT (fake-quant)"]["cos_mean"],
        "brevitas_cos_mean_ptq": by["brevitas PTQ (fake-quant)"]["cos_mean"],
    }
    qat_vs_ptq["qat_beats_ptq"] = bool(qat_vs_ptq["brevitas_cos_mean_qat"] > qat_vs_ptq["brevitas_cos_mean_ptq"])
    report = {
        "model": model_name,
        "source_sha256": source_sha256,
        "eval_windows": len(evalw),
        "eval_source": eval_source,
        "calibration_windows": len(calib),
        "fold_max_abs": fold_err,
        "artifacts": {k: str(v) for k, v in paths.items()},
        "parity": parity_rows,
        "parity_pass": all(r["pass"] for r in parity_rows) and not tflm["integer_reference"]["failures"],
        "tflm": tflm,
        "qat": qat_result,
        "qat_vs_ptq": qat_vs_ptq,
        "ablation": ablation_rows,
        "layers": layers,
        "worst_layers_qat": worst_layers(layers, "sqnr_brevitas_db"),
        "graphs": graphs,
        "onnx_int8_execution": ort_exec,
        "timings_s": timings,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "preprocess"},
    }
    report["timings_s"]["total"] = round(time.time() - t0, 1)
    if cfg.plot:
        report["plot"] = plot_export(report, embeddings, ref, out / "export_parity.png")
    write_json(out / "export_report.json", report)
    atomic_write_text(out / "export_report.md", render_export_report(report, graph_report_markdown(graphs)))
    return report


PARITY_COLUMNS = ["artifact", "max_abs", "cos_mean", "cos_p1", "cos_min", "pass"]
LAYER_COLUMNS = [
    "point",
    "elements",
    "sqnr_ptq_db",
    "sqnr_brevitas_db",
    "sqnr_tflite_db",
    "tflite_vs_brevitas_max_steps",
    "tflite_eq_brevitas_pct",
]


def render_export_report(report: dict[str, Any], graph_md: str) -> str:
    q = report["qat_vs_ptq"]
    ex = report["onnx_int8_execution"]
    lines = [
        f"# Export report: {report['model']}",
        "",
        f"Source checkpoint sha256 `{report['source_sha256'][:16]}`; BN folding max abs {report['fold_max_abs']:.2e}; "
        f"parity on {report['eval_windows']} windows ({report['eval_source'] or 'given windows'}); "
        f"calibration {report['calibration_windows']} windows; QAT {report['qat'].get('steps', 0)} steps.",
        "",
        "## Parity vs the float PyTorch model (tolerances: `anyppg_edge.deploy.parity.tolerances.TOLERANCES`)",
        "",
        markdown_table(report["parity"], PARITY_COLUMNS),
        "",
        f"QAT vs PTQ (mean cosine vs float): brevitas {q['brevitas_cos_mean_qat']:.5f} vs {q['brevitas_cos_mean_ptq']:.5f}; "
        f"TFLite {q['tflite_cos_mean_qat']:.5f} vs {q['tflite_cos_mean_ptq']}. "
        + ("QAT beats PTQ." if q["qat_beats_ptq"] else "QAT does **not** beat PTQ here (see per-layer SQNR)."),
        "",
        *(
            ["## Swish / sigmoid / SE alternatives (cosine vs the float model, same windows)", "",
             markdown_table(report["ablation"]), ""]
            if report.get("ablation") else []
        ),
        *tflm_markdown(report.get("tflm")),
        "## Graphs",
        "",
        graph_md,
        "",
        f"ONNX int8 on this host: {_ort_summary(ex)}",
        "",
        "## Per-layer SQNR (dB, vs the float deploy graph) and int8 TFLite vs brevitas (quantization steps)",
        "",
        "Worst five points (QAT): "
        + ", ".join(f"{r['point']} {r['sqnr_brevitas_db']} dB" for r in report["worst_layers_qat"]),
        "",
        markdown_table(report["layers"], LAYER_COLUMNS),
        "",
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in report["timings_s"].items()),
    ]
    return "\n".join(lines) + "\n"


def tflm_markdown(tflm: dict[str, Any] | None) -> list[str]:
    """The export report's TensorFlow Lite Micro section (also in the main job's report): measured
    arena against the watch tier, bit-exactness to LiteRT's reference kernels, ops and versions."""
    if not tflm:
        return []
    from anyppg_edge.models.budget import TIERS

    a, ir, ops = tflm["arena"], tflm["integer_reference"], tflm["ops"]
    limit = TIERS["watch"].max_arena_bytes
    tier = "fits" if a["min_arena_bytes"] <= limit else f"over by {a['min_arena_bytes'] - limit:,} B"
    return [
        "## TensorFlow Lite Micro (int8 TFLite, host build of TFLM's reference kernels)",
        "",
        f"- Arena (smallest that allocates, measured): **{a['min_arena_bytes']:,} B** = head {a['head_bytes']:,} "
        f"(planned activations; schedule lower bound {tflm['schedule_peak_activation_bytes']:,}) + tail "
        f"{a['tail_bytes']:,} (persistent); about {a['mcu32_bytes']:,} B on a 32-bit MCU (pointer-sized "
        f"structs halve). Watch tier (arena ≤ {limit:,} B, measured): **{tier}**. TFLM {a['tflm_version']}.",
        "- Breakdown: " + "; ".join(f"{k} {v['bytes']:,} B ({v['count']})" for k, v in a["items"].items()),
        f"- TFLM vs LiteRT reference kernels on {ir['n_windows']} windows: "
        + ("**bit-identical**" if ir["bit_identical"] else f"max abs {ir['tflm_vs_litert_ref_max_abs']:.3g} (FAIL)")
        + f" (row `{ir['tolerance']}`); XNNPACK vs TFLM: max abs {ir['xnnpack_vs_tflm_max_abs']:.3g}, "
        f"cosine min {ir['xnnpack_vs_tflm_cos_min']:.5f} ({ir['note']}).",
        "- Ops (version): " + ", ".join(f"{k} v{'/'.join(map(str, v))} ×{ops['counts'][k]}" for k, v in ops["ops"].items())
        + f"; min_runtime_version {ops['min_runtime_version'] or '?'}. {ops['note']}.",
        "",
    ]


def _ort_summary(ex: dict[str, Any]) -> str:
    return str(ex.get("summary") or ex)[:600]


def plot_export(report: dict[str, Any], embeddings: dict[str, np.ndarray], ref: np.ndarray, path: Path) -> str | None:
    """Left: per-layer SQNR of PTQ vs QAT (and the int8 TFLite). Right: per-window cosine vs float."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from anyppg_edge.deploy.parity.tolerances import cosine_rows

    layers = [r for r in report["layers"] if r.get("sqnr_tflite_db") is not None]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    x = np.arange(len(layers))
    a1.plot(x, [r["sqnr_ptq_db"] for r in layers], ".-", lw=0.8, label="brevitas PTQ")
    a1.plot(x, [r["sqnr_brevitas_db"] for r in layers], ".-", lw=0.8, label="brevitas QAT")
    a1.plot(x, [r["sqnr_tflite_db"] for r in layers], "x", ms=4, label="int8 TFLite (QAT)")
    a1.set_xlabel("activation point (execution order; sigmoid outputs omitted)")
    a1.set_ylabel("SQNR vs float (dB)")
    a1.set_title(f"{report['model']}: per-layer SQNR")
    a1.legend()
    a1.grid(alpha=0.3)
    for label, emb in embeddings.items():
        if "float" in label:
            continue
        cos = cosine_rows(ref, emb)
        a2.hist(1 - cos, bins=40, histtype="step", label=label)
    a2.set_xscale("symlog", linthresh=1e-4)
    a2.set_xlabel("1 - cosine vs float model (per window)")
    a2.set_ylabel("windows")
    a2.set_title("int8 embedding error")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


@dataclass
class ExportData:
    """Windows for one export run: calibration, QAT training, and parity evaluation (real windows
    of subjects that neither calibration nor QAT saw). ``heldout_subjects``: the real subjects of the
    parity windows that the model did not train on, as far as known (``heldout_checked``: the
    training shards were given and their index's split was read); ``description`` says it in words."""

    calibration: np.ndarray
    qat: np.ndarray
    eval: np.ndarray
    description: str
    calibration_manifest: dict[str, Any] = field(default_factory=dict)
    heldout_subjects: list[str] = field(default_factory=list)
    heldout_checked: bool = False


def shared_export_data(
    n_calibration: int = 256,
    n_eval: int = 256,
    hop_s: float = 5.0,
    seed: int = 0,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    progress: bool = False,
    shards: str | Path | None = None,
) -> ExportData:
    """Real windows from ``../shared``: calibration set (stratified builder) and QAT windows from some
    subjects, parity windows from the others.

    ``shards``: the prepared folder the model trained on. Its index's split decides: the ``../shared``
    subjects it has in val/test, or does not have at all, are the held-out ones (parity windows); the
    rest (its train subjects) give the calibration and QAT windows. When it trained on every
    ``../shared`` subject, the description says plainly that no real subject is held out (the parity
    windows are then the val+test subjects of the seed-``seed`` :func:`recording_splits`, seen in
    training). Without ``shards`` the seed-``seed`` split of the 10 recordings is used and the
    description says that the parity subjects are held out of calibration and QAT only.

    Every window is cut as the model of contract ``cfg`` reads it
    (:func:`~anyppg_edge.data.native_rate.model_input_recording`: a native-rate contract's PPG is
    sampled like its sensor, never resampled from 125 Hz)."""
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.native_rate import is_native_rate
    from anyppg_edge.data.shards import index_subject_splits
    from anyppg_edge.data.splits import recording_splits
    from anyppg_edge.deploy.calibration import build_calibration_set
    from anyppg_edge.deploy.model_windows import model_ppg_windows
    from anyppg_edge.errors import DataFormatError
    from anyppg_edge.paths import shared_dir

    recs = load_shared_recordings(shared_dir() / "data")
    split = recording_splits(recs, seed=seed)
    by_seed = [r for r in recs if split[f"{r.dataset}/{r.subject_id}"] != "train"]
    trained_on: set[str] = set()
    if shards is not None:
        split_of = index_subject_splits(shards)
        if not split_of:
            raise DataFormatError(f"no index.npz in {shards}: give the prepared shard folder the model trained on")
        trained_on = {r.subject_id for r in recs if split_of.get(f"{r.dataset}\x1f{r.subject_id}") == "train"}
        held = [r for r in recs if r.subject_id not in trained_on]
        if len(held) == len(recs):  # trained on no shared subject: calibrate on some of them all the same
            held = by_seed
    else:
        held = by_seed
    names = lambda rs: ", ".join(sorted(r.subject_id for r in rs))  # noqa: E731
    if shards is not None and not held:
        held = by_seed  # parity needs windows; they are not held out, and the description says so
        where = (f"no real subject is held out: the model's shards {shards} trained on every ../shared subject, "
                 f"so the parity windows come from subjects it trained on ({names(held)})")
        heldout: list[str] = []
    elif shards is not None:
        where = (f"../shared subjects held out from the model's training (val/test of {shards}, or absent from it) "
                 f"and from calibration/QAT: {names(held)}"
                 + ("" if trained_on else " (the shards hold no ../shared subject in train)"))
        heldout = sorted(r.subject_id for r in held)
    else:
        where = (f"../shared subjects {names(held)} (val+test of the seed-{seed} split of the shared recordings): "
                 "held out from calibration and QAT; whether the model trained on them is not checked (give its "
                 "training shards to check)")
        heldout = []
    train = [r for r in recs if r not in held]
    cs = build_calibration_set([train], n_windows=n_calibration, seed=seed, cfg=cfg, hop_s=hop_s, progress=progress)
    # every window as the model of contract ``cfg`` reads it (a native-rate model: sampled like its sensor)
    qat = np.concatenate([model_ppg_windows(r, cfg, hop_s=hop_s).ppg for r in train])
    ev = np.concatenate([model_ppg_windows(r, cfg, hop_s=hop_s).ppg for r in held])
    rng = np.random.default_rng(seed)
    if len(ev) > n_eval:
        ev = ev[np.sort(rng.choice(len(ev), n_eval, replace=False))]
    desc = f"{where}; {len(ev)} windows; calibration/QAT from {len(train)} other subjects"
    if is_native_rate(cfg):
        desc += f"; PPG sampled like a {cfg.target_sample_rate_hz} Hz sensor (native-rate contract)"
    return ExportData(cs.windows, qat.astype(np.float32), ev.astype(np.float32), desc, cs.manifest,
                      heldout_subjects=heldout, heldout_checked=shards is not None)
