"""How many threads torch uses, and a warning when that is more than the free cores (a shared box)."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import torch

from anyppg_edge.errors import ConfigError

# Measured on a 2-core shared box (one core busy): torch's default of 2 intra-op threads trained ~5x
# slower than 1 thread — threads that wait for a busy core stall every parallel op.
_SLOWDOWN_NOTE = "on a 2-core box with one core busy, 2 threads measured ~5x slower than 1"

log = logging.getLogger("anyppg_edge.train")


def _own_load() -> float:
    """This process's share of the 1-minute load average: its mean CPU use (all threads) over its
    life, weighted by how much of the last minute that life covers (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        age = max(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 1e-3)
    except (OSError, ValueError, IndexError):
        return 0.0
    return time.process_time() / age * (1.0 - math.exp(-age / 60.0))


def free_cores() -> tuple[int, int, float]:
    """``(free, usable, others)``: the cores this process may run on (affinity, capped by a cgroup CPU
    quota), the load average of the other processes (1-minute load minus this process's own share), and
    the usable cores those leave free (at least 1)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            usable = max(1, min(usable, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    try:
        others = max(0.0, os.getloadavg()[0] - _own_load())
    except (OSError, AttributeError):
        others = 0.0
    return max(1, usable - int(others + 0.5)), usable, others


def thread_warning(threads: int, free: int, usable: int, others: float, explicit: bool) -> str | None:
    """The one-line warning for ``threads`` torch threads on ``free`` of ``usable`` cores, or ``None``."""
    if threads <= free:
        return None
    why = "set by --threads" if explicit else "torch's default"
    busy = f", load average {others:.1f} from other processes" if others >= 0.5 else ""
    are = "is" if free == 1 else "are"
    return (f"torch will use {threads} threads ({why}) but only {free} of {usable} cores {are} free{busy}: "
            f"threads waiting for a busy core slow every step ({_SLOWDOWN_NOTE}); pass --threads {free}")


def configure_threads(threads: int | None = None, warn: bool = True) -> int:
    """Set torch's intra-op threads (and its inter-op threads, which torch accepts only before any
    parallel work in the process) to ``threads``; ``None`` keeps torch's default. With ``warn``, log one
    warning when torch would use more threads than the free cores (:func:`free_cores`). Returns the
    intra-op thread count in use."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
        if torch.get_num_interop_threads() != threads:
            try:
                torch.set_num_interop_threads(int(threads))
            except RuntimeError:  # already set, or parallel work has started in this process
                log.debug("inter-op threads stay at %d", torch.get_num_interop_threads())
    n = torch.get_num_threads()
    if warn:
        message = thread_warning(n, *free_cores(), explicit=threads is not None)
        if message:
            log.warning(message)
    return n
