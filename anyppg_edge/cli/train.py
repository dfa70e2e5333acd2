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

    cfg = config_from_args(DemoConfig, args, DemoConfig(), DEMO_FLAGS)
    summary = run_demo(cfg)
    out = Path(cfg.out_dir)
    print((out / "report.md").read_text())
    print(f"written: {out / 'report.md'}, {out / 'summary.json'}, {out / 'embeddings.npy'}, {out / 'export'}  "
          f"({summary['n_windows']} windows)")
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


def _subject_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no subject; give comma-separated subject ids")
    return names


def _cmd_prepare_data(args: argparse.Namespace) -> int:
    from anyppg_edge.data import load_shared_recordings, simulate_cohort
    from anyppg_edge.data.shards import prepare_shards
    from anyppg_edge.errors import UsageError

    sources: list = [Path(p) for p in args.sources]
    if args.shared:
        sources += load_shared_recordings()
    if args.sim_subjects:
        sources += simulate_cohort(args.sim_subjects, duration_s=args.sim_duration_s, seed=args.seed)
    if not sources:
        raise UsageError("nothing to prepare: give recording files, --shared and/or --sim-subjects")
    summary = prepare_shards(
        sources, args.out, hop_s=args.hop_s, workers=args.workers, ecg_quality=not args.no_ecg_quality,
        dtype=args.dtype, seed=args.seed, force=args.force, second_ppg=args.second_ppg,
        val_subjects=args.val_subjects or (), test_subjects=args.test_subjects or (),
        native_rates_hz=args.native_rates or (),
    )
    run = summary["run"]
    print((Path(args.out) / "summary.md").read_text())
    if run["replaced"]:
        print(f"--force: replaced the folder's previous shards ({run['replaced']} files removed; subjects kept their split)")
    if run["pinned"]:
        print("pinned: " + ", ".join(f"{k} -> {v}" for k, v in run["pinned"].items()))
    if summary.get("moved"):
        print("moved from their previous split: " + ", ".join(f"{k} ({v})" for k, v in summary["moved"].items()))
    if args.second_ppg:
        subs = run["second_ppg_subjects"]
        print(f"--second-ppg: {len(subs)} subject(s) with a second PPG view" + (f": {', '.join(subs)}" if subs else
              " (no recording of this folder has a 'ppg2' channel)"))
    print(f"processed {run['processed']}, skipped (already done) {run['skipped']}")
    return 0


DEMO_FLAGS = ("out_dir", "model", "use_shared", "sim_subjects", "sim_duration_s", "seed", "pretrain_steps",
              "distill_steps", "export", "export_qat_steps", "bench_runs", "plot", "force")
# Options of the training commands come from the config dataclasses (anyppg_edge.train.configs);
# these tables say which fields each command exposes, under which flag and with which validation.
TRAIN_FLAGS = ("max_steps", "warmup_steps", "batch_size", "lr", "weight_decay", "seed", "out_dir", "resume",
               "num_workers", "eval_every_steps", "checkpoint_every_steps", "group_batches", "groups_per_batch",
               "threads")
TRAIN_TYPES = {"max_steps": positive_int, "warmup_steps": nonnegative_int, "batch_size": positive_int,
               "lr": positive_float, "weight_decay": nonnegative_float, "num_workers": nonnegative_int,
               "eval_every_steps": nonnegative_int, "checkpoint_every_steps": nonnegative_int,
               "groups_per_batch": positive_int, "threads": positive_int}
CLIP_TRAIN_TYPES = {**TRAIN_TYPES, "batch_size": contrastive_batch}  # in-batch negatives: >= 2
TRAIN_HELP = {"batch_size": "per rank", "group_batches": "batches within groups of windows (subjects): hard negatives",
              "groups_per_batch": "with --group-batches: subjects per batch (batch/N windows each)",
              "resume": "continue exactly from OUT/last.pt, with the config it records: flags that change its "
                        "--lr, --batch-size, --seed, --warmup-steps, --weight-decay, batching, model or "
                        "augmentation are refused; --steps (> its step), --eval-every, --checkpoint-every, "
                        "--num-workers, --threads are applied",
              "threads": "torch threads (intra- and inter-op); unset: torch's default, with a warning when that "
                         "exceeds the free cores"}
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
PHYSIOLOGY_TRAIN_FLAGS = ("max_steps", "batch_size", "lr", "group_batches", "groups_per_batch", "threads")
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


