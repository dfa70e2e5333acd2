"""The main job: every stage of the toolkit, end to end, on the embedded default data.

Stages so far: data (embedded simulator cohort + the real recordings of ``../shared`` when present)
→ reference preprocessing into paired 10 s windows with quality flags → Net1D encoding → report
(markdown + JSON + plot). Each later capability (pretraining, distillation, QAT/export, harness,
benchmarks, parity) joins here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.errors import ConfigError
from anyppg_edge.paths import shared_available, shared_dir
from anyppg_edge.report import atomic_write_text, markdown_table, write_json

log = logging.getLogger("anyppg_edge.demo")


@dataclass
class DemoConfig:
    out_dir: Path = Path("runs/demo")
    model: str = "anyppg-released"
    use_shared: bool = True  # add the real recordings of ../shared when present
    sim_subjects: int = 8
    sim_duration_s: float = 120.0
    hop_s: float = 5.0
    seed: int = 0
    batch_size: int = 64
    pretrain_model: str = "tiny"
    pretrain_steps: int = 40
    pretrain_batch_size: int = 32
    # the real-data recipe of the README (joint time-stretch crop + noise); hard-negative batches are
    # left to the longer runs: in 40 steps on a mixed simulated + real set they only slow the start
    pretrain_crop_scale_min: float = 0.85
    pretrain_noise_std: float = 0.05
    student: str = "student-watch-slim"  # the watch tier on TFLM's measured arena, whole-window receptive field
    # a native-rate watch student distilled beside it: reads a 25 Hz sensor's samples directly (issue 20)
    native_student: str | None = "student-watch-25hz"
    distill_steps: int = 40
    export: bool = True  # QAT + ONNX/TFLite float and int8 artifacts of the student (and PTQ of the teacher)
    export_qat_steps: int = 30
    bench_runs: int = 50  # timed single-window runs per artifact in the latency table
    plot: bool = True
    force: bool = False  # rebuild OUT/data when it was made with other settings (else a clear refusal)


def load_demo_recordings(cfg: DemoConfig) -> list:
    from anyppg_edge.data import load_shared_recordings, simulate_cohort

    recs = simulate_cohort(cfg.sim_subjects, duration_s=cfg.sim_duration_s, seed=cfg.seed)
    if cfg.use_shared and shared_available():
        recs += load_shared_recordings(shared_dir() / "data")
    elif cfg.use_shared:
        log.warning("no shared data at %s: using the embedded simulator only", shared_dir())
    return recs


def golden_checkpoint(model_name: str) -> Path | None:
    """The reference state_dict of ``../shared`` for a registered teacher config, when present."""
    p = shared_dir() / "reference" / f"net1d_{model_name.replace('-', '_')}.state_dict.pt"
    return p if p.is_file() else None


def _demo_train_config(steps: int, batch_size: int, lr: float, seed: int, out_dir: Path):
    """A short CPU run of the shared trainer: one validation and one checkpoint, at the end."""
    from anyppg_edge.train import TrainConfig

    return TrainConfig(max_steps=steps, batch_size=batch_size, lr=lr, seed=seed, eval_every_steps=steps,
                       checkpoint_every_steps=steps, log_every_steps=10, out_dir=str(out_dir), tensorboard=False)


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the whole chain as far as it exists; write ``report.md``, ``summary.json`` and plots."""
    import torch

    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.data.shards import prepare_shards
    from anyppg_edge.models import create_model
    from anyppg_edge.models.budget import budget_table
    from anyppg_edge.models.encode import encode_windows
    from anyppg_edge.preprocessing import PreprocessConfig
    from anyppg_edge.train import ClipConfig
    from anyppg_edge.train.augment import AugmentConfig
    from anyppg_edge.train.distill import DistillConfig, distill_and_evaluate
    from anyppg_edge.train.pretrain import pretrain_from_shards

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    pcfg = PreprocessConfig()

    t = time.perf_counter()
    recordings = load_demo_recordings(cfg)
    timings["load data s"] = time.perf_counter() - t
    log.info("loaded %d recordings", len(recordings))

    # 1. data preparation: reference preprocessing into shards (resumable), subject-level split
    t = time.perf_counter()
    native_rates = _native_rates(cfg)
    data_summary = prepare_shards(recordings, out / "data", cfg=pcfg, hop_s=cfg.hop_s, seed=cfg.seed, force=cfg.force,
                                  native_rates_hz=native_rates)
    timings["prepare shards s"] = time.perf_counter() - t
    ds = ShardDataset(out / "data", split="all")
    ppg, _ = ds.get_batch(np.arange(len(ds)))

    # 2. the reference teacher (golden released weights when ../shared is present) encodes every window
    t = time.perf_counter()
    ckpt = golden_checkpoint(cfg.model)
    model = create_model(cfg.model, checkpoint=ckpt)
    emb = encode_windows(model, ppg[:, 0], pcfg.window_samples, batch_size=cfg.batch_size)
    timings["encode s"] = time.perf_counter() - t
    np.save(out / "embeddings.npy", emb)

    # 3. a short CLIP pretraining of a small config, retrieval on the held-out split vs the baseline
    t = time.perf_counter()
    n_train = len(ShardDataset(out / "data", split="train"))
    if n_train < 2:
        raise ConfigError(f"only {n_train} training windows: give the demo more data (--sim-subjects/--sim-duration-s)")
    pre = pretrain_from_shards(
        out / "data",
        ClipConfig(ppg_model=cfg.pretrain_model, ecg_model=cfg.pretrain_model),
        _demo_train_config(cfg.pretrain_steps, min(cfg.pretrain_batch_size, n_train), 1e-3, cfg.seed, out / "pretrain"),
        augment=AugmentConfig(crop_scale_min=cfg.pretrain_crop_scale_min, noise_std=cfg.pretrain_noise_std),
    )
    timings["pretrain s"] = time.perf_counter() - t

    # 4. distil the watch-tier student from that pretrained teacher; budget + retention tables
    t = time.perf_counter()
    kd = distill_and_evaluate(
        out / "data",
        pre["last_checkpoint"],
        DistillConfig(student=cfg.student),
        _demo_train_config(cfg.distill_steps, min(cfg.pretrain_batch_size, n_train), 2e-3, cfg.seed, out / "distill"),
    )
    timings["distill s"] = time.perf_counter() - t
    kd_native = None
    if cfg.native_student:  # the same teacher, the same windows: the student reads them at its sensor's rate
        t = time.perf_counter()
        kd_native = distill_and_evaluate(
            out / "data", pre["last_checkpoint"], DistillConfig(student=cfg.native_student),
            _demo_train_config(cfg.distill_steps, min(cfg.pretrain_batch_size, n_train), 2e-3, cfg.seed,
                               out / "distill_native"),
        )
        timings["distill native-rate s"] = time.perf_counter() - t

    # 5. QAT (brevitas) + export of the distilled student, PTQ export of the teacher: ONNX/TFLite float
    #    and int8, contracts, graph and parity reports; 6. latency table; 7. parity vs golden sets
    export_reports: dict[str, Any] = {}
    harness: dict[str, Any] | None = None
    c_report: dict[str, Any] | None = None
    firmware: dict[str, Any] | None = None
    gpu_rehearsal: dict[str, Any] | None = None
    bench_md = parity_md = None
    bench_rows: list[dict[str, Any]] = []
    parity_rows: list[dict[str, Any]] = []
    tradeoff: list[dict[str, Any]] = []
    native_checks: dict[str, Any] = {}
    if cfg.export:
        t = time.perf_counter()
        windows = _export_windows(cfg, out, pcfg)
        export_reports = {
            "student": _export_model(cfg, out, cfg.student, kd["last_checkpoint"], cfg.export_qat_steps, windows, pcfg),
            "teacher": _export_model(cfg, out, cfg.model, ckpt, 0, windows, pcfg),
        }
        if kd_native is not None:
            ncfg = _native_config(cfg, pcfg)
            export_reports["native"] = _export_model(cfg, out, cfg.native_student, kd_native["last_checkpoint"],
                                                     cfg.export_qat_steps, _export_windows(cfg, out, ncfg), ncfg)
        timings["qat + export s"] = time.perf_counter() - t
        t = time.perf_counter()
        harness = _harness_stage(cfg, out / "harness", export_reports["student"], recordings)
        if "native" in export_reports:  # the 25 Hz student on a 25 Hz sensor: nothing resampled
            native_checks["harness"] = _harness_stage(cfg, out / "harness_native", export_reports["native"], recordings)
        timings["firmware harness s"] = time.perf_counter() - t
        t = time.perf_counter()
        bench_rows, bench_md = _bench_stage(cfg, out, export_reports)
        timings["bench s"] = time.perf_counter() - t
        t = time.perf_counter()
        parity_rows, parity_md = _parity_stage(out, export_reports)
        timings["parity s"] = time.perf_counter() - t
        t = time.perf_counter()
        c_report = _c_encoder_stage(out / "c_encoder", export_reports["student"])
        if "native" in export_reports:
            _c_encoder_stage(out / "c_encoder_native", export_reports["native"])
        timings["C encoder s"] = time.perf_counter() - t
        t = time.perf_counter()
        firmware = _firmware_stage(out / "firmware", export_reports["student"], recordings)
        if "native" in export_reports:
            native_checks["firmware"] = _firmware_stage(out / "firmware_native", export_reports["native"], recordings)
        timings["firmware bundle s"] = time.perf_counter() - t
        if "native" in export_reports:
            t = time.perf_counter()
            tradeoff = _tradeoff_stage(cfg, out)
            timings["trade-off table s"] = time.perf_counter() - t
        t = time.perf_counter()
        gpu_rehearsal = _gpu_rehearsal_stage(cfg, out, ckpt, kd["last_checkpoint"],
                                             kd_native["last_checkpoint"] if kd_native is not None else None)
        timings["GPU round trip (CPU rehearsal) s"] = time.perf_counter() - t

    stats_rows = budget_table()
    retrieval = pre.get("retrieval", {})
    summary = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "preprocess_config": pcfg.to_dict(),
        "preprocess_config_hash": pcfg.config_hash(),
        "model": cfg.model,
        "weights": str(ckpt) if ckpt else "random init (seeded)",
        "n_recordings": len(recordings),
        "n_windows": len(ds),
        "data": {k: v for k, v in data_summary.items() if k != "run"},
        "embedding_shape": list(emb.shape),
        "pretrain": {
            "model": cfg.pretrain_model,
            "steps": pre.get("step"),
            "final_train_loss": pre.get("final_train_loss"),
            "val_loss": pre.get("val_loss"),
            "samples_per_s": pre.get("samples_per_s"),
            "checkpoint": str(pre.get("last_checkpoint", "")),
            "retrieval": retrieval,
        },
        "distill": {
            "student": cfg.student,
            "steps": kd.get("step"),
            "checkpoint": str(kd.get("last_checkpoint", "")),
            "retention": kd["retention"],
        },
        "distill_native": None if kd_native is None else {
            "student": cfg.native_student,
            "input_sample_rate_hz": kd_native["retention"].get("student_input_rate_hz"),
            "steps": kd_native.get("step"),
            "checkpoint": str(kd_native.get("last_checkpoint", "")),
            "retention": kd_native["retention"],
        },
        "tradeoff": tradeoff,
        "native_checks": {
            "harness_bars": native_checks["harness"].get("bars") if "harness" in native_checks else None,
            "firmware": {k: native_checks["firmware"][k] for k in ("pass", "failures", "rates_hz")}
            if "firmware" in native_checks else None,
        },
        "export": {
            role: {k: r[k] for k in ("model", "artifacts", "parity", "parity_pass", "qat_vs_ptq", "graphs", "tflm", "timings_s")}
            for role, r in export_reports.items()
        } or None,
        "harness": None if harness is None else {k: harness[k] for k in ("bars",) if k in harness},
        "harness_md": None if harness is None else harness.get("_md"),
        "bench": bench_rows,
        "bench_md": bench_md,
        "parity": parity_rows,
        "parity_md": parity_md,
        "c_encoder": None if c_report is None else {k: c_report[k] for k in ("comparisons", "boards", "generator", "passed")},
        "c_encoder_md": None if c_report is None else c_report["_md"],
        "firmware": None if firmware is None else {k: firmware[k] for k in ("pass", "failures", "rates_hz")},
        "firmware_md": None if firmware is None else firmware["_md"],
        "gpu_rehearsal": None if gpu_rehearsal is None else {k: v for k, v in gpu_rehearsal.items() if k != "_md"},
        "gpu_rehearsal_md": None if gpu_rehearsal is None else gpu_rehearsal["_md"],
        "model_stats": stats_rows,
        "timings_s": timings,
    }
    write_json(out / "summary.json", summary)
    plot_path = None
    if cfg.plot:
        plot_path = plot_demo(ds, ppg[:, 0], emb, out / "demo.png")
    atomic_write_text(out / "report.md", render_report(summary, plot_path, out / "data" / "summary.md"))
    return summary


