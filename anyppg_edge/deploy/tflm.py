"""TensorFlow Lite Micro on the host: the reference for what a microcontroller computes.

The ``tflite-micro`` wheel (PyPI) holds the TFLM interpreter with its reference integer kernels,
built for the host. This module gives it the project's three uses:

* :func:`tflm_interpreter`, behind :class:`~anyppg_edge.deploy.runtime.TflmEncoder`
  (``open_encoder(path, runtime="tflm")``), which reads and checks the contract like every runtime
  and runs in an arena of exactly the measured minimum size, so every embedding it returns also
  proves that the arena figure is enough;
* :func:`measure_arena`: the smallest arena that allocates (bisection over TFLM's own allocator,
  not an estimate) and the ``RecordingMicroAllocator`` breakdown: head (the activation plan),
  tail (persistent buffers such as per-channel requantization data, node structs, eval tensors);
* :func:`op_requirements`: the builtin ops and op versions an artifact needs, the file's
  ``min_runtime_version`` and whether it holds a grouped CONV_2D (op version 6), which older TFLM
  releases refuse and CMSIS-NN does not optimise.

Only numpy is imported at module level; ``tflite_micro`` and the flatbuffer schema of
``ai_edge_litert`` are imported when needed.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anyppg_edge.errors import ContractMismatchError, DataFormatError, MissingExtraError, MissingFileError

__all__ = [
    "ArenaReport",
    "OpRequirements",
    "measure_arena",
    "op_requirements",
    "tflm_interpreter",
    "tflm_version",
]

# Host structs whose size is two pointers or more: what a 32-bit target changes (see ArenaReport).
# TfLiteEvalTensor = {data*, dims*, type}: 24 B on a 64-bit host, 12 B on a 32-bit MCU.
# NodeAndRegistration = {TfLiteNode (6 pointers + int), registration*}: 64 B on 64-bit, 32 B on 32-bit.
_STRUCT_BYTES_64_TO_32 = {"TfLiteEvalTensor data": (24, 12), "NodeAndRegistration struct": (64, 32)}
_MAX_ARENA_BYTES = 64 * 1024 * 1024


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:  # pragma: no cover - depends on the install
        raise MissingExtraError(
            "TensorFlow Lite Micro is not installed: pip install 'anyppg-edge[deploy]' (package tflite-micro)"
        ) from e
    return runtime


def tflm_version() -> str:
    """Version of the installed ``tflite-micro`` wheel (a dated dev build)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:  # pragma: no cover
        return "not installed"


@contextmanager
def _captured_c_output() -> Iterator[list[str]]:
    """Capture what the C++ side prints on fds 1 and 2 (TFLM's MicroPrintf); yields a list that holds
    the text once the block ends."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            os.dup2(tmp.fileno(), 1)
            os.dup2(tmp.fileno(), 2)
            yield out
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def _model_bytes(model: bytes | str | Path) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    p = Path(model)
    if not p.is_file():
        raise MissingFileError(f"TFLite model not found: {p}")
    return p.read_bytes()


_PROBE = (
    "import sys\n"
    "from tflite_micro.python.tflite_micro import runtime\n"
    "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=int(sys.argv[2]))\n"
)


def _allocates(model_path: str, arena_bytes: int) -> bool:
    """Whether TFLM allocates the model in ``arena_bytes``, asked in a child process: with an arena a
    little too small for its persistent data, this TFLM build can crash (an unchecked failed tail
    allocation wraps the free-byte count around) instead of returning an error."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-c", _PROBE, model_path, str(int(arena_bytes))], capture_output=True, timeout=120
    )
    return r.returncode == 0


# ------------------------------------------------------------------------------------------- arena


@dataclass(frozen=True)
class ArenaReport:
    """What TFLM's allocator needs for one model on this host (64-bit).

    ``min_arena_bytes`` is the smallest ``arena_size`` that allocates (bisection, 16-byte steps):
    the figure firmware must provide. ``total/head/tail_bytes`` are what the recording allocator
    used inside it: head = the activation plan (largest simultaneous live tensors after the greedy
    planner), tail = persistent data. ``items`` is the recording allocator's breakdown by kind
    (``bytes``, ``requested_bytes``, ``count``). ``mcu32_bytes`` estimates the same arena on a 32-bit
    MCU: eval tensors (24 → 12 B) and node structs (64 → 32 B) hold pointers; persistent buffers
    (per-channel multipliers and shifts, op data) are kept as measured, so it is an upper bound."""

    min_arena_bytes: int
    total_bytes: int
    head_bytes: int
    tail_bytes: int
    items: dict[str, dict[str, int]] = field(default_factory=dict)
    tflm_version: str = ""

    @property
    def mcu32_bytes(self) -> int:
        saved = 0
        for kind, (b64, b32) in _STRUCT_BYTES_64_TO_32.items():
            n = self.items.get(kind, {}).get("count", 0)
            saved += n * (b64 - b32)
        return self.min_arena_bytes - saved

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mcu32_bytes"] = self.mcu32_bytes
        return d

    def summary(self) -> str:
        return (
            f"TFLM arena {self.min_arena_bytes:,} B (head {self.head_bytes:,} activations + tail "
            f"{self.tail_bytes:,} persistent; ~{self.mcu32_bytes:,} B on a 32-bit MCU)"
        )


_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_ITEM = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


