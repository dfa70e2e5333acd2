"""The measurement core every latency figure of this toolkit goes through, host and device alike.

* :func:`latency_stats`: p50 / p90 / p99 / mean / min / max / std in ms (numpy's linear-interpolation
  percentiles);
* :func:`environment`: where a benchmark ran (CPU model and flags of interest, cores, OS, Python and
  package versions read from the installed distributions, thread variables, load average);
* :class:`RssProbe`: peak RSS of the process and the part added since the probe started (Linux:
  ``/proc/self/clear_refs`` = 5 resets ``VmHWM``; elsewhere the ``getrusage`` ``ru_maxrss`` delta);
* :func:`time_calls`: the timing loop (first call timed on its own, warm-up, timed single-window
  calls with Python's garbage collector off) and :func:`measure`, which opens an encoder and times
  it between an RSS probe's start and finish;
* :func:`preload_runtime`: imports the runtime of an artifact kind before a probe starts, so that the
  RSS delta and load time are the artifact's, not the library's (``.tflite``: ``ai-edge-litert``, or
  the older ``tflite-runtime`` under the same name);
* :func:`json_safe` / :func:`dumps_json`: results as strictly valid JSON (non-finite floats → null).

numpy, the standard library and :mod:`anyppg_edge.errors` only, at module level and below: the device runner
(:mod:`anyppg_edge.deploy.bench.device`) uses this module on a Raspberry Pi with numpy and one runtime.
"""

from __future__ import annotations

import functools
import gc
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.errors import MissingExtraError

__all__ = [
    "BENCH_SCHEMA",
    "FLAGS_OF_INTEREST",
    "PACKAGES",
    "THREAD_ENV_VARS",
    "RssProbe",
    "dumps_json",
    "environment",
    "json_safe",
    "latency_stats",
    "measure",
    "package_version",
    "preload_runtime",
    "runtime_settings",
    "time_calls",
    "worker_env",
]

BENCH_SCHEMA = "anyppg-edge/bench-result/v1"
PACKAGES = ("numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow")
FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
    "neon", "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "min", "max", "std")


# --------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/std (ms) of latency samples; NaN for an empty list."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(LATENCY_KEYS, math.nan)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std()),
    }


# --------------------------------------------------------------------------------------------------
# environment
# --------------------------------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """First value of every key in /proc/cpuinfo (empty off Linux)."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name`` (None when absent); imports nothing."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.cache
def environment() -> dict[str, Any]:
    """Where a benchmark ran: CPU model and flags of interest, cores, OS, Python and package versions
    (read from the installed distributions, nothing heavy is imported), thread variables and load."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    cpu = (
        info.get("model name")
        or info.get("model")  # Raspberry Pi: "Raspberry Pi 4 Model B Rev 1.4"
        or info.get("hardware")
        or platform.processor()
        or platform.machine()
    )
    if "cpu part" in info and "model name" not in info:
        cpu = f"{cpu} (CPU implementer {info.get('cpu implementer', '?')}, part {info['cpu part']})"
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu_model": cpu,
        "cpu_mhz": info.get("cpu mhz"),
        "cpu_flags": sorted(f for f in FLAGS_OF_INTEREST if f in flags),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: package_version(p) for p in PACKAGES},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "loadavg": load,
    }


def worker_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the directory holding the ``anyppg_edge`` package first on ``PYTHONPATH``, so a
    fresh ``python -m anyppg_edge...`` process imports this very checkout."""
    root = str(Path(__file__).resolve().parents[3])
    pp = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": root + (os.pathsep + pp if pp else "")}


# --------------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------------


