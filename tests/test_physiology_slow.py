"""The README's real-data pretraining benchmark, run in full (slow: ~9 min on a 2-core box;
`make test-slow`). It checks what the README claims: CLIP on 8 real subjects learns something that
transfers to 2 held-out subjects (well above chance), measured next to the spectral baseline and the
heart-rate oracle on the same pools. The issue's R@1 >= 0.30 bar is not claimed (README: what limits it)."""

from __future__ import annotations

import json

import pytest

from anyppg_edge.cli import main

README_FLAGS = ["--model", "small-k15", "--folds", "5", "--run-folds", "1", "--steps-per-fold", "1500", "--lr", "6e-3",
                "--group-batches", "--groups-per-batch", "4", "--crop-scale-min", "0.85", "--noise-std", "0.05",
                "--second-ppg"]


@pytest.mark.slow
def test_clip_learns_real_physiology_on_held_out_subjects(shared, tmp_path):
    out = tmp_path / "phys"
    assert main(["physiology", "--out", str(out), *README_FLAGS]) == 0
    s = json.loads((out / "summary.json").read_text())
    chance = s["chance_R@1"]
    # README: R@1 0.250 (16x chance), R@10 0.812 (chance 0.156); thread-count float noise moves it a little
    assert s["model"]["R@1"] > 6 * chance
    assert s["model"]["R@10"] > 2 * 10 * chance
    assert s["baseline"]["R@1"] > 0.25 and s["hr_oracle"]["R@1"] > 0.15
    # README fit check: on its own training subjects the model is above the spectral baseline (0.439 vs 0.336)
    (fold,) = s["folds"]
    assert fold["train-subjects model R@1"] > fold["train-subjects baseline R@1"]
