"""Knowledge distillation: a frozen AnyPPG teacher → a small PPG student, on the pretraining trainer.

The teacher is either

* a **CLIP checkpoint of the pretraining command** (``runs/pretrain/best.pt``: PPG and ECG towers,
  projectors and logit scale) — all four losses are available; or
* an **official-layout Net1D ``state_dict``** (e.g. ``../shared/reference/net1d_anyppg_released.state_dict.pt``,
  the released AnyPPG PPG encoder layout) — a PPG encoder only, so the CLIP-alignment loss is off and the
  student learns the teacher's encoder features.

Teacher outputs do not change (frozen, eval mode, no augmentation), so they are computed once over the
training windows (:func:`teacher_targets`) and travel with each batch; a 108 M-MAC teacher then costs
one forward pass per window instead of one per step.

Losses of :class:`DistillTask` (weights in :class:`DistillConfig`; a zero weight removes the term):

* ``feature_loss`` — MSE between ``adapter(student features)`` (a learned Linear, student dim →
  teacher encoder dim) and the teacher's encoder features, centred per dimension and scaled by one
  training-set spread (:meth:`StudentModel.set_feature_stats`), so the loss is ~1 for a student that
  predicts only the mean;
* ``cosine_loss`` — ``1 − cos`` between the student's embedding and the teacher's PPG embedding
  (CLIP space for a CLIP teacher, the adapter space otherwise);
* ``clip_loss`` — symmetric InfoNCE between the student's PPG embedding and the teacher's ECG
  embedding at the teacher's (fixed) logit scale: the student is pulled into the teacher's CLIP space
  against in-batch negatives, which is what PPG→ECG retrieval needs;
* ``relational_loss`` — the batch similarity structure: KL(teacher ‖ student) between row-wise
  softmaxes of the two in-batch cosine-similarity matrices (diagonal removed) at
  ``relational_temperature``.

Under DDP the losses are per-rank (no all-gather): distillation targets are per-sample, and only the
two batch-level terms see a smaller batch.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.errors import CheckpointError, ConfigError
from anyppg_edge.models.loading import load_encoder
from anyppg_edge.models.student import StudentModel, Teacher
from anyppg_edge.train.configs import DistillConfig
from anyppg_edge.train.datasets import TensorDictDataset

__all__ = [
    "DistillConfig",
    "DistillTask",
    "load_teacher",
    "teacher_targets",
]

log = logging.getLogger("anyppg_edge.distill")


def load_teacher(path: str | Path, model: str = "anyppg-released") -> Teacher:
    """A pretraining checkpoint (``best.pt``/``last.pt`` of the trainer: the CLIP model) or an
    official-layout Net1D ``state_dict`` of registry config ``model`` (strict), through
    :func:`~anyppg_edge.models.loading.load_encoder`. Errors are
    :class:`~anyppg_edge.errors.CheckpointError`."""
    loaded = load_encoder(path, model, name_is_claim=False)
    if loaded.kind not in ("pretrain", "state_dict"):
        raise CheckpointError(f"{path} is a {loaded.kind} checkpoint; a teacher is a pretraining checkpoint or a "
                              "Net1D state_dict")
    return Teacher(loaded.encoder, loaded.clip, source=str(path), sha256=loaded.sha256)


@torch.no_grad()
def teacher_targets(
    teacher: Teacher, ppg: np.ndarray, ecg: np.ndarray | None = None, batch_size: int = 256, progress: bool = False
) -> dict[str, np.ndarray]:
    """Teacher outputs for windows ``[N, L]`` (float32 numpy): ``t_feat`` and, for a CLIP teacher,
    ``t_ppg`` and (with ``ecg``) ``t_ecg``."""
    from anyppg_edge.models.encode import check_model_input

    n = len(ppg)
    parts: dict[str, list[np.ndarray]] = {}
    it = range(0, n, batch_size)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=math.ceil(n / batch_size), desc="teacher", unit="batch")
    window_samples = int(np.shape(ppg)[-1]) if n else 0
    expected = getattr(teacher.ppg_encoder, "name", None)
    if expected:
        from anyppg_edge.models.registry import get_model_spec

        window_samples = get_model_spec(expected).input_samples
    for i in it:
        x = torch.as_tensor(check_model_input(ppg[i : i + batch_size], window_samples))
        e = None if ecg is None else torch.as_tensor(np.asarray(ecg[i : i + batch_size], np.float32))[:, None]
        for k, v in teacher.outputs(x, e).items():
            parts.setdefault(k, []).append(v.float().numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


# ----------------------------------------------------------------------------- student


def _relational_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    n = student.shape[0]
    if n < 3:
        return student.sum() * 0.0
    mask = torch.eye(n, dtype=torch.bool, device=student.device)
    s = (student @ student.T / temperature).masked_fill(mask, -1e4)
    t = (teacher @ teacher.T / temperature).masked_fill(mask, -1e4)
    return F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), log_target=True, reduction="batchmean")


class DistillTask(nn.Module):
    """Trainer task (see :mod:`anyppg_edge.train.trainer`): batches hold ``ppg`` and the teacher's
    precomputed targets (``t_feat``, and ``t_ppg``/``t_ecg`` for a CLIP teacher)."""

    def __init__(self, model: StudentModel, cfg: DistillConfig, teacher_logit_scale: float):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.register_buffer("logit_scale", torch.tensor(float(teacher_logit_scale)))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, m = self.cfg, self.model
        out = m(batch["ppg"])
        t_feat = (batch["t_feat"] - m.feat_mean) / m.feat_std
        t_emb = batch["t_ppg"] if "t_ppg" in batch else F.normalize(batch["t_feat"], dim=-1)
        losses: dict[str, torch.Tensor] = {}
        if cfg.feature_weight:
            pred = (out["pred_feat"] - m.feat_mean) / m.feat_std
            losses["feature_loss"] = cfg.feature_weight * F.mse_loss(pred, t_feat)
        if cfg.cosine_weight:
            losses["cosine_loss"] = cfg.cosine_weight * (1 - (out["emb"] * t_emb).sum(-1)).mean()
        if cfg.clip_weight:
            logits = self.logit_scale * out["emb"] @ batch["t_ecg"].T
            labels = torch.arange(len(logits), device=logits.device)
            losses["clip_loss"] = cfg.clip_weight * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        if cfg.relational_weight:
            losses["relational_loss"] = cfg.relational_weight * _relational_kl(
                out["emb"], t_emb, cfg.relational_temperature
            )
        cos = (out["emb"].detach() * t_emb).sum(-1).mean()
        return {**losses, "teacher_cosine": cos}

    @torch.no_grad()
    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        out = self.model(batch["ppg"])
        return out["emb"], out["feat"]


# ----------------------------------------------------------------------------- run + retention


def load_student(path: str | Path) -> StudentModel:
    """A student written by :func:`distill_from_shards` (trainer checkpoint ``best.pt``/``last.pt``)."""
    loaded = load_encoder(path)
    if loaded.student is None:
        raise CheckpointError(f"{path} is not a distillation checkpoint (it is a {loaded.kind} checkpoint)")
    return loaded.student


def _split_arrays(ds, with_ecg: bool, student_rate_hz: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The teacher's PPG windows, the ECG (``with_ecg``) and the student's PPG windows: the same rows
    at the student's input rate (a native-rate student: the shards' companion windows)."""
    idx = np.arange(len(ds))
    ppg, ecg = ds.get_batch(idx)
    teacher_ppg = ppg[:, 0].astype(np.float32)
    student_ppg = teacher_ppg if student_rate_hz in (None, ds.sample_rate_hz) else ds.get_ppg(idx, student_rate_hz)[:, 0]
    return teacher_ppg, (ecg[:, 0].astype(np.float32) if with_ecg else None), student_ppg


