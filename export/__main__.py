"""``python -m export``: thin CLI over :mod:`anyppg_edge.deploy`.

Commands:

* ``all``: QAT + export of one model to ONNX/TFLite float and int8 with graph and parity reports;
* ``inspect ARTIFACT``: its input contract and graph report;
* ``check ARTIFACT``: exit 1 (with the differences) when its contract does not match the
  preprocessing config in use (``--config`` JSON, default: the toolkit's default chain).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _cmd_all(args: argparse.Namespace) -> int:
    import numpy as np

    from anyppg_edge.deploy.build import ExportConfig, export_all, load_net1d, shared_export_data
    from anyppg_edge.deploy.calibration import load_calibration_set, load_default_calibration_set

    model, sha = load_net1d(args.model, args.checkpoint)
    data = shared_export_data(args.n_calibration, args.n_eval, seed=args.seed, progress=not args.no_progress)
    calib = data.calibration
    if args.calibration == "default":
        calib = load_default_calibration_set().windows
    elif args.calibration != "shared":
        calib = load_calibration_set(args.calibration).windows
    cfg = ExportConfig(
        out_dir=Path(args.out or f"runs/export/{args.model}"),
        qat_steps=args.qat_steps,
        qat_batch_size=args.qat_batch_size,
        qat_lr=args.qat_lr,
        onnx_activation_type=args.onnx_activation_type,
        int8_io=args.int8_io,
        seed=args.seed,
        progress=not args.no_progress,
        plot=not args.no_plot,
    )
    qat_windows = np.concatenate([calib, data.qat])
    report = export_all(model, args.model, sha, calib, qat_windows, data.eval, cfg, eval_source=data.description)
    print((cfg.out_dir / "export_report.md").read_text())
    return 0 if report["parity_pass"] else 1


def _cmd_inspect(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.graph_report import graph_report_markdown, onnx_graph_report, tflite_graph_report
    from anyppg_edge.deploy.runtime import read_contract

    p = Path(args.artifact)
    print(json.dumps(read_contract(p).to_dict(), indent=2, sort_keys=True))
    g = tflite_graph_report(p) if p.suffix == ".tflite" else onnx_graph_report(p)
    g["artifact"] = p.name
    print(graph_report_markdown([g]))
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from anyppg_edge.deploy.runtime import read_contract
    from anyppg_edge.errors import ContractMismatchError
    from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

    cfg = PreprocessConfig.from_dict(json.loads(Path(args.config).read_text())) if args.config else DEFAULT_CONFIG
    try:
        c = read_contract(args.artifact).check(cfg)
    except ContractMismatchError as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    print(f"OK: {args.artifact} ({c.model_name}, {c.artifact_kind}) matches preprocessing config {cfg.config_hash()[:12]}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("all", help="QAT + export to ONNX/TFLite float and int8, with graph and parity reports")
    a.add_argument("--model", default="student-watch", help="registry config name (anyppg_edge.models.list_models)")
    a.add_argument("--checkpoint", default=None, help="state_dict, distillation or pretraining checkpoint")
    a.add_argument("--calibration", default="shared", help="'shared' (built from ../shared train subjects), 'default' (committed simulator set) or a calibration_data folder")
    a.add_argument("--n-calibration", type=int, default=256)
    a.add_argument("--n-eval", type=int, default=256)
    a.add_argument("--qat-steps", type=int, default=100)
    a.add_argument("--qat-batch-size", type=int, default=32)
    a.add_argument("--qat-lr", type=float, default=2e-5)
    a.add_argument("--onnx-activation-type", choices=["s8", "u8"], default="s8")
    a.add_argument("--int8-io", action="store_true", help="int8 input/output tensors in the int8 TFLite")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default=None)
    a.add_argument("--no-progress", action="store_true")
    a.add_argument("--no-plot", action="store_true")
    a.set_defaults(func=_cmd_all)
    i = sub.add_parser("inspect", help="print an artifact's input contract and graph report")
    i.add_argument("artifact")
    i.set_defaults(func=_cmd_inspect)
    c = sub.add_parser("check", help="exit 1 if an artifact's contract does not match a preprocessing config")
    c.add_argument("artifact")
    c.add_argument("--config", default=None, help="PreprocessConfig JSON (default: the toolkit default)")
    c.set_defaults(func=_cmd_check)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("anyppg_edge").setLevel(logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
