"""``anyppg-edge export`` (checkout: ``python -m export``): thin CLI over :mod:`anyppg_edge.deploy`.

Commands:

* ``all``: QAT + export of one model to ONNX/TFLite float and int8 with graph and parity reports;
* ``inspect ARTIFACT``: its input contract and graph report;
* ``check ARTIFACT``: exit 1 (with the differences) when its contract does not match the
  preprocessing config in use (``--config`` JSON, default: the toolkit's default chain).
* ``bench ART [ART ...] [--pytorch MODEL]``: single-window latency of artifacts and the PyTorch
  model (p50/p90/p99, load time, peak RSS, speed-ups in one run, fp32 floor), JSON/CSV/markdown/plot;
* ``mcu [MODEL ...]``: estimated flash, RAM, latency and energy per window on watch-class MCUs.
* ``tflm MODEL.tflite --out DIR``: firmware-ready TFLM files (model C array, op-resolver list,
  measured arena constant, input contract header, minimal example).
* ``c MODEL.int8.tflite --out DIR``: a C99 int8 encoder generated from the model (weights as const
  arrays, static arena, no heap), bit-exact to TFLite Micro.
* ``golden --model M --checkpoint C --out G.npz``: golden embedding set of the float model (GPU
  when present, deterministic) on held-out ``../shared`` windows, with provenance and checksum;
* ``parity ART [ART ...] --golden G.npz``: every artifact vs the golden set under the one tolerance
  table; exit 1 (naming metric and tolerance) when outside it; per-layer localisation of the
  failure (``--checkpoint``), downstream parity (``--downstream``); markdown/HTML/JSON + histogram.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anyppg_edge.cli._common import (
    add_config_args,
    choice,
    config_from_args,
    nonnegative_int,
    parser,
    positive_float,
    positive_int,
    run,
    subparser,
)
from anyppg_edge.errors import UsageError

EXPORT_FLAGS = ("out_dir", "qat_steps", "qat_batch_size", "qat_lr", "onnx_activation_type", "onnx_calibrate_method",
                "int8_io", "export_ptq_tflite", "ablation", "seed", "progress", "plot")


def _model_config(model: str | None, config=None):
    """The preprocessing config of registry model ``model``'s input contract: ``config`` (a
    PreprocessConfig or a ``--config`` JSON path; default chain) at the model's rate and window
    (:func:`anyppg_edge.config.model_preprocess_config`); the base config when ``model`` is None."""
    from anyppg_edge.config import model_preprocess_config
    from anyppg_edge.models.registry import get_model_spec

    return model_preprocess_config(get_model_spec(model) if model else None, config)


def _cmd_all(args: argparse.Namespace) -> int:
    import numpy as np

    from anyppg_edge.config import load_preprocess_config
    from anyppg_edge.deploy.calibration import load_calibration_set, load_default_calibration_set
    from anyppg_edge.deploy.export.build import export_all, shared_export_data
    from anyppg_edge.deploy.export.config import ExportConfig
    from anyppg_edge.models.loading import load_encoder

    base = load_preprocess_config(args.config)
    loaded = load_encoder(args.checkpoint, args.model)
    model, sha, name = loaded.encoder, loaded.sha256, loaded.model_name
    pcfg = _model_config(name, base)  # the model's contract: a native-rate model's own rate and window
    calib = None  # a given calibration set is checked against the contract before any window is cut
    if args.calibration == "default":
        calib = load_default_calibration_set(pcfg).windows
    elif args.calibration != "shared":
        calib = load_calibration_set(args.calibration, pcfg).windows
    data = shared_export_data(args.n_calibration, args.n_eval, seed=args.seed or 0, cfg=pcfg,
                              progress=args.progress is not False, shards=args.shards)
    if calib is None:
        calib = data.calibration
    cfg = config_from_args(ExportConfig, args, ExportConfig(out_dir=Path(f"runs/export/{name}")), EXPORT_FLAGS,
                           preprocess=pcfg)
    qat_windows = np.concatenate([calib, data.qat])
    report = export_all(model, name, sha, calib, qat_windows, data.eval, cfg, eval_source=data.description)
    print((cfg.out_dir / "export_report.md").read_text())
    print("written: " + ", ".join(str(p) for p in sorted(cfg.out_dir.iterdir()) if p.is_file()))
    return 0 if report["parity_pass"] else 1


def _cmd_inspect(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.contract_io import read_contract
    from anyppg_edge.deploy.export.graph_report import (
        graph_report_markdown,
        onnx_graph_report,
        tflite_graph_report,
    )

    p = Path(args.artifact)
    print(json.dumps(read_contract(p).to_dict(), indent=2, sort_keys=True))
    g = tflite_graph_report(p) if p.suffix == ".tflite" else onnx_graph_report(p)
    g["artifact"] = p.name
    print(graph_report_markdown([g]))
    if p.suffix == ".tflite":
        from anyppg_edge.deploy.tflm import measure_arena, op_requirements

        arena = measure_arena(p)
        print(arena.summary())
        print("  " + "; ".join(f"{k} {v['bytes']:,} B ({v['count']})" for k, v in arena.items.items()))
        print(f"  ops: {op_requirements(p).note}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.contract_io import read_contract
    from anyppg_edge.errors import ContractMismatchError

    cfg = _model_config(args.model, args.config)
    try:
        c = read_contract(args.artifact).check(cfg)
    except ContractMismatchError as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    print(f"OK: {args.artifact} ({c.model_name}, {c.artifact_kind}) matches preprocessing config {cfg.config_hash()[:12]}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.bench.latency import bench_artifacts, bench_windows
    from anyppg_edge.deploy.bench.report import bench_summary_text, write_bench_report
    from anyppg_edge.paths import shared_dir

    items: list = list(args.artifacts)
    if args.pytorch:
        from anyppg_edge.models.loading import load_encoder

        ckpt = args.checkpoint
        ref = shared_dir() / "reference" / f"net1d_{args.pytorch.replace('-', '_')}.state_dict.pt"
        if ckpt is None and ref.is_file():
            ckpt = ref
            print(f"--pytorch {args.pytorch}: using {ref}")
        model = load_encoder(ckpt, args.pytorch).encoder
        items.append(("pytorch", model, args.pytorch if ckpt else f"{args.pytorch} (random init)"))
    if not items:
        raise UsageError("give at least one artifact or --pytorch MODEL")
    xnn = (True, False) if args.xnnpack_both else ((False,) if args.no_xnnpack else (True,))
    results: list = []
    for cfg, group in _bench_groups(items, args.pytorch):  # each artifact on windows of its own contract (rate, length)
        windows, source = bench_windows(args.n_windows, cfg)
        print(f"windows: {source}")
        part = bench_artifacts(
            group,
            windows,
            threads=args.threads,
            warmup=args.warmup,
            runs=args.runs,
            xnnpack=xnn,
            isolate=not args.no_isolate,
            onnx_int8_allowed=args.ort_int8_allowed,
            cfg=cfg,
            **({"peak_flops": results[0]["peak_flops_one_core"]} if results else {}),
        )
        for r in part:
            r["input"] = source
        results += part
    paths = write_bench_report(results, args.out, baseline=args.baseline, plot=not args.no_plot)
    print(paths["md"].read_text())
    print(bench_summary_text(results, args.baseline))
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 1 if any(r.get("error") for r in results) else 0


def _bench_groups(items: list, pytorch_model: str | None = None) -> list[tuple]:
    """``[(config, items)]``: the bench items grouped by the preprocessing config of their input
    contract (an artifact's own; ``("pytorch", model, name)``: registry model ``pytorch_model``'s), in first-seen
    order. An artifact whose contract cannot be read goes with the default chain (its bench records
    the error)."""
    from anyppg_edge.deploy.contract_io import read_contract
    from anyppg_edge.errors import AnyPPGError
    from anyppg_edge.preprocessing import DEFAULT_CONFIG

    groups: dict[str, tuple] = {}
    for item in items:
        if isinstance(item, tuple):
            cfg = _model_config(pytorch_model)
        else:
            try:
                cfg = read_contract(item).preprocess_config
            except (AnyPPGError, OSError, ValueError):
                cfg = DEFAULT_CONFIG
        groups.setdefault(cfg.config_hash(), (cfg, []))[1].append(item)
    return list(groups.values())


def _cmd_mcu(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.bench.mcu import mcu_markdown
    from anyppg_edge.deploy.contract_io import read_tflite_contract_zip
    from anyppg_edge.deploy.tflm import measure_arena

    measured, arenas = {}, {}
    for art in args.tflite:  # the contract names the model; read as a zip, no TensorFlow import
        name = read_tflite_contract_zip(Path(art)).model_name
        measured[name] = Path(art).stat().st_size
        arenas[name] = measure_arena(art).min_arena_bytes
    instructions: dict[str, dict[str, float]] = {}
    for rep_path in args.c_report:  # `export c --golden` reports: instructions per window on emulated cores
        rep = json.loads(Path(rep_path).read_text())
        rows = sorted(rep["boards"], key=lambda b: b.get("path") == "DSP (SMLAD)")  # the DSP path when measured
        instructions[rep["model_name"]] = {b["board"]: float(b["instructions/window"]) for b in rows}
    text = mcu_markdown(args.models or None, args.mcu or None, include_optional=args.npu, measured_file_bytes=measured,
                        measured_arena_bytes=arenas, measured_instructions=instructions)
    print(text)
    if args.out:
        from anyppg_edge.io import atomic_write_text

        atomic_write_text(args.out, "# MCU cost estimates\n\n" + text)
    return 0


def _cmd_arena(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.bench.arena import arena_levers, arena_levers_markdown, artifact_arena_rows
    from anyppg_edge.io import atomic_write_text
    from anyppg_edge.report import write_json

    files = [m for m in args.models if m.endswith(".tflite")]  # exported artifacts: measured as they are
    names = [m for m in args.models if not m.endswith(".tflite")]
    rows = (arena_levers(names, args.out) if names else []) + artifact_arena_rows(files)
    md = arena_levers_markdown(rows)
    write_json(Path(args.out) / "arena_levers.json", rows)
    atomic_write_text(Path(args.out) / "arena_levers.md", md)
    print(md)
    return 0


def _cmd_tradeoff(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.bench.tradeoff import TradeoffRun, tradeoff_table

    runs = []
    for row in args.row:
        if len(row) not in (2, 3):
            raise UsageError(f"--row takes DISTILL_DIR EXPORT_DIR [C_DIR], got {len(row)} paths: {' '.join(row)}")
        runs.append(TradeoffRun(*(Path(p) for p in row)))
    tradeoff_table(runs, args.out, latency_runs=args.runs)
    print((Path(args.out) / "tradeoff.md").read_text())
    print(f"written: {Path(args.out) / 'tradeoff.md'}, {Path(args.out) / 'tradeoff.json'}")
    return 0


def _cmd_tflm(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.export.tflm_c import write_tflm_project

    report = write_tflm_project(args.model, args.out)
    for f in report["files"]:
        print(f"written: {f}")
    print(f"{report['symbol']}: {report['model_bytes']:,} B, {report['op_count']} ops ({', '.join(report['ops'])})")
    print(report["arena_summary"])
    return 0


def _cmd_c(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.export.c_encoder import generate_c_encoder

    if args.golden is None:
        report = generate_c_encoder(args.model, args.out)
        for f in report["files"]:
            print(f"written: {f}")
        ops = ", ".join(f"{k} x{v}" for k, v in report["ops"].items())
        print(f"int8 network: {sum(report['ops'].values())} ops ({ops}), {report['macs']:,} MACs")
        print(f"static arena {report['arena_bytes']:,} B; weights + biases {report['weight_and_bias_bytes']:,} B; "
              f"{report['logistic_tables']} LOGISTIC tables")
        return 0
    from anyppg_edge.deploy.export.c_report import c_encoder_report, c_report_markdown
    from anyppg_edge.deploy.parity.golden import load_golden_set

    g = load_golden_set(args.golden)
    boards = [] if args.no_boards else args.boards
    report = c_encoder_report(args.model, args.out, g.windows, g.embeddings, boards, windows_source=g.describe())
    print(c_report_markdown(report))
    print(f"written: {Path(args.out) / 'c_report.md'}, {Path(args.out) / 'c_report.json'}; sources in {Path(args.out) / 'src'}")
    if not report["passed"]:
        print("FAIL: " + "; ".join(r["comparison"] + ": " + r["failures"] for r in report["comparisons"] if not r["pass"]), file=sys.stderr)
        return 1
    return 0


def _cmd_firmware(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.cortexm import toolchain_available
    from anyppg_edge.stream.firmware import render_memory_rows, write_firmware_bundle

    measure = args.measure and toolchain_available()
    if args.measure and not measure:
        print("note: Cortex-M toolchain missing; the README's memory/instruction table is left empty", file=sys.stderr)
    m = write_firmware_bundle(args.artifact, args.out, args.odr_hz, args.hop_s, None if args.adc_bits == 0 else args.adc_bits,
                              measure=measure)
    print(f"firmware bundle for {m['model_name']} at {m['odr_hz']:g} Hz (hop {m['hop_s']:g} s): {args.out}")
    print(f"  files: {', '.join(m['files'])}; build: make -C {args.out} [host|cortex-m4|cortex-m33]")
    if measure:
        print("\n".join(render_memory_rows(m["boards"])[:5]))
    return 0


def _cmd_golden(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.parity.golden import golden_windows_for_model, make_golden_set, provenance_path
    from anyppg_edge.models.loading import load_encoder

    loaded = load_encoder(args.checkpoint, args.model)
    # in the model's contract (a native-rate model's own rate); the GPU check carries the same windows
    windows, ids, desc, cfg = golden_windows_for_model(loaded.model_name, args.n, seed=args.seed, hop_s=args.hop_s)
    g = make_golden_set(
        loaded.encoder,
        loaded.model_name,
        loaded.sha256,
        windows,
        ids,
        args.out,
        device=None if args.device == "auto" else args.device,
        cfg=cfg,
        window_source=desc,
        created_by=(
            f"python -m export golden --model {loaded.model_name} --checkpoint {args.checkpoint} --out {args.out} "
            f"--n {args.n} --hop-s {args.hop_s:g} --seed {args.seed} --device {args.device}"
        ),
    )
    print(f"golden set {args.out} (+ {provenance_path(args.out).name}): {g.describe()}")
    return 0


def _cmd_parity(args: argparse.Namespace) -> int:
    from anyppg_edge.contract import RANDOM_INIT
    from anyppg_edge.deploy.parity.golden import load_golden_set
    from anyppg_edge.deploy.parity.suite import check_same_source, run_parity
    from anyppg_edge.errors import CheckpointError
    from anyppg_edge.models.loading import load_encoder
    from anyppg_edge.report import markdown_table

    golden = load_golden_set(args.golden)
    source = None
    if args.checkpoint or args.localize or args.downstream or args.check_weights:
        name = args.model or golden.model_name
        if args.checkpoint is None and golden.checkpoint_sha256 != RANDOM_INIT:
            raise CheckpointError(
                "--localize/--downstream/--check-weights need the source model: give --checkpoint (the golden set was made "
                f"from checkpoint sha256 {golden.checkpoint_sha256[:16]}…)"
            )
        loaded = load_encoder(args.checkpoint, name)
        source, sha = loaded.encoder, loaded.sha256
        check_same_source(f"checkpoint {args.checkpoint}", name, sha, golden)
    report = run_parity(
        args.artifacts,
        golden,
        out_dir=args.out,
        source_model=source,
        checkpoint=args.checkpoint,
        localize_mode="always" if args.localize else "auto",
        localize_windows=args.localize_windows,
        downstream=args.downstream,
        downstream_kw={"max_windows": args.downstream_windows},
        kind=args.kind,
        threads=args.threads,
        plot=not args.no_plot,
        check_weights=args.check_weights,
    )
    print(f"golden: {report['golden']['description']}")
    if golden.device_type == "cuda":
        print("reference made on a GPU: float artifacts (and a CPU golden set of the same windows) are held to the "
              "'gpu-vs-cpu-float' row, int8 artifacts to their usual row, all against the GPU embeddings")
    print(markdown_table(report["rows"], ["artifact", "kind", "tolerance", "max_abs", "cos_mean", "cos_p1", "cos_min", "pass"]))
    for ir in report.get("integer_reference", []):
        print(f"{ir['artifact']} in TFLM vs LiteRT reference kernels on {ir['n_windows']} windows (row {ir['tolerance']}): "
              + ("bit-identical" if ir["bit_identical"] else f"max abs {ir['tflm_vs_litert_ref_max_abs']:.3g}")
              + f"; TFLM arena {ir['arena']['min_arena_bytes']:,} B")
    if "downstream" in report:
        print(markdown_table(report["downstream"]["rows"]))
    for a in report["artifacts"]:
        if a.get("localisation"):
            print(f"localisation {a['artifact']}: {a['localisation']['verdict']}")
    for n in report["notes"]:
        print(n)
    if report.get("files"):
        print("written: " + ", ".join(report["files"].values()))
    for f in report["failures"]:
        print(f, file=sys.stderr)
    for a in report["artifacts"]:
        if not a["pass"] and a.get("localisation"):
            print(f"  {a['artifact']}: {a['localisation']['verdict']}", file=sys.stderr)
    if report["passed"]:
        print(f"PASS: {len(report['rows'])} artifact(s) within tolerance")
    return 0 if report["passed"] else 1


def _add_parity_commands(sub: argparse._SubParsersAction) -> None:
    gd = subparser(sub, "golden", help="golden embedding set of the float model on held-out ../shared windows")
    gd.add_argument("--model", default=None, help="registry config name (required for a bare state_dict or no checkpoint; else must match the checkpoint)")
    gd.add_argument("--checkpoint", default=None, help="state_dict, distillation or pretraining checkpoint (none: seeded random init)")
    gd.add_argument("--out", required=True, help="output .npz (provenance JSON written beside it)")
    gd.add_argument("--n", type=positive_int, default=256, help="windows (all held-out windows when fewer)")
    gd.add_argument("--hop-s", type=positive_float, default=5.0)
    gd.add_argument("--seed", type=int, default=0, help="subject split and window draw")
    gd.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    gd.set_defaults(func=_cmd_golden)
    pa = subparser(sub, "parity", help="artifacts vs a golden set under the tolerance table; exit 1 when outside it")
    pa.add_argument("artifacts", nargs="+", help=".onnx / .tflite artifacts, a .pt checkpoint, a .npy of embeddings of the golden windows, "
                    "or another golden set .npz of the same model and windows (a CPU one against a GPU --golden: row gpu-vs-cpu-float)")
    pa.add_argument("--golden", required=True, help="golden set .npz (python -m export golden, or gpu-check's <model>.cuda.golden.npz: "
                    "float artifacts are then held to gpu-vs-cpu-float)")
    pa.add_argument("--out", default="runs/parity", help="report folder (markdown, HTML, JSON, histogram)")
    pa.add_argument("--localize", action="store_true", help="per-layer localisation for every artifact (failing ones are always localised when --checkpoint is given)")
    pa.add_argument("--checkpoint", default=None, help="source checkpoint of the artifacts (localisation, downstream); sha256 verified")
    pa.add_argument("--model", default=None, help="registry config of --checkpoint (default: the golden set's model)")
    pa.add_argument("--check-weights", action="store_true", help="also fail artifacts whose per-layer weights differ from the source checkpoint's")
    pa.add_argument("--downstream", action="store_true", help="HR linear probe and retrieval R@1, float model vs artifacts")
    pa.add_argument("--downstream-windows", type=positive_int, default=None, help="cap on downstream windows (default: all)")
    pa.add_argument("--localize-windows", type=positive_int, default=8)
    pa.add_argument("--kind", default=None, help="override the artifact kind (e.g. 'streaming' for a .npy)")
    pa.add_argument("--threads", type=positive_int, default=1)
    pa.add_argument("--no-plot", action="store_true")
    pa.set_defaults(func=_cmd_parity)


def add_commands(sub: argparse._SubParsersAction) -> None:
    from anyppg_edge.deploy.export.config import ExportConfig

    a = subparser(sub, "all", help="QAT + export to ONNX/TFLite float and int8, with graph and parity reports")
    a.add_argument("--model", default=None, help="registry config name (anyppg-edge budget lists them); required for a bare state_dict or no checkpoint, else must match the checkpoint")
    a.add_argument("--checkpoint", default=None, help="state_dict, distillation or pretraining checkpoint")
    a.add_argument("--config", default=None, help="preprocessing config JSON (default: the toolkit's chain); the contract records it")
    a.add_argument("--calibration", default="shared", help="'shared' (built from ../shared train subjects), 'default' (committed simulator set) or a calibration_data folder")
    a.add_argument("--shards", default=None,
                   help="the shards the model trained on: the parity windows then come from their held-out real subjects")
    a.add_argument("--n-calibration", type=positive_int, default=256, help="calibration windows")
    a.add_argument("--n-eval", type=positive_int, default=256, help="held-out windows for the parity table")
    add_config_args(a, ExportConfig, EXPORT_FLAGS, flags={"out_dir": "--out"},
                    types_={"out_dir": Path, "qat_steps": nonnegative_int, "qat_batch_size": positive_int,
                            "qat_lr": positive_float, "onnx_activation_type": choice("s8", "u8"),
                            "onnx_calibrate_method": choice("percentile", "minmax", "entropy")},
                    help={"out_dir": "output folder (default: runs/export/<model>)",
                          "int8_io": "int8 input/output tensors in the int8 TFLite",
                          "ablation": "also measure the Swish/sigmoid/SE quantization alternatives",
                          "onnx_calibrate_method": "onnxruntime static-quantization calibration"})
    a.set_defaults(func=_cmd_all)
    i = subparser(sub, "inspect", help="print an artifact's input contract and graph report")
    i.add_argument("artifact")
    i.set_defaults(func=_cmd_inspect)
    c = subparser(sub, "check", help="exit 1 if an artifact's contract does not match a preprocessing config")
    c.add_argument("artifact")
    c.add_argument("--config", default=None, help="PreprocessConfig JSON (default: the toolkit default)")
    c.add_argument("--model", default=None, help="check against this registry model's contract: --config at the model's input rate and window")
    c.set_defaults(func=_cmd_check)
    bn = subparser(sub, "bench", help="single-window latency of artifacts and the PyTorch model, with speed-ups and fp32 floor")
    bn.add_argument("artifacts", nargs="*", help=".tflite / .onnx files")
    bn.add_argument("--pytorch", metavar="MODEL", default=None, help="also bench this registry model in PyTorch eager (float)")
    bn.add_argument("--checkpoint", default=None, help="weights for --pytorch (default: ../shared/reference/net1d_<MODEL>.state_dict.pt if present)")
    bn.add_argument("--threads", type=positive_int, default=1)
    bn.add_argument("--runs", type=positive_int, default=200)
    bn.add_argument("--warmup", type=nonnegative_int, default=20)
    bn.add_argument("--no-xnnpack", action="store_true", help="LiteRT builtin kernels without XNNPACK")
    bn.add_argument("--xnnpack-both", action="store_true", help="run every .tflite with and without XNNPACK")
    bn.add_argument("--ort-int8-allowed", action="store_true", help="onnxruntime session.qdqisint8allowed=1")
    bn.add_argument("--no-isolate", action="store_true", help="measure in this process (RSS less attributable)")
    bn.add_argument("--n-windows", type=positive_int, default=64, help="real windows cycled through by the runs")
    bn.add_argument("--baseline", default=None, help="result name for the speed-ups (default: the PyTorch model)")
    bn.add_argument("--out", default="runs/bench")
    bn.add_argument("--no-plot", action="store_true")
    bn.set_defaults(func=_cmd_bench)
    mc = subparser(sub, "mcu", help="estimated flash/RAM/latency/energy per window on watch-class MCUs")
    mc.add_argument("models", nargs="*", help="registry model names (default: all)")
    mc.add_argument("--mcu", nargs="*", default=None, help="MCU class keys (anyppg_edge.deploy.bench.mcu.MCU_CLASSES)")
    mc.add_argument("--npu", action="store_true", help="include the optional Cortex-M55 + Ethos-U55 class")
    mc.add_argument("--tflite", nargs="*", default=[],
                    help="int8 .tflite files: their sizes next to the flash estimate, their TFLM-measured arena in place of the arena estimate")
    mc.add_argument("--out", default=None, help="also write the markdown here")
    mc.add_argument("--c-report", nargs="*", default=[], type=Path,
                    help="c_report.json of `export c --golden`: instructions per window on the emulated Cortex-M4/M33 replace the MACs/cycle assumption for those cores")
    mc.set_defaults(func=_cmd_mcu)
    ar = subparser(sub, "arena", help="TFLite Micro's measured arena of models' int8 exports, one memory lever at a time")
    ar.add_argument("models", nargs="+", help="registry model names or model-config .json files (seeded weights: the "
                    "arena depends on shapes only; one row per memory lever) and/or int8 .tflite files (measured as "
                    "exported, window from their contract)")
    ar.add_argument("--out", default="runs/arena")
    ar.set_defaults(func=_cmd_arena)
    to = subparser(sub, "tradeoff", help="students at different input rates side by side: cost, memory, latency, "
                   "retention, HR probe, int8 parity (from their distill / export / C reports)")
    to.add_argument("--row", nargs="+", action="append", required=True, metavar="DIR",
                    help="one student: DISTILL_DIR EXPORT_DIR [C_DIR] (retention.json, export_report.json, c_report.json); "
                         "repeat per student")
    to.add_argument("--runs", type=positive_int, default=50, help="timed runs per int8 TFLite (latency, 1 thread, this host)")
    to.add_argument("--out", default="runs/tradeoff")
    to.set_defaults(func=_cmd_tradeoff)
    tm = subparser(sub, "tflm", help="firmware-ready TFLM files: model C array, op resolver, measured arena, contract header, example")
    tm.add_argument("model", help=".tflite artifact (int8 or float) carrying its input contract")
    tm.add_argument("--out", required=True, help="output folder (model_data.{h,cc}, model_ops.h, model_config.h, main.cc, README.md)")
    tm.set_defaults(func=_cmd_tflm)
    cg = subparser(sub, "c", help="a C99 int8 encoder generated from an int8 .tflite, bit-exact to TFLite Micro (no interpreter, no heap)")
    cg.add_argument("model", help="int8 .tflite with float I/O (QUANTIZE / DEQUANTIZE at the ends)")
    cg.add_argument("--out", required=True, help="output folder (anyppg_encoder.h, anyppg_model.c, anyppg_io.c; src/ and the report with --golden)")
    cg.add_argument("--golden", default=None,
                    help="golden set (.npz, `export golden`): build on the host and the emulated boards, check against TFLM and the float model, report memory and instructions")
    cg.add_argument("--boards", nargs="+", default=["cortex-m4", "cortex-m33"], choices=("cortex-m4", "cortex-m33"),
                    help="emulated Cortex-M boards (qemu) with --golden")
    cg.add_argument("--no-boards", action="store_true", help="with --golden: the host only")
    cg.set_defaults(func=_cmd_c)
    fw = subparser(sub, "firmware", help="a drop-in firmware folder: C preprocessor + C int8 encoder + glue, Makefile, example, README")
    fw.add_argument("--artifact", required=True, help="int8 .tflite carrying its input contract")
    fw.add_argument("--out", required=True, help="bundle folder")
    fw.add_argument("--odr-hz", type=float, default=25.0, help="sensor output data rate (one bundle per rate)")
    fw.add_argument("--hop-s", type=float, default=5.0, help="a window every hop")
    fw.add_argument("--adc-bits", type=int, default=18, help="sensor ADC bits (rail hits flag saturation); 0: no rail check")
    fw.add_argument("--no-measure", dest="measure", action="store_false",
                    help="skip the emulated Cortex-M4 run that fills the README's memory and instruction table")
    fw.set_defaults(func=_cmd_firmware)
    _add_parity_commands(sub)


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m export", __doc__.split("\n\n")[0])
    add_commands(ap.add_subparsers(dest="cmd", required=True))
    return run(ap, argv)


if __name__ == "__main__":
    sys.exit(main())