def _student_rate(cfg: DistillConfig, teacher: Teacher, shards_dir: str | Path) -> int:
    """The student's input rate (its registry config); the teacher must read the shards' own windows."""
    from anyppg_edge.data.shards import folder_native_rates
    from anyppg_edge.models.registry import get_model_spec

    rate, native = folder_native_rates(shards_dir)
    t_name = getattr(teacher.ppg_encoder, "name", None)
    if t_name and get_model_spec(t_name).input_sample_rate_hz != rate:
        raise ConfigError(f"teacher {t_name} reads {get_model_spec(t_name).input_sample_rate_hz} Hz windows, the shards "
                          f"of {shards_dir} are at {rate} Hz: prepare the shards at the teacher's rate")
    s_rate = get_model_spec(cfg.student).input_sample_rate_hz
    if s_rate != rate and s_rate not in native:
        raise ConfigError(
            f"student {cfg.student} reads {s_rate} Hz windows (as a watch sensor delivers them); {shards_dir} holds "
            f"{rate} Hz windows" + (f" and native rates {native}" if native else "") + f": prepare the shards with "
            f"`prepare-data ... --native-rates {s_rate}` (a new folder, or --force to rebuild this one)")
    return s_rate


def _check_batch_has_negatives(cfg: DistillConfig, batch_size: int) -> None:
    """The two batch-level losses compare a window with the others of its batch: with too few they are
    0 and the run would train without them, silently."""
    if cfg.clip_weight and batch_size < 2:
        raise ConfigError(f"batch_size {batch_size}: the clip loss contrasts each window with the others of its "
                          "batch and is 0 for a batch of 1 — use --batch-size >= 2, or --clip-weight 0")
    if cfg.relational_weight and batch_size < 3:
        raise ConfigError(f"batch_size {batch_size}: the relational loss compares similarities within a batch and "
                          "is 0 below 3 windows — use --batch-size >= 3, or --relational-weight 0")


