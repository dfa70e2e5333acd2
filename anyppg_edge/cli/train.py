"""``anyppg-edge demo|budget|prepare-data|pretrain|distill|physiology|throughput|bench-shards``: the
data, training and main-job commands (thin wrappers over library functions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from anyppg_edge.cli._common import (
    add_config_args,
    config_from_args,
    contrastive_batch,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    subparser,
    unit_float,
)


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


# Options of the training commands come from the config dataclasses (anyppg_edge.train.configs);
# these tables say which fields each command exposes, under which flag and with which validation.
TRAIN_FLAGS = ("max_steps", "warmup_steps", "batch_size", "lr", "weight_decay", "seed", "out_dir", "resume",
               "num_workers", "eval_every_steps", "checkpoint_every_steps", "group_batches", "groups_per_batch")
TRAIN_RENAME = {"max_steps": "--steps", "out_dir": "--out", "eval_every_steps": "--eval-every",
                "checkpoint_every_steps": "--checkpoint-every"}
TRAIN_TYPES = {"max_steps": positive_int, "warmup_steps": nonnegative_int, "batch_size": positive_int,
               "lr": positive_float, "weight_decay": nonnegative_float, "num_workers": nonnegative_int,
               "eval_every_steps": nonnegative_int, "checkpoint_every_steps": nonnegative_int,
               "groups_per_batch": positive_int}
CLIP_TRAIN_TYPES = {**TRAIN_TYPES, "batch_size": contrastive_batch}  # in-batch negatives: >= 2
TRAIN_HELP = {"batch_size": "per rank", "group_batches": "batches within groups of windows (subjects): hard negatives",
              "groups_per_batch": "with --group-batches: subjects per batch (batch/N windows each)",
              "resume": "continue exactly from OUT/last.pt"}
AUGMENT_FLAGS = ("crop_scale_min", "noise_std", "warp_std", "eq_std")
AUGMENT_TYPES = {"crop_scale_min": unit_float, "noise_std": nonnegative_float, "warp_std": nonnegative_float,
                 "eq_std": nonnegative_float}
AUGMENT_HELP = {
    "crop_scale_min": "joint PPG/ECG time-stretch crop: fraction of the window kept, U[min, 1] (1: off)",
    "noise_std": "additive noise, relative to the window std (0: off)",
    "warp_std": "joint PPG/ECG non-uniform time warp: std of the log local rate (0: off; 0.1 ≈ ±10%%)",
    "eq_std": "random zero-phase equaliser per signal: std of the log gain per octave (0: off)",
}
DISTILL_FLAGS = ("student", "feature_weight", "cosine_weight", "clip_weight", "relational_weight",
                 "relational_temperature")
PHYSIOLOGY_FLAGS = ("out_dir", "model", "kernel_size", "dropout_p", "folds", "run_folds", "only_folds", "hop_s",
                    "train_hop_s", "pool_size", "sim_subjects", "second_ppg", "progress", "seed")
PHYSIOLOGY_TRAIN_FLAGS = ("max_steps", "batch_size", "lr", "group_batches", "groups_per_batch")
PRETRAIN_MODEL = "anyppg-paper"


def _fold_list(text: str) -> tuple[int, ...]:
    try:
        folds = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of fold indices") from None
    if min(folds) < 0:
        raise argparse.ArgumentTypeError(f"fold indices must be >= 0, got {text!r}")
    return folds


def _train_defaults(command: str):
    from anyppg_edge.train.configs import TrainConfig

    if command == "distill":
        return TrainConfig(max_steps=2000, batch_size=64, lr=2e-3, eval_every_steps=500, checkpoint_every_steps=500,
                           out_dir="runs/distill", tensorboard=False)
    return TrainConfig()


def _recipe(args: argparse.Namespace, command: str) -> dict:
    from anyppg_edge.config import load_recipe

    return load_recipe(args.recipe, command) if args.recipe else {}


def _section(cls: type, args: argparse.Namespace, recipe: dict, key: str, only, base=None):
    """``cls`` from the recipe's ``key`` section (over ``base``), then the flags given."""
    from anyppg_edge.config import nested_from_dict

    return config_from_args(cls, args, nested_from_dict(cls, recipe.get(key, {}), base if base is not None else cls()),
                            only)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from anyppg_edge.models import derived_model_name
    from anyppg_edge.models.clip import ClipConfig
    from anyppg_edge.train.configs import AugmentConfig, TrainConfig
    from anyppg_edge.train.pretrain import pretrain_from_shards

    recipe = _recipe(args, "pretrain")
    clip_d = dict(recipe.get("clip", {}))
    for key in ("ppg_model", "ecg_model", "ecg_frozen", "ecg_checkpoint"):
        if getattr(args, key) is not None:
            clip_d[key] = getattr(args, key)
    clip_d.setdefault("ppg_model", PRETRAIN_MODEL)
    if args.ecg_model is None and args.ppg_model is not None:
        clip_d["ecg_model"] = args.ppg_model
    clip_d.setdefault("ecg_model", clip_d["ppg_model"])
    for key in ("ppg_model", "ecg_model"):  # one architecture change applies to both towers
        clip_d[key] = derived_model_name(clip_d[key], args.kernel_size, args.dropout)
    train_cfg = _section(TrainConfig, args, recipe, "train", TRAIN_FLAGS, _train_defaults("pretrain"))
    augment = _section(AugmentConfig, args, recipe, "augment", AUGMENT_FLAGS)
    result = pretrain_from_shards(args.shards, ClipConfig.from_dict(clip_d), train_cfg, pool_size=args.pool_size,
                                  augment=augment)
    if "retrieval" in result:
        from anyppg_edge.report import markdown_table

        r = result["retrieval"]
        print(markdown_table([{"method": k, **{m: round(r[k][m], 3) for m in ("R@1", "R@5", "R@10", "mAP@10", "MRR")}}
                              for k in ("model", "spectral_baseline")]))
    out = Path(train_cfg.out_dir)
    print(f"written: {out / 'last.pt'}, {out / 'best.pt'}, {out / 'metrics.csv'}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from anyppg_edge.train.configs import DistillConfig, TrainConfig
    from anyppg_edge.train.distill import distill_and_evaluate

    recipe = _recipe(args, "distill")
    cfg = _section(DistillConfig, args, recipe, "distill", DISTILL_FLAGS)
    train_cfg = _section(TrainConfig, args, recipe, "train", TRAIN_FLAGS, _train_defaults("distill"))
    distill_and_evaluate(args.shards, args.teacher, cfg, train_cfg, teacher_model=args.teacher_model,
                         heldout_splits=tuple(args.heldout_splits.split(",")), pool_size=args.pool_size,
                         progress=True)
    out = Path(train_cfg.out_dir)
    print((out / "retention.md").read_text())
    print(f"written: {out / 'retention.md'}, {out / 'retention.json'}, {out / 'last.pt'}, {out / 'best.pt'}")
    return 0


def _cmd_physiology(args: argparse.Namespace) -> int:
    from anyppg_edge.config import nested_from_dict
    from anyppg_edge.train.configs import AugmentConfig, TrainConfig
    from anyppg_edge.train.physiology import PhysiologyConfig, run_physiology

    base = nested_from_dict(PhysiologyConfig, _recipe(args, "physiology"), PhysiologyConfig())
    cfg = config_from_args(
        PhysiologyConfig, args, base, PHYSIOLOGY_FLAGS,
        train=config_from_args(TrainConfig, args, base.train, PHYSIOLOGY_TRAIN_FLAGS),
        augment=config_from_args(AugmentConfig, args, base.augment, AUGMENT_FLAGS),
    )
    run_physiology(cfg)
    out = Path(cfg.out_dir)
    print((out / "report.md").read_text())
    print(f"written: {out / 'report.md'}, {out / 'summary.json'}")
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

    from anyppg_edge.config import list_recipes
    from anyppg_edge.train.configs import AugmentConfig, DistillConfig, TrainConfig
    from anyppg_edge.train.physiology import PhysiologyConfig

    recipe_help = f"a recipe: one of {list_recipes()} or a .json file; flags given override it"

    pt = subparser(sub, "pretrain", help="CLIP PPG-ECG pretraining from shards (works under torchrun)")
    pt.add_argument("--shards", required=True)
    pt.add_argument("--recipe", default=None, help=recipe_help)
    pt.add_argument("--model", dest="ppg_model", default=None, help=f"registry name of the PPG tower (default: {PRETRAIN_MODEL})")
    pt.add_argument("--ecg-model", default=None, help="registry name of the ECG tower (default: the PPG tower's)")
    pt.add_argument("--ecg-frozen", action="store_true", default=None, help="frozen (pretrained) ECG tower")
    pt.add_argument("--ecg-checkpoint", default=None, help="official-layout state_dict for the ECG tower")
    pt.add_argument("--kernel-size", type=positive_int, default=None, help="override both towers' Net1D kernel size")
    pt.add_argument("--dropout", type=unit_float, default=None, help="override both towers' Net1D block dropout (registry: 0.5)")
    pt.add_argument("--pool-size", type=contrastive_batch, default=64, help="retrieval pool size of the final evaluation")
    add_config_args(pt, TrainConfig, TRAIN_FLAGS, flags=TRAIN_RENAME, types_=CLIP_TRAIN_TYPES, help=TRAIN_HELP,
                    base=_train_defaults("pretrain"))
    add_config_args(pt, AugmentConfig, AUGMENT_FLAGS, types_=AUGMENT_TYPES, help=AUGMENT_HELP)
    pt.set_defaults(func=_cmd_pretrain)

    ds = subparser(sub, "distill", help="distil a student from a frozen teacher; budget + retention report")
    ds.add_argument("--shards", required=True, help="prepared shards (the teacher's pretraining data)")
    ds.add_argument("--teacher", required=True,
                    help="pretraining checkpoint (best.pt/last.pt) or an official-layout Net1D state_dict")
    ds.add_argument("--teacher-model", default="anyppg-released", help="registry config of a state_dict teacher")
    ds.add_argument("--recipe", default=None, help=recipe_help)
    ds.add_argument("--heldout-splits", default="val,test")
    ds.add_argument("--pool-size", type=contrastive_batch, default=64)
    add_config_args(ds, DistillConfig, DISTILL_FLAGS, types_={"relational_temperature": positive_float},
                    help={"clip_weight": "None: 1 for a CLIP teacher, else 0"})
    add_config_args(ds, TrainConfig, TRAIN_FLAGS, flags=TRAIN_RENAME, types_=TRAIN_TYPES, help=TRAIN_HELP,
                    base=_train_defaults("distill"))
    ds.set_defaults(func=_cmd_distill)

    ph = subparser(sub, "physiology", help="real-data pretraining benchmark: held-out retrieval vs baseline")
    ph.add_argument("--recipe", default=None, help=recipe_help)
    add_config_args(
        ph, PhysiologyConfig, PHYSIOLOGY_FLAGS,
        flags={"out_dir": "--out", "dropout_p": "--dropout", "only_folds": "--fold"},
        types_={"out_dir": Path, "kernel_size": positive_int, "dropout_p": unit_float, "folds": positive_int,
                "run_folds": positive_int, "only_folds": _fold_list, "hop_s": positive_float,
                "train_hop_s": positive_float, "pool_size": contrastive_batch, "sim_subjects": nonnegative_int},
        help={"kernel_size": "override the model's Net1D kernel size",
              "dropout_p": "override the Net1D blocks' dropout probability (registry configs: 0.5)",
              "run_folds": "run only the first N folds (time budget)",
              "only_folds": "run exactly these folds, e.g. '1' or '1,3' (overrides --run-folds)",
              "sim_subjects": "simulated subjects (5 min each) added to every fold's training set; evaluation stays real",
              "train_hop_s": "hop between training windows",
              "second_ppg": "also train on the 2nd wrist PPG sensor of recordings that have one (IEEE SPC 2015)",
              "progress": "progress bar per fold", "seed": "subject folds, simulated subjects, pools; fold k trains with seed + k"},
    )
    add_config_args(ph, TrainConfig, PHYSIOLOGY_TRAIN_FLAGS, flags={"max_steps": "--steps-per-fold"},
                    types_=CLIP_TRAIN_TYPES, help=TRAIN_HELP, base=PhysiologyConfig().train)
    add_config_args(ph, AugmentConfig, AUGMENT_FLAGS, types_=AUGMENT_TYPES, help=AUGMENT_HELP)
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