def _train_config(args: argparse.Namespace, recipe: dict, command: str):
    """The command's TrainConfig, and the checkpoint a ``--resume`` run continues (``OUT/last.pt``) or
    ``None``. Resuming, a field that no flag or recipe gives is the checkpoint's, not the command's
    default: ``--out X --resume`` continues the run in X as it was configured; a flag or recipe value that
    differs is applied or refused by the trainer's resume policy
    (:data:`~anyppg_edge.train.configs.RESUME_REFUSED`, :data:`~anyppg_edge.train.configs.RESUME_APPLIED`)."""
    import dataclasses

    from anyppg_edge.train.configs import TrainConfig

    defaults = _train_defaults(command)
    cfg = _section(TrainConfig, args, recipe, "train", TRAIN_FLAGS, defaults)
    last = Path(cfg.out_dir) / "last.pt"
    if not (cfg.resume and last.is_file()):
        return cfg, None
    from anyppg_edge.train.checkpoints import load_checkpoint

    ckpt = load_checkpoint(last)
    known = {f.name for f in dataclasses.fields(TrainConfig)} - {"out_dir", "resume"}
    base = dataclasses.replace(defaults, **{k: v for k, v in ckpt["train_config"].items() if k in known})
    return _section(TrainConfig, args, recipe, "train", TRAIN_FLAGS, base), ckpt


