"""A generic PyTorch/DDP training loop (AdamW, warm-up + cosine, clipping, bf16 on CUDA, exact resume).

A *task* is an ``nn.Module`` whose ``forward(batch) -> dict[str, Tensor]`` returns losses (keys
ending ``_loss`` are summed into the objective, open_clip's convention) and optional scalar metrics
(e.g. ``logit_scale``); an ``embed(batch)`` method is used by :meth:`Trainer.embed`. CLIP pretraining
is :class:`~anyppg_edge.train.clip.ClipTask`; distillation will plug in another task.

Launch with ``torchrun --nproc_per_node=N ...``: :func:`train_clip` initialises the process group
from the environment, wraps the task in ``DistributedDataParallel`` and shards batches by rank.

Exact resume: a checkpoint holds the model, optimizer, scheduler, step, the sampler position
(epoch, batches consumed in that epoch) and the RNG states of every rank; a run resumed from
``last.pt`` continues with the next batch of the same epoch and reaches bit-identical weights to an
uninterrupted run (CPU, ``num_workers=0``, same thread count). A resume that changes what shapes the
trajectory (learning rate, batch, seed, model, augmentation, ...) is refused; bookkeeping changes (more
``max_steps``, evaluation/checkpoint cadence, workers, threads) are applied and recorded — the policy
is :data:`~anyppg_edge.train.configs.RESUME_REFUSED` / :data:`~anyppg_edge.train.configs.RESUME_APPLIED`.

Faults stop a run with a :class:`~anyppg_edge.errors.ConfigError` instead of training on garbage: a
batch larger than the training set, and a non-finite loss or gradient norm (the step is not applied, so
``last.pt`` keeps the last finite weights). A resumed ``last.pt`` holding NaN/Inf weights is a
:class:`~anyppg_edge.errors.CheckpointError`.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, Sampler

from anyppg_edge.errors import CheckpointError, ConfigError
from anyppg_edge.io import atomic_write, remove_stale_temporaries
from anyppg_edge.models.checkpoint import TRAINER_CHECKPOINT_FORMAT, check_finite, torch_load
from anyppg_edge.models.clip import ClipConfig, ClipModel
from anyppg_edge.train import distributed as D
from anyppg_edge.train.augment import AugmentConfig
from anyppg_edge.train.clip import ClipLoss, ClipTask
from anyppg_edge.train.configs import RESUME_REFUSED, TRAIN_CLI_FLAGS, DistillConfig, TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "ClipTask",
    "PairedArrayDataset",
    "ShardedBatchSampler",
    "TensorDictDataset",
    "TrainConfig",
    "Trainer",
    "WarmupCosine",
    "atomic_torch_save",
    "build_optimizer",
    "check_batch_fits",
    "check_resume",
    "configure_threads",
    "load_checkpoint",
    "seed_everything",
    "train_clip",
]

CHECKPOINT_FORMAT = TRAINER_CHECKPOINT_FORMAT
log = logging.getLogger("anyppg_edge.train")
_METRIC_FIELDS = ["step", "epoch", "lr", "loss", "val_loss", "samples_per_s", "logit_scale", "grad_norm"]


class PairedArrayDataset(Dataset):
    """In-memory paired windows ``[N, L]`` (e.g. a :class:`~anyppg_edge.data.windows.WindowSet`'s arrays)
    → items ``{"ppg": float32 [1, L], "ecg": float32 [1, L]}``, the format the trainer consumes."""

    def __init__(
        self, ppg: np.ndarray | torch.Tensor, ecg: np.ndarray | torch.Tensor, groups: np.ndarray | None = None
    ):
        self.ppg = torch.as_tensor(np.asarray(ppg, dtype=np.float32))
        self.ecg = torch.as_tensor(np.asarray(ecg, dtype=np.float32))
        self.groups = None if groups is None else np.asarray(groups)  # e.g. subject ids, for group_batches
        if self.ppg.dim() != 2 or self.ppg.shape != self.ecg.shape:
            raise ConfigError(
                f"ppg and ecg must both be [N, L] with the same shape, got {tuple(self.ppg.shape)} "
                f"and {tuple(self.ecg.shape)}"
            )

    def __len__(self) -> int:
        return len(self.ppg)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"ppg": self.ppg[i].unsqueeze(0), "ecg": self.ecg[i].unsqueeze(0)}


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches that depend only on ``(seed, epoch)``, sharded over ranks.

    Global batch ``g`` of an epoch is the slice ``perm[g*B*W : (g+1)*B*W]`` of a permutation seeded by
    ``(seed, epoch)``; rank ``r`` takes its ``r``-th block of ``B``. Hence a W-rank run sees, per
    step, exactly the batch a single process with batch ``B*W`` sees. ``set_position(epoch, batch)``
    starts mid-epoch (resume). With ``drop_last=False`` (validation, single rank) the last batch may
    be short.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
        groups: np.ndarray | None = None,
        groups_per_batch: int = 1,
    ):
        if groups is not None and len(groups) != n:
            raise ConfigError(f"groups has {len(groups)} labels for {n} items")
        # with groups: the epoch permutation visits groups in random order, each group's items shuffled,
        # so most batches hold one group (e.g. one subject: hard negatives of the same person); with
        # groups_per_batch = k > 1 each global batch is k runs of batch/k items, each run within one
        # group (k subjects per batch: hard negatives, and BatchNorm statistics that are not one person's)
        self.group_codes = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
        gb = batch_size * world_size
        if groups_per_batch < 1 or gb % groups_per_batch:
            raise ConfigError(f"groups_per_batch {groups_per_batch} must divide the global batch {gb}")
        self.groups_per_batch = int(groups_per_batch)
        if drop_last:
            check_batch_fits(n, batch_size, world_size)
        if not drop_last and world_size != 1:
            raise ConfigError("drop_last=False is only supported for a single rank")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.drop_last = rank, world_size, shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        gb = self.batch_size * self.world_size
        return self.n // gb if self.drop_last else math.ceil(self.n / gb)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        ss = np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, int(epoch)])
        rng = np.random.default_rng(ss)
        perm = rng.permutation(self.n)
        if self.group_codes is None:
            return perm
        group_rank = rng.permutation(int(self.group_codes.max()) + 1)[self.group_codes[perm]]
        grouped = perm[np.argsort(group_rank, kind="stable")]
        if self.groups_per_batch == 1:
            return grouped
        # cut every group's run into chunks of batch/k items, deal the chunks in random order so that k
        # consecutive chunks (one global batch) come from k different groups while possible; each group's
        # leftover (< one chunk) goes, shuffled, to the end of the epoch
        c = self.batch_size * self.world_size // self.groups_per_batch
        codes = self.group_codes[grouped]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        chunks, rest = [], []
        for run in np.split(grouped, bounds):
            full = len(run) // c * c
            chunks += np.split(run[:full], full // c) if full else []
            rest.append(run[full:])
        order = rng.permutation(len(chunks)).tolist()
        chunk_group = [int(self.group_codes[ch[0]]) for ch in chunks]
        k = self.groups_per_batch
        for i in range(len(order)):  # a chunk whose group is already in its batch swaps with a later one
            used = {chunk_group[order[j]] for j in range(i - i % k, i)}
            if chunk_group[order[i]] in used:
                j = next((j for j in range(i + 1, len(order)) if chunk_group[order[j]] not in used), None)
                if j is not None:
                    order[i], order[j] = order[j], order[i]
        tail = np.concatenate(rest) if rest else np.zeros(0, np.int64)
        return np.concatenate([chunks[i] for i in order] + [rng.permutation(tail)]).astype(perm.dtype)

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation(self.epoch)
        gb, b = self.batch_size * self.world_size, self.batch_size
        for g in range(self.start_batch, self.batches_per_epoch):
            chunk = perm[g * gb : (g + 1) * gb]
            yield chunk[self.rank * b : (self.rank + 1) * b].tolist()

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)


# ------------------------------------------------------------------------------- optimisation


class WarmupCosine:
    """LambdaLR factor: linear warm-up ``(s+1)/warmup`` reaching 1 at ``warmup_steps``, then cosine
    to 0 at ``max_steps``. A callable object (not a lambda) so the scheduler state is saved."""

    def __init__(self, warmup_steps: int, max_steps: int):
        self.warmup_steps, self.max_steps = int(warmup_steps), int(max_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.max_steps - self.warmup_steps, 1)
        progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices/kernels only (no decay on biases, norms, gains and
    ``logit_scale``), as in CLIP/open_clip."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "logit_scale" in name or name.endswith(".bias"):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)


def check_batch_fits(n: int, batch_size: int, world_size: int = 1, what: str = "the training set") -> None:
    """Refuse a batch the data cannot fill: with ``drop_last`` an epoch would hold no batch at all."""
    if n < batch_size * world_size:
        ranks = f" ({batch_size} per rank x {world_size} ranks)" if world_size > 1 else ""
        fit = f"--batch-size <= {n // world_size}, or " if n >= world_size else ""
        raise ConfigError(
            f"{what} has {n} windows, fewer than one global batch of {batch_size * world_size}{ranks}: use "
            f"{fit}prepare more training windows"
        )


# ------------------------------------------------------------------------------- threads

# Measured on a 2-core shared box (one core busy): torch's default of 2 intra-op threads trained ~5x
# slower than 1 thread — threads that wait for a busy core stall every parallel op.
_SLOWDOWN_NOTE = "on a 2-core box with one core busy, 2 threads measured ~5x slower than 1"


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (user code may use the legacy global RNG)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TensorDictDataset(Dataset):
    """Aligned numpy arrays → dict items; ``ppg`` ``[N, L]`` becomes ``[1, L]`` per item."""

    def __init__(self, arrays: dict[str, np.ndarray], groups: np.ndarray | None = None):
        lengths = {k: len(v) for k, v in arrays.items()}
        if "ppg" not in arrays or len(set(lengths.values())) != 1:
            raise ConfigError(f"need a 'ppg' array and equal lengths, got {lengths}")
        self.arrays = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in arrays.items()}
        self.groups = None if groups is None else np.asarray(groups)

    def __len__(self) -> int:
        return len(self.arrays["ppg"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: v[i] for k, v in self.arrays.items()}
        item["ppg"] = item["ppg"].unsqueeze(0)
        return item


# -------------------------------------------------------------------------------- checkpoints


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` through :func:`anyppg_edge.io.atomic_write`: a crash leaves either the old file or
    the new one, never a partial file under ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


_REQUIRED_KEYS = ("format", "model", "optimizer", "scheduler", "step", "sampler", "rng", "train_config")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint (``weights_only`` loading); any problem is a :class:`CheckpointError`
    naming the file."""
    path = Path(path)
    ckpt = torch_load(path, "training checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an anyppg-edge training checkpoint ({CHECKPOINT_FORMAT})")
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"training checkpoint {path} lacks keys {missing}")
    return ckpt