def _native_rates(cfg: DemoConfig) -> tuple[int, ...]:
    from anyppg_edge.models.registry import get_model_spec

    return (get_model_spec(cfg.native_student).input_sample_rate_hz,) if cfg.native_student else ()


def _native_config(cfg: DemoConfig, pcfg):
    from anyppg_edge.models.registry import get_model_spec

    return get_model_spec(cfg.native_student).preprocess_config(pcfg)


def _export_windows(cfg: DemoConfig, out: Path, pcfg) -> dict[str, Any]:
    """Calibration, QAT (training split) and evaluation windows (val + test subjects) from the demo's
    shards at ``pcfg``'s rate: the same rows at every rate (a native-rate contract reads the shards'
    companion windows). Calibration at the reference rate adds the committed simulator default set;
    no such set exists at a sensor's rate, so a native-rate model calibrates on training windows only."""
    from anyppg_edge.data.native_rate import is_native_rate
    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.deploy.calibration import load_default_calibration_set

    rate = pcfg.target_sample_rate_hz
    rng = np.random.default_rng(cfg.seed)
    train = ShardDataset(out / "data", split="train")
    train_w = train.get_ppg(np.arange(len(train)), rate)[:, 0].astype(np.float32)
    held = [ShardDataset(out / "data", split=s) for s in ("val", "test")]
    eval_w = np.concatenate([d.get_ppg(np.arange(len(d)), rate)[:, 0] for d in held if len(d)]).astype(np.float32)
    idx = np.arange(len(eval_w))
    if len(eval_w) > 128:
        idx = np.sort(rng.choice(len(eval_w), 128, replace=False))
    calib = [train_w[rng.choice(len(train_w), min(128, len(train_w)), replace=False)]]
    if not is_native_rate(pcfg):
        calib.insert(0, load_default_calibration_set(pcfg).windows)
    return {"calibration": np.concatenate(calib), "qat": train_w, "eval": eval_w[idx],
            "eval_ids": [f"demo-heldout-{i}" for i in idx],
            "description": f"demo held-out split (val+test subjects), {len(idx)} windows at {rate} Hz"}


