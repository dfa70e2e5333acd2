"""``anyppg-edge calibration`` (checkout: ``python -m calibration_data``): build, regenerate and
inspect calibration sets.

* ``build --source shared --source simulator --n 256 --seed 0 --out calibration_data/built/<name>``
* ``default``: regenerate the committed default (package data ``anyppg_edge/deploy/calibration/default``)
* ``show <dir>``: verify a set and print its manifest
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anyppg_edge.cli._common import (
    parser,
    positive_float,
    positive_int,
    run,
    subparser,
)
from anyppg_edge.deploy.calibration import (
    DEFAULT_HOP_S,
    DEFAULT_MAX_CANDIDATES,
    build_calibration_set,
    build_default_calibration_set,
    default_calibration_dir,
    load_calibration_set,
    save_calibration_set,
)
from anyppg_edge.deploy.calibration.report import calibration_summary_markdown
from anyppg_edge.paths import REPO_ROOT

BUILT_DIR = REPO_ROOT / "calibration_data" / "built"


def _cmd_build(args: argparse.Namespace) -> int:
    sources = args.source or ["shared", "simulator"]
    out = (
        Path(args.out)
        if args.out
        else BUILT_DIR / f"{'+'.join(Path(s).name for s in sources)}-n{args.n}-seed{args.seed}"
    )
    cs = build_calibration_set(
        sources,
        args.n,
        args.seed,
        hop_s=args.hop_s,
        progress=not args.quiet,
        ecg_quality=not args.no_ecg_quality,
        max_candidates=args.max_candidates,
    )
    save_calibration_set(cs, out)
    print(calibration_summary_markdown(cs, out))
    return 0


def _cmd_default(args: argparse.Namespace) -> int:
    out = default_calibration_dir()
    cs = build_default_calibration_set(progress=not args.quiet)
    save_calibration_set(cs, out)
    print(calibration_summary_markdown(cs, out))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    cs = load_calibration_set(args.dir, cfg=None)  # verifies the checksums, whatever the config
    print(json.dumps(cs.manifest, indent=2, sort_keys=True))
    print(f"verified: {len(cs)} windows, sha256 matches", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    b = subparser(sub, "build", help="build a stratified calibration set and write it")
    b.add_argument(
        "--source",
        action="append",
        help="'shared', 'simulator' or a shard folder (repeatable; default: shared + simulator)",
    )
    b.add_argument("--n", type=positive_int, default=256, help="number of windows")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--hop-s", type=positive_float, default=DEFAULT_HOP_S)
    b.add_argument("--max-candidates", type=positive_int, default=DEFAULT_MAX_CANDIDATES)
    b.add_argument("--no-ecg-quality", action="store_true", help="keep windows whose ECG fails Zhao 2018")
    b.add_argument("--out", default=None, help=f"output folder (default: {BUILT_DIR}/<sources>-n<N>-seed<S>)")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_cmd_build)
    d = subparser(sub, "default", help=f"regenerate the committed default set in {default_calibration_dir()}")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_default)
    s = subparser(sub, "show", help="verify a calibration set folder and print its manifest")
    s.add_argument("dir")
    s.set_defaults(func=_cmd_show)


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m calibration_data", __doc__.split("\n\n")[0])
    add_commands(ap.add_subparsers(dest="command", required=True))
    return run(ap, argv)