def _proc_status_kb() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _ru_maxrss_kb() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    m = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(m // 1024) if sys.platform == "darwin" else int(m)  # bytes on macOS, KiB on Linux


class RssProbe:
    """Peak RSS of the process and the part added since construction."""

    def __init__(self) -> None:
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
            self.reset = "VmHWM" in _proc_status_kb()
        except OSError:
            self.reset = False
        self.start_rss_kb = _proc_status_kb().get("VmRSS")
        self.start_max_kb = _ru_maxrss_kb()

    def finish(self) -> dict[str, Any]:
        st = _proc_status_kb()
        if self.reset and self.start_rss_kb is not None and "VmHWM" in st:
            peak = st["VmHWM"]
            return {
                "peak_rss_mb": peak / 1024,
                "rss_delta_mb": (peak - self.start_rss_kb) / 1024,
                "rss_method": "VmHWM after /proc/self/clear_refs reset, minus VmRSS at the reset",
            }
        end_max = _ru_maxrss_kb()
        if end_max is None or self.start_max_kb is None:
            return {"peak_rss_mb": None, "rss_delta_mb": None, "rss_method": "unavailable"}
        return {
            "peak_rss_mb": end_max / 1024,
            "rss_delta_mb": (end_max - self.start_max_kb) / 1024,
            "rss_method": "getrusage ru_maxrss delta (a lower bound when imports peaked higher)",
        }


# --------------------------------------------------------------------------------------------------
# runtimes
# --------------------------------------------------------------------------------------------------

# artifact suffix -> (runtime label, distribution whose version is reported)
RUNTIMES = {".tflite": ("litert", "ai-edge-litert"), ".onnx": ("onnxruntime", "onnxruntime")}


def _alias_tflite_runtime() -> bool:
    """Make ``tflite_runtime.interpreter`` importable as ``ai_edge_litert.interpreter`` (the same
    ``Interpreter`` / ``OpResolverType`` API) when only the older package is installed."""
    import types

    try:
        from tflite_runtime import interpreter as ti
    except ImportError:
        return False
    pkg = types.ModuleType("ai_edge_litert")
    pkg.__path__ = []  # a package, so that "ai_edge_litert.interpreter" resolves from sys.modules
    pkg.interpreter = ti  # type: ignore[attr-defined]
    pkg.ANYPPG_ALIAS_OF = "tflite-runtime"  # type: ignore[attr-defined]
    sys.modules["ai_edge_litert"] = pkg
    sys.modules["ai_edge_litert.interpreter"] = ti
    return True


def preload_runtime(suffix: str) -> tuple[str, str]:
    """Import the runtime for ``.tflite`` / ``.onnx`` now (before an RSS probe starts);
    ``(runtime label, distribution)``. :class:`MissingExtraError` (an ImportError) names the pip
    package to install."""
    suffix = suffix.lower()
    if suffix == ".tflite":
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError as e:
            if not _alias_tflite_runtime():
                raise MissingExtraError(
                    "running a .tflite needs LiteRT: `pip install ai-edge-litert` (or the older tflite-runtime; "
                    "on a host: the [deploy] extra)"
                ) from e
        if getattr(sys.modules["ai_edge_litert"], "ANYPPG_ALIAS_OF", None):
            return "tflite-runtime", "tflite-runtime"
        return RUNTIMES[suffix]
    if suffix == ".onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise MissingExtraError(
                "running a .onnx needs onnxruntime: `pip install onnxruntime` (the [runtime] extra)"
            ) from e
        return RUNTIMES[suffix]
    raise ValueError(f"unknown artifact type {suffix!r} (expected .tflite or .onnx)")


def runtime_settings(
    suffix: str, threads: int, xnnpack: bool = True, int8_allowed: bool = False
) -> dict[str, Any]:
    """The ``settings`` block of a result for a ``.tflite`` / ``.onnx`` artifact."""
    if suffix.lower() == ".tflite":
        return {"threads": int(threads), "batch": 1, "xnnpack": bool(xnnpack)}
    return {
        "threads": int(threads),
        "batch": 1,
        "qdqisint8allowed": bool(int8_allowed),
        "execution_provider": "CPU",
    }


# --------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------


def time_calls(
    run: Callable[[np.ndarray], Any], windows: np.ndarray, warmup: int, runs: int
) -> dict[str, Any]:
    """Time ``run`` on single windows ``[1, 1, L]`` cycling through ``windows`` ``[N, L]``.

    The first call is timed on its own (``first_inference_ms``) and must give finite values
    (RuntimeError otherwise); ``warmup - 1`` more untimed calls follow, then ``runs`` timed calls with
    Python's garbage collector off."""
    if runs < 1 or warmup < 1:
        raise ValueError(f"runs and warmup must be >= 1, got runs={runs}, warmup={warmup}")
    xs = [np.ascontiguousarray(np.asarray(w).reshape(1, 1, -1), dtype=np.float32) for w in windows]
    n = len(xs)
    if n == 0:
        raise ValueError("timing needs at least one window")
    t = time.perf_counter()
    y = np.asarray(run(xs[0]))
    first_ms = (time.perf_counter() - t) * 1e3
    if y.size == 0 or not np.isfinite(y).all():
        raise RuntimeError(f"the first inference gave shape {y.shape} or non-finite values")
    for i in range(1, warmup):
        run(xs[i % n])
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            x = xs[(warmup + i) % n]
            t0 = time.perf_counter_ns()
            run(x)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {"first_inference_ms": first_ms, "latency_ms": latency_stats(samples), "samples_ms": samples}


def measure(
    open_encoder: Callable[[], Any], windows: np.ndarray, warmup: int, runs: int
) -> tuple[Any, dict[str, Any]]:
    """Open an encoder (``open_encoder()``: an object with ``_run`` and ``contract``, e.g. the
    encoders of :mod:`anyppg_edge.deploy.runtime`) and time it: ``(encoder, result part)`` with the
    model identity from its contract, ``load_ms`` (opening, tensor allocation and the contract check),
    :func:`time_calls`'s timings and the :class:`RssProbe` figures. Import the runtime first
    (:func:`preload_runtime`) so that the RSS delta is the artifact's."""
    probe = RssProbe()
    t0 = time.perf_counter()
    enc = open_encoder()
    load_ms = (time.perf_counter() - t0) * 1e3
    timing = time_calls(enc._run, windows, warmup, runs)
    mem = probe.finish()
    c = enc.contract
    return enc, {
        "model_name": c.model_name,
        "artifact_kind": c.artifact_kind,
        "embedding_dim": int(c.embedding_dim),
        "window_samples": int(c.window_samples),
        "load_ms": load_ms,
        **timing,
        **mem,
    }


# --------------------------------------------------------------------------------------------------
# strict JSON
# --------------------------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/Inf floats as None, numpy scalars/arrays as Python values, tuples as lists:
    what ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_json(obj: Any, indent: int | None = 2) -> str:
    """Strictly valid JSON of ``obj`` (:func:`json_safe`; other objects via ``str``)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False, default=str)
