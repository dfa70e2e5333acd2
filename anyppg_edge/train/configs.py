"""The training configs — optimisation (:class:`TrainConfig`), augmentation (:class:`AugmentConfig`)
and distillation (:class:`DistillConfig`) — as plain dataclasses with their validation. No torch
import: the command lines build their options from these fields without loading PyTorch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from anyppg_edge.config import dataclass_from_dict
from anyppg_edge.errors import ConfigError

__all__ = ["RESUME_APPLIED", "RESUME_REFUSED", "TRAIN_CLI_FLAGS", "AugmentConfig", "DistillConfig", "TrainConfig"]

# The command-line flag of a TrainConfig field where it is not ``--field-name`` (messages name it).
TRAIN_CLI_FLAGS = {"max_steps": "--steps", "out_dir": "--out", "eval_every_steps": "--eval-every",
                   "checkpoint_every_steps": "--checkpoint-every"}

# Resume policy (``resume=True`` over an existing ``out_dir/last.pt``, enforced by the trainer): a field
# that differs from the checkpoint's value is either *refused* — it changes the optimisation trajectory,
# so the resumed run would not continue the checkpoint's (ConfigError naming the field, both values and
# the fix) — or *applied* and recorded in the new checkpoints (``train_config`` and ``resume_history``).
RESUME_REFUSED = ("lr", "weight_decay", "betas", "adam_eps", "warmup_steps", "batch_size", "grad_clip_norm",
                  "precision", "seed", "sync_batchnorm", "group_batches", "groups_per_batch")
RESUME_APPLIED = ("max_steps", "eval_every_steps", "checkpoint_every_steps", "log_every_steps", "out_dir",
                  "num_workers", "resume", "ddp_find_unused_parameters", "tensorboard", "progress", "threads")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping (paper: 200k steps, 40k warm-up, lr 5e-4, AdamW wd 1e-2).

    Resuming (``resume``) with changed fields follows :data:`RESUME_REFUSED` / :data:`RESUME_APPLIED`:

    * refused (the trajectory): ``lr``, ``weight_decay``, ``betas``, ``adam_eps``, ``warmup_steps``,
      ``batch_size``, ``grad_clip_norm``, ``precision``, ``seed``, ``sync_batchnorm``, ``group_batches``,
      ``groups_per_batch`` — and the task's model, augmentation and distillation configs and teacher
      (the trainer's ``extra_config``: ``clip``, ``augment``, ``distill``, ``teacher`` sha256) and the
      number of training windows;
    * applied and recorded: ``max_steps`` (must exceed the checkpoint's step; the cosine decay is
      re-planned to the new end from the same warm-up, so the learning rate from the resumed step on
      follows the new schedule), ``eval_every_steps``, ``checkpoint_every_steps``, ``log_every_steps``,
      ``out_dir`` (a moved run), ``num_workers``, ``ddp_find_unused_parameters``, ``tensorboard``,
      ``progress`` and ``threads`` (bit-identical continuation needs the same thread count, as on CPU
      any change of the thread count may change float reductions).
    """

    lr: float = 5e-4
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_steps: int = 200_000
    warmup_steps: int | None = None  # None: 20 % of max_steps
    batch_size: int = 256  # per rank; the global batch is batch_size * world_size
    grad_clip_norm: float = 1.0  # <= 0 disables clipping
    precision: str = "bf16"  # "bf16": autocast on CUDA only (fp32 on CPU); "fp32"
    seed: int = 0
    eval_every_steps: int = 2_000  # 0 disables periodic validation
    checkpoint_every_steps: int = 2_000  # 0: only at the end
    log_every_steps: int = 50
    out_dir: str = "runs/pretrain"
    num_workers: int = 0
    resume: bool = False  # continue from out_dir/last.pt when it exists
    sync_batchnorm: bool = True  # under DDP: BN statistics over the global batch
    # Net1D keeps an unused ``bn1`` in its first block (official key layout); without this DDP waits
    # forever for that gradient bucket and silently skips the gradient all-reduce.
    ddp_find_unused_parameters: bool = True
    tensorboard: bool = True  # only if torch.utils.tensorboard imports
    progress: bool = True  # tqdm bar on rank 0
    group_batches: bool = False  # batches drawn within one group (dataset.groups, e.g. subject): hard negatives
    groups_per_batch: int = 1  # with group_batches: each global batch = this many groups x batch/this items each
    threads: int | None = None  # torch intra-/inter-op threads (None: torch's default); see anyppg_edge.train.threads.configure_threads

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.max_steps:
            raise ConfigError(f"warmup_steps must be in [0, max_steps], got {self.warmup_steps}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or None: torch's default), got {self.threads}")
        if self.groups_per_batch < 1 or self.batch_size % self.groups_per_batch:
            raise ConfigError(
                f"groups_per_batch must be >= 1 and divide batch_size {self.batch_size}, got {self.groups_per_batch}"
            )

    @property
    def resolved_warmup_steps(self) -> int:
        return round(0.2 * self.max_steps) if self.warmup_steps is None else self.warmup_steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return dataclass_from_dict(cls, d)