def distill_from_shards(
    shards_dir: str | Path,
    teacher_path: str | Path,
    cfg: DistillConfig,
    train_cfg,
    teacher_model: str = "anyppg-released",
    val_split: str = "val",
    progress: bool = False,
) -> dict[str, Any]:
    """Distil ``cfg.student`` from a frozen teacher on the ``train`` split of prepared shards (the
    pretraining's), validating on ``val_split``; checkpoints/logs in ``train_cfg.out_dir`` exactly as
    pretraining. Returns the trainer summary plus ``teacher`` (its description) and ``config``."""
    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.train import distributed as D
    from anyppg_edge.train.datasets import check_batch_fits
    from anyppg_edge.train.resume import check_resume
    from anyppg_edge.train.trainer import Trainer, seed_everything

    D.init_distributed()
    teacher = load_teacher(teacher_path, teacher_model)  # refuses NaN/Inf weights (either teacher kind)
    cfg = cfg.resolved(teacher.has_ecg)
    _check_batch_has_negatives(cfg, train_cfg.batch_size)
    need_ecg = bool(cfg.clip_weight)
    student_rate = _student_rate(cfg, teacher, shards_dir)
    extra = {"distill": cfg.to_dict(), "teacher": teacher.describe(), "shards": str(shards_dir)}
    n_train = len(ShardDataset(shards_dir, split="train"))
    if n_train == 0:
        raise ConfigError(f"{shards_dir}: the train split is empty")
    # refuse before the teacher runs over every window: a batch the data cannot fill, a resume that changes the run
    check_batch_fits(n_train, train_cfg.batch_size, D.world_size())
    check_resume(train_cfg, extra, n_train)

    def dataset(split: str) -> TensorDictDataset | None:
        ds = ShardDataset(shards_dir, split=split)
        if len(ds) == 0:
            return None
        ppg, ecg, student_ppg = _split_arrays(ds, need_ecg, student_rate)
        targets = teacher_targets(teacher, ppg, ecg, progress=progress)
        bad = sorted(k for k, v in targets.items() if not np.isfinite(v).all())
        if bad:
            raise CheckpointError(f"teacher {teacher_path} outputs NaN/Inf ({', '.join(bad)}) on the {split} windows: "
                                  "its weights overflow on this data; use another teacher checkpoint")
        return TensorDictDataset({"ppg": student_ppg, **targets}, groups=ds.subject_ids)

    train_ds = dataset("train")
    if train_ds is None:
        raise ConfigError(f"{shards_dir}: the train split is empty")
    val_ds = dataset(val_split)
    seed_everything(train_cfg.seed)
    student = StudentModel(cfg.student, teacher.feature_dim, teacher.embed_dim)
    student.set_feature_stats(train_ds.arrays["t_feat"])
    task = DistillTask(student, cfg, teacher.logit_scale())
    trainer = Trainer(task, train_ds, val_ds, train_cfg, extra_config=extra)
    result = trainer.fit()
    result.update({"teacher": teacher.describe(), "config": cfg.to_dict()})
    return result


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


