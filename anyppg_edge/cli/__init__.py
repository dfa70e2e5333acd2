"""Command lines: ``anyppg-edge <command>`` (installed console script; ``python -m anyppg_edge`` in a
checkout) with the groups ``export``, ``harness`` and ``calibration``. The checkout's fixed folders
(``python -m export``, ``python -m firmware_harness``, ``python -m calibration_data``) are entry points
over the same modules. Each command parses its flags, makes one library call and prints the library's
own rendering; errors follow the one policy of :mod:`anyppg_edge.cli._common`."""

from __future__ import annotations

from collections.abc import Sequence

from anyppg_edge.cli import calibration, export, gpu, harness, train
from anyppg_edge.cli._common import parser, run, subparser


def build_parser():
    ap = parser("anyppg-edge", "AnyPPG from pretraining to int8 smartwatch encoders.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_commands(sub)
    gpu.add_commands(sub)
    for name, mod, text in (
        ("export", export, "export, inspect, check, bench and parity-test deployable artifacts"),
        ("harness", harness, "streaming harness: emulated watch sensors into the encoders"),
        ("calibration", calibration, "build, regenerate and inspect calibration sets"),
    ):
        group = subparser(sub, name, text)
        mod.add_commands(group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND"))
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)
