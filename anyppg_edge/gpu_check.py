"""The GPU check (``anyppg-edge gpu-check``): one prepared command that spends a short accelerator
lease on everything the CPU cannot measure, and brings it back as a few small files.

Two steps (round trip in ``docs/gpu.md``):

* :func:`prepare_carry` (``gpu-check prepare``), here, with ``../shared``: a small *carry folder*
  (default ``runs/gpu_carry``, git-ignored) holding a shard folder of the real recordings, the held-out
  golden windows (exactly those ``export golden`` picks, one file per input rate), the teacher, student
  and native-rate student checkpoints and a manifest. It prints the device call: the command and the ``carry`` list.
* :func:`run_gpu_check` (``gpu-check``), on the device, from a plain checkout with ``PYTHONPATH=.``:
  imports torch, numpy and scipy only. Sections, each timed, each failure recorded without losing the
  others, the JSON report rewritten atomically after each one:

  ``environment``  GPU, driver, torch/CUDA/cuDNN, TF32 and determinism flags, a bf16 matmul probe;
  ``golden``       golden sets of the float teacher, the watch student and the native-rate (25 Hz)
                   student, each on the golden windows of its own contract (TF32
                   off, deterministic algorithms; :func:`~anyppg_edge.deploy.parity.golden.make_golden_set`,
                   the ``export golden`` format), each also embedded on this machine's CPU and held to
                   the ``gpu-vs-cpu-float`` row;
  ``train_match``  the first CLIP training steps through the trainer on the device in fp32 (TF32 off,
                   deterministic, dropout off) vs the same on the CPU: row ``train-gpu-vs-cpu-fp32``;
  ``train_run``    a few hundred bf16 CLIP steps on the real shards: the loss must fall;
  ``throughput``   the ``anyppg-paper`` CLIP towers at batch 256 in fp32 / tf32 / bf16 autocast:
                   samples/s, step time, peak memory, MFU against the bf16 peak;
  ``max_batch``    the largest bf16 batch that fits (doubling, then bisection; OOM caught);
  ``compile``      the same with ``torch.compile``.

A time budget (``time_budget_s``) skips a section that would not fit and stops one that overruns
(``SIGALRM``), so the command ends inside its lease with what it measured. ``--device cpu`` with
``--tiny`` is the dry run the tests run. Channels-last does not apply: Net1D is a 1-D CNN on
``[N, C, L]`` tensors, and ``torch.channels_last`` is a 4-D (NCHW) memory format.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import gc
import hashlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge import __version__
from anyppg_edge.deploy.parity.golden import cpu_name
from anyppg_edge.errors import ConfigError, DataFormatError, UsageError
from anyppg_edge.io import atomic_write_text, write_json
from anyppg_edge.paths import REPO_ROOT, shared_dir
from anyppg_edge.report import markdown_table

__all__ = [
    "CARRY_SCHEMA",
    "DEFAULT_STUDENTS",
    "PEAK_DENSE_TFLOPS",
    "ROLES",
    "SCHEMA",
    "SECTIONS",
    "TINY",
    "GpuCheckConfig",
    "carry_location",
    "device_call",
    "load_carry",
    "peak_tflops",
    "prepare_carry",
    "render_markdown",
    "run_gpu_check",
    "travel_bytes",
]

SCHEMA = "anyppg-edge/gpu-check/v1"
CARRY_SCHEMA = "anyppg-edge/gpu-carry/v1"
JSON_NAME, MD_NAME, MANIFEST_NAME = "gpu_check.json", "gpu_check.md", "manifest.json"
DEFAULT_CARRY = "runs/gpu_carry"
SECTIONS = ("environment", "golden", "train_match", "train_run", "throughput", "max_batch", "compile")
# Seconds a section needs at least (on the H200 at the default settings): with less left in the budget
# it is skipped, recorded as such.
SECTION_MIN_S = {"environment": 5, "golden": 20, "train_match": 25, "train_run": 45, "throughput": 30,
                 "max_batch": 30, "compile": 120}

# Dense (no sparsity) peak rates, TFLOP/s, by a substring of torch.cuda.get_device_name(). Source:
# NVIDIA H200 Tensor Core GPU datasheet (SXM): BF16 tensor 1,979 TFLOPS and TF32 tensor 989 TFLOPS,
# both quoted *with* 2:4 sparsity, i.e. 989.5 and 494.5 dense; FP32 (no tensor core) 67 TFLOPS. The
# H100 SXM (NVIDIA H100 datasheet) has the same figures. MFU is quoted against the bf16 peak.
PEAK_DENSE_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
    "H100 80GB HBM3": {"bf16": 989.5, "tf32": 494.5, "fp32": 67.0},
}
CHANNELS_LAST_NOTE = ("channels-last: not applicable; Net1D is a 1-D CNN on [N, C, L] tensors and "
                      "torch.channels_last is a 4-D (NCHW) memory format")


def peak_tflops(device_name: str) -> dict[str, float] | None:
    """The :data:`PEAK_DENSE_TFLOPS` row of a GPU by its name, ``None`` when unknown."""
    for key, row in PEAK_DENSE_TFLOPS.items():
        if key in device_name:
            return dict(row)
    return None


@dataclass
class GpuCheckConfig:
    """Settings of :func:`run_gpu_check` (defaults: one H200 in well under 8 minutes)."""

    out_dir: str = "runs/gpu_check"
    carry_dir: str = DEFAULT_CARRY
    device: str = "auto"  # auto (CUDA when available), cuda, cuda:N, cpu
    sections: str = ",".join(SECTIONS)
    time_budget_s: float = 420.0
    seed: int = 0
    # throughput, largest batch, compile
    model: str = "anyppg-paper"
    batch_size: int = 256
    steps: int = 20
    warmup_steps: int = 5
    precisions: str = "fp32,tf32,bf16"
    compile_precisions: str = "bf16,fp32"
    compile_backend: str = "inductor"
    max_batch_cap: int = 32768
    # the short real run and its CPU match
    train_model: str = "anyppg-paper"
    train_steps: int = 300
    train_batch_size: int = 256
    train_lr: float = 5e-4
    match_steps: int = 5
    match_batch_size: int = 32
    # golden sets
    golden_batch_size: int = 64

    def section_list(self) -> list[str]:
        names = [s.strip() for s in self.sections.split(",") if s.strip()]
        unknown = [s for s in names if s not in SECTIONS]
        if unknown or not names:
            raise ConfigError(f"unknown sections {unknown or names}; known: {', '.join(SECTIONS)}")
        return [s for s in SECTIONS if s in names]

    def precision_list(self, field: str = "precisions") -> list[str]:
        names = [p.strip() for p in getattr(self, field).split(",") if p.strip()]
        bad = [p for p in names if p not in ("fp32", "tf32", "bf16")]
        if bad:
            raise ConfigError(f"--{field.replace('_', '-')}: unknown precision(s) {bad}; use fp32, tf32, bf16")
        return names


# The dry-run settings (``--tiny``): seconds on a CPU, every section exercised.
TINY: dict[str, Any] = {
    "model": "tiny", "batch_size": 8, "steps": 2, "warmup_steps": 1, "max_batch_cap": 32,
    "compile_backend": "eager", "compile_precisions": "fp32", "train_model": "tiny", "train_steps": 40,
    "train_batch_size": 8, "train_lr": 2e-3, "match_steps": 3, "match_batch_size": 8, "golden_batch_size": 32,
}


# --------------------------------------------------------------------------------------------------
# the carry folder
# --------------------------------------------------------------------------------------------------


def _code_sha256() -> str:
    """sha256 over the library's Python sources (path and bytes): which code ran, without git."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout if p.returncode == 0 else None