def _export_model(cfg: DemoConfig, out: Path, name: str, checkpoint, qat_steps: int, w: dict[str, Any], pcfg):
    from anyppg_edge.deploy.export.build import export_all
    from anyppg_edge.deploy.export.config import ExportConfig
    from anyppg_edge.models.loading import load_encoder

    loaded = load_encoder(checkpoint, name)
    model, sha = loaded.encoder, loaded.sha256
    ecfg = ExportConfig(out_dir=out / "export" / name, qat_steps=qat_steps, seed=cfg.seed, progress=False,
                        plot=cfg.plot, preprocess=pcfg, export_ptq_tflite=qat_steps > 0)
    rep = export_all(model, name, sha, w["calibration"], w["qat"], w["eval"], ecfg, eval_source=w["description"])
    rep["_model"], rep["_sha"], rep["_pcfg"], rep["_windows"] = model, sha, pcfg, w
    return rep


def _c_encoder_stage(out_dir: Path, student: dict[str, Any]) -> dict[str, Any]:
    """The watch student's generated C encoder on the held-out windows: host build and, when the
    cross toolchain is installed (``make cortexm-tools``), emulated Cortex-M4 and M33; vs TFLM and the
    float model; memory and instruction counts."""
    from anyppg_edge.deploy.cortexm import toolchain_available
    from anyppg_edge.deploy.export.c_report import c_encoder_report, c_report_markdown
    from anyppg_edge.deploy.quantize import float_embeddings

    w = student["_windows"]
    x = w["eval"][:32]
    boards = ("cortex-m4", "cortex-m33") if toolchain_available() else ()
    rep = c_encoder_report(student["artifacts"]["tflite-int8"], out_dir, x,
                           float_embeddings(student["_model"], x[:, None]), boards,
                           windows_source=f"{len(x)} of the {w['description']}")
    md = c_report_markdown(rep).split("\n", 1)[1]  # its title dropped
    if not boards:
        md += "\nNo Cortex-M toolchain here (`make cortexm-tools` installs it): host build only.\n"
    rep["_md"] = md
    return rep