# ------------------------------------------------------------------------------------ logging


class _CsvLog:
    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= resume_step]
        self.f = open(path, "w", newline="")  # closed in close()
        self.w = csv.DictWriter(self.f, fieldnames=_METRIC_FIELDS, extrasaction="ignore")
        self.w.writeheader()
        self.w.writerows(rows)
        self.f.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in _METRIC_FIELDS})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))


# ------------------------------------------------------------------------------------ trainer


def _default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", D.local_rank())
    return torch.device("cpu")


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _plain(value: Any) -> Any:
    """A config value as JSON-like data (tuples as lists), for comparing with a checkpoint's."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _flag(name: str) -> str:
    flag = TRAIN_CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"{name} ({flag})"


# extra_config sections a resume must not change: what they are called in messages, their config class
# (defaults fill fields an older checkpoint lacks) and keys that do not matter once weights exist
_EXTRA_COMPARED: dict[str, tuple[str, type, tuple[str, ...]]] = {
    "clip": ("model", ClipConfig, ("ppg_checkpoint", "ecg_checkpoint")),  # initialisation only
    "augment": ("augmentation", AugmentConfig, ()),
    "distill": ("distillation", DistillConfig, ()),
}


def _extra_config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's ``extra_config`` and this run's, in the sections a resume
    must keep: the task (which sections there are), model, augmentation, distillation, teacher."""
    task_old = sorted(k for k in ("clip", "distill", "qat") if k in old)
    task_new = sorted(k for k in ("clip", "distill", "qat") if k in new)
    if task_old != task_new:
        return [f"task: checkpoint {'/'.join(task_old) or 'unknown'}, now {'/'.join(task_new) or 'unknown'}"]
    changes = []
    for key, (what, cls, ignored) in _EXTRA_COMPARED.items():
        if key not in old and key not in new:
            continue
        a = {**cls().to_dict(), **(old.get(key) or {})}
        b = {**cls().to_dict(), **(new.get(key) or {})}
        changes += [f"{what} {key}.{k}: checkpoint {_plain(a.get(k))!r}, now {_plain(b.get(k))!r}"
                    for k in sorted(set(a) | set(b)) if k not in ignored and _plain(a.get(k)) != _plain(b.get(k))]
    t_old, t_new = (old.get("teacher") or {}).get("sha256"), (new.get("teacher") or {}).get("sha256")
    if t_old and t_new and t_old != t_new:
        changes.append(f"teacher: checkpoint sha256 {t_old[:12]}…, now {t_new[:12]}… "
                       f"({(new.get('teacher') or {}).get('source')})")
    return changes