def travel_bytes() -> int | None:
    """Bytes of the working tree that travels to the device (tracked + untracked-not-ignored files)."""
    out = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if out is None:
        return None
    return sum((REPO_ROOT / f).stat().st_size for f in out.split("\0") if f and (REPO_ROOT / f).is_file())


def _folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


ROLES = ("teacher", "student", "native_student")
DEFAULT_STUDENTS = {"student": ("runs/distill_watch_slim/best.pt", "runs/demo/distill/best.pt"),
                    "native_student": ("runs/distill_watch_25hz/best.pt", "runs/demo/distill_native/best.pt")}


def _default_checkpoint(role: str) -> Path | None:
    for p in DEFAULT_STUDENTS[role]:
        if (REPO_ROOT / p).is_file():
            return REPO_ROOT / p
    return None


def _windows_file(rate_hz: int, reference_rate_hz: int) -> str:
    return "golden_windows.npz" if rate_hz == reference_rate_hz else f"golden_windows.native{rate_hz}hz.npz"


def prepare_carry(
    out_dir: str | Path = DEFAULT_CARRY,
    *,
    teacher: str | Path | None = None,
    teacher_model: str = "anyppg-released",
    student: str | Path | None = "auto",
    student_model: str = "student-watch-slim",
    native_student: str | Path | None = "auto",
    native_student_model: str = "student-watch-25hz",
    use_shared: bool = True,
    sim_subjects: int = 0,
    sim_duration_s: float = 300.0,
    hop_s: float = 2.0,
    ecg_quality: bool = True,
    golden_n: int = 256,
    golden_hop_s: float = 5.0,
    split_seed: int = 0,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the carry folder of :func:`run_gpu_check` (see the module docstring) and return its
    manifest. ``teacher``: a checkpoint (default: ``../shared/reference/net1d_anyppg_released.state_dict.pt``;
    ``"init"``: the seeded random init of ``teacher_model``, as the main job's teacher without ``../shared``);
    ``student`` (a 125 Hz student) and ``native_student`` (a native-rate one, e.g. 25 Hz): a checkpoint,
    ``"auto"`` (the distilled one under ``runs/`` when present: :data:`DEFAULT_STUDENTS`) or ``"init"``
    (the seeded random init of ``*_model``). When ``"auto"`` finds nothing, the student is the seeded
    random init (warned) and the native student is left out; ``native_student=None`` leaves it out.
    ``student=None`` is the random init (as ``"init"``).

    The golden windows of each model's contract are those ``export golden --model M --n golden_n
    --hop-s golden_hop_s --seed split_seed`` picks (:func:`golden_windows_for_model`; ``use_shared``),
    else drawn the same way from the simulated subjects: one file per input rate (the native student's
    are its sensor-rate windows of the same held-out subjects)."""
    from anyppg_edge.config import model_preprocess_config
    from anyppg_edge.contract import RANDOM_INIT, sha256_file
    from anyppg_edge.data.shards import prepare_shards
    from anyppg_edge.deploy.parity.golden import (
        golden_windows_for_model,
        golden_windows_from_recordings,
        save_golden_windows,
    )
    from anyppg_edge.models.loading import load_encoder
    from anyppg_edge.models.registry import get_model_spec
    from anyppg_edge.preprocessing import DEFAULT_CONFIG

    ref_rate = DEFAULT_CONFIG.target_sample_rate_hz

    def rate_of(model: str) -> int:
        return get_model_spec(model).input_sample_rate_hz

    # the models' rates first: a student at the wrong rate is refused before anything is written
    if rate_of(student_model) != ref_rate:
        raise UsageError(f"--student-model {student_model} reads {rate_of(student_model)} Hz windows; the student is "
                         f"the {ref_rate} Hz one (student-watch-slim): pass a native-rate student as --native-student "
                         f"CKPT --native-student-model {student_model}")
    if native_student is not None and rate_of(native_student_model) == ref_rate:
        raise UsageError(f"--native-student-model {native_student_model} reads {ref_rate} Hz windows: that is a "
                         "--student; the native student reads its sensor's rate (student-watch-25hz, student-watch-50hz)")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise UsageError(f"{out} exists and is not empty: pass --force to rebuild the carry folder, or another --out")
        if not (out / MANIFEST_NAME).is_file():
            raise UsageError(f"{out} is not a carry folder (no {MANIFEST_NAME}); refusing to delete it: choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    try:  # a failed prepare leaves no half-made carry folder behind
        t0 = time.perf_counter()

        def checkpoint_entry(role: str, path: str | Path | None, model: str) -> dict[str, Any]:
            if path is None:
                loaded = load_encoder(None, model)
                e = {"role": role, "model": loaded.model_name, "file": None, "sha256": RANDOM_INIT, "kind": loaded.kind,
                     "source": "seeded random init (torch.manual_seed(0))"}
            else:
                src = Path(path)
                loaded = load_encoder(src, model, name_is_claim=False)
                dst = out / "checkpoints" / role / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                sha = sha256_file(dst)
                if sha != loaded.sha256:
                    raise DataFormatError(f"copy of {src} changed while copying (sha256 differs); prepare again")
                e = {"role": role, "model": loaded.model_name, "file": dst.relative_to(out).as_posix(), "sha256": sha,
                     "kind": loaded.kind, "source": str(src)}
            rate, native_role = rate_of(e["model"]), role == "native_student"
            if (rate != ref_rate) != native_role:
                flag = {"teacher": "--teacher", "student": "--student", "native_student": "--native-student"}[role]
                raise UsageError(f"{flag} {path}: model {e['model']} reads {rate} Hz windows, but the {role.replace('_', ' ')} "
                                 + ("must be a native-rate model (25 or 50 Hz)" if native_role else f"must read {ref_rate} Hz"))
            return e

        if teacher == "init":
            teacher_path = None
        else:
            teacher_path = Path(teacher) if teacher else shared_dir() / "reference" / "net1d_anyppg_released.state_dict.pt"
        entries = {"teacher": checkpoint_entry("teacher", teacher_path, teacher_model)}
        for role, ckpt, model in (("student", student, student_model), ("native_student", native_student, native_student_model)):
            if ckpt == "auto":
                ckpt = _default_checkpoint(role)
                if ckpt is None and role == "student":
                    log(f"WARNING: no distilled student found ({', '.join(DEFAULT_STUDENTS[role])}): the student golden "
                        f"set will be of the seeded random init of {model!r}, which matches no artifact exported from "
                        "trained weights; pass --student CKPT for the real one")
                elif ckpt is None:
                    log(f"no distilled native-rate student found ({', '.join(DEFAULT_STUDENTS[role])}): left out "
                        "(pass --native-student CKPT to carry one)")
                    continue
            elif role == "native_student" and ckpt is None:
                continue
            entries[role] = checkpoint_entry(role, None if ckpt == "init" else ckpt, model)
        for e in entries.values():
            log(f"{e['role']}: {e['model']} ({e['kind']}, sha256 {e['sha256'][:12]}) from {e['source']}")

        sources: list[Any] = []
        if use_shared:
            from anyppg_edge.data import load_shared_recordings

            sources += load_shared_recordings()
        sims: list[Any] = []
        if sim_subjects:
            from anyppg_edge.data import simulate_cohort

            sims = simulate_cohort(sim_subjects, duration_s=sim_duration_s, seed=split_seed)
            sources += sims
        if not sources:
            raise UsageError("nothing to prepare: use ../shared (the default) and/or --sim-subjects N")
        log(f"shards: {len(sources)} recordings, hop {hop_s:g} s -> {out / 'shards'}")
        summary = prepare_shards(sources, out / "shards", hop_s=hop_s, workers=1, ecg_quality=ecg_quality,
                                 dtype="float16", seed=split_seed, progress=False)
        windows_files: dict[str, dict[str, Any]] = {}
        for e in entries.values():
            name = _windows_file(rate_of(e["model"]), ref_rate)
            if name not in windows_files:
                cfg = model_preprocess_config(get_model_spec(e["model"]))
                if use_shared:
                    windows, ids, desc, _ = golden_windows_for_model(e["model"], golden_n, split_seed, golden_hop_s)
                else:
                    windows, ids, desc = golden_windows_from_recordings(sims, golden_n, split_seed, golden_hop_s, cfg,
                                                                        source="simulator")
                save_golden_windows(out / name, windows, ids, desc, cfg, n=golden_n, hop_s=golden_hop_s, seed=split_seed,
                                    shared=use_shared)
                windows_files[name] = {"file": name, "n": len(windows), "description": desc,
                                       "sample_rate_hz": cfg.target_sample_rate_hz}
                log(f"golden windows ({name}): {desc}")
            e["golden_windows"] = name

        commit = (_git("rev-parse", "HEAD") or "").strip() or None
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        manifest: dict[str, Any] = {
            "schema": CARRY_SCHEMA,
            "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "anyppg_edge_version": __version__,
            "git_commit": commit,
            "git_dirty": bool(dirty.strip()) if dirty is not None else None,
            "code_sha256": _code_sha256(),
            "shards": {"dir": "shards", "hop_s": hop_s, "ecg_quality": ecg_quality, "split_seed": split_seed,
                       "total": summary.get("total", {}), "datasets": sorted(summary.get("datasets", {}))},
            "golden_windows": windows_files[_windows_file(ref_rate, ref_rate)],
            "golden_windows_files": sorted(windows_files.values(), key=lambda w: -w["sample_rate_hz"]),
            **entries,
            "prepare_seconds": round(time.perf_counter() - t0, 2),
        }
        manifest["size_bytes"] = _folder_bytes(out)
        write_json(out / MANIFEST_NAME, manifest)
        return manifest
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


@dataclass
class Carry:
    root: Path
    manifest: dict[str, Any]

    @property
    def shards(self) -> Path:
        return self.root / self.manifest["shards"]["dir"]

    @property
    def golden_windows(self) -> Path:
        """The reference-rate (125 Hz) golden windows: the teacher's and the student's."""
        return self.root / self.manifest["golden_windows"]["file"]

    @property
    def roles(self) -> list[str]:
        """The carried models, in :data:`ROLES` order (a carry folder may have no native student)."""
        return [r for r in ROLES if self.manifest.get(r)]

    def golden_windows_for(self, role: str) -> Path:
        """The golden windows of ``role``'s input contract."""
        return self.root / self.manifest[role].get("golden_windows", self.manifest["golden_windows"]["file"])

    def checkpoint(self, role: str) -> tuple[Path | None, str, dict[str, Any]]:
        e = self.manifest[role]
        return (self.root / e["file"] if e.get("file") else None), e["model"], e


def load_carry(root: str | Path) -> Carry:
    root = Path(root)
    mpath = root / MANIFEST_NAME
    if not mpath.is_file():
        raise UsageError(
            f"no carry folder at {root} ({MANIFEST_NAME} missing): make it with `python -m anyppg_edge gpu-check "
            f"prepare --out {root}` and name it in the device call's carry list"
        )
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{mpath} is not valid JSON: {e}") from e
    if manifest.get("schema") != CARRY_SCHEMA:
        raise DataFormatError(f"{mpath}: unknown schema {manifest.get('schema')!r} (expected {CARRY_SCHEMA!r})")
    return Carry(root, manifest)


def carry_location(carry_dir: str | Path) -> tuple[str, str | None]:
    """``(path relative to the checkout, warning or None)``: the device tool carries ignored paths of
    the checkout only, so a carry folder elsewhere (or one git would commit) gets a warning."""
    p = Path(carry_dir).resolve()
    try:
        rel = p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(carry_dir), (f"{carry_dir} is outside the checkout {REPO_ROOT}: the device call carries paths of the "
                                "checkout only; prepare into an ignored folder of it (default runs/gpu_carry)")
    ignored = _git("check-ignore", "-q", rel)
    if ignored is None and (REPO_ROOT / ".git").exists():
        return rel, f"{rel} is not ignored by git: it would travel uncarried and could be committed; use runs/..."
    return rel, None


def device_call(carry_dir: str = DEFAULT_CARRY, timeout_s: int = 540, extra: str = "") -> dict[str, Any]:
    """The device tool call that runs the check: ``command``, ``carry`` and ``timeout_s``."""
    cmd = (f"PYTHONUNBUFFERED=1 PYTHONPATH=. python3 -m anyppg_edge gpu-check --carry {carry_dir} --out $OUT "
           f"--device cuda{(' ' + extra) if extra else ''}")
    return {"command": cmd, "carry": [carry_dir], "timeout_s": timeout_s}


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------


class _Deadline(Exception):
    """The time budget ran out inside a section (raised by the SIGALRM handler)."""


class _Partial(Exception):
    """A section failed in part: ``result`` holds what it did measure."""

    def __init__(self, message: str, result: dict[str, Any]):
        super().__init__(message)
        self.result = result


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`_Deadline` in the main thread after ``seconds`` (POSIX main thread only)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds <= 0:
        yield
        return

    def handler(signum, frame):
        raise _Deadline(f"time budget reached after {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _torch_flags() -> dict[str, Any]:
    import torch

    return {
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "deterministic_warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }


def _free(device: Any) -> None:
    import torch

    gc.collect()
    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "NOT_ENOUGH_MEMORY", "CUBLAS_STATUS_ALLOC_FAILED"))


class _Run:
    """State of one :func:`run_gpu_check`: the config, device, carry, report and clock."""

    def __init__(self, cfg: GpuCheckConfig, log: Callable[[str], None]):
        import torch

        self.cfg, self.log = cfg, log
        want = cfg.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {cfg.device}: torch {torch.__version__} sees no CUDA device here "
                             "(use --device cpu for the dry run)")
        self.device = torch.device(want)
        if self.device.type == "cuda":
            if self.device.index is None:  # an explicit index: every torch.cuda call then accepts it
                self.device = torch.device("cuda", torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        self.cuda = self.device.type == "cuda"
        self.out = Path(cfg.out_dir)
        self.carry: Carry | None = None
        self.t0 = time.perf_counter()
        self.checks: list[dict[str, Any]] = []
        self.report: dict[str, Any] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def remaining(self) -> float:
        return self.cfg.time_budget_s - self.elapsed()

    def need_carry(self) -> Carry:
        if self.carry is None:
            self.carry = load_carry(self.cfg.carry_dir)
        return self.carry

    def check(self, name: str, row: str | None, passed: bool, detail: str) -> None:
        self.checks.append({"check": name, "tolerance_row": row, "pass": bool(passed), "detail": detail})

    def write(self) -> None:
        self.report["checks"] = self.checks
        self.report["wall_s"] = round(self.elapsed(), 2)
        write_json(self.out / JSON_NAME, self.report)
        atomic_write_text(self.out / MD_NAME, render_markdown(self.report))


# -- sections ---------------------------------------------------------------------------------------


def _nvidia_smi() -> dict[str, Any] | None:
    q = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        p = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    if p.returncode != 0:
        return {"error": p.stderr.strip()[:300]}
    line = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
    return dict(zip(q.split(","), (v.strip() for v in line.split(",")), strict=False))


def _matmul_probe(run: _Run) -> dict[str, Any]:
    """bf16 matrix product rate (the practical ceiling MFU is read against)."""
    import torch

    n = 8192 if run.cuda else 128
    a = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
    reps = 10 if run.cuda else 3
    for _ in range(3):
        a @ b
    if run.cuda:
        torch.cuda.synchronize(run.device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    if run.cuda:
        torch.cuda.synchronize(run.device)
    dt = (time.perf_counter() - t) / reps
    return {"n": n, "dtype": "bfloat16", "reps": reps, "tflops": 2 * n**3 / dt / 1e12}


def _sec_environment(run: _Run) -> dict[str, Any]:
    import scipy
    import torch

    env: dict[str, Any] = {
        "device": str(run.device),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch_threads": torch.get_num_threads(),
        "anyppg_edge": __version__,
        "code_sha256": _code_sha256(),
        "flags_at_start": _torch_flags(),
        "channels_last": CHANNELS_LAST_NOTE,
    }
    if run.cuda:
        props = torch.cuda.get_device_properties(run.device)
        env.update({
            "gpu": props.name,
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "gpu_memory_gib": props.total_memory / 2**30,
            "nvidia_smi": _nvidia_smi(),
            "peak_dense_tflops": peak_tflops(props.name),
        })
    carry = run.carry
    if carry is not None:
        env["carry"] = {k: carry.manifest.get(k) for k in ("created_at", "git_commit", "git_dirty", "code_sha256")}
        env["code_changed_since_prepare"] = carry.manifest.get("code_sha256") != env["code_sha256"]
    env["matmul_probe"] = _matmul_probe(run)
    return env


def _sec_golden(run: _Run) -> dict[str, Any]:
    from anyppg_edge.deploy.parity.golden import load_golden_windows
    from anyppg_edge.deploy.parity.tolerances import GPU_REFERENCE_ROW, TOLERANCE_FOR_KIND
    from anyppg_edge.preprocessing import PreprocessConfig

    carry = run.need_carry()
    row = GPU_REFERENCE_ROW if run.cuda else TOLERANCE_FOR_KIND["pytorch-float"]
    out: dict[str, Any] = {"window_files": {}, "sets": [], "errors": {}}
    loaded: dict[Path, tuple[np.ndarray, list[str], dict[str, Any], Any]] = {}
    for role in carry.roles:  # one failing keeps the others
        try:
            path = carry.golden_windows_for(role)
            if path not in loaded:
                windows, ids, meta = load_golden_windows(path)
                loaded[path] = (windows, ids, meta, PreprocessConfig.from_dict(meta["preprocess"]))
                out["window_files"][path.name] = {"windows": len(windows), "window_source": meta["description"],
                                                  "sample_rate_hz": loaded[path][3].target_sample_rate_hz}
            out["sets"].append(_golden_set(run, role, *loaded[path], row))
        except _Deadline:
            raise
        except Exception as e:
            out["errors"][role] = f"{type(e).__name__}: {str(e)[:800]}"
    if out["errors"]:
        raise _Partial("; ".join(f"{k}: {v}" for k, v in out["errors"].items()), out)
    return out


def _golden_set(run: _Run, role: str, windows: np.ndarray, ids: list[str], meta: dict[str, Any], pcfg: Any,
                row: str) -> dict[str, Any]:
    from anyppg_edge.deploy.parity.golden import golden_embeddings, make_golden_set
    from anyppg_edge.deploy.parity.tolerances import embedding_parity, row_failures
    from anyppg_edge.models.loading import load_encoder

    carry = run.need_carry()
    path, model, entry = carry.checkpoint(role)
    loaded = load_encoder(path, model, name_is_claim=False)
    if loaded.sha256 != entry["sha256"]:
        raise DataFormatError(f"{role} checkpoint {path}: sha256 {loaded.sha256[:12]} differs from the manifest's "
                              f"{entry['sha256'][:12]} (the carry folder changed after prepare)")
    gpath = run.out / f"{loaded.model_name}.{run.device.type}.golden.npz"
    t = time.perf_counter()
    g = make_golden_set(
        loaded.encoder, loaded.model_name, loaded.sha256, windows, ids, gpath, device=str(run.device), cfg=pcfg,
        window_source=meta["description"], batch_size=run.cfg.golden_batch_size,
        created_by=(f"anyppg-edge {__version__} gpu-check ({role}; carry {run.cfg.carry_dir}, "
                    f"prepared {carry.manifest.get('created_at')})"),
        extra_provenance={"gpu_check": {"role": role, "checkpoint_source": entry.get("source"),
                                        "carry_git_commit": carry.manifest.get("git_commit"),
                                        "code_sha256": _code_sha256()}},
    )
    dev_s = time.perf_counter() - t
    t = time.perf_counter()
    cpu_emb, cpu_info = golden_embeddings(loaded.encoder, g.windows, "cpu", run.cfg.golden_batch_size, pcfg)
    cpu_s = time.perf_counter() - t
    m = embedding_parity(g.embeddings, cpu_emb)
    fails = row_failures(row, m)
    run.check(f"golden {loaded.model_name}: {run.device.type} float vs CPU float", row, not fails,
              "; ".join(fails) or f"rel max abs {m['rel_max_abs']:.3g}, cos min {m['cos_min']:.8f}")
    return {
        "role": role, "model": loaded.model_name, "checkpoint_sha256": loaded.sha256, "file": gpath.name,
        "sample_rate_hz": pcfg.target_sample_rate_hz,
        "provenance_file": gpath.name.removesuffix(".npz") + ".provenance.json",
        "n": len(g), "embedding_dim": int(g.embeddings.shape[1]), "device": g.provenance["device"],
        "device_s": round(dev_s, 3), "cpu_reference_s": round(cpu_s, 3), "cpu_reference_device": cpu_info["name"],
        "vs_cpu": m, "tolerance_row": row, "pass": not fails, "failures": fails,
    }


def _train(run: _Run, device: Any, model: str, steps: int, batch_size: int, precision: str,
           eval_every: int) -> dict[str, Any]:
    """CLIP through the project's trainer (:func:`~anyppg_edge.train.trainer.train_clip`) on the
    carry's shards; the per-step log it writes, read back."""
    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.models.clip import ClipConfig
    from anyppg_edge.train.configs import TrainConfig
    from anyppg_edge.train.trainer import train_clip

    carry = run.need_carry()
    train_ds = ShardDataset(carry.shards, split="train")
    val_ds = ShardDataset(carry.shards, split="val") if eval_every else None
    batch = min(batch_size, len(train_ds))
    with tempfile.TemporaryDirectory(prefix="anyppg_gpu_check_") as tmp:
        tcfg = TrainConfig(lr=run.cfg.train_lr, max_steps=steps, batch_size=batch, precision=precision,
                           seed=run.cfg.seed, eval_every_steps=eval_every, checkpoint_every_steps=0, log_every_steps=1,
                           out_dir=tmp, progress=False, tensorboard=False)
        t = time.perf_counter()
        res = train_clip(train_ds, val_ds if val_ds is not None and len(val_ds) else None,
                         ClipConfig(ppg_model=model, ecg_model=model), tcfg, device=device, embed_val=False)
        seconds = time.perf_counter() - t
        with open(Path(tmp) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    val = [{"step": int(r["step"]), "val_loss": float(r["val_loss"])} for r in rows if r.get("val_loss")]
    return {"model": model, "steps": steps, "batch_size": batch, "train_windows": len(train_ds),
            "val_windows": len(val_ds) if val_ds is not None else None, "precision": precision,
            "autocast": precision == "bf16" and getattr(device, "type", str(device)) == "cuda",
            "losses": losses, "grad_norms": [float(r["grad_norm"]) for r in rows], "val": val, "seconds": seconds,
            "final_train_loss": res.get("final_train_loss")}


@contextlib.contextmanager
def _deterministic(device: Any) -> Iterator[dict[str, Any]]:
    """TF32 off, deterministic algorithms on in warn-only mode (a CUDA backward kernel without a
    deterministic implementation warns instead of failing); the warnings are collected."""
    import torch

    from anyppg_edge.deploy.parity.golden import deterministic_torch

    with deterministic_torch(str(device)) as flags, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.use_deterministic_algorithms(True, warn_only=True)
        info = {**flags, "deterministic_warn_only": True, "nondeterministic_warnings": []}
        try:
            yield info
        finally:
            msgs = sorted({str(w.message).split("\n")[0][:200] for w in caught
                           if "deterministic" in str(w.message).lower()})
            info["nondeterministic_warnings"] = msgs


def _sec_train_match(run: _Run) -> dict[str, Any]:
    import torch

    from anyppg_edge.deploy.parity.tolerances import row_failures
    from anyppg_edge.models.registry import derived_model_name

    cfg = run.cfg
    # dropout off: the CPU and CUDA random streams differ, the masks would differ whatever the code
    model = derived_model_name(cfg.train_model, dropout_p=0.0)
    runs = {}
    for name, dev in (("device", run.device), ("cpu", torch.device("cpu"))):
        with _deterministic(dev) as flags:
            r = _train(run, dev, model, cfg.match_steps, cfg.match_batch_size, "fp32", eval_every=0)
        r["flags"] = flags
        runs[name] = r
        _free(run.device)
    a, b = np.asarray(runs["device"]["losses"]), np.asarray(runs["cpu"]["losses"])
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-30)
    metrics = {"first_loss_rel_err": float(rel[0]), "loss_rel_err": float(rel.max())}
    row = "train-gpu-vs-cpu-fp32"
    fails = row_failures(row, metrics)
    run.check(f"first {len(rel)} CLIP steps: {run.device.type} fp32 vs CPU fp32 ({model})", row, not fails,
              "; ".join(fails) or f"first-step rel err {metrics['first_loss_rel_err']:.3g}, max {metrics['loss_rel_err']:.3g}")
    return {
        "model": model, "steps": cfg.match_steps, "batch_size": runs["cpu"]["batch_size"],
        "compared": f"{run.device.type} vs cpu", "tolerance_row": row, "metrics": metrics, "pass": not fails,
        "per_step": [{"step": i + 1, "device_loss": float(x), "cpu_loss": float(y), "rel_err": float(e)}
                     for i, (x, y, e) in enumerate(zip(a, b, rel, strict=True))],
        "device_flags": runs["device"]["flags"], "cpu_flags": runs["cpu"]["flags"],
        "device_s": round(runs["device"]["seconds"], 3), "cpu_s": round(runs["cpu"]["seconds"], 3),
    }


def _sec_train_run(run: _Run) -> dict[str, Any]:
    cfg = run.cfg
    steps = cfg.train_steps
    r = _train(run, run.device, cfg.train_model, steps, cfg.train_batch_size, "bf16",
               eval_every=max(steps // 3, 1))
    losses = r.pop("losses")
    k = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:k])), float(np.mean(losses[-k:]))
    finite = bool(np.isfinite(losses).all())
    fell = finite and last < first
    chance = math.log(r["batch_size"])
    run.check(f"real run: {steps} {'bf16' if r['autocast'] else 'fp32'} CLIP steps, train loss falls", None, fell,
              f"mean of the first {k} steps {first:.4f} -> last {k} {last:.4f} (chance ln(batch) {chance:.3f})")
    curve_every = max(1, len(losses) // 30)
    return {
        **r, "loss_first_mean": first, "loss_last_mean": last, "mean_over_steps": k, "loss_fell": fell,
        "losses_finite": finite, "chance_loss": chance,
        "loss_curve": [{"step": i + 1, "loss": losses[i]} for i in range(0, len(losses), curve_every)],
        "first_losses": losses[:10],
        "samples_per_s_overall": r["batch_size"] * steps / r["seconds"],
        "note": "wall time includes data loading, validation and checkpoint writes (the trainer as used)",
        "grad_norms": r["grad_norms"][:10],
    }


def _flops(model: str) -> dict[str, Any]:
    """Training FLOPs per sample of the CLIP towers of ``model``: 6 x the forward MACs (forward 2,
    backward 4 FLOPs per MAC) of both Net1D towers (``model_stats``: conv + linear, SE included) and
    both projection heads; the B x B logits are left out (< 0.1 % at batch 256)."""
    from anyppg_edge.models.clip import ClipConfig, ClipModel
    from anyppg_edge.models.net1d import model_stats

    clip = ClipModel(ClipConfig(ppg_model=model, ecg_model=model))
    tower = model_stats(clip.ppg_encoder).macs + model_stats(clip.ecg_encoder).macs
    proj = sum(m.in_features * m.out_features for p in (clip.ppg_proj, clip.ecg_proj) for m in (p.fc1, p.fc2))
    fwd = tower + proj
    return {"forward_macs_per_sample": int(fwd), "train_flops_per_sample": 6 * int(fwd),
            "formula": "6 x forward MACs of both towers and projection heads (model_stats)"}


def _annotate(r: dict[str, Any], flops: dict[str, Any], peaks: dict[str, float] | None) -> dict[str, Any]:
    sps = r.get("samples_per_s")
    if sps:
        r["tflops"] = flops["train_flops_per_sample"] * sps / 1e12
        if peaks:
            r["mfu_bf16_peak"] = r["tflops"] / peaks["bf16"]
    return r


def _throughput_runs(run: _Run, precisions: list[str], compile_backend: str | None) -> dict[str, Any]:
    import torch

    from anyppg_edge.train.throughput import measure_throughput

    cfg = run.cfg
    flops = _flops(cfg.model)
    peaks = peak_tflops(torch.cuda.get_device_name(run.device)) if run.cuda else None
    rows, errors = [], {}
    for p in precisions:
        if compile_backend and run.remaining() < SECTION_MIN_S["compile"] / 2:
            errors[p] = "skipped: time budget"
            continue
        try:
            r = measure_throughput(cfg.model, cfg.batch_size, cfg.steps, max(cfg.warmup_steps, 2 if compile_backend else 1),
                                   device=str(run.device), precision=p, compile_backend=compile_backend)
            rows.append(_annotate(r, flops, peaks))
            run.log(f"  {p}{' compiled' if compile_backend else ''}: {r['samples_per_s']:.1f} samples/s")
        except _Deadline:
            raise
        except Exception as e:  # one precision failing keeps the others
            errors[p] = f"{type(e).__name__}: {str(e)[:500]}"
        finally:
            if compile_backend:
                torch._dynamo.reset()
            _free(run.device)
    return {"model": cfg.model, "batch_size": cfg.batch_size, "flops": flops, "peak_dense_tflops": peaks,
            "channels_last": CHANNELS_LAST_NOTE, "runs": rows, "errors": errors}


def _sec_throughput(run: _Run) -> dict[str, Any]:
    return _throughput_runs(run, run.cfg.precision_list(), None)


def _sec_compile(run: _Run) -> dict[str, Any]:
    out = _throughput_runs(run, run.cfg.precision_list("compile_precisions"), run.cfg.compile_backend)
    out["backend"] = run.cfg.compile_backend
    if not out["runs"]:
        raise RuntimeError(f"no compiled run succeeded: {out['errors']}")
    return out


def _sec_max_batch(run: _Run) -> dict[str, Any]:
    from anyppg_edge.train.throughput import measure_throughput

    cfg = run.cfg
    trials: list[dict[str, Any]] = []

    def trial(b: int) -> bool | None:
        """True: fits; False: out of memory; None: another error (e.g. a 32-bit index limit)."""
        try:
            r = measure_throughput(cfg.model, b, 1, 1, device=str(run.device), precision="bf16")
        except _Deadline:
            raise
        except Exception as e:
            oom = _is_oom(e)
            trials.append({"batch_size": b, "fits": False, "oom": oom,
                           "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"})
            return False if oom else None
        finally:
            _free(run.device)
        trials.append({"batch_size": b, "fits": True, "step_ms": r["step_ms"], "peak_gpu_mem_gib": r["peak_gpu_mem_gib"]})
        return True

    b, fit, oom, limited_by = cfg.batch_size, None, None, "cap"
    while b <= cfg.max_batch_cap:
        if run.remaining() < SECTION_MIN_S["max_batch"] / 3:
            limited_by = "time budget"
            break
        ok = trial(b)
        if ok:
            fit, b = b, 2 * b
            continue
        oom, limited_by = b, ("out of memory" if ok is False else "error (see trials)")
        break
    step = 64 if cfg.batch_size >= 64 else 1
    for _ in range(3):  # bisection between the last fit and the first OOM
        if fit is None or oom is None or oom - fit <= step or run.remaining() < SECTION_MIN_S["max_batch"] / 3:
            break
        mid = (fit + oom) // 2 // step * step
        if mid <= fit:
            break
        ok = trial(mid)
        if ok is None:
            break
        if ok:
            fit = mid
        else:
            oom = mid
    return {"model": cfg.model, "precision": "bf16 autocast", "largest_fitting_batch": fit,
            "smallest_oom_batch": oom, "limited_by": limited_by, "cap": cfg.max_batch_cap, "trials": trials}


_SECTION_FUNCS: dict[str, Callable[[_Run], dict[str, Any]]] = {
    "environment": _sec_environment, "golden": _sec_golden, "train_match": _sec_train_match,
    "train_run": _sec_train_run, "throughput": _sec_throughput, "max_batch": _sec_max_batch,
    "compile": _sec_compile,
}


def _run_section(run: _Run, name: str) -> None:
    sec = run.report["sections"][name]
    if run.remaining() < SECTION_MIN_S[name]:
        sec.update(status="skipped", reason=f"time budget: {run.remaining():.0f} s left, needs ~{SECTION_MIN_S[name]} s")
    else:
        run.log(f"[gpu-check {run.elapsed():6.1f} s] {name} ...")
        t = time.perf_counter()
        try:
            sec["result"] = _SECTION_FUNCS[name](run)
            sec["status"] = "ok"
        except _Deadline as e:
            sec.update(status="error", error=f"stopped: {e}")
        except _Partial as e:
            sec.update(status="error", error=str(e)[:2000], result=e.result)
        except Exception as e:  # recorded; the next sections still run
            sec.update(status="error", error=f"{type(e).__name__}: {str(e)[:1000]}",
                       traceback=traceback.format_exc()[-4000:])
        finally:
            sec["seconds"] = round(time.perf_counter() - t, 3)
            with contextlib.suppress(Exception):
                _free(run.device)
        run.log(f"[gpu-check {run.elapsed():6.1f} s] {name}: {sec['status']} ({sec['seconds']:.1f} s)"
                + (f" {sec['error']}" if sec.get("error") else ""))
    run.report["files"] = sorted(p.name for p in run.out.iterdir() if p.is_file() and not p.name.startswith("."))
    run.write()


def run_gpu_check(cfg: GpuCheckConfig, log: Callable[[str], None] = print, command: str | None = None) -> dict[str, Any]:
    """Run the sections of ``cfg`` (see the module docstring); write ``gpu_check.json`` and
    ``gpu_check.md`` (and the golden sets) to ``cfg.out_dir`` after every section. Returns the report;
    ``report["passed"]``: every section ran and every check passed."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before any cuBLAS handle exists
    sections = cfg.section_list()
    cfg.precision_list()
    cfg.precision_list("compile_precisions")
    import torch

    run = _Run(cfg, log)
    run.out.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(UsageError, DataFormatError):
        run.carry = load_carry(cfg.carry_dir)  # sections that need it report its absence themselves
    run.report = {
        "schema": SCHEMA,
        "anyppg_edge_version": __version__,
        "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command or " ".join(sys.argv),
        "config": asdict(cfg),
        "device": str(run.device),
        "device_name": torch.cuda.get_device_name(run.device) if run.cuda else f"cpu ({cpu_name()})",
        "carry": run.carry.manifest if run.carry else None,
        "section_order": sections,  # (the JSON's keys are sorted)
        "sections": {s: {"status": "pending"} for s in sections},
        "complete": False,
        "passed": False,
    }
    run.write()
    try:
        with _alarm(run.remaining()):
            for name in sections:
                _run_section(run, name)
    except _Deadline as e:  # the alarm fired between sections: what is left is skipped
        for sec in run.report["sections"].values():
            if sec["status"] == "pending":
                sec.update(status="skipped", reason=f"time budget: {e}")
    statuses = [s["status"] for s in run.report["sections"].values()]
    run.report["complete"] = all(s == "ok" for s in statuses)
    run.report["passed"] = run.report["complete"] and all(c["pass"] for c in run.checks)
    run.report["files"] = sorted({*(p.name for p in run.out.iterdir() if p.is_file() and not p.name.startswith(".")),
                                  JSON_NAME, MD_NAME})
    run.write()
    return run.report


# --------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------


def _g(d: dict | None, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def render_markdown(report: dict[str, Any]) -> str:
    """The human page of a GPU check report (tolerant of failed and skipped sections)."""
    secs = report.get("sections", {})
    secs = {k: secs[k] for k in report.get("section_order", secs) if k in secs}
    res = {k: v.get("result") for k, v in secs.items()}
    verdict = "PASS" if report.get("passed") else ("INCOMPLETE" if not report.get("complete") else "FAIL")
    lines = [
        f"# GPU check: {report.get('device_name', '?')}",
        "",
        f"**{verdict}**: {sum(s.get('status') == 'ok' for s in secs.values())} of {len(secs)} sections ran, "
        f"{sum(c['pass'] for c in report.get('checks', []))} of {len(report.get('checks', []))} checks passed; "
        f"wall {report.get('wall_s', 0):.1f} s (budget {_g(report, 'config', 'time_budget_s', default=0):.0f} s). "
        f"anyppg-edge {report.get('anyppg_edge_version')}, {report.get('created_at')}.",
        "",
        f"Command: `{report.get('command', '')}`",
        "",
        "## Checks",
        "",
        markdown_table([{"check": c["check"], "tolerance row": c["tolerance_row"] or "-",
                         "pass": c["pass"], "detail": c["detail"]} for c in report.get("checks", [])]),
    ]
    env = res.get("environment")
    if env:
        smi = env.get("nvidia_smi") or {}
        fl = env.get("flags_at_start", {})
        rows = [
            ("device", env.get("gpu") or env.get("device")), ("driver", smi.get("driver_version")),
            ("compute capability / SMs", f"{env.get('compute_capability')} / {env.get('multiprocessors')}"
             if env.get("compute_capability") else None),
            ("GPU memory GiB", env.get("gpu_memory_gib")), ("torch / CUDA / cuDNN",
                                                            f"{env['torch']} / {env.get('torch_cuda')} / {env.get('cudnn')}"),
            ("python / numpy / scipy", f"{env['python']} / {env['numpy']} / {env['scipy']}"),
            ("CPU", f"{env['cpu']} ({env['cpu_count']} cores, torch threads {env['torch_threads']})"),
            ("TF32 matmul / cuDNN at start", f"{fl.get('tf32_matmul')} / {fl.get('tf32_cudnn')}"),
            ("deterministic algorithms / cuDNN deterministic / benchmark at start",
             f"{fl.get('deterministic_algorithms')} / {fl.get('cudnn_deterministic')} / {fl.get('cudnn_benchmark')}"),
            ("CUBLAS_WORKSPACE_CONFIG", fl.get("cublas_workspace_config")),
            ("bf16 matmul probe TFLOP/s", f"{_g(env, 'matmul_probe', 'tflops', default=float('nan')):.1f} "
             f"(n = {_g(env, 'matmul_probe', 'n')})"),
            ("dense peak TFLOP/s (datasheet)", env.get("peak_dense_tflops")),
            ("code sha256 (changed since prepare)", f"{env['code_sha256'][:12]} ({env.get('code_changed_since_prepare')})"),
        ]
        lines += ["## Environment", "", markdown_table([{"what": k, "value": v} for k, v in rows if v is not None])]
    for key, title in (("throughput", "Pretraining throughput"), ("compile", "Pretraining throughput, torch.compile")):
        t = res.get(key)
        if not t:
            continue
        lines += [f"## {title} (`{t['model']}` CLIP towers, batch {t['batch_size']})", ""]
        lines.append(markdown_table([{
            "precision": r["precision"], "compile": r.get("compile") or "-", "samples/s": r["samples_per_s"],
            "step ms": r["step_ms"], "first step s": r.get("first_step_s"), "peak GiB": r.get("peak_gpu_mem_gib"),
            "TFLOP/s": r.get("tflops"), "MFU (bf16 peak)": r.get("mfu_bf16_peak"),
            "TF32 matmul/cuDNN": f"{r.get('tf32_matmul')}/{r.get('tf32_cudnn')}"} for r in t["runs"]]))
        lines.append(f"Training FLOPs per sample {t['flops']['train_flops_per_sample'] / 1e9:.3f} G "
                     f"({t['flops']['formula']}); {t['channels_last']}.")
        if t.get("errors"):
            lines.append("Not measured: " + "; ".join(f"{k}: {v}" for k, v in t["errors"].items()))
        lines.append("")
    mb = res.get("max_batch")
    if mb:
        lines += ["## Largest batch (bf16 autocast, eager)", "",
                  f"Largest fitting batch **{mb['largest_fitting_batch']}**, smallest failing "
                  f"{mb['smallest_oom_batch']} (limited by {mb['limited_by']}; cap {mb['cap']}).", "",
                  markdown_table(mb["trials"], ["batch_size", "fits", "step_ms", "peak_gpu_mem_gib", "error"])]
    tr = res.get("train_run")
    if tr:
        lines += ["## Short real run", "",
                  f"`{tr['model']}` CLIP, {tr['steps']} steps x batch {tr['batch_size']} "
                  f"({'bf16 autocast' if tr['autocast'] else 'fp32'}) on {tr['train_windows']} training windows of the "
                  f"carry's shards; train loss {tr['loss_first_mean']:.4f} (first {tr['mean_over_steps']} steps) -> "
                  f"{tr['loss_last_mean']:.4f} (last {tr['mean_over_steps']}), chance {tr['chance_loss']:.3f}; "
                  f"{tr['samples_per_s_overall']:.1f} samples/s overall in {tr['seconds']:.1f} s ({tr['note']}).", "",
                  markdown_table(tr["val"]) if tr["val"] else "", ""]
    tm = res.get("train_match")
    if tm:
        lines += ["## First training steps: device fp32 vs CPU fp32", "",
                  f"`{tm['model']}` (dropout off), batch {tm['batch_size']}, {tm['compared']}; row "
                  f"`{tm['tolerance_row']}`: {'pass' if tm['pass'] else 'FAIL'}. Non-deterministic-op warnings on "
                  f"the device: {tm['device_flags'].get('nondeterministic_warnings') or 'none'}.", "",
                  markdown_table(tm["per_step"])]
    gd = res.get("golden")
    if gd:
        lines += ["## Golden sets", "",
                  *[f"`{name}`: {w['windows']} windows at {w['sample_rate_hz']} Hz: {w['window_source']}.\n"
                    for name, w in gd["window_files"].items()],
                  markdown_table([{"model": s["model"], "Hz": s["sample_rate_hz"], "file": s["file"],
                                   "sha256": s["checkpoint_sha256"][:12],
                                   "max abs vs CPU": s["vs_cpu"]["max_abs"], "rel max abs": s["vs_cpu"]["rel_max_abs"],
                                   "cos min": s["vs_cpu"]["cos_min"], "row": s["tolerance_row"], "pass": s["pass"],
                                   "device s": s["device_s"]} for s in gd["sets"]])]
        if gd.get("errors"):
            lines.append("Not made: " + "; ".join(f"{k}: {v}" for k, v in gd["errors"].items()).replace("\n", " ") + "\n")
    lines += ["## Sections", "", markdown_table([
        {"section": k, "status": v.get("status"), "seconds": v.get("seconds", ""),
         "error / reason": (v.get("error") or v.get("reason") or "").replace("|", "/").replace("\n", " ")[:300]}
        for k, v in secs.items()])]
    return "\n".join(lines) + "\n"