def _firmware_stage(out_dir: Path, student: dict[str, Any], recordings: list) -> dict[str, Any]:
    """The firmware bundle of the watch student (25 Hz sensor) and the harness driving it: one
    recording (the first real one when ../shared is there) through clean and fault scenarios at every
    rate, C vs the Python device path, TFLM and the float model; one run on each emulated board
    (Cortex-M4F, M33) when the cross toolchain is installed."""
    from anyppg_edge.data.splits import SIMULATED_DATASETS
    from anyppg_edge.deploy.cortexm import toolchain_available
    from anyppg_edge.stream.firmware import (
        FIRMWARE_BOARDS,
        firmware_summary,
        render_firmware_markdown,
        write_firmware_bundle,
    )

    bundle = out_dir / "bundle"
    write_firmware_bundle(student["artifacts"]["tflite-int8"], bundle)  # the contract's rate, or 25 Hz for a 125 Hz model
    real = [r for r in recordings if r.dataset not in SIMULATED_DATASETS]
    rec = (real or recordings)[:1]
    s = firmware_summary(bundle, rec, out_dir, float_encoder=student["_model"], duration_s=40.0,
                         boards=FIRMWARE_BOARDS if toolchain_available() else ())
    s["_md"] = render_firmware_markdown(s).split("\n", 1)[1]
    return s