@torch.no_grad()
def student_outputs(student: StudentModel, ppg: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    student.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(ppg), batch_size):
        x = torch.as_tensor(np.asarray(ppg[i : i + batch_size], np.float32))[:, None]
        for k, v in student(x).items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def retention_report(
    teacher: Teacher,
    student: StudentModel,
    heldout_ppg: np.ndarray,
    heldout_ecg: np.ndarray,
    probe_ppg: np.ndarray,
    probe_hr_bpm: np.ndarray,
    probe_groups: np.ndarray,
    pool_size: int = 64,
    seed: int = 0,
    student_heldout_ppg: np.ndarray | None = None,
    student_probe_ppg: np.ndarray | None = None,
) -> dict[str, Any]:
    """What the student keeps of the teacher.

    On held-out windows: cosine(student, teacher) of the embeddings (CLIP space for a CLIP teacher,
    the teacher-feature space through the adapter otherwise) and — CLIP teacher — PPG→ECG retrieval
    (pools of ``pool_size``, gallery = the teacher's ECG embeddings) for teacher and student.
    On the probe windows (frozen encoder features, several subjects): the HR linear probe
    (:func:`~anyppg_edge.eval.probe.linear_probe`, ridge, subject-grouped nested CV) for teacher and
    student, next to the two spectral baselines on the same windows (and, for a CLIP teacher, the
    spectral retrieval baseline on the same pools). A native-rate student reads
    ``student_heldout_ppg`` / ``student_probe_ppg``: the same windows at its input rate, row for row."""
    from anyppg_edge.eval.baselines import spectral_features
    from anyppg_edge.eval.probe import linear_probe, spectral_hr_baselines
    from anyppg_edge.train.pretrain import evaluate_retrieval

    t = teacher_targets(teacher, heldout_ppg, heldout_ecg if teacher.has_ecg else None)
    s = student_outputs(student, heldout_ppg if student_heldout_ppg is None else student_heldout_ppg)
    t_emb = t["t_ppg"] if teacher.has_ecg else t["t_feat"]
    s_emb = s["emb"] if teacher.has_ecg else s["pred_feat"]
    cos = _cos_rows(s_emb, t_emb)
    report: dict[str, Any] = {
        "n_heldout_windows": len(heldout_ppg),
        "cosine": {"mean": float(cos.mean()), "p1": float(np.percentile(cos, 1)), "min": float(cos.min())},
    }
    if teacher.has_ecg:
        rt = evaluate_retrieval(t["t_ppg"], t["t_ecg"], pool_size, seed=seed)
        rs = evaluate_retrieval(s["emb"], t["t_ecg"], pool_size, seed=seed)
        rb = evaluate_retrieval(*spectral_features(heldout_ppg, heldout_ecg), pool_size, seed=seed)  # same pools
        report["retrieval"] = {"pool_size": rt["pool_size"], "chance_R@1": rt["chance_R@1"], "teacher": rt, "student": rs,
                               "spectral_baseline": rb,
                               "R@1_retention": rs["R@1"] / rt["R@1"] if rt["R@1"] > 0 else math.nan}
    keep = np.isfinite(np.asarray(probe_hr_bpm, np.float64))
    ppg_k, hr_k, g_k = probe_ppg[keep], np.asarray(probe_hr_bpm)[keep], np.asarray(probe_groups)[keep]
    t_feat = teacher_targets(teacher, ppg_k)["t_feat"]
    s_feat = student_outputs(student, ppg_k if student_probe_ppg is None else student_probe_ppg[keep])["feat"]
    hr = {
        "teacher": linear_probe(t_feat, hr_k, g_k).summary(),
        "student": linear_probe(s_feat, hr_k, g_k).summary(),
        **{k: v for k, v in spectral_hr_baselines(ppg_k, hr_k, g_k).items() if k in ("spectral_peak", "ridge_log_spectrum")},
        "n_windows": int(keep.sum()),
        "n_subjects": len(np.unique(g_k)),
    }
    hr["student_minus_teacher_mae_bpm"] = hr["student"]["MAE"] - hr["teacher"]["MAE"]
    report["hr_probe"] = hr
    return report


