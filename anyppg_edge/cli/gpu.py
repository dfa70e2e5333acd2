"""``anyppg-edge gpu-check [prepare]``: the GPU half of the mission in one prepared command (thin
wrapper over :mod:`anyppg_edge.gpu_check`; the round trip is ``docs/gpu.md``).

* ``gpu-check prepare [--out runs/gpu_carry]`` (here, with ``../shared``): the carry folder (shards,
  golden windows, teacher, student and native-rate student checkpoints, manifest) and the exact device call to make;
* ``gpu-check --carry runs/gpu_carry --out DIR [--device cuda|cpu] [--tiny]`` (on the device, from a
  plain checkout with ``PYTHONPATH=.``; torch, numpy and scipy only): environment, golden sets,
  training match and short real run, throughput, largest batch, ``torch.compile``; one JSON and one
  markdown file (plus the golden sets). Exit 0 when every section ran and every check passed, 1 when
  one did not (the report says which), 2 for a usage error;
* ``gpu-check parity [--returned runs/gpu] [--carry DIR] [--out runs/parity/gpu] [--export-dir DIR ...]`` (here, with the
  device's files copied to ``runs/gpu``): every carried model's CPU float model, CPU golden set and exported
  artifacts against the returned GPU golden sets (:mod:`anyppg_edge.gpu_parity`). Exit 0 when all pass,
  1 when one does not, 2 for golden sets of other weights or windows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from anyppg_edge.cli._common import (
    add_config_args,
    choice,
    config_from_args,
    nonnegative_int,
    positive_float,
    positive_int,
    subparser,
)

ACTIONS = ("run", "prepare", "parity")
RUN_FLAGS = ("out_dir", "carry_dir", "device", "sections", "time_budget_s", "seed", "model", "batch_size", "steps",
             "warmup_steps", "precisions", "compile_precisions", "compile_backend", "max_batch_cap", "train_model",
             "train_steps", "train_batch_size", "train_lr", "match_steps", "match_batch_size", "golden_batch_size")
RUN_TYPES = {"time_budget_s": positive_float, "batch_size": positive_int, "steps": positive_int,
             "warmup_steps": nonnegative_int, "max_batch_cap": positive_int, "train_steps": positive_int,
             "train_batch_size": positive_int, "train_lr": positive_float, "match_steps": positive_int,
             "match_batch_size": positive_int, "golden_batch_size": positive_int,
             "compile_backend": choice("inductor", "eager", "aot_eager", "cudagraphs")}
RUN_HELP = {
    "out_dir": "report folder: gpu_check.json, gpu_check.md and the golden sets (on the device: $OUT) "
               "(prepare: the carry folder, default runs/gpu_carry; parity: the report folder, default runs/parity/gpu)",
    "carry_dir": "the carry folder made by `gpu-check prepare`",
    "device": "auto (CUDA when available), cuda, cuda:N, cpu (the dry run)",
    "sections": "comma-separated subset of the sections, run in their fixed order",
    "time_budget_s": "sections that would not fit are skipped, one that overruns is stopped",
    "model": "CLIP towers of the throughput, largest-batch and compile sections",
    "precisions": "throughput modes: fp32 (TF32 off), tf32, bf16 (autocast)",
    "max_batch_cap": "largest batch the doubling search tries",
    "train_model": "CLIP towers of the short real run and of the CPU match (dropout off there)",
    "match_steps": "first training steps compared device fp32 vs CPU fp32 (row train-gpu-vs-cpu-fp32)",
}


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    from anyppg_edge import gpu_check as G

    if args.action == "prepare":
        return _prepare(args, G)
    if args.action == "parity":
        return _parity(args)
    base = G.GpuCheckConfig(**G.TINY) if args.tiny else G.GpuCheckConfig()
    cfg = config_from_args(G.GpuCheckConfig, args, base, RUN_FLAGS)
    argv = sys.argv[1:] if Path(sys.argv[0]).name in ("__main__.py", "anyppg-edge") else []
    report = G.run_gpu_check(cfg, command=" ".join(["python -m anyppg_edge", *map(shlex.quote, argv)]) if argv else None)
    out = Path(cfg.out_dir)
    print((out / G.MD_NAME).read_text())
    print("written: " + ", ".join(str(out / f) for f in report["files"]))
    return 0 if report["passed"] else 1


def _prepare(args: argparse.Namespace, G) -> int:
    out = args.out_dir or G.DEFAULT_CARRY
    student = None if args.student in ("none", "init") else args.student
    native = None if args.native_student == "off" else args.native_student
    m = G.prepare_carry(
        out, teacher=args.teacher, teacher_model=args.teacher_model, student=student,
        student_model=args.student_model, native_student=native, native_student_model=args.native_student_model,
        use_shared=args.shared, sim_subjects=args.sim_subjects,
        hop_s=args.hop_s, ecg_quality=args.ecg_quality, golden_n=args.golden_n, golden_hop_s=args.golden_hop_s,
        split_seed=args.split_seed, force=args.force,
    )
    total = m["shards"]["total"]
    travel = G.travel_bytes()
    print(f"carry folder {out}: {m['size_bytes'] / 2**20:.1f} MiB; shards: "
          + ", ".join(f"{s} {total.get(f'{s}_segments', '?')}" for s in ("train", "val", "test"))
          + " windows; golden windows: " + ", ".join(f"{w['n']} at {w['sample_rate_hz']} Hz"
                                                     for w in m["golden_windows_files"])
          + "; " + ", ".join(f"{r.replace('_', ' ')} {m[r]['model']} ({m[r]['kind']})" for r in G.ROLES if m.get(r)))
    if travel is not None:
        mib = (travel + m["size_bytes"]) / 2**20
        print(f"travels to the device: checkout {travel / 2**20:.1f} MiB + carry {m['size_bytes'] / 2**20:.1f} MiB "
              f"= {mib:.1f} MiB (limit 64 MiB)" + ("  ** TOO LARGE **" if mib > 64 else ""))
    rel, warning = G.carry_location(out)
    if warning:
        print(f"WARNING: {warning}")
    call = G.device_call(rel)
    print("\nThe device call (the session's `run` tool; docs/gpu.md):")
    print(json.dumps(call, indent=2))
    print("\nThen, here, with the returned files copied to runs/gpu/: python -m anyppg_edge gpu-check parity "
          f"--returned runs/gpu --carry {rel} (every artifact of "
          + ", ".join(m[r]["model"] for r in G.ROLES if m.get(r)) + " against the GPU model; docs/gpu.md)")
    return 0


def _parity(args: argparse.Namespace) -> int:
    from anyppg_edge.gpu_parity import MD_NAME, gpu_parity

    out = Path(args.out_dir or "runs/parity/gpu")
    r = gpu_parity(args.returned, args.carry_dir, out, export_roots=args.export_dir, plot=not args.no_plot)
    print((out / MD_NAME).read_text())
    print("written: " + ", ".join(r["files"]))
    return 0 if r["passed"] else 1


def add_commands(sub: argparse._SubParsersAction) -> None:
    from anyppg_edge.gpu_check import GpuCheckConfig

    g = subparser(sub, "gpu-check",
                  help="the GPU check: `prepare` the carry folder here, then run it on the GPU machine (docs/gpu.md)")
    g.add_argument("action", nargs="?", choices=ACTIONS, default="run",
                   help="run (default): the check; prepare: build the carry folder and print the device call; "
                        "parity: every artifact against the golden sets the device returned (--returned)")
    add_config_args(g, GpuCheckConfig, RUN_FLAGS, flags={"out_dir": "--out", "carry_dir": "--carry"},
                    types_=RUN_TYPES, help=RUN_HELP)
    g.add_argument("--tiny", action="store_true",
                   help="dry-run settings (tiny towers and batches, a few steps, compile backend 'eager'); flags "
                        "given override them")
    p = g.add_argument_group("prepare", "options of `gpu-check prepare`")
    p.add_argument("--teacher", default=None,
                   help="teacher checkpoint (default: ../shared/reference/net1d_anyppg_released.state_dict.pt; "
                        "init: the seeded random init of --teacher-model)")
    p.add_argument("--teacher-model", default="anyppg-released",
                   help="registry model of a state_dict or random-init teacher")
    p.add_argument("--student", default="auto",
                   help="student checkpoint (125 Hz); auto: runs/distill_watch_slim/best.pt or runs/demo/distill/best.pt "
                        "when present, else the seeded random init (warned); init (or none): the seeded random init")
    p.add_argument("--student-model", default="student-watch-slim",
                   help="registry model of a random-init student (a 125 Hz one)")
    p.add_argument("--native-student", default="auto",
                   help="native-rate student checkpoint; auto: runs/distill_watch_25hz/best.pt or the demo's when "
                        "present, else left out; init: the seeded random init; off: left out")
    p.add_argument("--native-student-model", default="student-watch-25hz",
                   help="registry model of a random-init native-rate student")
    p.add_argument("--shared", action=argparse.BooleanOptionalAction, default=True,
                   help="shards and golden windows from ../shared (--no-shared: simulated subjects only)")
    p.add_argument("--sim-subjects", type=nonnegative_int, default=0, help="simulated subjects added to the shards")
    p.add_argument("--hop-s", type=positive_float, default=2.0, help="shard window hop")
    p.add_argument("--ecg-quality", action=argparse.BooleanOptionalAction, default=True,
                   help="drop windows with unusable ECG (as prepare-data)")
    p.add_argument("--golden-n", type=positive_int, default=256, help="golden windows (as export golden --n)")
    p.add_argument("--golden-hop-s", type=positive_float, default=5.0, help="as export golden --hop-s")
    p.add_argument("--split-seed", type=int, default=0, help="subject split seed (as export golden --seed)")
    p.add_argument("--force", action="store_true", help="rebuild an existing carry folder")
    q = g.add_argument_group("parity", "options of `gpu-check parity` (--carry: the carry folder the check ran on, "
                                       "default the one its gpu_check.json names; --out: default runs/parity/gpu)")
    q.add_argument("--returned", default="runs/gpu", metavar="DIR",
                   help="the folder the device's returned files were copied to (default: runs/gpu)")
    q.add_argument("--export-dir", action="append", default=None, metavar="DIR",
                   help="an `export all` folder, or a folder of them, to search for each model's artifacts "
                        "(repeatable; default runs/export and runs/demo/export): those exported from the carried checkpoint")
    q.add_argument("--no-plot", action="store_true", help="no parity histograms")
    g.set_defaults(func=_cmd_gpu_check)