def _harness_stage(cfg: DemoConfig, out_dir: Path, student: dict[str, Any], recordings: list) -> dict[str, Any]:
    """Replay recordings through emulated watch sensors (25 Hz, FIFO bursts, faults) and the streaming
    preprocessor into the student's int8 TFLite; parity with the offline chain and the float model."""
    from anyppg_edge.data.splits import SIMULATED_DATASETS
    from anyppg_edge.stream.harness import harness_summary, render_harness_markdown

    real = [r for r in recordings if r.dataset not in SIMULATED_DATASETS]
    h = harness_summary(student["artifacts"]["tflite-int8"], student["_model"], real or recordings, out_dir,
                        max_fault_recordings=3, cfg=student["_pcfg"], seed=cfg.seed, plot=cfg.plot)
    h["_md"] = render_harness_markdown(h)
    return h


def _bench_stage(cfg: DemoConfig, out: Path, reports: dict[str, Any]):
    """Latency per 10 s window on this host, 1 thread: every artifact + the PyTorch eager models,
    each on windows of its own contract (one run per input rate, in one process)."""
    from anyppg_edge.deploy.bench.latency import bench_artifacts
    from anyppg_edge.deploy.bench.report import bench_markdown, write_bench_report

    by_rate: dict[int, list[dict[str, Any]]] = {}
    for r in reports.values():
        by_rate.setdefault(r["_pcfg"].target_sample_rate_hz, []).append(r)
    results = []
    for group in by_rate.values():
        items: list[Any] = [("pytorch", r["_model"], f"{r['model']} pytorch-float") for r in group]
        for r in group:
            items += [Path(p) for k, p in r["artifacts"].items() if "PTQ" not in k]
        results += bench_artifacts(items, group[0]["_windows"]["eval"][:16], threads=1, warmup=5, runs=cfg.bench_runs,
                                   cfg=group[0]["_pcfg"], measure_flops=False)
    write_bench_report(results, out / "bench", plot=cfg.plot)
    md = bench_markdown(results, baseline=f"{reports['teacher']['model']} pytorch-float")
    rows = [{"name": r["name"], "kind": r.get("kind"), "error": r.get("error"),
             **{f"{k}_ms": r["latency_ms"].get(k) for k in ("p50", "p90", "p99")}} for r in results]
    return rows, md