def _recorded(ckpt: dict | None, key: str, cls: type, drop: tuple[str, ...] = ()) -> dict:
    """The ``key`` section (a ``cls`` config) of a resumed checkpoint's ``extra_config``, as a dict of
    ``cls``'s fields; empty when not resuming."""
    import dataclasses

    section = ((ckpt or {}).get("extra_config") or {}).get(key) or {}
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in section.items() if k in known and k not in drop}


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from anyppg_edge.models import derived_model_name
    from anyppg_edge.models.clip import ClipConfig
    from anyppg_edge.train.configs import AugmentConfig
    from anyppg_edge.train.pretrain import pretrain_from_shards
    from anyppg_edge.train.threads import configure_threads

    recipe = _recipe(args, "pretrain")
    train_cfg, resumed = _train_config(args, recipe, "pretrain")
    # resuming: the checkpoint's model (its initialisation files no longer matter) under the recipe and flags
    clip_d = {**_recorded(resumed, "clip", ClipConfig, drop=("ppg_checkpoint", "ecg_checkpoint")),
              **recipe.get("clip", {})}
    for key in ("ppg_model", "ecg_model", "ecg_frozen", "ecg_checkpoint"):
        if getattr(args, key) is not None:
            clip_d[key] = getattr(args, key)
    clip_d.setdefault("ppg_model", PRETRAIN_MODEL)
    if args.ecg_model is None and args.ppg_model is not None:
        clip_d["ecg_model"] = args.ppg_model
    clip_d.setdefault("ecg_model", clip_d["ppg_model"])
    for key in ("ppg_model", "ecg_model"):  # one architecture change applies to both towers
        clip_d[key] = derived_model_name(clip_d[key], args.kernel_size, args.dropout)
    augment = _section(AugmentConfig, args, recipe, "augment", AUGMENT_FLAGS,
                       AugmentConfig(**_recorded(resumed, "augment", AugmentConfig)))
    configure_threads(train_cfg.threads)
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
    from anyppg_edge.train.configs import DistillConfig
    from anyppg_edge.train.distill import distill_and_evaluate
    from anyppg_edge.train.threads import configure_threads

    recipe = _recipe(args, "distill")
    train_cfg, resumed = _train_config(args, recipe, "distill")
    cfg = _section(DistillConfig, args, recipe, "distill", DISTILL_FLAGS,
                   DistillConfig(**_recorded(resumed, "distill", DistillConfig)))
    configure_threads(train_cfg.threads)
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
    from anyppg_edge.train.threads import configure_threads

    base = nested_from_dict(PhysiologyConfig, _recipe(args, "physiology"), PhysiologyConfig())
    cfg = config_from_args(
        PhysiologyConfig, args, base, PHYSIOLOGY_FLAGS,
        train=config_from_args(TrainConfig, args, base.train, PHYSIOLOGY_TRAIN_FLAGS),
        augment=config_from_args(AugmentConfig, args, base.augment, AUGMENT_FLAGS),
    )
    configure_threads(cfg.train.threads)
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
    from anyppg_edge.data.shards_bench import bench_shards_text, benchmark_shards

    res = benchmark_shards(n_windows=args.n_windows, json_path=args.json)
    print(bench_shards_text(res))
    print(f"written: {args.json}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from anyppg_edge.pipeline import DemoConfig

    d = subparser(sub, "demo", help="run the main job end to end on the embedded default data")
    add_config_args(
        d, DemoConfig, DEMO_FLAGS, flags={"out_dir": "--out", "use_shared": "--shared"},
        types_={"out_dir": Path, "sim_subjects": nonnegative_int, "sim_duration_s": positive_float,
                "pretrain_steps": positive_int, "distill_steps": positive_int, "export_qat_steps": nonnegative_int,
                "bench_runs": positive_int},
        help={"use_shared": "add the real recordings of ../shared (--no-shared: simulator data only)",
              "export": "QAT + ONNX/TFLite float and int8 (--no-export: stop after distillation)",
              "export_qat_steps": "QAT steps before the int8 export",
              "bench_runs": "timed runs per artifact in the latency table",
              "force": "rebuild OUT/data when it was prepared with other settings"},
    )
    d.set_defaults(func=_cmd_demo)

    for cmd in ("budget", "models"):
        b = subparser(sub, cmd, help="registered models: params, MACs, int8 bytes, peak activation vs device tiers")
        b.add_argument("names", nargs="*", help="registered model names (default: all)")
        b.set_defaults(func=_cmd_budget)

    pd = subparser(sub, "prepare-data", help="preprocess recordings into memory-mapped training shards")
    pd.add_argument("sources", nargs="*", help="recording files (IEEE .mat, BIDMC/NeuroKit CSV, WFDB, EDF, NPZ)")
    pd.add_argument("--shared", action="store_true", help="add the real recordings of ../shared")
    pd.add_argument("--sim-subjects", type=nonnegative_int, default=0)
    pd.add_argument("--sim-duration-s", type=positive_float, default=300.0)
    pd.add_argument("--out", required=True)
    pd.add_argument("--hop-s", type=positive_float, default=10.0)
    pd.add_argument("--workers", type=positive_int, default=1)
    pd.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    pd.add_argument("--no-ecg-quality", action="store_true")
    pd.add_argument("--seed", type=int, default=0, help="subject split (and simulated cohort) seed")
    pd.add_argument("--second-ppg", action="store_true",
                    help="also pair the ECG with a recording's second wrist PPG ('ppg2', IEEE SPC 2015): "
                         "view 'ppg2' in the index, same subject and split")
    pd.add_argument("--native-rates", type=positive_int, nargs="+", default=None, metavar="HZ",
                    help="also store every window's PPG as a watch sensor at these rates samples it (e.g. 25 50), "
                         "preprocessed at that rate: the inputs of native-rate students (distill --recipe "
                         "distill-watch-25hz)")
    pd.add_argument("--val-subjects", type=_subject_list, default=None, metavar="A,B",
                    help="pin these subjects to val (subject ids as in the index, e.g. ieee_spc2015/DATA_07, or "
                         "DATA_07 when unambiguous); every other new subject goes to train")
    pd.add_argument("--test-subjects", type=_subject_list, default=None, metavar="C",
                    help="pin these subjects to test (as --val-subjects)")
    pd.add_argument("--force", action="store_true",
                    help="the folder was made with other settings: replace its shards (its subjects keep their "
                         "split); without it such a folder is refused")
    pd.set_defaults(func=_cmd_prepare_data)

    from anyppg_edge.config import list_recipes
    from anyppg_edge.train.configs import TRAIN_CLI_FLAGS, AugmentConfig, DistillConfig, TrainConfig
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
    add_config_args(pt, TrainConfig, TRAIN_FLAGS, flags=TRAIN_CLI_FLAGS, types_=CLIP_TRAIN_TYPES, help=TRAIN_HELP,
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
    add_config_args(ds, TrainConfig, TRAIN_FLAGS, flags=TRAIN_CLI_FLAGS, types_=TRAIN_TYPES, help=TRAIN_HELP,
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
