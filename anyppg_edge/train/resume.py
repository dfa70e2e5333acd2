"""The resume policy: which changes to a run's configuration a --resume refuses, and which it applies and records (the tables are in anyppg_edge.train.configs)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from anyppg_edge.errors import ConfigError
from anyppg_edge.models.clip import ClipConfig
from anyppg_edge.train.augment import AugmentConfig
from anyppg_edge.train.checkpoints import load_checkpoint
from anyppg_edge.train.configs import RESUME_REFUSED, TRAIN_CLI_FLAGS, DistillConfig, TrainConfig

log = logging.getLogger("anyppg_edge.train")


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
