"""Shard I/O benchmark (``anyppg-edge bench-shards``): writes synthetic float16 windows in the shard
format (a valid index included), then reads them back through
:meth:`~anyppg_edge.data.shard_dataset.ShardDataset.get_batch` in random-order and sequential batches,
cold (page cache dropped where the OS allows) and warm, and reports windows/s."""


from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.data.shard_dataset import ShardDataset
from anyppg_edge.data.shards import (
    FORMAT_VERSION,
    SHARDS_DIR,
    _atomic_write_json,
    _check_folder_config,
    write_index,
)
from anyppg_edge.io import atomic_write
from anyppg_edge.preprocessing import PreprocessConfig


def _write_synthetic(out: Path, n_windows: int, windows_per_shard: int, L: int, seed: int) -> dict:
    """Random float16 windows written straight in the shard format (sidecars + index), no preprocessing."""
    cfg = PreprocessConfig()
    _check_folder_config(out, cfg)
    sdir = out / SHARDS_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # one random pool reused with per-shard offsets: fast to make, still incompressible-looking data
    pool = rng.standard_normal((windows_per_shard + 64, 2, L), dtype=np.float32).astype(np.float16)
    written = 0
    k = 0
    while written < n_windows:
        n = min(windows_per_shard, n_windows - written)
        off = int(rng.integers(0, 64))
        arr = pool[off : off + n]
        sid = f"bench_{k:05d}"
        atomic_write(sdir / f"{sid}.npy", lambda f, a=arr: np.save(f, a, allow_pickle=False))
        _atomic_write_json(
            sdir / f"{sid}.json",
            {
                "format_version": FORMAT_VERSION,
                "safe_id": sid,
                "source": "synthetic",
                "subject_id": f"bench/S{k:05d}",
                "dataset": "synthetic",
                "shard": f"{sid}.npy",
                "n_windows": n,
                "window_samples": L,
                "sample_rate_hz": cfg.target_sample_rate_hz,
                "dtype": "float16",
                "hop_s": cfg.window_s,
                "ecg_quality": False,
                "start_s": (np.arange(n) * cfg.window_s).tolist(),
                "rejected": {},
                "config_hash": cfg.config_hash(),
                "config": cfg.to_dict(),
            },
        )
        written += n
        k += 1
    return {"n_shards": k}


def _evict(paths: Iterable[Path]) -> bool:
    """Ask the kernel to drop these (clean, fsynced) files from the page cache, for a cold read."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _iterate(ds: ShardDataset, order: np.ndarray, batch_size: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    checksum = 0.0
    for a in range(0, order.size, batch_size):
        ppg, ecg = ds.get_batch(order[a : a + batch_size])
        checksum += float(ppg[0, 0, 0]) + float(ecg[-1, 0, -1])
    dt = time.perf_counter() - t0
    return order.size / dt, dt


def benchmark_shards(
    n_windows: int = 100_000,
    out_dir: str | os.PathLike | None = None,
    windows_per_shard: int = 2880,
    batch_size: int = 256,
    seed: int = 0,
    keep: bool = False,
    json_path: str | os.PathLike | None = None,
) -> dict:
    """Write ``n_windows`` synthetic float16 windows as shards (default 2,880 windows = one 8 h
    night per shard), then read them all through :meth:`ShardDataset.get_batch` in batches of
    ``batch_size``: random order and sequential, each first cold (files dropped from the page cache
    with ``posix_fadvise(DONTNEED)`` where available) and then warm. Returns (and with ``json_path``
    writes) windows/s figures and the size on disk. The folder is deleted unless ``keep``.
    """
    import shutil

    L = PreprocessConfig().window_samples
    if out_dir is None:
        out = Path(tempfile.mkdtemp(prefix="anyppg_shard_bench_"))
    else:
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"benchmark folder {out} is not empty; give a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        info = _write_synthetic(out, n_windows, windows_per_shard, L, seed)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_index(out, seed=seed, verify_shards=False)
        t_index = time.perf_counter() - t0
        shard_paths = sorted((out / SHARDS_DIR).glob("*.npy"))
        disk = sum(p.stat().st_size for p in shard_paths)
        ds = ShardDataset(out, split="all")
        rng = np.random.default_rng(seed)
        res: dict[str, Any] = {
            "n_windows": n_windows,
            "n_shards": info["n_shards"],
            "windows_per_shard": windows_per_shard,
            "batch_size": batch_size,
            "dtype": "float16",
            "window_shape": [2, L],
            "shard_bytes_on_disk": disk,
            "bytes_per_window": disk / n_windows,
            "mb_per_hour_of_recording": disk / n_windows * 360 / 1e6,
            "write_windows_per_s": n_windows / t_write,
            "write_seconds": t_write,
            "index_seconds": t_index,
            "cpu_count": os.cpu_count(),
        }
        perm = rng.permutation(n_windows)
        seq = np.arange(n_windows)
        cold = _evict(shard_paths)
        res["cold_cache_available"] = cold
        if cold:
            res["random_cold_windows_per_s"], _ = _iterate(ds, perm, batch_size)
            ds = ShardDataset(out, split="all")
            _evict(shard_paths)
            res["sequential_cold_windows_per_s"], _ = _iterate(ds, seq, batch_size)
        res["random_windows_per_s"], _ = _iterate(ds, perm, batch_size)
        res["sequential_windows_per_s"], _ = _iterate(ds, seq, batch_size)
        t0 = time.perf_counter()
        n_items = min(20_000, n_windows)
        for i in perm[:n_items]:
            ds[int(i)]
        res["getitem_windows_per_s"] = n_items / (time.perf_counter() - t0)
        res["bar_windows_per_s"] = 20_000
        res["meets_bar"] = bool(min(res["random_windows_per_s"], res["sequential_windows_per_s"]) >= 20_000)
        if json_path is not None:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(res, indent=1))
        return res
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def bench_shards_text(res: dict) -> str:
    """The figures of :func:`benchmark_shards` as ``bench-shards`` prints them."""
    lines: list[str] = []
    lines.append(
        f"{res['n_windows']:,} windows in {res['n_shards']} shards, "
        f"{res['shard_bytes_on_disk'] / 1e6:.1f} MB on disk ({res['bytes_per_window']:.0f} B/window, "
        f"{res['mb_per_hour_of_recording']:.2f} MB per hour of recording)"
    )
    lines.append(f"write              {res['write_windows_per_s']:>12,.0f} windows/s")
    for key in ("random_cold", "sequential_cold", "random", "sequential"):
        if f"{key}_windows_per_s" in res:
            label = key.replace("_cold", " (cold)") if "cold" in key else key + " (warm)"
            lines.append(
                f"{label:<18} {res[key + '_windows_per_s']:>12,.0f} windows/s (get_batch, batch {res['batch_size']})"
            )
    lines.append(f"__getitem__        {res['getitem_windows_per_s']:>12,.0f} windows/s (torch tensors, one by one)")
    lines.append(f"bar {res['bar_windows_per_s']:,} windows/s: {'met' if res['meets_bar'] else 'NOT met'}")
    return "\n".join(lines)