def _resume_config(
    cfg: TrainConfig, ckpt: dict[str, Any], path: Path, extra_config: dict[str, Any], n_train: int
) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """``cfg`` to continue ``ckpt`` with, under the resume policy of
    :data:`~anyppg_edge.train.configs.RESUME_REFUSED`: a changed trajectory field, model,
    augmentation, distillation config, teacher or training-set size is a :class:`ConfigError` listing
    every change; ``max_steps`` must exceed the checkpoint's step. When ``warmup_steps`` is ``None``
    (20 % of ``max_steps``) and ``max_steps`` changes, the checkpoint's warm-up length is kept."""
    old = {**TrainConfig().to_dict(), **ckpt["train_config"]}
    new = cfg.to_dict()
    step = int(ckpt["step"])
    if cfg.max_steps <= step:
        raise ConfigError(
            f"{path} is already at step {step} (its max_steps {old['max_steps']}) and this run asks for "
            f"max_steps {cfg.max_steps}, so there is nothing to train: pass --steps > {step} to train further, "
            "or a new --out to start a new run"
        )
    changes = []
    for name in RESUME_REFUSED:
        if name != "warmup_steps" and _plain(old[name]) != _plain(new[name]):
            changes.append(f"{_flag(name)}: checkpoint {_plain(old[name])!r}, now {_plain(new[name])!r}")
    old_warmup = old["warmup_steps"] if old["warmup_steps"] is not None else round(0.2 * old["max_steps"])
    if cfg.warmup_steps is not None and cfg.warmup_steps != old_warmup:
        changes.append(f"{_flag('warmup_steps')}: checkpoint {old_warmup}, now {cfg.warmup_steps}")
    elif cfg.resolved_warmup_steps != old_warmup:  # None, and max_steps changed: keep the warm-up length
        if old_warmup > cfg.max_steps:
            changes.append(f"{_flag('max_steps')} {cfg.max_steps} ends inside the checkpoint's warm-up of "
                           f"{old_warmup} steps")
        else:
            cfg = replace(cfg, warmup_steps=old_warmup)
    changes += _extra_config_changes(ckpt.get("extra_config") or {}, extra_config)
    n_old = (ckpt.get("data") or {}).get("n_train")
    if n_old is not None and int(n_old) != n_train:
        changes.append(f"training windows: checkpoint {n_old}, now {n_train} (other data: other batches)")
    if changes:
        raise ConfigError(
            f"cannot resume {path}: this run changes what the checkpoint was trained with — "
            f"{'; '.join(changes)}. Resuming would not continue the same run: drop the changed flags "
            "(--resume continues with the checkpoint's values) or start a new run with a fresh --out"
        )
    applied = {
        name: [_plain(old.get(name)), _plain(value)]
        for name, value in cfg.to_dict().items()
        if name not in RESUME_REFUSED and name != "resume" and _plain(old.get(name)) != _plain(value)
    }
    history = [*ckpt.get("resume_history", []), {"step": step, "applied": applied}]
    if applied:
        log.info("resuming %s at step %d with %s", path, step,
                 ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in applied.items()))
    return cfg, history


