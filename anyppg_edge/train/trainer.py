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
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset

from anyppg_edge.errors import CheckpointError, ConfigError
from anyppg_edge.io import remove_stale_temporaries
from anyppg_edge.models.checkpoint import check_finite
from anyppg_edge.models.clip import ClipConfig, ClipModel
from anyppg_edge.train import distributed as D
from anyppg_edge.train.augment import AugmentConfig
from anyppg_edge.train.checkpoints import CHECKPOINT_FORMAT, atomic_torch_save, load_checkpoint
from anyppg_edge.train.clip import ClipLoss, ClipTask
from anyppg_edge.train.configs import TrainConfig
from anyppg_edge.train.datasets import (
    ShardedBatchSampler,
    check_batch_fits,
)
from anyppg_edge.train.resume import _resume_config
from anyppg_edge.train.threads import configure_threads

__all__ = [
    "Trainer",
    "WarmupCosine",
    "build_optimizer",
    "seed_everything",
    "train_clip",
]

log = logging.getLogger("anyppg_edge.train")
_METRIC_FIELDS = ["step", "epoch", "lr", "loss", "val_loss", "samples_per_s", "logit_scale", "grad_norm"]


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


# ------------------------------------------------------------------------------- threads


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


# -------------------------------------------------------------------------------- checkpoints


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
