"""What every command line shares: the error policy, ``--version``/``--debug``, validated flag types
and options generated from the config dataclasses.

**Error policy** (:func:`run`): a user mistake — an :class:`~anyppg_edge.errors.AnyPPGError` (missing
or corrupt file, mismatched model, checkpoint or contract, bad value), a missing optional dependency,
or a bad flag (argparse) — prints one line naming the problem and the fix and exits **2**. A check
that ran and failed exits **1** (the command returns it). Anything else is a bug: one line saying so
and exit **3**; its traceback is shown with ``--debug`` or ``ANYPPG_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from anyppg_edge import __version__
from anyppg_edge.errors import AnyPPGError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_USER_ERROR, EXIT_BUG = 0, 1, 2, 3

# Optional dependency (top-level import name) -> the pyproject extra that installs it.
EXTRAS = {
    "torch": "torch", "tqdm": "torch",
    "onnx": "export", "onnxruntime": "export", "onnxscript": "export",
    "tensorflow": "deploy", "brevitas": "deploy", "ai_edge_litert": "deploy", "tflite_support": "deploy",
    "tflite_micro": "deploy", "libusb_package": "deploy",
    "neurokit2": "data", "pandas": "data", "wfdb": "data", "edfio": "data",
    "matplotlib": "plot", "sklearn": "eval",
}


def missing_extra_message(exc: ModuleNotFoundError) -> str | None:
    """``"... pip install 'anyppg-edge[extra]'"`` for a missing optional dependency, else ``None``."""
    root = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"this command needs the optional dependency {root!r}: pip install 'anyppg-edge[{extra}]'"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"anyppg-edge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, call ``args.func(args)`` under the error policy, return the exit code."""
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False) or os.environ.get("ANYPPG_DEBUG"))
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    prog = parser.prog
    try:
        return int(args.func(args) or 0)
    except AnyPPGError as e:
        return _fail(prog, str(e), EXIT_USER_ERROR, debug)
    except ModuleNotFoundError as e:
        msg = missing_extra_message(e)
        if msg is None:
            return _bug(prog, e, debug)
        return _fail(prog, msg, EXIT_USER_ERROR, debug)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        return _fail(prog, f"{e.strerror or e}: {e.filename}" if e.filename else str(e), EXIT_USER_ERROR, debug)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        return _bug(prog, e, debug)


def _fail(prog: str, message: str, code: int, debug: bool) -> int:
    if debug:
        raise
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _bug(prog: str, exc: BaseException, debug: bool) -> int:
    if debug:
        raise exc
    print(f"{prog}: internal error (a bug; please report it): {type(exc).__name__}: {exc}. "
          "Rerun with --debug (or ANYPPG_DEBUG=1) for the traceback", file=sys.stderr)
    return EXIT_BUG


# -- validated flag types -------------------------------------------------------------------------
def _number(kind: Callable[[str], Any], name: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if v != v or not ok(v):  # NaN is never a valid value
            raise argparse.ArgumentTypeError(f"{text!r} must be {name}")
        return v

    parse.__name__ = name
    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
nonnegative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: 0 < v < float("inf"))
nonnegative_float = _number(float, "a number >= 0", lambda v: 0 <= v < float("inf"))
unit_float = _number(float, "a number in [0, 1]", lambda v: 0 <= v <= 1)


def choice(*values: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in values:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {list(values)}")
        return text

    parse.__name__ = "one of " + ", ".join(values)
    return parse


contrastive_batch = _number(int, "an integer >= 2 (a contrastive batch needs negatives)", lambda v: v >= 2)


# -- options from the config dataclasses ----------------------------------------------------------
def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the scalar type, whether ``None`` is allowed) of a field annotation."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), True
    return tp, False


def add_config_args(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    only: Sequence[str],
    *,
    flags: dict[str, str] | None = None,
    types_: dict[str, Callable[[str], Any]] | None = None,
    help: dict[str, str] | None = None,
    base: Any = None,
) -> None:
    """One option per field ``only`` of the config dataclass ``cls``: ``--field-name`` (or
    ``flags[field]``), typed from the annotation (or ``types_[field]``), its default (the field's, or
    ``base``'s value) shown in ``--help``. Booleans become ``--flag`` / ``--no-flag``. The value stays
    ``None`` when the flag is absent, so :func:`config_from_args` keeps the recipe's or default value."""
    hints = typing.get_type_hints(cls)
    flags, types_, help = flags or {}, types_ or {}, help or {}
    base = base if base is not None else cls()
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    for name in only:
        if name not in by_name:
            raise ValueError(f"{cls.__name__} has no field {name!r}")  # a bug in the CLI, not a user error
        tp, _ = _base_type(hints[name])
        default = getattr(base, name)
        flag = flags.get(name, "--" + name.replace("_", "-"))
        text = help.get(name, "")
        text = text if "(default:" in text else f"{text} (default: {default})".strip()
        if tp is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
            continue
        kind = types_.get(name) or (tp if tp in (int, float, str) else str)
        parser.add_argument(flag, dest=name, type=kind, default=None, metavar=name.upper(), help=text)


def config_from_args(cls: type, args: argparse.Namespace, base: Any, only: Sequence[str], **fixed: Any) -> Any:
    """``base`` (a recipe's config, or the defaults) with the flags the user gave for fields ``only``
    applied on top, and ``fixed`` values last."""
    given = {name: getattr(args, name) for name in only if getattr(args, name, None) is not None}
    return dataclasses.replace(base, **given, **fixed)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` for options that have a real default (not ``None``, not already shown)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "(default:" in text:
            return text
        return super()._get_help_string(action)


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_common_flags(p)
    return p


def subparser(sub: Any, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter, **kw)