def _parity_stage(out: Path, reports: dict[str, Any]):
    """Golden sets from the float models (CPU here; GPU when present) and the parity table of every
    artifact the job produced."""
    from anyppg_edge.deploy.parity.golden import make_golden_set
    from anyppg_edge.deploy.parity.suite import parity_table_for

    rows, parts = [], []
    for r in reports.values():
        w = r["_windows"]
        golden = make_golden_set(r["_model"], r["model"], r["_sha"], w["eval"], w["eval_ids"],
                                 out / "parity" / f"{r['model']}.golden.npz", cfg=r["_pcfg"],
                                 window_source=w["description"])
        arts = {k: p for k, p in r["artifacts"].items() if "PTQ" not in k}
        rws, md = parity_table_for(arts, golden)
        rows += [{"model": r["model"], **x} for x in rws]
        parts.append(f"**{r['model']}**: " + md)
    return rows, "\n\n".join(parts)


def _tradeoff_stage(cfg: DemoConfig, out: Path) -> list[dict[str, Any]]:
    """The 125 Hz and the native-rate watch students side by side (same teacher, same held-out rows)."""
    from anyppg_edge.deploy.bench.tradeoff import TradeoffRun, tradeoff_table

    def c_dir(name: str) -> Path | None:
        return out / name if (out / name / "c_report.json").is_file() else None

    return tradeoff_table([
        TradeoffRun(out / "distill", out / "export" / cfg.student, c_dir("c_encoder")),
        TradeoffRun(out / "distill_native", out / "export" / cfg.native_student, c_dir("c_encoder_native")),
    ], out / "tradeoff", latency_runs=cfg.bench_runs, plot=cfg.plot)


def _gpu_rehearsal_stage(cfg: DemoConfig, out: Path, teacher: Path | None, student: Path,
                         native_student: Path | None) -> dict[str, Any]:
    """The GPU round trip of ``docs/gpu.md`` rehearsed on this CPU with the job's own models: the carry
    folder (``gpu-check prepare``), the GPU check's dry run (``--device cpu --tiny``, every section, the
    device's entry point), and every exported artifact held to the golden sets it returned
    (``gpu-check parity``). On a GPU lease only step 2 changes (``--device cuda``, full settings)."""
    from anyppg_edge.gpu_check import TINY, GpuCheckConfig, prepare_carry, run_gpu_check
    from anyppg_edge.gpu_parity import gpu_parity

    carry = out / "gpu_carry"
    shared = cfg.use_shared and shared_available()
    prepare_carry(carry, teacher=teacher or "init", teacher_model=cfg.model, student=student, student_model=cfg.student,
                  native_student=native_student, native_student_model=cfg.native_student or "student-watch-25hz",
                  use_shared=shared, sim_subjects=0 if shared else cfg.sim_subjects, hop_s=cfg.hop_s,
                  golden_n=32, split_seed=cfg.seed, force=True, log=log.info)
    t = time.perf_counter()
    check = run_gpu_check(GpuCheckConfig(**TINY, carry_dir=str(carry), out_dir=str(out / "gpu_check"), device="cpu"),
                          log=log.info)
    check_s = time.perf_counter() - t
    par = gpu_parity(out / "gpu_check", carry, out / "gpu_parity", export_roots=[out / "export"], plot=False,
                     log_fn=log.info)
    n_rows = sum(len(m["rows"]) for m in par["models"])
    md = (f"Dry run of the GPU check on this CPU (`gpu_check/gpu_check.md`): {len(check['sections'])} sections in "
          f"{check_s:.1f} s, {'PASS' if check['passed'] else 'FAIL'}. Parity of {n_rows} rows (artifacts and their TFLM runs) of "
          f"{len(par['models'])} models against the golden sets it returned (`gpu_parity/`): "
          f"{'PASS' if par['passed'] else 'FAIL'}.")
    return {"check_passed": check["passed"], "check_wall_s": round(check_s, 2), "parity_passed": par["passed"],
            "parity_rows": n_rows, "models": [m["model"] for m in par["models"]], "_md": md}


