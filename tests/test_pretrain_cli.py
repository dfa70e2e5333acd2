"""Pretraining wired end to end: shards → CLIP training → retrieval next to the baseline; the
subject-grouped sampler; the throughput benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anyppg_edge.cli import main
from anyppg_edge.train.datasets import ShardedBatchSampler


def test_grouped_sampler_keeps_batches_within_a_subject_and_covers_every_item():
    groups = np.repeat(np.array(["a", "b", "c", "d"]), [40, 24, 32, 32])
    s = ShardedBatchSampler(len(groups), 8, seed=3, groups=groups)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(len(groups)))
    # group sizes are multiples of 8, so every batch holds exactly one subject
    assert all(len(set(groups[b])) == 1 for b in batches)
    s.set_position(1)
    assert [len(set(groups[b])) for b in s] == [1] * len(batches)
    assert list(ShardedBatchSampler(len(groups), 8, seed=3, groups=groups)) == batches  # deterministic
    mixed = list(ShardedBatchSampler(len(groups), 8, seed=3))
    assert any(len(set(groups[b])) > 1 for b in mixed)


def test_grouped_sampler_with_several_subjects_per_batch():
    groups = np.repeat(np.array(["a", "b", "c", "d", "e"]), [100, 37, 80, 64, 19])
    s = ShardedBatchSampler(len(groups), 32, seed=1, groups=groups, groups_per_batch=2)
    assert sorted(s.permutation(0)) == list(range(len(groups)))  # every item once per epoch
    full = [b for b in s if len(b) == 32]
    assert len(full) == len(groups) // 32
    # all but the epoch's tail batch: exactly 2 subjects, 16 windows each
    counts = [sorted(np.unique(groups[b], return_counts=True)[1].tolist()) for b in full]
    assert counts[:-1] == [[16, 16]] * (len(full) - 1)
    s2 = ShardedBatchSampler(len(groups), 32, seed=1, groups=groups, groups_per_batch=2)
    assert list(s2) == list(s)  # deterministic
    s2.set_position(1)
    assert list(s2) != list(s)  # a new deal every epoch
    with pytest.raises(ValueError, match="groups_per_batch"):
        ShardedBatchSampler(len(groups), 32, groups=groups, groups_per_batch=3)


def test_prepare_data_then_pretrain_cli(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare-data", "--sim-subjects", "6", "--sim-duration-s", "60", "--hop-s", "5",
                 "--no-ecg-quality", "--out", str(data)]) == 0
    assert "simulator" in capsys.readouterr().out
    out = tmp_path / "pre"
    assert main(["pretrain", "--shards", str(data), "--model", "tiny", "--steps", "6", "--batch-size", "8",
                 "--eval-every", "3", "--checkpoint-every", "3", "--group-batches", "--groups-per-batch", "2",
                 "--crop-scale-min", "0.85", "--noise-std", "0.05", "--warp-std", "0.1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    from anyppg_edge.train import load_checkpoint

    ck = load_checkpoint(out / "last.pt")
    assert ck["extra_config"]["augment"]["crop_scale_min"] == 0.85 and ck["extra_config"]["augment"]["warp_std"] == 0.1
    assert ck["train_config"]["groups_per_batch"] == 2
    assert "spectral_baseline" in printed
    retrieval = json.loads((out / "retrieval.json").read_text())
    assert retrieval["n_windows"] > 0 and 0.0 <= retrieval["model"]["R@1"] <= 1.0
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    # resuming a finished run with the same --steps is a user mistake (it would do nothing): exit 2
    capsys.readouterr()
    assert main(["pretrain", "--shards", str(data), "--model", "tiny", "--steps", "6", "--batch-size", "8",
                 "--eval-every", "3", "--checkpoint-every", "3", "--out", str(out), "--resume"]) == 2
    assert "already at step 6" in capsys.readouterr().err


def test_throughput_benchmark_runs_on_cpu(capsys):
    assert main(["throughput", "--model", "tiny", "--batch-size", "4", "--steps", "2", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["samples_per_s"] > 0 and res["precision"] == "fp32" and res["peak_gpu_mem_gib"] is None


def test_physiology_benchmark_protocol(shared, tmp_path, capsys):
    """The real-data benchmark end to end at toy scale: held-out subjects never in training, model and
    baseline scored on the same held-out windows; the baseline is far above chance on real data."""
    out = tmp_path / "phys"
    assert main(["physiology", "--out", str(out), "--model", "tiny", "--fold", "1", "--steps-per-fold", "3",
                 "--batch-size", "16", "--kernel-size", "5", "--dropout", "0.1", "--group-batches", "--groups-per-batch", "2",
                 "--crop-scale-min", "0.85", "--noise-std", "0.05", "--warp-std", "0.1", "--eq-std", "0.3", "--second-ppg"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (fold,) = summary["folds"]
    assert fold["fold"] == 1  # exactly the fold asked for
    held_out = {s.strip() for s in fold["test subjects"].split(",")}
    assert len(held_out) == 2 and fold["windows"] == summary["model"]["n_queries"] + fold["windows"] % 64
    assert summary["baseline"]["R@1"] > 5 * summary["chance_R@1"]
    assert summary["hr_oracle"]["R@1"] > 5 * summary["chance_R@1"]  # the ECG heart rate identifies windows
    assert 0.0 <= summary["model"]["R@1"] <= 1.0
    # paired difference on the same pools: exactly the two rows' difference, with an interval around it
    d = summary["model_minus_baseline"]["R@1"]
    assert d["diff"] == pytest.approx(summary["model"]["R@1"] - summary["baseline"]["R@1"])
    assert d["ci95_low"] <= d["diff"] <= d["ci95_high"]
    assert "Model − baseline, paired on the same 4 pools" in (out / "report.md").read_text()
    # fit check on the training subjects' windows: the same metric, model and baseline
    assert 0.0 <= fold["train-subjects model R@1"] <= 1.0 and fold["train-subjects baseline R@1"] > 5 / 64
    assert "| CLIP `tiny-k5-do0.1` |" in capsys.readouterr().out
    from anyppg_edge.models import get_model_spec

    spec = get_model_spec("tiny-k5-do0.1")
    assert spec.net1d.kernel_size == 5 and spec.net1d.dropout_p == 0.1
    assert get_model_spec("tiny").net1d.dropout_p == 0.5  # the registry config itself is untouched


def test_physiology_rejects_a_fold_out_of_range(shared, tmp_path):
    from anyppg_edge.train.physiology import PhysiologyConfig, run_physiology

    with pytest.raises(ValueError, match=r"fold indices \[5\] out of range for 5 folds"):
        run_physiology(PhysiologyConfig(out_dir=tmp_path, model="tiny", only_folds=(5,)))


def test_subject_folds_partition_the_subjects():
    from anyppg_edge.train.physiology import _subject_folds

    subjects = [f"s{i}" for i in range(10)]
    folds = _subject_folds(subjects, 5, seed=0)
    assert sorted(s for f in folds for s in f) == subjects and all(len(f) == 2 for f in folds)
    assert _subject_folds(subjects, 5, seed=0) == folds
