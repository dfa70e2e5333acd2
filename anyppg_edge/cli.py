"""Command line: ``python -m anyppg_edge <command>`` (thin wrappers over library functions)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from anyppg_edge.pipeline import DemoConfig, run_demo

    cfg = DemoConfig(
        out_dir=Path(args.out),
        model=args.model,
        use_shared=not args.no_shared,
        sim_subjects=args.sim_subjects,
        sim_duration_s=args.sim_duration_s,
        seed=args.seed,
        plot=not args.no_plot,
    )
    summary = run_demo(cfg)
    print((Path(args.out) / "report.md").read_text())
    print(f"report: {Path(args.out) / 'report.md'}  ({summary['n_windows']} windows)")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from anyppg_edge.models import create_model, list_models, model_stats
    from anyppg_edge.report import markdown_table

    rows = [model_stats(create_model(n), args.input_samples).as_row() for n in list_models()]
    print(markdown_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="anyppg-edge", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the main job end to end on the embedded default data")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--model", default="anyppg-released")
    d.add_argument("--no-shared", action="store_true", help="simulator data only, ignore ../shared")
    d.add_argument("--sim-subjects", type=int, default=8)
    d.add_argument("--sim-duration-s", type=float, default=120.0)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-plot", action="store_true")
    d.set_defaults(func=_cmd_demo)

    m = sub.add_parser("models", help="list registered models with params, MACs and peak activation")
    m.add_argument("--input-samples", type=int, default=1250)
    m.set_defaults(func=_cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