def check_resume(
    cfg: TrainConfig, extra_config: dict[str, Any] | None = None, n_train: int | None = None
) -> TrainConfig:
    """The config a :class:`Trainer` built from ``cfg`` would continue ``out_dir/last.pt`` with, without
    building anything: callers with expensive set-up (distillation's teacher targets) check the resume
    policy first. ``cfg`` itself when not resuming; the policy's :class:`ConfigError` otherwise."""
    last = Path(cfg.out_dir) / "last.pt"
    if not (cfg.resume and last.exists()):
        return cfg
    ckpt = load_checkpoint(last)
    n = n_train if n_train is not None else int((ckpt.get("data") or {}).get("n_train", -1))
    return _resume_config(cfg, ckpt, last, extra_config or {}, n)[0]


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_val_loss: float = math.inf
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Generic loop over a task (see module docstring). The process group, if any, must already be
    initialised (:func:`~anyppg_edge.train.distributed.init_distributed`); the task's initial
    weights should be identical on every rank (seed before building it; DDP also broadcasts)."""

    def __init__(
        self,
        task: nn.Module,
        train_dataset: Dataset,
        val_dataset: Dataset | None,
        cfg: TrainConfig,
        device: torch.device | str | None = None,
        extra_config: dict[str, Any] | None = None,
    ):
        self.extra_config = extra_config or {}
        self.device = torch.device(device) if device is not None else _default_device()
        self.rank, self.world_size = D.rank(), D.world_size()
        self.out_dir = Path(cfg.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:  # partial writes of a run killed mid-checkpoint
            remove_stale_temporaries(self.out_dir)
        self.resume_history: list[dict[str, Any]] = []
        resume_ckpt, last = None, self.out_dir / "last.pt"
        if cfg.resume and last.exists():  # the resume policy is checked before anything is built
            resume_ckpt = load_checkpoint(last)
            cfg, self.resume_history = _resume_config(cfg, resume_ckpt, last, self.extra_config, len(train_dataset))
        self.cfg = cfg
        if cfg.threads is not None:
            configure_threads(cfg.threads, warn=False)
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.backends.cudnn.benchmark = False
        if self.world_size > 1 and cfg.sync_batchnorm:
            task = D.convert_sync_batchnorm(task, self.device)
        self.task = task.to(self.device)
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_task: nn.Module = DDP(
                self.task, device_ids=ids, find_unused_parameters=cfg.ddp_find_unused_parameters
            )
        else:
            self.ddp_task = self.task
        self.params = [p for p in self.task.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.task, cfg)
        self.schedule = WarmupCosine(cfg.resolved_warmup_steps, cfg.max_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = None  # bf16 autocast needs no loss scaling
        self.autocast_enabled = cfg.precision == "bf16" and self.device.type == "cuda"

        self.train_dataset, self.val_dataset = train_dataset, val_dataset
        groups = getattr(train_dataset, "groups", None) if cfg.group_batches else None
        if cfg.group_batches and groups is None:
            raise ConfigError("group_batches needs a train dataset with a `groups` attribute (e.g. subject ids)")
        self.sampler = ShardedBatchSampler(
            len(train_dataset), cfg.batch_size, cfg.seed, self.rank, self.world_size, shuffle=True, groups=groups,
            groups_per_batch=cfg.groups_per_batch,
        )
        # A private generator: creating a DataLoader iterator draws a base seed from it, which must
        # not consume the global torch RNG (that would break exact resume mid-epoch).
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_dataset,
            batch_sampler=self.sampler,
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=self.loader_generator,
            persistent_workers=False,
        )
        self.state = _State()
        seed_everything(cfg.seed + 1000 * self.rank)  # per-rank stream (dropout), set after model init
        self.resumed_from: Path | None = None
        self.last_saved_step: int | None = None  # the step of out_dir/last.pt written or resumed by this run
        if resume_ckpt is not None:
            self._restore(resume_ckpt, last)

    # ------------------------------------------------------------------ checkpoint state

    def state_dict(self) -> dict[str, Any]:
        rng = [_rng_state()]
        if self.world_size > 1:
            rng = [None] * self.world_size
            dist.all_gather_object(rng, _rng_state())
        model = self.task.model if hasattr(self.task, "model") else self.task
        return {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "model_is_task": not hasattr(self.task, "model"),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "step": self.state.step,
            "sampler": {"epoch": self.state.epoch, "batch_in_epoch": self.state.batch_in_epoch},
            "rng": rng,
            "world_size": self.world_size,
            "best_val_loss": self.state.best_val_loss,
            "train_config": self.cfg.to_dict(),
            "extra_config": self.extra_config,
            "data": {"n_train": len(self.train_dataset)},
            "resume_history": self.resume_history,
        }

    def save(self, name: str) -> Path | None:
        """Write ``out_dir/name`` atomically (rank 0); every rank must call it (RNG gather)."""
        sd = self.state_dict()
        path = None
        if self.rank == 0:
            path = atomic_torch_save(sd, self.out_dir / name)
        if name == "last.pt":
            self.last_saved_step = self.state.step
        D.barrier()
        return path

    def load(self, path: str | Path) -> None:
        """Restore everything for exact continuation; errors are :class:`CheckpointError`. (The resume
        policy is checked at construction, with ``resume``; this restores whatever ``path`` holds.)"""
        path = Path(path)
        self._restore(load_checkpoint(path), path)

    def _restore(self, ckpt: dict[str, Any], path: Path) -> None:
        model = self.task.model if hasattr(self.task, "model") else self.task
        try:
            model.load_state_dict(ckpt["model"], strict=True)
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"training checkpoint {path} does not fit this model/optimizer: {exc}") from exc
        check_finite(model, f"training checkpoint {path}")
        # the scheduler state restores the checkpoint's schedule; a resume with more max_steps re-plans
        # the cosine decay to the new end (same warm-up) from the resumed step on
        plan = (self.cfg.resolved_warmup_steps, self.cfg.max_steps)
        if (self.schedule.warmup_steps, self.schedule.max_steps) != plan:
            self.schedule.warmup_steps, self.schedule.max_steps = plan
            factor = self.schedule(self.scheduler.last_epoch)
            for group, base_lr in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
                group["lr"] = base_lr * factor
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if self.scaler is not None and ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state.step = int(ckpt["step"])
        self.state.epoch = int(ckpt["sampler"]["epoch"])
        self.state.batch_in_epoch = int(ckpt["sampler"]["batch_in_epoch"])
        self.state.best_val_loss = float(ckpt.get("best_val_loss", math.inf))
        rng = ckpt["rng"]
        if len(rng) == self.world_size:
            _set_rng_state(rng[self.rank])
        else:  # different world size: exact continuation is impossible; reseed deterministically
            seed_everything(self.cfg.seed + 1000 * self.rank + self.state.step)
        self.resumed_from = path
        self.last_saved_step = self.state.step

    # ------------------------------------------------------------------ evaluation

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        sampler = ShardedBatchSampler(
            len(dataset), self.cfg.batch_size * self.world_size, shuffle=False, drop_last=False
        )
        return DataLoader(
            dataset, batch_sampler=sampler, num_workers=self.cfg.num_workers, generator=torch.Generator()
        )

    def _autocast(self):
        if self.autocast_enabled:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def validate(self, dataset: Dataset | None = None) -> float:
        """Mean loss (sum of ``_loss`` terms, weighted by batch size) over the validation set.

        Every rank evaluates the whole set locally in batches of the *global* batch size, so the
        value is the same on all ranks and does not depend on the number of ranks."""
        dataset = dataset if dataset is not None else self.val_dataset
        if dataset is None or len(dataset) == 0:
            return math.nan
        was_training = self.task.training
        self.task.eval()
        total, count = 0.0, 0
        try:
            for batch in self._eval_loader(dataset):
                batch = _to_device(batch, self.device)
                with self._autocast():
                    out = self.task(batch)
                n = next(iter(batch.values())).shape[0]
                total += float(sum(v for k, v in out.items() if k.endswith("_loss"))) * n
                count += n
        finally:
            self.task.train(was_training)
        return total / count

    @torch.no_grad()
    def embed(self, dataset: Dataset) -> tuple[np.ndarray, ...]:
        """The task's embeddings of a whole dataset (eval mode, this process only), as float32 numpy
        arrays: ``(ppg_emb, ecg_emb)`` for CLIP."""
        was_training = self.task.training
        self.task.eval()
        parts: list[list[np.ndarray]] = []
        try:
            for batch in self._eval_loader(dataset):
                batch = _to_device(batch, self.device)
                with self._autocast():
                    outs = self.task.embed(batch)
                if not parts:
                    parts = [[] for _ in outs]
                for acc, t in zip(parts, outs, strict=True):
                    acc.append(t.float().cpu().numpy())
        finally:
            self.task.train(was_training)
        return tuple(np.concatenate(p) for p in parts)

    # ------------------------------------------------------------------ training

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        batch = _to_device(batch, self.device)
        with self._autocast():
            out = self.ddp_task(batch)
        losses = {k: v for k, v in out.items() if k.endswith("_loss")}
        if not losses:
            raise ConfigError(f"task returned no '*_loss' keys (got {sorted(out)})")
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip_norm > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip_norm))
        else:
            grads = [p.grad for p in self.params if p.grad is not None]
            grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        loss_value = float(loss.detach())
        diverged = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
        if self.world_size > 1:  # every rank stops together (NaN propagates through the mean)
            diverged = not math.isfinite(D.mean_over_ranks(0.0 if not diverged else math.nan))
        if diverged:
            self.optimizer.zero_grad(set_to_none=True)  # the step is not applied: the weights stay finite
            self._stop_on_non_finite(losses, grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        metrics = {"loss": loss_value, "grad_norm": grad_norm}
        for k, v in out.items():
            if not k.endswith("_loss") and isinstance(v, torch.Tensor) and v.numel() == 1:
                metrics[k] = float(v)
        return metrics

    def _stop_on_non_finite(self, losses: dict[str, torch.Tensor], grad_norm: float) -> None:
        terms = ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in losses.items())
        last = self.out_dir / "last.pt"
        if self.last_saved_step is not None:
            kept = f"{last} (step {self.last_saved_step}) holds the last finite weights"
        else:
            kept = "no checkpoint was written before it"
        raise ConfigError(
            f"training diverged at step {self.state.step + 1}: non-finite loss or gradient ({terms}; grad norm "
            f"{grad_norm:.4g}), so the run stopped without applying that step; {kept}. Lower --lr (now "
            f"{self.cfg.lr:g}), check the input windows and the teacher for NaN/Inf, or start a new --out"
        )

    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """Endless batches from the saved position; keeps (epoch, batch_in_epoch) up to date."""
        while True:
            self.sampler.set_position(self.state.epoch, self.state.batch_in_epoch)
            self.loader_generator.manual_seed(self.cfg.seed * 1_000_003 + self.state.epoch)
            for batch in self.loader:
                self.state.batch_in_epoch += 1
                yield batch
            self.state.epoch += 1
            self.state.batch_in_epoch = 0

    def fit(self, after_checkpoint: Callable[[int, Path | None], None] | None = None) -> dict[str, Any]:
        """Train to ``max_steps`` (from the resumed step). ``after_checkpoint(step, path)`` is called
        after each ``last.pt`` is written (tests use it to kill a run)."""
        cfg, st = self.cfg, self.state
        main = self.rank == 0
        csv_log = _CsvLog(self.out_dir / "metrics.csv", st.step if self.resumed_from else None) if main else None
        tb = _tensorboard_writer(self.out_dir / "tb") if (main and cfg.tensorboard) else None
        bar = None
        if main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=st.step, desc="train", unit="step", dynamic_ncols=True)
        global_batch = cfg.batch_size * self.world_size
        last_val = math.nan
        last_loss = math.nan
        sps = math.nan
        t_log, steps_since_log = time.perf_counter(), 0
        self.task.train()
        batches = self._batches()
        try:
            while st.step < cfg.max_steps:
                lr = self.optimizer.param_groups[0]["lr"]
                m = self.train_step(next(batches))
                st.step += 1
                steps_since_log += 1
                last_loss = m["loss"]
                val_loss = None
                if cfg.eval_every_steps > 0 and (st.step % cfg.eval_every_steps == 0 or st.step == cfg.max_steps):
                    val_loss = last_val = self.validate()  # identical on every rank
                    if math.isfinite(val_loss) and val_loss < st.best_val_loss:
                        st.best_val_loss = val_loss
                        self.save("best.pt")
                log_now = st.step % max(cfg.log_every_steps, 1) == 0 or st.step == cfg.max_steps
                if log_now or val_loss is not None:
                    loss_avg = D.mean_over_ranks(m["loss"])
                    now = time.perf_counter()
                    sps = steps_since_log * global_batch / max(now - t_log, 1e-9)
                    t_log, steps_since_log = now, 0
                    row = {
                        "step": st.step, "epoch": st.epoch, "lr": lr, "loss": loss_avg, "val_loss": val_loss,
                        "samples_per_s": round(sps, 2), "logit_scale": m.get("logit_scale"),
                        "grad_norm": m.get("grad_norm"),
                    }  # fmt: skip
                    st.history.append(row)
                    if csv_log:
                        csv_log.write(row)
                    if tb is not None:
                        for k, v in row.items():
                            if k != "step" and v is not None and math.isfinite(float(v)):
                                tb.add_scalar(f"train/{k}", float(v), st.step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_loss:.4f}", samples_s=f"{sps:.1f}", lr=f"{lr:.2e}")
                ckpt_now = (
                    cfg.checkpoint_every_steps > 0 and st.step % cfg.checkpoint_every_steps == 0
                ) or st.step == cfg.max_steps
                if ckpt_now:
                    path = self.save("last.pt")
                    if after_checkpoint is not None:
                        after_checkpoint(st.step, path)
        finally:
            if bar is not None:
                bar.close()
            if csv_log:
                csv_log.close()
            if tb is not None:
                tb.close()
        return {
            "step": st.step,
            "epoch": st.epoch,
            "world_size": self.world_size,
            "global_batch_size": global_batch,
            "final_train_loss": last_loss,
            "val_loss": last_val,
            "best_val_loss": st.best_val_loss,
            "samples_per_s": sps,
            "out_dir": str(self.out_dir),
            "last_checkpoint": str(self.out_dir / "last.pt"),
            "best_checkpoint": str(self.out_dir / "best.pt") if (self.out_dir / "best.pt").exists() else None,
            "metrics_csv": str(self.out_dir / "metrics.csv"),
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
        }


def train_clip(
    train_ds: Dataset,
    val_ds: Dataset | None,
    clip_cfg: ClipConfig,
    train_cfg: TrainConfig,
    device: torch.device | str | None = None,
    embed_val: bool = True,
    after_checkpoint: Callable[[int, Path | None], None] | None = None,
    augment: AugmentConfig | None = None,
) -> dict[str, Any]:
    """CLIP PPG↔ECG pretraining (under torchrun: DDP), with optional joint augmentation of the
    training batches (:mod:`anyppg_edge.train.augment`). Returns the :meth:`Trainer.fit` summary plus,
    with ``embed_val``, ``val_ppg_emb``/``val_ecg_emb`` (numpy, best weights not reloaded: last step)
    for retrieval metrics."""
    if train_cfg.batch_size < 2:
        raise ConfigError(
            f"batch_size {train_cfg.batch_size}: CLIP contrasts each PPG/ECG pair with the other pairs of its "
            "batch, so a batch of 1 has no negatives and its loss is 0 — use --batch-size >= 2"
        )
    D.init_distributed()
    check_batch_fits(len(train_ds), train_cfg.batch_size, D.world_size())
    seed_everything(train_cfg.seed)  # identical initial weights on every rank
    augment = augment or AugmentConfig()
    task = ClipTask(ClipModel(clip_cfg), ClipLoss(), augment=augment)
    extra = {"clip": clip_cfg.to_dict(), "augment": augment.to_dict()}
    trainer = Trainer(task, train_ds, val_ds, train_cfg, device=device, extra_config=extra)
    result = trainer.fit(after_checkpoint=after_checkpoint)
    result["clip_config"] = clip_cfg.to_dict()
    result["augment_config"] = augment.to_dict()
    if embed_val and val_ds is not None and len(val_ds) > 0 and D.is_main():
        result["val_ppg_emb"], result["val_ecg_emb"] = trainer.embed(val_ds)
    return result
