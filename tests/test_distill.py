"""Distillation: losses, teacher loading (pretraining checkpoint or official state_dict), the
command end to end with resume, and the retention report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anyppg_edge.cli import main
from anyppg_edge.errors import CheckpointError, MissingFileError
from anyppg_edge.models.student import StudentModel
from anyppg_edge.train.distill import (
    DistillConfig,
    DistillTask,
    load_student,
    load_teacher,
    teacher_targets,
)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    data = tmp_path_factory.mktemp("kd") / "data"
    assert main(["prepare-data", "--sim-subjects", "8", "--sim-duration-s", "60", "--hop-s", "5",
                 "--no-ecg-quality", "--out", str(data)]) == 0
    return data


@pytest.fixture(scope="module")
def clip_teacher(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("kd") / "teacher"
    assert main(["pretrain", "--shards", str(shards), "--model", "tiny", "--steps", "4", "--batch-size", "8",
                 "--eval-every", "4", "--checkpoint-every", "4", "--out", str(out)]) == 0
    return out / "last.pt"


def _batch(teacher, n=6, seed=0):
    rng = np.random.default_rng(seed)
    ppg = rng.standard_normal((n, 1250)).astype(np.float32)
    ecg = rng.standard_normal((n, 1250)).astype(np.float32)
    t = teacher_targets(teacher, ppg, ecg if teacher.has_ecg else None)
    return {"ppg": torch.from_numpy(ppg)[:, None], **{k: torch.from_numpy(v) for k, v in t.items()}}, t


def test_losses_are_finite_and_each_weight_switches_its_term(clip_teacher):
    teacher = load_teacher(clip_teacher)
    assert teacher.has_ecg and teacher.embed_dim == 16
    batch, t = _batch(teacher)
    student = StudentModel("tiny", teacher.feature_dim, teacher.embed_dim)
    student.set_feature_stats(torch.from_numpy(t["t_feat"]))
    cfg = DistillConfig(student="tiny").resolved(teacher.has_ecg)
    out = DistillTask(student, cfg, teacher.logit_scale())(batch)
    assert {"feature_loss", "cosine_loss", "clip_loss", "relational_loss"} <= set(out)
    # the adapter starts exactly at the teacher's mean features: standardised MSE == spread ** 2 / scale ** 2 == 1
    assert out["feature_loss"].item() == pytest.approx(1.0, rel=1e-4)
    assert all(torch.isfinite(v).all() for v in out.values())
    only_clip = DistillConfig(student="tiny", feature_weight=0, cosine_weight=0, relational_weight=0)
    out = DistillTask(student, only_clip.resolved(True), teacher.logit_scale())(batch)
    assert [k for k in out if k.endswith("_loss")] == ["clip_loss"]
    # a student that equals the teacher's PPG embedding has zero cosine and relational loss
    task = DistillTask(student, DistillConfig(student="tiny", feature_weight=0, clip_weight=0).resolved(True), 14.0)
    with torch.no_grad():
        emb = batch["t_ppg"]
    student.forward = lambda x: {"feat": None, "pred_feat": None, "emb": emb}  # type: ignore[method-assign]
    out = task(batch)
    assert out["cosine_loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["relational_loss"].item() == pytest.approx(0.0, abs=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="CLIP teacher"):
        DistillConfig(clip_weight=1.0).resolved(teacher_has_ecg=False)
    with pytest.raises(ValueError, match="not all 0"):
        DistillConfig(feature_weight=0, cosine_weight=0, relational_weight=0).resolved(teacher_has_ecg=False)
    assert DistillConfig().resolved(teacher_has_ecg=False).clip_weight == 0.0
    assert DistillConfig().resolved(teacher_has_ecg=True).clip_weight == 1.0


def test_teacher_checkpoint_errors(tmp_path, clip_teacher):
    with pytest.raises(MissingFileError, match="not found"):
        load_teacher(tmp_path / "nope.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(clip_teacher.read_bytes()[:5000])
    with pytest.raises(CheckpointError):
        load_teacher(cut)
    with pytest.raises(CheckpointError):  # a tiny teacher's weights into the released layout
        load_teacher(_bare_tiny_state_dict(tmp_path), "anyppg-released")


def _bare_tiny_state_dict(tmp_path):
    from anyppg_edge.models import create_model

    p = tmp_path / "tiny_sd.pt"
    torch.save(create_model("tiny").state_dict(), p)
    return p


def test_distill_command_with_clip_teacher_resumes_and_reports(shards, clip_teacher, tmp_path, capsys):
    out = tmp_path / "kd"
    args = ["distill", "--shards", str(shards), "--teacher", str(clip_teacher), "--student", "tiny",
            "--steps", "6", "--batch-size", "8", "--eval-every", "3", "--checkpoint-every", "3", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "cosine(student, teacher)" in printed and "spectral peak" in printed
    rep = json.loads((out / "retention.json").read_text())
    assert rep["teacher"]["kind"] == "clip" and rep["config"]["clip_weight"] == 1.0
    assert 0.0 <= rep["retrieval"]["student"]["R@1"] <= 1.0 and rep["hr_probe"]["n_subjects"] >= 2
    # the spectral retrieval baseline on the same pools, as a row of the printed table
    assert rep["retrieval"]["spectral_baseline"]["n_queries"] == rep["retrieval"]["teacher"]["n_queries"]
    assert "| spectral baseline |" in printed
    assert rep["budget"][0]["model"] == "tiny"
    student = load_student(out / "last.pt")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    # a finished run resumed with the same --steps is refused (exit 2) and writes nothing: same weights
    capsys.readouterr()
    assert main([*args, "--resume"]) == 2
    assert "already at step 6" in capsys.readouterr().err
    after = load_student(out / "last.pt").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(CheckpointError, match="not a distillation checkpoint"):
        load_student(clip_teacher)


def test_distill_from_official_state_dict_teacher(shared, shards, tmp_path, capsys):
    """A teacher in the official Net1D state_dict format runs through the same command (PPG encoder
    only: feature regression, cosine and relational losses; no retrieval)."""
    sd = shared / "reference" / "net1d_tiny.state_dict.pt"
    out = tmp_path / "kd_sd"
    assert main(["distill", "--shards", str(shards), "--teacher", str(sd), "--teacher-model", "tiny",
                 "--student", "tiny", "--steps", "3", "--batch-size", "8", "--eval-every", "3",
                 "--checkpoint-every", "3", "--out", str(out)]) == 0
    rep = json.loads((out / "retention.json").read_text())
    assert rep["teacher"]["kind"] == "ppg-encoder" and rep["config"]["clip_weight"] == 0.0
    assert "retrieval" not in rep and -1.0 <= rep["cosine"]["mean"] <= 1.0
    assert len(rep["teacher"]["sha256"]) == 64
