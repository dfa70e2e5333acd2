"""Linear-probe protocol (subject-grouped nested CV) and the spectral HR baselines (the reference heart
rate itself: tests/test_heart_rate.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge.data import read_ieee_spc2015
from anyppg_edge.data.windows import WindowSet, extract_windows
from anyppg_edge.eval.heart_rate import window_reference_hr_bpm
from anyppg_edge.eval.probe import linear_probe, spectral_hr_baselines


def _synthetic(n_subjects: int = 10, per_subject: int = 30, dim: int = 16, noise: float = 0.3, seed: int = 0):
    """Features with a known linear target plus noise, and a per-subject offset in the features."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    groups = np.repeat([f"s{i:02d}" for i in range(n_subjects)], per_subject)
    x = rng.standard_normal((n, dim)) + np.repeat(rng.standard_normal((n_subjects, dim)), per_subject, axis=0)
    w = rng.standard_normal(dim)
    y = x @ w + 70.0 + noise * rng.standard_normal(n)
    return x, y, groups


def test_probe_recovers_a_linear_target_and_not_a_shuffled_one():
    x, y, g = _synthetic()
    res = linear_probe(x, y, g, outer_folds=5, inner_folds=3)
    assert res.task == "regression" and res.n_subjects == 10 and res.n_folds == 5
    assert res.predictions.shape == y.shape
    assert res.metrics["MAE"] < 0.5  # noise SD 0.3 -> MAE ~0.24 for a perfect fit
    assert res.metrics["pearson_r"] > 0.99
    shuffled = np.random.default_rng(1).permutation(y)
    bad = linear_probe(x, shuffled, g, outer_folds=5, inner_folds=3)
    spread = np.mean(np.abs(y - y.mean()))
    assert bad.metrics["MAE"] > 0.8 * spread > 10 * res.metrics["MAE"]


def test_probe_is_out_of_fold_by_subject():
    x, y, g = _synthetic(n_subjects=7, per_subject=13)
    res = linear_probe(x, y, g, outer_folds=4)
    assert (res.fold >= 0).all() and set(res.fold.tolist()) == set(range(4))
    for k in range(4):
        test_subjects = set(g[res.fold == k])
        train_subjects = set(g[res.fold != k])
        assert test_subjects and not test_subjects & train_subjects
    # each subject's windows are all predicted by one fold
    assert all(np.unique(res.fold[g == s]).size == 1 for s in np.unique(g))


def test_probe_classification():
    x, y, g = _synthetic(n_subjects=6, per_subject=20, dim=8)
    labels = np.where(y > np.median(y), "high", "low")
    res = linear_probe(x, labels, g, task="classification", outer_folds=3, alphas=(0.01, 0.1, 1.0))
    assert res.metrics["accuracy"] > 0.85 and res.metrics["AUROC"] > 0.9
    assert res.scores.shape == (len(y), 2) and list(res.classes) == ["high", "low"]


def test_probe_input_errors_and_fold_reduction():
    x, y, g = _synthetic(n_subjects=3, per_subject=10)
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), y, g)
    with pytest.raises(ValueError, match="one entry per window"):
        linear_probe(x, y[:-1], g)
    with pytest.raises(ValueError, match="targets contain NaN"):
        linear_probe(x, np.where(np.arange(y.size) == 0, np.nan, y), g)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        linear_probe(x, y, np.full(len(y), "one"))
    with pytest.raises(ValueError, match="task"):
        linear_probe(x, y, g, task="ranking")
    with pytest.warns(UserWarning, match="only 3 subjects"):
        res = linear_probe(x, y, g, outer_folds=5)
    assert res.n_folds == 3


def test_spectral_hr_on_ieee_spc2015(shared: Path):
    files = sorted(f for f in (shared / "data/ieee_spc2015").glob("DATA_*.mat") if "BPMtrace" not in f.name)
    recs = [read_ieee_spc2015(f) for f in files]
    ws = WindowSet.concat([extract_windows(r, hop_s=2.0, ecg_quality=False) for r in recs])
    hr_ref, source = window_reference_hr_bpm(ws, recs)
    assert set(source) == {"trace"}  # IEEE SPC BPM0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 8 subjects: no fold reduction expected
        res = spectral_hr_baselines(ws.ppg, hr_ref, ws.subject_id)
    peak, ridge = res["spectral_peak"], res["ridge_log_spectrum"]
    print(
        f"\nIEEE SPC 2015, {res['n_windows']} windows (10 s, 2 s hop), {res['n_subjects']} subjects: "
        f"spectral-peak HR MAE {peak['MAE']:.2f} bpm (RMSE {peak['RMSE']:.2f}, r {peak['pearson_r']:.2f}); "
        f"ridge on log spectrum MAE {ridge['MAE']:.2f} bpm (RMSE {ridge['RMSE']:.2f}, r {ridge['pearson_r']:.2f})"
    )
    assert res["n_subjects"] == 8 and res["n_windows"] > 1000
    assert 5.0 < peak["MAE"] < 30.0
    assert 3.0 < ridge["MAE"] < 30.0
