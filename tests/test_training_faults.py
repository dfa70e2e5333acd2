"""Training faults (issue 22): a resume that changes the run, a resume with nothing left to train, a
CLIP batch without negatives or larger than the data, NaN weights and a diverging loss, and torch
threads on a shared box. Each case ends in one error line and exit 2, a flag, or a correct result.
Everything runs the ``tiny`` model for a few steps on one thread."""

from __future__ import annotations

import csv
import dataclasses
import logging
import shutil

import numpy as np
import pytest
import torch

from anyppg_edge.cli import build_parser, main
from anyppg_edge.errors import ConfigError
from anyppg_edge.train import threads as threads_mod
from anyppg_edge.train.checkpoints import load_checkpoint
from anyppg_edge.train.clip import ClipTask
from anyppg_edge.train.configs import RESUME_APPLIED, RESUME_REFUSED, TrainConfig
from anyppg_edge.train.datasets import TensorDictDataset
from anyppg_edge.train.threads import thread_warning
from anyppg_edge.train.trainer import Trainer, WarmupCosine


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread (the box is shared); every test leaves the thread count as it found it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    data = tmp_path_factory.mktemp("faults") / "data"
    assert main(["prepare-data", "--sim-subjects", "6", "--sim-duration-s", "60", "--hop-s", "5",
                 "--no-ecg-quality", "--out", str(data)]) == 0
    return data


