"""Latency benchmark of exported encoders (TFLite, ONNX) and the PyTorch model, one 10 s window at a time.

:func:`bench_artifacts` measures every artifact the same way:

* **load**: wall time to open the artifact (interpreter / session creation, tensor allocation and
  the input-contract check);
* **warm-up**: ``warmup`` untimed runs after the first one (the first is timed on its own,
  ``first_inference_ms``);
* **timed runs**: ``runs`` single-window inferences (batch 1, ``[1, 1, 1250]``), cycling through the
  given real windows; one sample is the runtime call including the int8 (de)quantization of an
  int8-I/O model, excluding the input validation of :meth:`Encoder.embed` (which is the same for
  every runtime). Python's garbage collector is off during the timed loop;
* **statistics**: p50 / p90 / p99 / mean / min / max / std in ms (:func:`latency_stats`, numpy's
  linear-interpolation percentiles), plus every sample (for the plot);
* **memory**: peak RSS of the process and the part attributable to the artifact. With ``isolate``
  each artifact runs in a fresh interpreter process (``python -m anyppg_edge.deploy.bench.latency --worker``)
  whose imports happen first; then the kernel's peak-RSS counter is reset (Linux
  ``/proc/self/clear_refs`` = 5) so ``VmHWM`` after the timed runs minus ``VmRSS`` at the reset is
  what loading and running the artifact cost. Elsewhere the ``getrusage`` ``ru_maxrss`` delta is used;
* **settings and environment**: runtime and version, threads, LiteRT's XNNPACK delegate on/off,
  onnxruntime's ``qdqisint8allowed``, the file size, and :func:`environment` (CPU model and flags,
  cores, OS, Python and package versions, load average) in every result.

:func:`peak_flops_one_core` measures the fp32 FLOP/s of one core with a single-threaded GEMM (numpy
and torch, best of several), and :func:`fp32_floor_ms` turns a model's MACs into the time an fp32
implementation at that peak would need at least (``2 x MACs / FLOP/s``). :func:`write_bench_report`
writes JSON + CSV + a markdown table (with the speed-up of every artifact over a baseline measured in
the same run: these machines are noisy, ratios within one run are the figures that count) + a plot
of the latency distributions.

The result schema (``anyppg-edge/bench-result/v1``) is shared with the portable runner
``export/device_runner.py`` (which must not import this package) and its parser of LiteRT's
``benchmark_model`` output; :func:`latency_stats` and :func:`environment` have twins there, kept in
step by the tests.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import importlib.metadata
import io
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = [
    "BENCH_SCHEMA",
    "bench_artifacts",
    "bench_markdown",
    "environment",
    "floor_markdown",
    "fp32_floor_ms",
    "gemm_flops_one_core",
    "latency_stats",
    "peak_flops_one_core",
    "plot_latencies",
    "speedups",
    "write_bench_report",
]

log = logging.getLogger(__name__)

BENCH_SCHEMA = "anyppg-edge/bench-result/v1"
PACKAGES = ("numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow")
FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
    "neon", "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
WORKER_TIMEOUT_S = 1800


# --------------------------------------------------------------------------------------------------
# statistics and environment (twins in export/device_runner.py: keep in step)
# --------------------------------------------------------------------------------------------------


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/std (ms) of latency samples; NaN for an empty list."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {k: math.nan for k in ("p50", "p90", "p99", "mean", "min", "max", "std")}
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


def _package_version(name: str) -> str | None:
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
        "packages": {p: _package_version(p) for p in PACKAGES},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "loadavg": load,
    }


# --------------------------------------------------------------------------------------------------
# peak fp32 FLOP/s of one core and the fp32 floor
# --------------------------------------------------------------------------------------------------


def _best_gemm_s(fn: Any, repeats: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _gemm_flops_inprocess(n: int, repeats: int) -> dict[str, float]:
    """fp32 GEMM FLOP/s per backend in this process, one thread each."""
    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n**3
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    limit = threadpool_limits(limits=1) if threadpool_limits else contextlib.nullcontext()
    with limit:
        out["numpy"] = flop / _best_gemm_s(lambda: a @ b, repeats)
    try:
        import torch
    except ImportError:
        return out
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        out["torch"] = flop / _best_gemm_s(lambda: torch.mm(ta, tb), repeats)
    finally:
        torch.set_num_threads(old)
    return out


def gemm_flops_one_core(n: int = 1024, repeats: int = 7, isolate: bool = True) -> dict[str, Any]:
    """Single-thread fp32 GEMM throughput (``n x n`` by ``n x n``, best of ``repeats``) per backend.

    ``isolate``: measured in a fresh process with every thread variable set to 1 (numpy's BLAS reads
    them at import). Returns ``{"flops": best FLOP/s, "per_backend": {...}, "n", "repeats", "method"}``."""
    if isolate:
        env = {**os.environ, **dict.fromkeys(THREAD_ENV_VARS, "1")}
        code = (
            "import json,sys;from anyppg_edge.deploy.bench.latency import _gemm_flops_inprocess as f;"
            f"json.dump(f({int(n)},{int(repeats)}),sys.stdout)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=_worker_env(env), capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise RuntimeError(f"GEMM measurement failed: {proc.stderr[-2000:]}")
        per = json.loads(proc.stdout)
    else:
        per = _gemm_flops_inprocess(n, repeats)
    best = max(per, key=per.get)
    return {
        "flops": float(per[best]),
        "backend": best,
        "per_backend": per,
        "n": int(n),
        "repeats": int(repeats),
        "method": f"single-thread fp32 GEMM {n}x{n}x{n}, best of {repeats}, max over numpy/torch",
    }


def peak_flops_one_core(n: int = 1024, repeats: int = 7, isolate: bool = True) -> float:
    """Measured fp32 FLOP/s of one core (best single-thread GEMM of numpy and torch)."""
    return gemm_flops_one_core(n, repeats, isolate)["flops"]


def fp32_floor_ms(macs: float, flops: float) -> float:
    """Lower bound of an fp32 forward pass: ``2 x MACs / FLOP/s``, in milliseconds."""
    if flops <= 0:
        raise ValueError(f"flops must be positive, got {flops!r}")
    return 2.0 * float(macs) / float(flops) * 1e3


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


class _RssProbe:
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
        if self.reset and self.start_rss_kb is not None:
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
# opening artifacts
# --------------------------------------------------------------------------------------------------


def _open_tflite(path: Path, cfg: PreprocessConfig, threads: int, use_xnnpack: bool) -> Any:
    from anyppg_edge.deploy.runtime import TFLiteEncoder

    return TFLiteEncoder(path, cfg, threads=threads, use_xnnpack=use_xnnpack)


def _open(spec: dict[str, Any], module: Any, cfg: PreprocessConfig) -> tuple[Any, dict[str, Any]]:
    """(encoder, {"runtime", "package"}) for one spec."""
    threads = int(spec["threads"])
    kind = spec["kind"]
    if kind == "tflite":
        enc = _open_tflite(Path(spec["path"]), cfg, threads, bool(spec["xnnpack"]))
        return enc, {"runtime": "litert", "package": "ai-edge-litert"}
    if kind == "onnx":
        from anyppg_edge.deploy.runtime import OnnxEncoder

        enc = OnnxEncoder(Path(spec["path"]), cfg, threads=threads, int8_allowed=bool(spec["int8_allowed"]))
        return enc, {"runtime": "onnxruntime", "package": "onnxruntime"}
    if kind == "pytorch":
        import torch

        from anyppg_edge.deploy.runtime import TorchEncoder

        torch.set_num_threads(threads)
        if module is None:
            module = torch.load(spec["module_path"], map_location="cpu", weights_only=False)
        enc = TorchEncoder(module.eval(), cfg=cfg, batch_size=1, threads=threads)
        return enc, {"runtime": "pytorch-eager", "package": "torch"}
    raise ValueError(f"unknown artifact kind {kind!r}")


def _measure(
    spec: dict[str, Any], windows: np.ndarray, module: Any = None, cfg: PreprocessConfig = DEFAULT_CONFIG
) -> dict[str, Any]:
    """Load, warm up and time one artifact in this process; the per-artifact part of a result."""
    probe = _RssProbe()
    t0 = time.perf_counter()
    enc, rt = _open(spec, module, cfg)
    load_ms = (time.perf_counter() - t0) * 1e3
    xs = [np.ascontiguousarray(w.reshape(1, 1, -1), dtype=np.float32) for w in windows]
    n = len(xs)
    t = time.perf_counter()
    y = np.asarray(enc._run(xs[0]))
    first_ms = (time.perf_counter() - t) * 1e3
    if y.shape[0] != 1 or not np.isfinite(y).all():
        raise RuntimeError(f"{spec['name']}: first inference gave shape {y.shape} or non-finite values")
    warmup, runs = int(spec["warmup"]), int(spec["runs"])
    for i in range(1, warmup):
        enc._run(xs[i % n])
    samples: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            x = xs[(warmup + i) % n]
            t = time.perf_counter_ns()
            enc._run(x)
            samples.append((time.perf_counter_ns() - t) / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    mem = probe.finish()
    c = enc.contract
    return {
        "runtime": rt["runtime"],
        "runtime_version": _package_version(rt["package"]),  # after timing: importlib.metadata is slow
        "model_name": c.model_name,
        "artifact_kind": c.artifact_kind,
        "embedding_dim": int(c.embedding_dim),
        "window_samples": int(c.window_samples),
        "load_ms": load_ms,
        "first_inference_ms": first_ms,
        "latency_ms": latency_stats(samples),
        "samples_ms": samples,
        **mem,
    }


# --------------------------------------------------------------------------------------------------
# items → specs, isolation
# --------------------------------------------------------------------------------------------------


def _specs(
    items: Sequence[Any], threads: int, warmup: int, runs: int, xnnpack: Sequence[bool], int8_allowed: bool
) -> list[tuple[dict[str, Any], Any]]:
    common = {"threads": int(threads), "warmup": int(warmup), "runs": int(runs)}
    out: list[tuple[dict[str, Any], Any]] = []
    for item in items:
        if isinstance(item, tuple | list) and item and item[0] == "pytorch":
            module = item[1]
            name = item[2] if len(item) > 2 else getattr(module, "name", type(module).__name__)
            spec = {
                **common, "kind": "pytorch", "name": f"{name} (PyTorch eager)", "path": None,
                "settings": {"threads": int(threads), "batch": 1, "precision": "float32"},
            }  # fmt: skip
            out.append((spec, module))
            continue
        if not isinstance(item, str | os.PathLike):
            raise TypeError(
                f"bench items are .tflite/.onnx paths or ('pytorch', nn.Module, name) tuples, got {item!r}"
            )
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"artifact not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".tflite":
            for xnn in xnnpack:
                name = path.name if xnn else f"{path.name} (no XNNPACK)"
                settings = {"threads": int(threads), "batch": 1, "xnnpack": bool(xnn)}
                out.append(
                    (
                        {
                            **common,
                            "kind": "tflite",
                            "name": name,
                            "path": str(path),
                            "xnnpack": bool(xnn),
                            "settings": settings,
                        },
                        None,
                    )
                )
        elif suffix == ".onnx":
            settings = {
                "threads": int(threads),
                "batch": 1,
                "qdqisint8allowed": bool(int8_allowed),
                "execution_provider": "CPU",
            }
            out.append(
                (
                    {
                        **common,
                        "kind": "onnx",
                        "name": path.name,
                        "path": str(path),
                        "int8_allowed": bool(int8_allowed),
                        "settings": settings,
                    },
                    None,
                )
            )
        else:
            raise ValueError(f"{path}: cannot bench {suffix!r} (expected .tflite or .onnx)")
    return out


def _worker_env(env: dict[str, str]) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    pp = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": root + (os.pathsep + pp if pp else "")}


def _run_isolated(
    spec: dict[str, Any], module: Any, windows_path: Path, tmp: Path, i: int, cfg: PreprocessConfig
) -> dict[str, Any]:
    spec = dict(spec)
    if module is not None:
        import torch

        spec["module_path"] = str(tmp / f"module_{i}.pt")
        try:
            torch.save(module, spec["module_path"])
        except Exception as e:  # a module whose class cannot be pickled (defined in a function, ...)
            log.warning("%s cannot be pickled for a fresh process (%s); measured in-process", spec["name"], e)
            return {**_measure(spec, np.load(windows_path), module, cfg), "isolated": False}
    spec_path, out_path = tmp / f"spec_{i}.json", tmp / f"result_{i}.json"
    spec_path.write_text(json.dumps({**spec, "windows": str(windows_path), "config": cfg.to_dict()}))
    threads = str(spec["threads"])
    env = _worker_env({**os.environ, **dict.fromkeys(THREAD_ENV_VARS, threads)})
    proc = subprocess.run(
        [sys.executable, "-m", "anyppg_edge.deploy.bench.latency", "--worker", str(spec_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-8:]
        raise RuntimeError(f"worker exited with {proc.returncode}: " + " | ".join(tail))
    return {**json.loads(out_path.read_text()), "isolated": True}


def _model_cost(model_name: str, module: Any, window_samples: int) -> dict[str, Any]:
    """MACs and params of the model behind an artifact (registry config by name, or the module)."""
    try:
        from anyppg_edge.models.net1d import model_stats

        if module is not None:
            s = model_stats(module, window_samples)
        else:
            from anyppg_edge.models.registry import create_model, list_models

            if model_name not in list_models():
                return {"macs": None, "params": None}
            s = model_stats(create_model(model_name), window_samples)
        return {"macs": int(s.macs), "params": int(s.params)}
    except Exception as e:  # no torch on a device install, an unregistered model, ...
        log.debug("no MACs for %s: %s", model_name, e)
        return {"macs": None, "params": None}


def _error_result(spec: dict[str, Any], err: BaseException | str) -> dict[str, Any]:
    return {"runtime": None, "latency_ms": latency_stats([]), "samples_ms": [], "error": str(err)}


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------


def bench_artifacts(
    items: Sequence[Any],
    windows: Any,
    threads: int = 1,
    warmup: int = 20,
    runs: int = 200,
    xnnpack: Sequence[bool] = (True,),
    isolate: bool = True,
    onnx_int8_allowed: bool = False,
    peak_flops: float | None = None,
    measure_flops: bool = True,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
) -> list[dict[str, Any]]:
    """Benchmark every item on single windows; one result dict per artifact x XNNPACK setting.

    ``items``: ``.tflite`` / ``.onnx`` paths and/or ``("pytorch", nn.Module, name)`` tuples;
    ``windows``: preprocessed windows ``[N, L]`` (cycled through by the runs); ``xnnpack``: the
    XNNPACK settings to run every TFLite artifact with (``(True, False)`` runs both);
    ``isolate``: each artifact in a fresh process (attributable peak RSS, no interference between
    runtimes); ``peak_flops``: fp32 FLOP/s of one core for the floor (measured once when None and
    ``measure_flops``). An artifact that fails (contract mismatch, runtime error) gets a result with
    ``error`` set and NaN latencies; the others still run."""
    from anyppg_edge.deploy.runtime import validate_windows

    if runs < 1 or warmup < 1:
        raise ValueError(f"runs and warmup must be >= 1, got runs={runs}, warmup={warmup}")
    w = validate_windows(windows, cfg.window_samples)[:, 0, :]
    if len(w) == 0:
        raise ValueError("bench_artifacts needs at least one window")
    specs = _specs(items, threads, warmup, runs, tuple(xnnpack), onnx_int8_allowed)
    env = environment()
    flops_info: dict[str, Any] | None = None
    if peak_flops is None and measure_flops:
        flops_info = gemm_flops_one_core(isolate=isolate)
        peak_flops = flops_info["flops"]
    results: list[dict[str, Any]] = []
    costs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="anyppg_bench_") as tmpdir:
        tmp = Path(tmpdir)
        windows_path = tmp / "windows.npy"
        np.save(windows_path, w)
        for i, (spec, module) in enumerate(specs):
            log.info("bench %d/%d: %s", i + 1, len(specs), spec["name"])
            try:
                part = (
                    _run_isolated(spec, module, windows_path, tmp, i, cfg)
                    if isolate
                    else {**_measure(spec, w, module, cfg), "isolated": False}
                )
                part.setdefault("error", None)
            except Exception as e:  # recorded, the other artifacts still run
                log.error("bench %s failed: %s", spec["name"], e)
                part = {**_error_result(spec, e), "isolated": isolate}
            path = Path(spec["path"]) if spec["path"] else None
            res: dict[str, Any] = {
                "schema": BENCH_SCHEMA,
                "name": spec["name"],
                "artifact": str(path) if path else None,
                "file_bytes": path.stat().st_size if path else None,
                "settings": spec["settings"],
                "warmup": int(warmup),
                "runs": int(runs),
                "n_windows": len(w),
                "input": "real preprocessed windows",
                **part,
            }
            name = res.get("model_name")
            if name and res.get("error") is None:
                key = f"{name}@{id(module) if module is not None else 'registry'}"
                if key not in costs:
                    costs[key] = _model_cost(name, module, int(res.get("window_samples", cfg.window_samples)))
                res.update(costs[key])
            else:
                res.update({"macs": None, "params": None})
            floor = fp32_floor_ms(res["macs"], peak_flops) if res["macs"] and peak_flops else None
            p50 = res["latency_ms"]["p50"]
            res["peak_flops_one_core"] = peak_flops
            res["fp32_floor_ms"] = floor
            res["p50_over_fp32_floor"] = p50 / floor if floor and math.isfinite(p50) else None
            if flops_info is not None:
                res["peak_flops_method"] = flops_info["method"]
            res["environment"] = env
            results.append(res)
    return results


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def _ok(r: dict[str, Any]) -> bool:
    return not r.get("error") and math.isfinite(r["latency_ms"].get("p50") or math.nan)


def _baseline_index(results: Sequence[dict[str, Any]], baseline: str | int | None) -> int | None:
    ok = [i for i, r in enumerate(results) if _ok(r)]
    if not ok:
        return None
    if isinstance(baseline, int):
        return baseline
    if isinstance(baseline, str):
        for i in ok:
            if results[i]["name"] == baseline or results[i].get("artifact") == baseline:
                return i
        for i in ok:
            if baseline in results[i]["name"]:
                return i
        raise KeyError(f"baseline {baseline!r} is not among the results: {[r['name'] for r in results]}")
    for i in ok:  # default: the PyTorch eager model, else the first result
        if results[i].get("runtime") == "pytorch-eager":
            return i
    return ok[0]


def speedups(
    results: Sequence[dict[str, Any]], baseline: str | int | None = None
) -> tuple[str | None, list[float | None]]:
    """(baseline name, p50 speed-up of every result over it): ``baseline p50 / result p50``."""
    b = _baseline_index(results, baseline)
    if b is None:
        return None, [None] * len(results)
    base = results[b]["latency_ms"]["p50"]
    return results[b]["name"], [base / r["latency_ms"]["p50"] if _ok(r) else None for r in results]


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _rows(
    results: Sequence[dict[str, Any]], baseline: str | int | None
) -> tuple[str | None, list[dict[str, Any]]]:
    bname, ups = speedups(results, baseline)
    rows = []
    for r, up in zip(results, ups, strict=True):
        lat, s = r["latency_ms"], r.get("settings") or {}
        rows.append(
            {
                "artifact": r["name"],
                "kind": r.get("artifact_kind"),
                "runtime": r.get("runtime"),
                "threads": s.get("threads"),
                "xnnpack": s.get("xnnpack"),
                "size_mb": r["file_bytes"] / 1e6 if r.get("file_bytes") else None,
                "load_ms": r.get("load_ms"),
                "first_ms": r.get("first_inference_ms"),
                "p50_ms": lat.get("p50"),
                "p90_ms": lat.get("p90"),
                "p99_ms": lat.get("p99"),
                "mean_ms": lat.get("mean"),
                "min_ms": lat.get("min"),
                "peak_rss_mb": r.get("peak_rss_mb"),
                "rss_delta_mb": r.get("rss_delta_mb"),
                "mmacs": r["macs"] / 1e6 if r.get("macs") else None,
                "fp32_floor_ms": r.get("fp32_floor_ms"),
                "p50_over_floor": r.get("p50_over_fp32_floor"),
                "speedup": up,
                "error": r.get("error"),
            }
        )
    return bname, rows


def bench_markdown(results: Sequence[dict[str, Any]], baseline: str | int | None = None) -> str:
    """The results as markdown: the latency table with speed-ups over ``baseline`` (default: the
    PyTorch eager model, else the first result), the fp32 floor of every model next to the measured
    int8 p50s, and the environment."""
    bname, rows = _rows(results, baseline)
    cols = [
        ("artifact", "artifact"), ("kind", "kind"), ("runtime", "runtime"), ("threads", "threads"),
        ("xnnpack", "XNNPACK"), ("size_mb", "size MB"), ("load_ms", "load ms"), ("p50_ms", "p50 ms"),
        ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"), ("min_ms", "min ms"),
        ("peak_rss_mb", "peak RSS MB"), ("rss_delta_mb", "ΔRSS MB"), ("speedup", f"× vs {bname}"),
    ]  # fmt: skip
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for k, _ in cols:
            v = row[k]
            if k == "xnnpack":
                v = "—" if v is None else ("on" if v else "off")
            elif k == "speedup" and v is not None:
                v = f"{v:.2f}×"
            cells.append(_f(v) if not isinstance(v, str) else v)
        out.append("| " + " | ".join(cells) + " |")
    errors = [(r["artifact"], r["error"]) for r in rows if r["error"]]
    text = "\n".join(out) + "\n"
    if errors:
        text += "\n**Failed:**\n" + "".join(f"- {a}: {e}\n" for a, e in errors)
    text += "\n" + floor_markdown(results)
    env = next((r.get("environment") for r in results if r.get("environment")), None)
    if env:
        p = env["packages"]
        text += (
            f"\nMachine: {env['cpu_model']} ({env['machine']}, {env['cores']} cores, flags: "
            f"{', '.join(env['cpu_flags']) or 'none of interest'}), {env['os']}, Python {env['python']}; "
            + ", ".join(f"{k} {v}" for k, v in p.items() if v)
            + f". Load average at start: {env.get('loadavg')}.\n"
        )
    r0 = results[0] if results else {}
    text += (
        f"\nOne window of {r0.get('window_samples', 1250)} samples per run (batch 1), "
        f"{r0.get('warmup')} warm-up runs, {r0.get('runs')} timed runs cycling through "
        f"{r0.get('n_windows')} windows; each artifact in {'a fresh process' if r0.get('isolated') else 'this process'}. "
        "Ratios between rows of this table are the figures to quote; absolute times move with the machine's load.\n"
    )
    return text


def floor_markdown(results: Sequence[dict[str, Any]]) -> str:
    """Per model: MACs, fp32 floor (``2 x MACs / one core's measured peak FLOP/s``) and the measured
    p50 of each of its artifacts as a multiple of that floor (int8 artifacts can beat it)."""
    rows = [r for r in results if _ok(r) and r.get("fp32_floor_ms")]
    if not rows:
        return "_(no fp32 floor: MACs or peak FLOP/s unknown)_\n"
    flops = rows[0]["peak_flops_one_core"]
    out = [
        f"fp32 floor = 2 × MACs / {flops / 1e9:.1f} GFLOP/s (measured single-thread fp32 GEMM peak of one core):",
        "",
        "| model | MMACs/window | fp32 floor ms | artifact | kind | p50 ms | p50 / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r.get("model_name") or "", r["name"])):
        out.append(
            f"| {r.get('model_name')} | {r['macs'] / 1e6:.2f} | {r['fp32_floor_ms']:.3g} | {r['name']} | "
            f"{r.get('artifact_kind')} | {r['latency_ms']['p50']:.3g} | {r['p50_over_fp32_floor']:.2f} |"
        )
    return "\n".join(out) + "\n"


def plot_latencies(results: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Box plot (whiskers p1–p99, outliers shown) of the per-run latencies of every artifact."""
    rows = [r for r in results if _ok(r) and r.get("samples_ms")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [np.asarray(r["samples_ms"]) for r in rows]
    labels = [r["name"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.6))
    box = {"whis": (1, 99), "showfliers": True, "flierprops": {"markersize": 2, "alpha": 0.5}}
    try:
        ax.boxplot(data, orientation="horizontal", **box)  # matplotlib >= 3.10
    except TypeError:
        ax.boxplot(data, vert=False, **box)
    ax.set_yticks(range(1, len(rows) + 1), labels, fontsize=8)
    ax.invert_yaxis()
    lo, hi = min(d.min() for d in data), max(d.max() for d in data)
    if hi / max(lo, 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per 10 s window, ms (batch 1)")
    env = rows[0].get("environment") or {}
    th = (rows[0].get("settings") or {}).get("threads")
    ax.set_title(f"{env.get('cpu_model', '')}, {th} thread(s): box p25–p75, whiskers p1–p99", fontsize=9)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_bench_report(
    results: Sequence[dict[str, Any]],
    out_dir: str | Path,
    baseline: str | int | None = None,
    plot: bool = True,
) -> dict[str, Path]:
    """Write ``bench.json`` (every result, samples included), ``bench.csv`` (one row per result),
    ``bench.md`` (:func:`bench_markdown`) and ``bench.png`` (:func:`plot_latencies`) into ``out_dir``."""
    from anyppg_edge.io import atomic_write_text, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bname, rows = _rows(results, baseline)
    paths: dict[str, Path] = {}
    doc = {
        "schema": BENCH_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "baseline": bname,
        "results": list(results),
    }
    paths["json"] = write_json(out / "bench.json", doc)
    buf = io.StringIO()
    wr = csv.DictWriter(
        buf, fieldnames=[*rows[0].keys(), "model_name", "environment"] if rows else ["artifact"]
    )
    wr.writeheader()
    for row, r in zip(rows, results, strict=True):
        env = r.get("environment") or {}
        wr.writerow(
            {
                **row,
                "model_name": r.get("model_name"),
                "environment": f"{env.get('cpu_model')}; {env.get('os')}",
            }
        )
    paths["csv"] = atomic_write_text(out / "bench.csv", buf.getvalue())
    paths["md"] = atomic_write_text(
        out / "bench.md", "# Latency benchmark\n\n" + bench_markdown(results, baseline)
    )
    if plot:
        png = plot_latencies(results, out / "bench.png")
        if png is not None:
            paths["png"] = png
    return paths


# --------------------------------------------------------------------------------------------------
# worker process
# --------------------------------------------------------------------------------------------------


def _worker(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    windows = np.load(spec["windows"])
    cfg = PreprocessConfig.from_dict(spec["config"])
    # Import the runtime before the memory probe starts, so RSS counts the artifact, not the library.
    if spec["kind"] == "tflite":
        import ai_edge_litert.interpreter  # noqa: F401
    elif spec["kind"] == "onnx":
        import onnxruntime  # noqa: F401
    else:
        import torch  # noqa: F401

        import anyppg_edge.models.net1d
    import anyppg_edge.deploy.runtime  # noqa: F401

    res = _measure(spec, windows, None, cfg)
    from anyppg_edge.io import write_json

    write_json(out_path, res)
    return 0


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m anyppg_edge.deploy.bench.latency", description="bench worker (internal)"
    )
    ap.add_argument("--worker", nargs=2, metavar=("SPEC_JSON", "OUT_JSON"), required=True)
    args = ap.parse_args(argv)
    return _worker(*args.worker)


if __name__ == "__main__":
    sys.exit(_main())
