"""One way to load a checkpoint: :func:`load_encoder` reads any checkpoint this project reads
(official ``state_dict``, CLIP pretraining, distillation; a QAT checkpoint is recognised and refused
with what to do) once, and returns a :class:`LoadedEncoder`: what it is, the encoder, its heads and
its sha256. Export, parity, the harness and distillation all call it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyppg_edge.contract import RANDOM_INIT, sha256_file
from anyppg_edge.errors import CheckpointError
from anyppg_edge.models.checkpoint import (
    TRAINER_CHECKPOINT_FORMAT,
    check_finite,
    load_state_dict,
    state_of,
    torch_load,
)
from anyppg_edge.models.clip import ClipConfig, ClipModel
from anyppg_edge.models.registry import create_model
from anyppg_edge.models.student import StudentModel

__all__ = ["LoadedEncoder", "load_encoder"]

@dataclass
class LoadedEncoder:
    """What :func:`load_encoder` read: ``kind`` is ``"state_dict"`` (official layout),
    ``"pretrain"`` (CLIP; ``clip`` holds the whole model), ``"distill"`` (``student`` holds the
    encoder and its heads) or ``"random-init"`` (no file)."""

    kind: str
    model_name: str
    encoder: nn.Module
    sha256: str
    path: Path | None = None
    clip: nn.Module | None = None
    student: nn.Module | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> dict[str, nn.Module]:
        """Modules beside the encoder: ``ppg_proj``/``ecg_encoder``/``ecg_proj`` (CLIP), ``adapter``/
        ``clip_head`` (student)."""
        if self.clip is not None:
            return {k: getattr(self.clip, k) for k in ("ppg_proj", "ecg_encoder", "ecg_proj")}
        if self.student is not None:
            return {k: v for k in ("adapter", "clip_head") if (v := getattr(self.student, k)) is not None}
        return {}


def _trainer_model_state(raw: Mapping[str, Any], path: Path) -> Mapping[str, torch.Tensor]:
    state = raw.get("model")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} is a training checkpoint without model weights (key 'model')")
    return state


def _refuse_other_model(path: Path, recorded: str, asked: str | None) -> None:
    if asked and asked != recorded:
        raise CheckpointError(
            f"{path} holds model {recorded!r}, not {asked!r}: pass --model {recorded} (or leave --model out), "
            "so that artifacts and contracts are labelled with the model they hold"
        )


def load_encoder(path: str | Path | None, name: str | None = None, *, name_is_claim: bool = True) -> LoadedEncoder:
    """The encoder of any checkpoint this project reads, the file read once.

    ``name`` is the registry model: required for an official-layout ``state_dict`` (which records no
    name) and for ``path=None`` (seeded random init, sha256 ``"random-init"``); for a pretraining or
    distillation checkpoint it must match the model the checkpoint records, or be ``None``
    (``name_is_claim=False``: ``name`` only names the model of a bare ``state_dict``). Weights must be
    finite. Every failure is a :class:`CheckpointError` that says what to do."""
    if path is None:
        if not name:
            raise CheckpointError("no checkpoint and no model name: give a checkpoint, or --model for a random init")
        torch.manual_seed(0)
        return LoadedEncoder(RANDOM_INIT, name, create_model(name).eval(), RANDOM_INIT)
    path = Path(path)
    raw = torch_load(path)
    sha = sha256_file(path)
    is_trainer = isinstance(raw, Mapping) and raw.get("format") == TRAINER_CHECKPOINT_FORMAT
    extra = (raw.get("extra_config") or {}) if is_trainer else {}
    if is_trainer and "qat" in extra:
        raise CheckpointError(
            f"{path} is a QAT checkpoint (the fake-quant deploy graph, not a float Net1D): export from the float "
            "checkpoint it was fine-tuned from; `export all` runs the QAT itself"
        )
    if is_trainer and "distill" in extra:
        recorded = str(extra["distill"]["student"])
        _refuse_other_model(path, recorded, name if name_is_claim else None)
        t = extra.get("teacher") or {}
        student = StudentModel(recorded, t.get("feature_dim", 1), t.get("embed_dim"))
        _load_strict(student, _trainer_model_state(raw, path), path, "its student config")
        check_finite(student, str(path))
        return LoadedEncoder("distill", recorded, student.encoder.eval(), sha, path, student=student.eval(),
                             extra_config=dict(extra))
    if is_trainer and "clip" in extra:
        cfg = ClipConfig.from_dict({**extra["clip"], "ecg_checkpoint": None, "ppg_checkpoint": None})
        _refuse_other_model(path, cfg.ppg_model, name if name_is_claim else None)
        clip = ClipModel(cfg)
        _load_strict(clip, _trainer_model_state(raw, path), path, "its own CLIP config")
        check_finite(clip, str(path))
        return LoadedEncoder("pretrain", cfg.ppg_model, clip.ppg_encoder.eval(), sha, path, clip=clip.eval(),
                             extra_config=dict(extra))
    if is_trainer:
        raise CheckpointError(f"{path} is a training checkpoint of an unknown task (extra_config keys {sorted(extra)})")
    if not name:
        raise CheckpointError(f"{path} is a bare state_dict, which records no model: pass --model <registry name>")
    state = state_of(raw, path)
    encoder = create_model(name)
    load_state_dict(encoder, state)
    check_finite(encoder, str(path))
    return LoadedEncoder("state_dict", name, encoder.eval(), sha, path)


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {what}: {exc}") from exc