def retention_tables(report: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Markdown-ready rows: retrieval/cosine, and the HR probe next to the baselines."""
    r = report.get("retrieval")
    first = [{"": "cosine(student, teacher)", "mean": round(report["cosine"]["mean"], 4),
              "p1": round(report["cosine"]["p1"], 4), "min": round(report["cosine"]["min"], 4)}]
    tables = [first]
    if r:
        tables.append([
            {"model": who.replace("_", " "), **{k: round(r[who][k], 3) for k in ("R@1", "R@5", "R@10", "MRR")}}
            for who in ("teacher", "student", "spectral_baseline") if who in r
        ] + [{"model": f"retention (student/teacher R@1), chance {r['chance_R@1']:.3f}",
              "R@1": round(r["R@1_retention"], 3)}])
    hr = report["hr_probe"]
    tables.append([
        {"HR estimate": name, "MAE bpm": round(m["MAE"], 2), "RMSE bpm": round(m["RMSE"], 2), "r": round(m["pearson_r"], 3)}
        for name, m in (
            ("teacher ridge probe", hr["teacher"]),
            ("student ridge probe", hr["student"]),
            ("spectral peak (0.7-3.5 Hz)", hr["spectral_peak"]),
            ("ridge on PPG log spectrum", hr["ridge_log_spectrum"]),
        )
    ])
    return tables


def _sentence(text: str) -> str:
    """``text`` as a sentence; "no real subject is held out" in bold, so a reader cannot miss it."""
    if text.startswith("no "):
        head, _, rest = text.partition(":")
        return f"**{head[0].upper()}{head[1:]}**:{rest}."
    return f"{text[0].upper()}{text[1:]}."


def distill_and_evaluate(
    shards_dir: str | Path,
    teacher_path: str | Path,
    cfg: DistillConfig,
    train_cfg,
    teacher_model: str = "anyppg-released",
    heldout_splits: tuple[str, ...] = ("val", "test"),
    pool_size: int = 64,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`distill_from_shards`, then :func:`retention_report` of the final student: retrieval and
    cosine on the held-out subjects (``heldout_splits`` of the shards: never trained on by teacher or
    student), the HR probe over every subject of the shards (frozen features, subject-grouped CV; HR
    reference from each window's ECG). Writes ``retention.json`` and ``retention.md`` in the run dir."""
    from anyppg_edge.data.shard_dataset import ShardDataset
    from anyppg_edge.data.shards import PRIMARY_VIEW, heldout_subjects
    from anyppg_edge.eval.heart_rate import ecg_heart_rate_bpm
    from anyppg_edge.models.budget import budget_table
    from anyppg_edge.report import atomic_write_text, markdown_table, write_json
    from anyppg_edge.train import distributed as D

    result = distill_from_shards(shards_dir, teacher_path, cfg, train_cfg, teacher_model, progress=progress)
    if not D.is_main():
        return result
    teacher = load_teacher(teacher_path, teacher_model)
    student = load_student(Path(train_cfg.out_dir) / "last.pt")
    student_rate = _student_rate(cfg, teacher, shards_dir)
    splits = {}
    for name in ("train", "val", "test"):
        ds = ShardDataset(shards_dir, split=name, views=(PRIMARY_VIEW,))  # one PPG per ECG window
        if len(ds):
            t_ppg, ecg, s_ppg = _split_arrays(ds, True, student_rate)
            splits[name] = (t_ppg, ecg, ds.subject_ids.astype(str), s_ppg)
    held = [splits[s] for s in heldout_splits if s in splits]
    if not held:
        raise ConfigError(f"{shards_dir}: no windows in the held-out splits {heldout_splits}")
    h_ppg, h_ecg, h_student = (np.concatenate([h[k] for h in held]) for k in (0, 1, 3))
    p_ppg, p_ecg, p_groups, p_student = (np.concatenate([v[k] for v in splits.values()]) for k in (0, 1, 2, 3))
    hr_ref = ecg_heart_rate_bpm(p_ecg)
    report = retention_report(teacher, student, h_ppg, h_ecg, p_ppg, hr_ref, p_groups, pool_size,
                              student_heldout_ppg=h_student, student_probe_ppg=p_student)
    report["student_input_rate_hz"] = student_rate
    report["heldout_splits"] = list(heldout_splits)
    report["heldout_subjects"] = heldout_subjects(shards_dir, heldout_splits)
    report["budget"] = budget_table([cfg.student])
    result["retention"] = report
    out = Path(train_cfg.out_dir)
    write_json(out / "retention.json", {**report, "teacher": result["teacher"], "config": result["config"]})
    tables = retention_tables(report)
    atomic_write_text(out / "retention.md", "\n".join([
        f"# Distillation: `{cfg.student}` from `{result['teacher']['source']}`", "",
        f"Held-out windows: {report['n_heldout_windows']} (splits {', '.join(heldout_splits)} of the shards, "
        "held out from the student's training; the teacher's own training data is not checked here). "
        f"{_sentence(report['heldout_subjects']['text'])}", "",
        f"HR probe: {report['hr_probe']['n_windows']} windows of {report['hr_probe']['n_subjects']} subjects "
        "(frozen encoder features, ridge, subject-grouped nested CV; reference HR from the ECG).", "",
        markdown_table(report["budget"]), "",
        *[markdown_table(t) + "\n" for t in tables],
    ]))
    return result
