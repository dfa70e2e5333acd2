"""The fp32 floor of a model: the time an fp32 implementation at one core's measured peak needs at least.

:func:`gemm_flops_one_core` measures the fp32 FLOP/s of one core with a single-threaded GEMM (numpy
and, when installed, torch; best of several repeats, by default in a fresh process with every thread
variable set to 1), :func:`peak_flops_one_core` is its best figure, and :func:`fp32_floor_ms` turns a
model's MACs into ``2 x MACs / FLOP/s`` milliseconds. int8 artifacts can beat that floor.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from anyppg_edge.deploy.bench.core import THREAD_ENV_VARS, worker_env

__all__ = ["fp32_floor_ms", "gemm_flops_one_core", "peak_flops_one_core"]


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
            "import json,sys;from anyppg_edge.deploy.bench.floor import _gemm_flops_inprocess as f;"
            f"json.dump(f({int(n)},{int(repeats)}),sys.stdout)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], env=worker_env(env), capture_output=True, text=True, timeout=600
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