# lr, seed and augmentation differ from the defaults: a resume that does not repeat them inherits them
BASE = ["--model", "tiny", "--batch-size", "8", "--lr", "0.001", "--seed", "3", "--crop-scale-min", "0.9",
        "--eval-every", "2", "--checkpoint-every", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def base_run(shards, tmp_path_factory):
    """A finished 2-step CLIP run (``last.pt`` at step 2); tests that train on copy it first."""
    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("faults") / "base"
    assert main(["pretrain", "--shards", str(shards), *BASE, "--steps", "2", "--out", str(out)]) == 0
    yield out
    torch.set_num_threads(before)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("anyppg-edge: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _resume(shards, out, *flags):
    return main(["pretrain", "--shards", str(shards), "--out", str(out), "--resume", *flags])


# ----------------------------------------------------------------------------- resume policy


def test_resume_policy_classifies_every_train_config_field():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUME_REFUSED) | set(RESUME_APPLIED) == fields
    assert not set(RESUME_REFUSED) & set(RESUME_APPLIED)


@pytest.mark.parametrize("flags, phrase", [
    (["--lr", "0.002"], "lr (--lr): checkpoint 0.001, now 0.002"),
    (["--batch-size", "4"], "batch_size (--batch-size): checkpoint 8, now 4"),
    (["--seed", "4"], "seed (--seed): checkpoint 3, now 4"),
    (["--weight-decay", "0"], "weight_decay (--weight-decay): checkpoint 0.01, now 0.0"),
    (["--warmup-steps", "1"], "warmup_steps (--warmup-steps): checkpoint 0, now 1"),
    (["--group-batches"], "group_batches (--group-batches): checkpoint False, now True"),
    (["--crop-scale-min", "1.0"], "augmentation augment.crop_scale_min: checkpoint 0.9, now 1.0"),
    (["--kernel-size", "5"], "model clip.ppg_model: checkpoint 'tiny', now 'tiny-k5'"),
])
def test_resume_refuses_a_change_of_the_trajectory(shards, base_run, flags, phrase, capsys):
    before = (base_run / "last.pt").read_bytes()
    assert _resume(shards, base_run, "--steps", "4", *flags) == 2
    line = _error_line(capsys)
    assert f"cannot resume {base_run / 'last.pt'}" in line and phrase in line
    assert "drop the changed flags" in line and "fresh --out" in line
    assert (base_run / "last.pt").read_bytes() == before  # a refused resume writes nothing


@pytest.mark.parametrize("steps", [["--steps", "2"], ["--steps", "1"], []])
def test_resume_with_nothing_left_to_train_is_an_error(shards, base_run, steps, capsys):
    assert _resume(shards, base_run, *steps) == 2  # no --steps: the checkpoint's own max_steps, 2
    line = _error_line(capsys)
    assert "is already at step 2" in line and "pass --steps > 2" in line


def test_resume_applies_and_records_bookkeeping_changes(shards, base_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    # only bookkeeping flags: lr, seed, batch, model and augmentation come from the checkpoint
    assert _resume(shards, out, "--steps", "4", "--eval-every", "1", "--checkpoint-every", "1",
                   "--num-workers", "0") == 0
    ck = load_checkpoint(out / "last.pt")
    cfg = ck["train_config"]
    assert ck["step"] == 4 and cfg["max_steps"] == 4 and cfg["eval_every_steps"] == 1
    assert (cfg["lr"], cfg["seed"], cfg["batch_size"]) == (0.001, 3, 8)
    assert cfg["warmup_steps"] == 0  # the checkpoint's warm-up (20 % of 2 steps), not 20 % of 4
    assert ck["extra_config"]["augment"]["crop_scale_min"] == 0.9 and ck["extra_config"]["clip"]["ppg_model"] == "tiny"
    assert ck["resume_history"] == [{"step": 2, "applied": {  # a moved run: out_dir is recorded too
        "max_steps": [2, 4], "eval_every_steps": [2, 1], "checkpoint_every_steps": [2, 1],
        "out_dir": [str(base_run), str(out)]}}]
    # the cosine decay is re-planned to the new end: step 3 trains at lr * f(2) of a 4-step schedule
    # (the restored 2-step schedule would have trained steps 3 and 4 at lr 0)
    rows = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(open(out / "metrics.csv"))}
    assert rows[3] == pytest.approx(0.001 * WarmupCosine(0, 4)(2)) and rows[3] > 0 and rows[4] > 0


# ----------------------------------------------------------------------------- batch size


@pytest.mark.parametrize("argv, phrase", [
    (["pretrain", "--shards", "x", "--batch-size", "1"], "an integer >= 2"),
    (["physiology", "--batch-size", "1"], "an integer >= 2"),
    (["pretrain", "--shards", "x", "--threads", "0"], "a positive integer"),
])
def test_batch_and_thread_flags_are_checked_at_parse_time(argv, phrase, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and phrase in capsys.readouterr().err


def test_clip_library_refuses_a_batch_without_negatives(tmp_path):
    from anyppg_edge.train import ClipConfig, PairedArrayDataset, train_clip

    ds = PairedArrayDataset(np.zeros((4, 1250), np.float32), np.zeros((4, 1250), np.float32))
    cfg = TrainConfig(max_steps=1, batch_size=1, out_dir=str(tmp_path), progress=False, tensorboard=False)
    with pytest.raises(ConfigError, match="a batch of 1 has no negatives"):
        train_clip(ds, None, ClipConfig("tiny", "tiny"), cfg)
    assert not (tmp_path / "last.pt").exists()


@pytest.mark.parametrize("command, flags, phrase", [
    ("pretrain", ["--batch-size", "4096"], "fewer than one global batch of 4096: use --batch-size <="),
    ("distill", ["--batch-size", "4096"], "fewer than one global batch of 4096: use --batch-size <="),
    ("distill", ["--batch-size", "1"], "the clip loss contrasts each window with the others of its batch"),
    ("distill", ["--batch-size", "2"], "use --batch-size >= 3, or --relational-weight 0"),
])
def test_a_batch_the_data_cannot_fill_or_without_negatives_is_refused(shards, base_run, tmp_path, command, flags,
                                                                       phrase, capsys):
    out = tmp_path / "run"
    extra = ["--teacher", str(base_run / "last.pt"), "--student", "tiny"] if command == "distill" else ["--model", "tiny"]
    assert main([command, "--shards", str(shards), *extra, "--steps", "2", *flags, "--out", str(out)]) == 2
    assert phrase in _error_line(capsys)
    assert not (out / "last.pt").exists()


# ----------------------------------------------------------------------------- non-finite weights and losses


def _with_nan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = float("nan")
    return state


@pytest.fixture(scope="module")
def nan_teachers(base_run, tmp_path_factory):
    from anyppg_edge.models import create_model

    d = tmp_path_factory.mktemp("nan")
    sd = d / "tiny_nan.state_dict.pt"
    torch.save(_with_nan(create_model("tiny").state_dict()), sd)
    ck = torch.load(base_run / "last.pt", map_location="cpu", weights_only=True)
    ck["model"] = _with_nan(ck["model"])
    clip = d / "clip_nan.pt"
    torch.save(ck, clip)
    return {"state_dict": sd, "clip": clip}


@pytest.mark.parametrize("kind", ["state_dict", "clip"])
def test_distill_refuses_a_teacher_with_nan_weights(shards, nan_teachers, tmp_path, kind, capsys):
    out = tmp_path / "kd"
    assert main(["distill", "--shards", str(shards), "--teacher", str(nan_teachers[kind]), "--teacher-model", "tiny",
                 "--student", "tiny", "--steps", "2", "--batch-size", "8", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert str(nan_teachers[kind]) in line and "NaN/Inf" in line
    assert not (out / "last.pt").exists()


def test_resume_refuses_a_checkpoint_with_nan_weights(shards, nan_teachers, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(nan_teachers["clip"], out / "last.pt")
    assert _resume(shards, out, "--steps", "4") == 2
    assert "NaN/Inf" in _error_line(capsys)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_finite_checkpoint(shards, tmp_path, monkeypatch, capsys):
    forward = ClipTask.forward
    calls = {"train": 0}

    def diverging(self, batch):
        out = forward(self, batch)
        if self.training:
            calls["train"] += 1
            if calls["train"] >= 3:  # the 3rd training step's loss is NaN
                out = {k: v * float("nan") if k.endswith("_loss") else v for k, v in out.items()}
        return out

    monkeypatch.setattr(ClipTask, "forward", diverging)
    out = tmp_path / "run"
    assert main(["pretrain", "--shards", str(shards), "--model", "tiny", "--batch-size", "8", "--steps", "5",
                 "--eval-every", "0", "--checkpoint-every", "2", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "training diverged at step 3" in line and f"{out / 'last.pt'} (step 2) holds the last finite weights" in line
    assert "Lower --lr" in line
    ck = load_checkpoint(out / "last.pt")
    assert ck["step"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


class _NanTask(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 1)

    def forward(self, batch):
        return {"x_loss": self.lin(batch["ppg"][:, 0]).pow(2).mean() * float("nan")}


def test_trainer_stops_before_applying_a_non_finite_step(tmp_path):
    task = _NanTask()
    before = {k: v.clone() for k, v in task.state_dict().items()}
    ds = TensorDictDataset({"ppg": np.ones((8, 8), np.float32)})
    cfg = TrainConfig(max_steps=3, warmup_steps=0, batch_size=4, eval_every_steps=0, checkpoint_every_steps=1,
                      out_dir=str(tmp_path), progress=False, tensorboard=False)
    with pytest.raises(ConfigError, match=r"training diverged at step 1: .*no checkpoint was written before it"):
        Trainer(task, ds, None, cfg, device="cpu").fit()
    assert all(torch.equal(before[k], v) for k, v in task.state_dict().items())  # the step was not applied
    assert not (tmp_path / "last.pt").exists()


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("threads, free, usable, others, explicit, phrase", [
    (2, 1, 2, 1.1, False, "torch will use 2 threads (torch's default) but only 1 of 2 cores is free, load average "
                          "1.1 from other processes"),
    (8, 2, 2, 0.0, True, "torch will use 8 threads (set by --threads) but only 2 of 2 cores are free:"),
    (1, 1, 2, 1.1, False, None),
    (2, 2, 2, 0.2, False, None),
])
def test_thread_warning(threads, free, usable, others, explicit, phrase):
    message = thread_warning(threads, free, usable, others, explicit)
    if phrase is None:
        assert message is None
    else:
        assert phrase in message and f"pass --threads {free}" in message and "\n" not in message


@pytest.mark.parametrize("flags, warned", [([], "torch's default"), (["--threads", "1"], None)])
def test_threads_flag_sets_torch_and_the_cli_warns_on_a_busy_box(shards, tmp_path, monkeypatch, caplog, capsys,
                                                                  flags, warned):
    monkeypatch.setattr(threads_mod, "free_cores", lambda: (1, 2, 1.3))  # 2 cores, one busy
    torch.set_num_threads(2)  # torch's default on this box
    with caplog.at_level(logging.WARNING, logger="anyppg_edge.train"):
        # a batch the data cannot fill: the command stops right after setting the threads up
        assert main(["pretrain", "--shards", str(shards), "--model", "tiny", "--batch-size", "4096", *flags,
                     "--out", str(tmp_path / "run")]) == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "anyppg_edge.train" and "threads" in r.getMessage()]
    if warned:
        assert len(messages) == 1 and warned in messages[0] and "pass --threads 1" in messages[0]
    else:
        assert messages == [] and torch.get_num_threads() == 1


def test_threads_option_of_every_training_command():
    parser = build_parser()
    assert parser.parse_args(["pretrain", "--shards", "x", "--threads", "1"]).threads == 1
    assert parser.parse_args(["distill", "--shards", "x", "--teacher", "t.pt", "--threads", "2"]).threads == 2
    assert parser.parse_args(["physiology", "--threads", "1"]).threads == 1


def test_threads_are_recorded_in_the_checkpoint(base_run):
    assert load_checkpoint(base_run / "last.pt")["train_config"]["threads"] == 1
