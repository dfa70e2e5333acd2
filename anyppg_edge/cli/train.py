"""``anyppg-edge demo|budget|prepare-data|pretrain|distill|physiology|throughput|bench-shards``: the
data, training and main-job commands (thin wrappers over library functions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from anyppg_edge.cli._common import subparser


def _cmd_demo(args: argparse.Namespace) -> int:
    from anyppg_edge.pipeline import DemoConfig, run_demo

    cfg = DemoConfig(
        out_dir=Path(args.out),
        model=args.model,
        use_shared=not args.no_shared,
        sim_subjects=args.sim_subjects,
        sim_duration_s=args.sim_duration_s,
        seed=args.seed,
        pretrain_steps=args.pretrain_steps,
        distill_steps=args.distill_steps,
        export=not args.no_export,
        export_qat_steps=args.export_qat_steps,
        bench_runs=args.bench_runs,
        plot=not args.no_plot,
    )
    summary = run_demo(cfg)
    print((Path(args.out) / "report.md").read_text())
    print(f"report: {Path(args.out) / 'report.md'}  ({summary['n_windows']} windows)")
    return 0


def _cmd_budget(args: argparse.Namespace) -> int:
    from anyppg_edge.models.budget import TIERS, budget_table
    from anyppg_edge.report import markdown_table

    try:
        rows = budget_table(args.names or None)
    except KeyError as exc:
        raise SystemExit(f"budget: {exc.args[0]}") from None
    print(markdown_table(rows))
    limits = [
        {"tier": t.name, "max params": t.max_params, "max MACs/window": t.max_macs_per_window,
         "max int8 weight B": t.max_int8_weight_bytes, "max arena B": t.max_arena_bytes,
         "arena B/element": t.arena_bytes_per_element}
        for t in TIERS.values()
    ]
    print(markdown_table(limits))
    return 0


def _cmd_prepare_data(args: argparse.Namespace) -> int:
    from anyppg_edge.data import load_shared_recordings, simulate_cohort
    from anyppg_edge.data.shards import prepare_shards

    sources: list = [Path(p) for p in args.sources]
    if args.shared:
        sources += load_shared_recordings()
    if args.sim_subjects:
        sources += simulate_cohort(args.sim_subjects, duration_s=args.sim_duration_s, seed=args.seed)
    if not sources:
        raise SystemExit("nothing to prepare: give recording files, --shared and/or --sim-subjects")
    summary = prepare_shards(
        sources, args.out, hop_s=args.hop_s, workers=args.workers, ecg_quality=not args.no_ecg_quality,
        dtype=args.dtype, seed=args.seed,
    )
    print((Path(args.out) / "summary.md").read_text())
    print(f"processed {summary['run']['processed']}, skipped (already done) {summary['run']['skipped']}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from anyppg_edge.report import markdown_table
    from anyppg_edge.train import ClipConfig, TrainConfig
    from anyppg_edge.train.augment import AugmentConfig
    from anyppg_edge.train.pretrain import pretrain_from_shards

    clip_cfg = ClipConfig(
        ppg_model=args.model, ecg_model=args.ecg_model or args.model, ecg_frozen=args.ecg_frozen,
        ecg_checkpoint=args.ecg_checkpoint,
    )
    train_cfg = TrainConfig(
        max_steps=args.steps, warmup_steps=args.warmup_steps, batch_size=args.batch_size, lr=args.lr,
        seed=args.seed, out_dir=args.out, resume=args.resume, num_workers=args.num_workers,
        eval_every_steps=args.eval_every, checkpoint_every_steps=args.checkpoint_every,
        group_batches=args.group_batches, groups_per_batch=args.groups_per_batch,
    )
    augment = AugmentConfig(crop_scale_min=args.crop_scale_min, noise_std=args.noise_std, warp_std=args.warp_std,
                            eq_std=args.eq_std)
    result = pretrain_from_shards(args.shards, clip_cfg, train_cfg, pool_size=args.pool_size, augment=augment)
    if "retrieval" in result:
        r = result["retrieval"]
        rows = [{"method": k, **{m: round(r[k][m], 3) for m in ("R@1", "R@5", "R@10", "mAP@10", "MRR")}}
                for k in ("model", "spectral_baseline")]
        print(markdown_table(rows))
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from anyppg_edge.train import TrainConfig
    from anyppg_edge.train.distill import DistillConfig, distill_and_evaluate

    cfg = DistillConfig(
        student=args.student, feature_weight=args.feature_weight, cosine_weight=args.cosine_weight,
        clip_weight=args.clip_weight, relational_weight=args.relational_weight,
    )
    train_cfg = TrainConfig(
        max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, out_dir=args.out,
        resume=args.resume, eval_every_steps=args.eval_every, checkpoint_every_steps=args.checkpoint_every,
        tensorboard=False,
    )
    distill_and_evaluate(args.shards, args.teacher, cfg, train_cfg, teacher_model=args.teacher_model,
                         heldout_splits=tuple(args.heldout_splits.split(",")), pool_size=args.pool_size,
                         progress=True)
    print((Path(args.out) / "retention.md").read_text())
    return 0


def _add_augment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crop-scale-min", type=float, default=1.0,
                   help="joint PPG/ECG time-stretch crop: fraction of the window kept, U[min, 1] (1: off)")
    p.add_argument("--noise-std", type=float, default=0.0, help="additive noise, relative to window std (0: off)")
    p.add_argument("--warp-std", type=float, default=0.0,
                   help="joint PPG/ECG non-uniform time warp: std of the log local rate (0: off; 0.1 ≈ ±10%%)")
    p.add_argument("--eq-std", type=float, default=0.0,
                   help="random zero-phase equaliser per signal: std of the log gain per octave (0: off)")


def _cmd_physiology(args: argparse.Namespace) -> int:
    from anyppg_edge.train.physiology import PhysiologyConfig, run_physiology

    run_physiology(PhysiologyConfig(
        out_dir=Path(args.out), model=args.model, folds=args.folds, run_folds=args.run_folds,
        steps_per_fold=args.steps_per_fold,
        batch_size=args.batch_size, lr=args.lr, group_batches=args.group_batches,
        groups_per_batch=args.groups_per_batch,
        sim_subjects=args.sim_subjects, train_hop_s=args.train_hop_s, seed=args.seed,
        crop_scale_min=args.crop_scale_min, noise_std=args.noise_std, warp_std=args.warp_std, eq_std=args.eq_std,
        progress=args.progress,
        second_ppg=args.second_ppg, kernel_size=args.kernel_size, dropout_p=args.dropout,
        only_folds=tuple(int(k) for k in args.fold.split(",")) if args.fold else None,
    ))
    print((Path(args.out) / "report.md").read_text())
    return 0


def _cmd_throughput(args: argparse.Namespace) -> int:
    import json

    from anyppg_edge.train.throughput import measure_throughput

    res = measure_throughput(args.model, args.batch_size, args.steps, device=args.device)
    print(json.dumps(res, indent=2))
    return 0


def _cmd_bench_shards(args: argparse.Namespace) -> int:
    from anyppg_edge.data.shards_bench import main as bench_main

    bench_main(["--n-windows", str(args.n_windows), "--json", args.json])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    d = subparser(sub, "demo", help="run the main job end to end on the embedded default data")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--model", default="anyppg-released")
    d.add_argument("--no-shared", action="store_true", help="simulator data only, ignore ../shared")
    d.add_argument("--sim-subjects", type=int, default=8)
    d.add_argument("--sim-duration-s", type=float, default=120.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--pretrain-steps", type=int, default=40)
    d.add_argument("--distill-steps", type=int, default=40)
    d.add_argument("--export-qat-steps", type=int, default=30, help="QAT steps before the int8 export")
    d.add_argument("--no-export", action="store_true", help="stop after distillation (no QAT/TFLite/ONNX)")
    d.add_argument("--bench-runs", type=int, default=50, help="timed runs per artifact in the latency table")
    d.add_argument("--no-plot", action="store_true")
    d.set_defaults(func=_cmd_demo)

    for cmd in ("budget", "models"):
        b = subparser(sub, cmd, help="registered models: params, MACs, int8 bytes, peak activation vs device tiers")
        b.add_argument("names", nargs="*", help="registered model names (default: all)")
        b.set_defaults(func=_cmd_budget)

    pd = subparser(sub, "prepare-data", help="preprocess recordings into memory-mapped training shards")
    pd.add_argument("sources", nargs="*", help="recording files (IEEE .mat, BIDMC/NeuroKit CSV, WFDB, EDF, NPZ)")
    pd.add_argument("--shared", action="store_true", help="add the real recordings of ../shared")
    pd.add_argument("--sim-subjects", type=int, default=0)
    pd.add_argument("--sim-duration-s", type=float, default=300.0)
    pd.add_argument("--out", required=True)
    pd.add_argument("--hop-s", type=float, default=10.0)
    pd.add_argument("--workers", type=int, default=1)
    pd.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    pd.add_argument("--no-ecg-quality", action="store_true")
    pd.add_argument("--seed", type=int, default=0)
    pd.set_defaults(func=_cmd_prepare_data)

    pt = subparser(sub, "pretrain", help="CLIP PPG-ECG pretraining from shards (works under torchrun)")
    pt.add_argument("--shards", required=True)
    pt.add_argument("--model", default="anyppg-paper")
    pt.add_argument("--ecg-model", default=None)
    pt.add_argument("--ecg-frozen", action="store_true")
    pt.add_argument("--ecg-checkpoint", default=None)
    pt.add_argument("--steps", type=int, default=200_000)
    pt.add_argument("--warmup-steps", type=int, default=None)
    pt.add_argument("--batch-size", type=int, default=256, help="per rank")
    pt.add_argument("--lr", type=float, default=5e-4)
    pt.add_argument("--eval-every", type=int, default=2000)
    pt.add_argument("--checkpoint-every", type=int, default=2000)
    pt.add_argument("--num-workers", type=int, default=0)
    pt.add_argument("--group-batches", action="store_true", help="batches within one subject")
    pt.add_argument("--groups-per-batch", type=int, default=1,
                    help="with --group-batches: subjects per batch (batch/N windows each; 1: one subject)")
    pt.add_argument("--pool-size", type=int, default=64)
    pt.add_argument("--resume", action="store_true")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--out", default="runs/pretrain")
    _add_augment_args(pt)
    pt.set_defaults(func=_cmd_pretrain)

    ds = subparser(sub, "distill", help="distil a student from a frozen teacher; budget + retention report")
    ds.add_argument("--shards", required=True, help="prepared shards (the teacher's pretraining data)")
    ds.add_argument("--teacher", required=True,
                    help="pretraining checkpoint (best.pt/last.pt) or an official-layout Net1D state_dict")
    ds.add_argument("--teacher-model", default="anyppg-released", help="registry config of a state_dict teacher")
    ds.add_argument("--student", default="student-watch")
    ds.add_argument("--feature-weight", type=float, default=1.0)
    ds.add_argument("--cosine-weight", type=float, default=1.0)
    ds.add_argument("--clip-weight", type=float, default=None, help="default: 1 for a CLIP teacher, else 0")
    ds.add_argument("--relational-weight", type=float, default=1.0)
    ds.add_argument("--steps", type=int, default=2000)
    ds.add_argument("--batch-size", type=int, default=64)
    ds.add_argument("--lr", type=float, default=2e-3)
    ds.add_argument("--eval-every", type=int, default=500)
    ds.add_argument("--checkpoint-every", type=int, default=500)
    ds.add_argument("--heldout-splits", default="val,test")
    ds.add_argument("--pool-size", type=int, default=64)
    ds.add_argument("--resume", action="store_true")
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--out", default="runs/distill")
    ds.set_defaults(func=_cmd_distill)

    ph = subparser(sub, "physiology", help="real-data pretraining benchmark: held-out retrieval vs baseline")
    ph.add_argument("--out", default="runs/physiology")
    ph.add_argument("--model", default="small-k15")
    ph.add_argument("--kernel-size", type=int, default=None, help="override the model's Net1D kernel size")
    ph.add_argument("--dropout", type=float, default=None,
                    help="override the Net1D blocks' dropout probability (registry configs: 0.5)")
    ph.add_argument("--folds", type=int, default=5)
    ph.add_argument("--run-folds", type=int, default=None, help="run only the first N folds (time budget)")
    ph.add_argument("--fold", default=None, help="run exactly these folds, e.g. '1' or '1,3' (overrides --run-folds)")
    ph.add_argument("--steps-per-fold", type=int, default=600)
    ph.add_argument("--batch-size", type=int, default=64)
    ph.add_argument("--lr", type=float, default=1e-3)
    ph.add_argument("--sim-subjects", type=int, default=0,
                    help="simulated subjects (5 min each) added to every fold's training set; evaluation stays real")
    ph.add_argument("--train-hop-s", type=float, default=1.0, help="hop between training windows")
    ph.add_argument("--group-batches", action="store_true", help="batches within one subject (hard negatives)")
    ph.add_argument("--groups-per-batch", type=int, default=1,
                    help="with --group-batches: subjects per batch (batch/N windows each; 1: one subject)")
    ph.add_argument("--seed", type=int, default=0)
    _add_augment_args(ph)
    ph.add_argument("--progress", action="store_true", help="progress bar per fold")
    ph.add_argument("--second-ppg", action="store_true",
                    help="also train on the 2nd wrist PPG sensor of recordings that have one (IEEE SPC 2015)")
    ph.set_defaults(func=_cmd_physiology)

    tp = subparser(sub, "throughput", help="pretraining samples/s and GPU memory on this device")
    tp.add_argument("--model", default="anyppg-paper")
    tp.add_argument("--batch-size", type=int, default=256)
    tp.add_argument("--steps", type=int, default=20)
    tp.add_argument("--device", default=None)
    tp.set_defaults(func=_cmd_throughput)

    bs = subparser(sub, "bench-shards", help="write + iterate >= 100,000 shard windows, windows/s")
    bs.add_argument("--n-windows", type=int, default=100_000)
    bs.add_argument("--json", default="runs/shards_bench.json")
    bs.set_defaults(func=_cmd_bench_shards)