@dataclass
class AugmentConfig:
    """Training-time augmentation of paired windows (all off by default: the paper's recipe)."""

    crop_scale_min: float = 1.0  # < 1 enables the joint time-stretch crop (e.g. 0.7: up to 1.43x slower)
    noise_std: float = 0.0  # Gaussian noise std relative to the window's std (0: off)
    warp_std: float = 0.0  # std of the log local playback rate of the joint time warp (0: off; 0.1 ≈ ±10 %)
    warp_knots: int = 6  # knots of the warp's log-rate curve over the window (6: one every 2 s of a 10 s window)
    eq_std: float = 0.0  # std of the random equaliser's log gain per octave, independent per signal (0: off)
    eq_octaves: int = 7  # equaliser knots: Nyquist and the 7 octaves below (125 Hz input: 0.49 ... 62.5 Hz)
    eps: float = 1e-8  # z-score epsilon, as in the reference preprocessing

    def __post_init__(self) -> None:
        if not 0.1 <= self.crop_scale_min <= 1.0:
            raise ConfigError(f"crop_scale_min must be in [0.1, 1], got {self.crop_scale_min}")
        if self.noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {self.noise_std}")
        if not 0.0 <= self.warp_std <= 1.0:
            raise ConfigError(f"warp_std must be in [0, 1], got {self.warp_std}")
        if self.warp_knots < 2:
            raise ConfigError(f"warp_knots must be >= 2, got {self.warp_knots}")
        if not 0.0 <= self.eq_std <= 2.0:
            raise ConfigError(f"eq_std must be in [0, 2], got {self.eq_std}")
        if self.eq_octaves < 1:
            raise ConfigError(f"eq_octaves must be >= 1, got {self.eq_octaves}")

    @property
    def enabled(self) -> bool:
        return self.crop_scale_min < 1.0 or self.noise_std > 0 or self.warp_std > 0 or self.eq_std > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentConfig:
        return dataclass_from_dict(cls, d or {})


@dataclass
class DistillConfig:
    """What the student is and how it is pulled towards the teacher (JSON-serialisable)."""

    student: str = "student-watch"  # registry name of the student encoder
    feature_weight: float = 1.0
    cosine_weight: float = 1.0
    clip_weight: float | None = None  # None: 1.0 when the teacher has an ECG tower, else 0
    relational_weight: float = 1.0
    relational_temperature: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        return dataclass_from_dict(cls, d)

    def resolved(self, teacher_has_ecg: bool) -> DistillConfig:
        clip_w = self.clip_weight
        if clip_w is None:
            clip_w = 1.0 if teacher_has_ecg else 0.0
        if clip_w > 0 and not teacher_has_ecg:
            raise ConfigError(
                "clip_weight > 0 needs a CLIP teacher (a pretraining checkpoint with an ECG tower); this teacher "
                "is a PPG encoder only — set clip_weight to 0"
            )
        weights = (self.feature_weight, self.cosine_weight, clip_w, self.relational_weight)
        if min(weights) < 0 or not math.isfinite(sum(weights)) or sum(weights) == 0:
            raise ConfigError(f"loss weights must be finite, >= 0 and not all 0, got {weights}")
        if not self.relational_temperature > 0:
            raise ConfigError(f"relational_temperature must be > 0, got {self.relational_temperature}")
        return DistillConfig(**{**asdict(self), "clip_weight": float(clip_w)})