def _retrieval_rows(retrieval: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in ("model", "spectral_baseline"):
        if name in retrieval:
            r = retrieval[name]
            rows.append({"method": name, "pool": r["pool_size"], "queries": r["n_queries"],
                         **{k: round(r[k], 3) for k in ("R@1", "R@5", "R@10", "mAP@10", "MRR")}})
    return rows


def render_report(summary: dict[str, Any], plot_path: Path | None, data_summary_md: Path | None = None) -> str:
    from anyppg_edge.train.distill import retention_tables

    pre = summary["pretrain"]
    lines = [
        "# anyppg-edge main job report",
        "",
        f"Model `{summary['model']}` ({summary['weights']}); preprocessing config hash "
        f"`{summary['preprocess_config_hash'][:12]}`.",
        "",
        "## Data (prepared shards, subject-level split)",
        "",
        "\n".join(
            line for line in (data_summary_md.read_text().splitlines() if data_summary_md else [])
            if not line.startswith("# ")  # the shard summary's own title
        ),
        "",
        "## Model budgets (per 10 s window at each model's input rate)",
        "",
        markdown_table(summary["model_stats"]),
        "## Encoding",
        "",
        f"{summary['n_windows']} windows → embeddings {summary['embedding_shape']}.",
        "",
        f"## Pretraining (CLIP PPG↔ECG, `{pre['model']}`, {pre['steps']} steps on this CPU)",
        "",
        f"final train loss {pre['final_train_loss']:.3f}, val loss {pre['val_loss']:.3f}, "
        f"{pre['samples_per_s']:.0f} samples/s. PPG→ECG retrieval on the held-out split "
        f"({pre['retrieval'].get('n_windows', 0)} windows):",
        "",
        markdown_table(_retrieval_rows(pre["retrieval"])),
        "A short demo run; the real-data benchmark is `python -m anyppg_edge physiology` (README).",
        "",
        f"## Distillation (`{summary['distill']['student']}` from the pretrained teacher, "
        f"{summary['distill']['steps']} steps)",
        "",
        *[markdown_table(t) + "\n" for t in retention_tables(summary["distill"]["retention"])],
        *_native_section(summary),
        *_export_section(summary.get("export")),
        "## Timings (this machine)",
        "",
        markdown_table([{k: round(v, 2) for k, v in summary["timings_s"].items()}]),
    ]
    if plot_path:
        lines += ["", f"![demo]({plot_path.name})", ""]
    lines += _tail_sections(summary)  # the report ends with the parity table of every artifact
    return "\n".join(lines)


def _native_section(summary: dict[str, Any]) -> list[str]:
    from anyppg_edge.train.distill import retention_tables

    kd = summary.get("distill_native")
    if not kd:
        return []
    lines = [f"## Native-rate student (`{kd['student']}`: reads the {kd['input_sample_rate_hz']} Hz sensor's samples, "
             f"same teacher and held-out rows, {kd['steps']} steps)", "",
             *[markdown_table(t) + "\n" for t in retention_tables(kd["retention"])]]
    checks = summary.get("native_checks") or {}
    bars, fw = checks.get("harness_bars"), checks.get("firmware")
    if bars or fw:
        ok = "pass" if bars and not any(b["pass"] is False for b in bars.values()) else "FAIL"
        lines += [f"Harness at {kd['input_sample_rate_hz']} Hz with faults (`harness_native/`): bars {ok}"
                  + (f"; firmware bundle (`firmware_native/`): {'PASS' if fw['pass'] else 'FAIL'} at "
                     f"{', '.join(f'{r:g}' for r in fw['rates_hz'])} Hz" if fw else "") + ".", ""]
    if summary.get("tradeoff"):
        lines += ["### Input rate trade-off (details in `tradeoff/`; latency: this host, 1 thread, int8 TFLite)", "",
                  markdown_table(summary["tradeoff"]), ""]
    return lines


def _export_section(ex: dict[str, Any] | None) -> list[str]:
    if not ex:
        return []
    from anyppg_edge.deploy.export.build import PARITY_COLUMNS, tflm_markdown
    from anyppg_edge.deploy.export.graph_report import graph_report_markdown

    lines = ["## QAT + export (brevitas int8; details in `export/<model>/export_report.md`)", ""]
    for role, r in ex.items():
        q = r["qat_vs_ptq"]
        lines += [
            f"**{role} `{r['model']}`** — parity vs its float model on the held-out windows:",
            "",
            markdown_table(r["parity"], PARITY_COLUMNS),
            f"QAT vs PTQ mean cosine (brevitas): {q['brevitas_cos_mean_qat']:.5f} vs {q['brevitas_cos_mean_ptq']:.5f}.",
            "",
            graph_report_markdown(r["graphs"]).split("\nOp census:")[0],
            "",
            *[line.replace("## ", "### ", 1) for line in tflm_markdown(r.get("tflm"))],
        ]
    return lines


def _tail_sections(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary.get("c_encoder_md"):
        md = summary["c_encoder_md"].replace("\n## ", "\n### ")
        lines += ["## Generated C encoder of the watch student (details in `c_encoder/`)", md, ""]
    if summary.get("firmware_md"):
        md = summary["firmware_md"].replace("\n## ", "\n### ")
        lines += ["## Firmware bundle driven by the harness (details in `firmware/`)", md, ""]
    if summary.get("harness_md"):
        md = summary["harness_md"].split("\n", 1)[-1].replace("\n## ", "\n### ")  # its title dropped, one level down
        lines += ["## Firmware harness (emulated watch sensor → streaming → int8 student; details in `harness/`)",
                  md, ""]
    if summary.get("bench_md"):
        lines += ["## Latency per 10 s window (this host, 1 thread; details in `bench/`)", "", summary["bench_md"], ""]
    if summary.get("gpu_rehearsal_md"):
        lines += ["## GPU round trip, rehearsed on this CPU (docs/gpu.md)", "", summary["gpu_rehearsal_md"], ""]
    if summary.get("parity_md"):
        lines += ["## Parity of every artifact vs the golden sets of the float models", "", summary["parity_md"], ""]
    return lines


def plot_demo(ds, ppg: np.ndarray, emb: np.ndarray, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional ([plot] extra)
        log.warning("matplotlib not installed: no plot")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    t = np.arange(ppg.shape[1]) / 125.0
    if len(ds):
        i = len(ds) - 1
        window = ds.window(i)
        axes[0].plot(t, window[1] + 4, lw=0.8, label="ECG (preprocessed)")
        axes[0].plot(t, window[0], lw=0.8, label="PPG (preprocessed)")
        axes[0].set_title(f"{ds.subject_ids[i]} @ {ds.start_s[i]:.0f} s")
        axes[0].set_xlabel("time [s]")
        axes[0].legend(loc="upper right", fontsize=8)
    if len(emb) >= 3:
        z = emb - emb.mean(0)
        vt = np.linalg.svd(z, full_matrices=False)[2]
        pc = z @ vt[:2].T
        for name in sorted(set(ds.datasets)):
            m = ds.datasets == name
            axes[1].scatter(pc[m, 0], pc[m, 1], s=8, label=name)
        axes[1].set_title("PPG embeddings, first two principal components")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