def _parse_allocations(text: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    totals = {m[1]: int(m[2]) for m in _TOTAL.finditer(text)}
    items = {
        m[1]: {"bytes": int(m[2]), "requested_bytes": int(m[3]), "count": int(m[4])} for m in _ITEM.finditer(text)
    }
    if set(totals) != {"total", "head", "tail"}:
        raise DataFormatError(f"could not read TFLM's allocation report:\n{text[-2000:]}")
    return totals, items


_ARENA_CACHE: dict[str, ArenaReport] = {}


def measure_arena(model: bytes | str | Path) -> ArenaReport:
    """Smallest arena in which TFLM allocates ``model`` (bisection to 16 bytes; every probe in a child
    process, see :func:`_allocates`), with the recording allocator's breakdown at that size."""
    import hashlib

    rt = _runtime()
    buf = _model_bytes(model)
    key = hashlib.sha256(buf).hexdigest()
    if key in _ARENA_CACHE:
        return _ARENA_CACHE[key]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.tflite")
        Path(path).write_bytes(buf)
        hi = 16 * 1024
        while not _allocates(path, hi):
            if hi >= _MAX_ARENA_BYTES:
                raise DataFormatError(
                    f"TFLM cannot allocate this model in {_MAX_ARENA_BYTES >> 20} MiB: unsupported op or "
                    "not a TFLM-compatible model? Run TflmEncoder on it to see TFLM's message"
                )
            hi *= 2
        lo = hi // 2 if hi > 16 * 1024 else 0  # does not allocate
        while hi - lo > 16:
            mid = (lo + hi) // 2 // 16 * 16
            if mid <= lo:
                break
            if _allocates(path, mid):
                hi = mid
            else:
                lo = mid
    with _captured_c_output() as log:  # in this process, at a size a child allocated: safe
        it = rt.Interpreter.from_bytes(buf, arena_size=hi)
        it.print_allocations()
    totals, items = _parse_allocations("".join(log))
    report = ArenaReport(hi, totals["total"], totals["head"], totals["tail"], items, tflm_version())
    _ARENA_CACHE[key] = report
    return report


# ------------------------------------------------------------------------------------ op versions


@dataclass(frozen=True)
class OpRequirements:
    """Builtin ops (name → sorted op versions) and counts, ``min_runtime_version`` from the file's
    metadata, grouped CONV_2D count, and a note on what TFLM version that needs."""

    ops: dict[str, list[int]]
    counts: dict[str, int]
    min_runtime_version: str
    grouped_conv2d: int
    custom_ops: list[str]
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def op_requirements(model: bytes | str | Path) -> OpRequirements:
    """The builtin ops and versions ``model`` needs; grouped CONV_2D (filter in-depth < input depth,
    op version 6) is counted and named."""
    from ai_edge_litert import schema_py_generated as s

    buf = _model_bytes(model)
    m = s.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = names.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (oc.CustomCode() or b"?").decode()
        codes.append((name, int(oc.Version())))
    g = m.Subgraphs(0)
    ops: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    grouped = 0
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        name, ver = codes[op.OpcodeIndex()]
        ops.setdefault(name, set()).add(ver)
        counts[name] = counts.get(name, 0) + 1
        if name == "CONV_2D":
            x, w = g.Tensors(op.Inputs(0)), g.Tensors(op.Inputs(1))
            if int(w.ShapeAsNumpy()[-1]) != int(x.ShapeAsNumpy()[-1]):
                grouped += 1
    min_rt = ""
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if md.Name() == b"min_runtime_version":
            data = m.Buffers(md.Buffer()).DataAsNumpy()
            if not isinstance(data, int):
                min_rt = bytes(data).split(b"\0")[0].decode()
    note = (
        f"{grouped} grouped CONV_2D (op version 6): TFLite >= 2.9; TFLM runs them with its reference "
        f"kernel (checked with tflite-micro {tflm_version()}); older TFLM releases refuse them at Prepare and "
        "CMSIS-NN optimises DEPTHWISE_CONV_2D, not grouped CONV_2D"
        if grouped
        else "no grouped CONV_2D"
    )
    return OpRequirements(
        {k: sorted(v) for k, v in sorted(ops.items())},
        dict(sorted(counts.items())),
        min_rt,
        grouped,
        sorted(k for k in ops if k.startswith("CUSTOM:")),
        note,
    )


def tflm_interpreter(model: bytes | str | Path, arena_bytes: int | None = None) -> tuple[Any, ArenaReport | None, int]:
    """A TFLM interpreter for ``model`` in an arena of ``arena_bytes`` (default: the measured minimum,
    whose :class:`ArenaReport` comes back too), and the arena size used. A model TFLM cannot allocate
    is a ContractMismatchError carrying TFLM's own log."""
    rt = _runtime()
    buf = _model_bytes(model)
    report = measure_arena(buf) if arena_bytes is None else None
    size = report.min_arena_bytes if report is not None else int(arena_bytes)
    if report is None:
        with tempfile.TemporaryDirectory() as tmp:  # a too-small arena can crash TFLM: ask a child first
            path = Path(tmp) / "model.tflite"
            path.write_bytes(buf)
            ok = _allocates(str(path), size)
        if not ok:
            what = model if not isinstance(model, (bytes, bytearray)) else "model"
            raise ContractMismatchError(
                f"{what}: TensorFlow Lite Micro cannot allocate it in {size:,} B; its smallest arena is "
                f"{measure_arena(buf).min_arena_bytes:,} B (python -m export inspect prints it)"
            )
    with _captured_c_output():
        it = rt.Interpreter.from_bytes(buf, arena_size=size)
    return it, report, size
