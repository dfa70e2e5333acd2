"""One way to load a checkpoint (anyppg_edge.models.loading.load_encoder): every kind this project
writes, read once, labelled with the model it holds; mismatched names, non-finite weights, QAT and
unknown files refused with what to do."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from anyppg_edge.contract import RANDOM_INIT  # noqa: E402
from anyppg_edge.errors import CheckpointError, MissingFileError  # noqa: E402
from anyppg_edge.models import create_model  # noqa: E402
from anyppg_edge.models.checkpoint import TRAINER_CHECKPOINT_FORMAT  # noqa: E402
from anyppg_edge.models.clip import ClipConfig, ClipModel  # noqa: E402
from anyppg_edge.models.loading import load_encoder  # noqa: E402
from anyppg_edge.models.student import StudentModel  # noqa: E402


def _trainer_file(path, model, extra):
    torch.save({"format": TRAINER_CHECKPOINT_FORMAT, "model": model.state_dict(), "extra_config": extra}, path)
    return path


@pytest.fixture
def clip_ckpt(tmp_path):
    torch.manual_seed(1)
    cfg = ClipConfig(ppg_model="tiny", ecg_model="tiny")
    return _trainer_file(tmp_path / "pretrain.pt", ClipModel(cfg), {"clip": cfg.to_dict()})


@pytest.fixture
def student_ckpt(tmp_path):
    torch.manual_seed(2)
    s = StudentModel("tiny", 16, 8)
    extra = {"distill": {"student": "tiny"}, "teacher": {"feature_dim": 16, "embed_dim": 8}}
    return _trainer_file(tmp_path / "distill.pt", s, extra)


def test_every_kind_loads_once_with_its_model_and_heads(tmp_path, clip_ckpt, student_ckpt):
    p = load_encoder(clip_ckpt)
    assert p.kind == "pretrain" and p.model_name == "tiny" and p.encoder is p.clip.ppg_encoder
    assert set(p.heads) == {"ppg_proj", "ecg_encoder", "ecg_proj"} and len(p.sha256) == 64
    d = load_encoder(student_ckpt, "tiny")
    assert d.kind == "distill" and d.encoder is d.student.encoder and set(d.heads) == {"adapter", "clip_head"}
    sd = tmp_path / "bare.pt"
    torch.save(create_model("tiny").state_dict(), sd)
    b = load_encoder(sd, "tiny")
    assert b.kind == "state_dict" and not b.heads and not b.encoder.training
    r = load_encoder(None, "tiny")
    assert r.kind == RANDOM_INIT and r.sha256 == RANDOM_INIT


def test_a_pretraining_checkpoint_gives_its_ppg_encoder(clip_ckpt):
    """Issue 22 finding 2: every export path crashed on a pretraining checkpoint ('Teacher' has no 'encoder')."""
    loaded = load_encoder(clip_ckpt)
    x = torch.randn(2, 1, 1250)
    with torch.no_grad():
        assert torch.equal(loaded.encoder(x), loaded.clip.ppg_encoder(x))


@pytest.mark.parametrize("which", ["clip", "student"])
def test_a_model_name_that_disagrees_with_the_checkpoint_is_refused(which, clip_ckpt, student_ckpt):
    """Issue 22 finding 1: --model anyppg-released with a student checkpoint wrote a mislabelled artifact."""
    path = clip_ckpt if which == "clip" else student_ckpt
    with pytest.raises(CheckpointError, match=r"holds model 'tiny', not 'anyppg-released'.*--model tiny"):
        load_encoder(path, "anyppg-released")
    # name_is_claim=False: the name only names a bare state_dict (a teacher's --teacher-model default)
    assert load_encoder(path, "anyppg-released", name_is_claim=False).model_name == "tiny"


def test_non_finite_weights_are_refused(tmp_path):
    """Issue 22 finding 8: NaN weights loaded, and distillation trained on NaN."""
    m = create_model("tiny")
    with torch.no_grad():
        next(m.parameters()).view(-1)[0] = float("nan")
    path = tmp_path / "nan.pt"
    torch.save(m.state_dict(), path)
    with pytest.raises(CheckpointError, match="NaN/Inf"):
        load_encoder(path, "tiny")


def test_qat_unknown_missing_and_nameless_files(tmp_path):
    qat = _trainer_file(tmp_path / "qat.pt", torch.nn.Linear(2, 2), {"qat": {}})
    with pytest.raises(CheckpointError, match="QAT checkpoint"):
        load_encoder(qat)
    other = _trainer_file(tmp_path / "other.pt", torch.nn.Linear(2, 2), {"something": {}})
    with pytest.raises(CheckpointError, match="unknown task"):
        load_encoder(other)
    with pytest.raises(MissingFileError, match="not found"):
        load_encoder(tmp_path / "absent.pt", "tiny")
    sd = tmp_path / "bare.pt"
    torch.save(create_model("tiny").state_dict(), sd)
    with pytest.raises(CheckpointError, match="records no model: pass --model"):
        load_encoder(sd)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04not a torch file")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_encoder(garbage, "tiny")
