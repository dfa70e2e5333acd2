"""``anyppg-edge harness`` (checkout: ``python -m firmware_harness``): thin CLI over
:mod:`anyppg_edge.stream`.

Commands:

* ``replay --artifact A --recording shared:<subject>|sim[:seed]|<path> --odr-hz 25 --hop-s 5 [--faults]
  --out DIR``: emulated sensor → streaming preprocessor → encoder, per-window embeddings, flags, HR from
  a linear head, latency; report ``DIR/replay.md`` + JSON + plots. The chain is the artifact's input
  contract (``--config`` overrides it); a native-rate model (e.g. ``student-watch-25hz``) is replayed
  at its own rate and refuses any other ``--odr-hz``;
* ``bench``: the speed benchmark (streaming preprocessing per window on one core; 1 h of 25 Hz PPG
  end to end through the int8 student);
* ``summary --artifact A --out DIR``: what the main job runs (parity at every rate, chunking, fault
  replays of the shared recordings), ``DIR/harness_report.md``; ``summary --firmware DIR`` drives a
  firmware bundle's C code at every rate, then runs it on the emulated boards (``--board cortex-m4
  --board cortex-m33``, the default: all of them; ``--no-board``: none), ``DIR/firmware_report.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anyppg_edge.cli._common import (
    nonnegative_float,
    nonnegative_int,
    parser,
    positive_float,
    positive_int,
    run,
    subparser,
)

DEFAULT_FLOAT_CHECKPOINT = Path("runs/distill_watch/best.pt")


def _float_model(args: argparse.Namespace):
    if args.no_float:
        return None
    ckpt = args.float_checkpoint or (DEFAULT_FLOAT_CHECKPOINT if DEFAULT_FLOAT_CHECKPOINT.is_file() else None)
    if ckpt is None:
        print("note: no float checkpoint (--float-checkpoint); float-model cosines are skipped", file=sys.stderr)
        return None
    from anyppg_edge.models.loading import load_encoder

    return load_encoder(ckpt, args.float_model).encoder


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.firmware is not None:
        return _firmware_replay(args)
    if args.artifact is None:
        print("error: --artifact is required (or --firmware DIR)", file=sys.stderr)
        return 2
    from anyppg_edge.config import load_preprocess_config
    from anyppg_edge.data.native_rate import model_input_recording
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.eval.heart_rate import fit_hr_head, hr_training_recordings
    from anyppg_edge.stream import SensorConfig, check_sensor_rate, emulate, fault_config
    from anyppg_edge.stream.harness import contract_odr_hz
    from anyppg_edge.stream.replay import contract_config, load_recording, replay, write_replay_report

    # the chain: --config, else the artifact's own input contract (a native-rate model's is at its rate)
    cfg = load_preprocess_config(args.config) if args.config else contract_config(args.artifact, args.float_model)
    odr = contract_odr_hz(cfg) if args.odr_hz is None else args.odr_hz
    check_sensor_rate(cfg, odr)  # a native-rate model takes its own rate only
    rec = load_recording(args.recording, sim_duration_s=args.duration_s or 300.0)
    dur = args.duration_s or rec.channel("ppg").duration_s - 1.0
    if args.faults:
        scfg = fault_config(odr, dur, stall_s=args.stall_s, seed=args.seed, watermark=args.watermark,
                            fifo_depth=args.fifo_depth)
    else:
        scfg = SensorConfig(odr_hz=odr, duration_s=dur, seed=args.seed, watermark=args.watermark,
                            fifo_depth=args.fifo_depth)
    run = emulate(rec, scfg)
    if str(args.artifact).endswith(".pt"):
        enc = None
    elif args.runtime == "tflm":
        enc = open_encoder(args.artifact, cfg, runtime="tflm")
    else:
        enc = open_encoder(args.artifact, cfg, threads=1)
    if enc is None:
        from anyppg_edge.models.loading import load_encoder

        enc = open_encoder(load_encoder(args.artifact, args.float_model).encoder, cfg)
    head = None
    if not args.no_hr:
        pool = [model_input_recording(r, cfg) for r in hr_training_recordings(rec, None, args.seed)]
        head = fit_hr_head(enc, pool, cfg, hop_s=args.hop_s)
    res = replay(run, enc, hop_s=args.hop_s, mode=args.mode, cfg=cfg, float_encoder=_float_model(args), hr_head=head)
    paths = write_replay_report(res, args.out, plot=not args.no_plot)
    s = res.summary
    print(f"replayed {s['subject_id']} at {s['odr_hz']:g} Hz ({s['duration_s']:.0f} s, mode {s['mode']}) "
          f"through {s['encoder_kind']} (model input {s['contract_rate_hz']} Hz"
          f"{', native rate' if s['native_rate'] else ''})")
    print(f"  windows {s['n_windows']}: {s['n_ok']} to the model; flags {s['flag_counts']}")
    print(f"  sensor {s['sensor_counts']}; drift {s['drift_ppm_config']:g} ppm configured, "
          f"{s['drift_ppm_estimated']:.1f} estimated")
    print(f"  fault-touched windows {s['n_affected']}, unflagged {s['n_affected_unflagged']} "
          f"(all flagged: {s['all_affected_flagged']}); clean windows {s['n_clean_unaffected']}, "
          f"max abs vs offline {s['parity_max_abs_clean']:.3g}")
    if s["native_rate"]:
        print(f"  clean windows vs the native-rate windows of the source recording (ideal sensor on the k/odr grid; "
              f"ADC quantisation + drift/reset sample phase): "
              f"max abs {s['native_source_max_abs_clean']:.3g}")
    c = s["cos_vs_offline_same_encoder"]
    print(f"  embedding cosine vs offline (same encoder): mean {c.get('mean', float('nan')):.6f} "
          f"min {c.get('min', float('nan')):.6f}")
    c = s["cos_vs_float_offline_recording"]
    if c.get("n"):
        print(f"  embedding cosine vs float model on the recording's offline window: mean {c['mean']:.5f} min {c['min']:.5f}")
    print(f"  HR MAE {s['hr_mae_bpm']:.2f} bpm over {s['hr_n']} windows; latency p50 {s['latency_ms']['p50']:.3f} ms "
          f"p95 {s['latency_ms']['p95']:.3f} ms")
    print(f"  report: {paths['md']}")
    return 0


def _firmware_replay(args: argparse.Namespace) -> int:
    """``replay --firmware DIR``: the bundle's C code (host build, ctypes) vs the Python streamer, TFLM
    and the float model on one recording at the bundle's rate."""
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.preprocessing import PreprocessConfig
    from anyppg_edge.report import write_json
    from anyppg_edge.stream import SensorConfig, emulate, fault_config
    from anyppg_edge.stream.firmware import FirmwareLib, compare_firmware
    from anyppg_edge.stream.replay import load_recording

    fw = FirmwareLib(args.firmware)
    m = fw.manifest
    if args.odr_hz is not None and float(args.odr_hz) != float(m["odr_hz"]):
        print(f"error: the bundle {args.firmware} is for a {m['odr_hz']:g} Hz sensor, not --odr-hz {args.odr_hz:g} "
              "(write a bundle per rate: python -m export firmware --odr-hz ...)", file=sys.stderr)
        return 2
    rec = load_recording(args.recording, sim_duration_s=args.duration_s or 300.0)
    dur = args.duration_s or rec.channel("ppg").duration_s - 1.0
    kw = {"seed": args.seed, "watermark": args.watermark, "fifo_depth": args.fifo_depth, "adc_bits": m["adc_bits"] or 18}
    scfg = (fault_config(m["odr_hz"], dur, stall_s=args.stall_s, **kw) if args.faults
            else SensorConfig(odr_hz=m["odr_hz"], duration_s=dur, **kw))
    cfg = PreprocessConfig.from_dict(m["contract"]["preprocess"])  # the bundle's contract (a native-rate one too)
    tflm = open_encoder(args.artifact or m["model_path"], cfg, runtime="tflm")
    fenc = _float_model(args)
    r = compare_firmware(fw, emulate(rec, scfg), tflm=tflm, float_encoder=None if fenc is None else open_encoder(fenc, cfg),
                         cfg=cfg)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out) / "firmware_replay.json", r)
    print(f"firmware {args.firmware} ({m['odr_hz']:g} Hz) on {rec.subject_id}: {r['n_windows']} windows, "
          f"flags identical {r['flags_identical']}; max abs vs device {r.get('max_abs_vs_device', float('nan')):.3g}; "
          f"int8 same {r.get('int8_same_frac', float('nan')):.5f}; vs TFLM {r.get('vs_tflm')}; vs float {r.get('vs_float')}")
    for f in r["failures"]:
        print(f"FAIL: {f}", file=sys.stderr)
    return 0 if r["pass"] else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from anyppg_edge.stream.harness import render_bench, run_bench

    art = None if args.no_e2e else args.artifact
    result = run_bench(art, duration_s=args.duration_s, e2e_duration_s=args.e2e_duration_s,
                       rates_hz=tuple(args.rates), modes=tuple(args.modes), cpu=args.cpu, out=args.out)
    print(render_bench(result))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from anyppg_edge.data import load_shared_recordings

    if args.firmware is not None:
        from anyppg_edge.deploy.cortexm import BOARDS
        from anyppg_edge.stream.firmware import firmware_summary
        from anyppg_edge.stream.replay import load_recording

        recs = load_shared_recordings() if args.recordings == ["shared"] else [load_recording(r) for r in args.recordings]
        boards = () if args.no_board else tuple(args.boards or BOARDS)
        s = firmware_summary(args.firmware, recs[: args.max_recordings], args.out, artifact=args.artifact,
                             float_encoder=_float_model(args), boards=boards)
        print((Path(args.out) / "firmware_report.md").read_text())
        return 0 if s["pass"] else 1
    if args.artifact is None:
        print("error: --artifact is required (or --firmware DIR)", file=sys.stderr)
        return 2
    from anyppg_edge.stream.harness import harness_summary
    from anyppg_edge.stream.replay import load_recording

    recs = load_shared_recordings() if args.recordings == ["shared"] else [load_recording(r) for r in args.recordings]
    s = harness_summary(args.artifact, _float_model(args), recs, args.out, odr_hz=args.odr_hz, hop_s=args.hop_s,
                        max_fault_recordings=args.max_recordings, hr=not args.no_hr, plot=not args.no_plot)
    for name, b in s["bars"].items():
        print(f"{name}: {b['value']} (threshold {b.get('threshold', '-')}) pass={b['pass']}")
    print(f"int8 cosine vs offline (min over recordings) {s['int8_cos_vs_offline_min']:.6f}; "
          f"vs float model on the recordings (mean) {s['int8_cos_vs_float_recording_mean']:.5f}")
    print(f"report: {Path(args.out) / 'harness_report.md'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from anyppg_edge.deploy.cortexm import BOARDS

    def float_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--float-model", default=None,
                       help="registry name of the float model (required for a bare state_dict; else must match the checkpoint)")
        p.add_argument("--float-checkpoint", type=Path, default=None,
                       help=f"float model checkpoint for the cosines (default {DEFAULT_FLOAT_CHECKPOINT} if present)")
        p.add_argument("--no-float", action="store_true", help="skip the float-model cosines")
        p.add_argument("--no-hr", action="store_true", help="skip the heart-rate head")
        p.add_argument("--no-plot", action="store_true")

    r = subparser(sub, "replay", help="sensor -> stream -> encoder on one recording, with a report")
    r.add_argument("--artifact", default=None, help=".tflite / .onnx artifact (or a .pt checkpoint of --float-model); "
                   "with --firmware: the int8 .tflite for TFLM (default: the bundle's model)")
    r.add_argument("--firmware", default=None, help="a firmware bundle (`python -m export firmware`): drive its C code instead")
    r.add_argument("--recording", default="shared:DATA_01", help="shared:<subject> | sim[:seed] | <path>")
    r.add_argument("--odr-hz", type=positive_float, default=None,
                   help="sensor rate (default: a native-rate model's own rate, else 25 Hz; with --firmware: the bundle's)")
    r.add_argument("--hop-s", type=positive_float, default=5.0)
    r.add_argument("--mode", choices=("reference", "device", "causal"), default="reference")
    r.add_argument("--runtime", choices=("default", "tflm"), default="default",
                   help="runtime of the artifact: its default (LiteRT / onnxruntime) or TensorFlow Lite Micro (.tflite)")
    r.add_argument("--faults", action="store_true",
                   help="+50 ppm drift, 1 %% dropped samples, jitter, one reset (and --stall-s host stall)")
    r.add_argument("--stall-s", type=nonnegative_float, default=3.0, help="host stall (FIFO overflow) with --faults; 0: none")
    r.add_argument("--duration-s", type=positive_float, default=None)
    r.add_argument("--fifo-depth", type=positive_int, default=64)
    r.add_argument("--watermark", type=positive_int, default=16)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--config", default=None, help="preprocessing config JSON (default: the artifact's input contract)")
    r.add_argument("--out", required=True)
    float_args(r)

    b = subparser(sub, "bench", help="speed: streaming preprocessing per window, 1 h of 25 Hz through the int8 student")
    b.add_argument("--artifact", default="runs/export/student-watch/student-watch.int8.tflite")
    b.add_argument("--duration-s", type=positive_float, default=600.0, help="signal per rate for the preprocessing benchmark")
    b.add_argument("--e2e-duration-s", type=positive_float, default=3600.0)
    b.add_argument("--rates", type=positive_float, nargs="+", default=[25.0, 50.0, 64.0, 100.0, 125.0])
    b.add_argument("--modes", nargs="+", default=["reference", "device"], choices=("reference", "device", "causal"))
    b.add_argument("--no-e2e", action="store_true")
    b.add_argument("--cpu", type=nonnegative_int, default=None, help="CPU to pin to (default: the first allowed)")
    b.add_argument("--out", default="runs/firmware_bench")

    s = subparser(sub, "summary", help="the main job's harness section: parity, chunking, fault replays")
    s.add_argument("--artifact", default=None, help="int8 artifact (required without --firmware)")
    s.add_argument("--firmware", default=None,
                   help="a firmware bundle: its C code at every rate + one run on each emulated board")
    on = s.add_mutually_exclusive_group()
    on.add_argument("--board", dest="boards", action="append", choices=list(BOARDS), default=None,
                    help=f"with --firmware: an emulated board to run the bundle on (repeatable; default: {', '.join(BOARDS)})")
    on.add_argument("--no-board", action="store_true", help="with --firmware: no emulated board runs")
    s.add_argument("--recordings", nargs="+", default=["shared"], help="'shared' or recording specs")
    s.add_argument("--odr-hz", type=positive_float, default=None,
                   help="sensor rate of the fault replays (default: a native-rate model's own rate, else 25 Hz)")
    s.add_argument("--hop-s", type=positive_float, default=5.0)
    s.add_argument("--max-recordings", type=positive_int, default=None)
    s.add_argument("--out", required=True)
    float_args(s)

    r.set_defaults(func=_cmd_replay)
    b.set_defaults(func=_cmd_bench)
    s.set_defaults(func=_cmd_summary)


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m firmware_harness", __doc__.split("\n\n")[0])
    add_commands(ap.add_subparsers(dest="cmd", required=True))
    return run(ap, argv)
