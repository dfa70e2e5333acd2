"""Distillation students: registry configs, deployment budgets per tier, forward pass."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anyppg_edge.cli import main as cli_main
from anyppg_edge.models import count_params, create_model, get_model_spec, list_models
from anyppg_edge.models.budget import TIERS, budget, budget_table, check_tier, int8_weight_bytes

STUDENTS = {"student-watch-slim": "watch", "student-phone": "phone"}
# the watch students that predate TFLM's measured arena: in every watch limit but the arena
OVER_ARENA = ("student-watch", "student-watch-k9")


def test_students_are_registered_with_their_tier():
    for name, tier in STUDENTS.items():
        assert name in list_models()
        spec = get_model_spec(name)
        assert spec.family == "net1d"
        assert (spec.input_sample_rate_hz, spec.input_window_s, spec.input_samples) == (125, 10.0, 1250)
        assert tier in spec.description.lower()
        assert spec.expected_params == count_params(create_model(name))


@pytest.mark.parametrize("name,tier", list(STUDENTS.items()))
def test_student_fits_its_tier(name, tier):
    assert check_tier(name, tier) == []


@pytest.mark.parametrize("name", OVER_ARENA)
def test_earlier_watch_students_are_over_the_tflm_arena_only(name):
    (bad,) = check_tier(name, "watch")
    assert "estimated TFLM arena" in bad and "65,536" in bad


def test_watch_student_budget_figures():
    row = budget("student-watch-slim")
    lim = TIERS["watch"]
    assert 100_000 <= row.params <= lim.max_params == 150_000
    assert row.macs_per_window <= lim.max_macs_per_window == 5_000_000
    assert row.int8_weight_bytes <= lim.max_int8_weight_bytes == 200_000
    assert row.peak_activation_int8_bytes == row.peak_activation_elements < row.tflm_arena_estimate_bytes <= 65_536
    assert row.float32_weight_bytes == 4 * row.params


def test_phone_student_is_well_above_the_watch_tier():
    phone, watch = budget("student-phone"), budget("student-watch")
    assert phone.params <= TIERS["phone"].max_params == 1_000_000
    assert phone.params >= 3 * watch.params
    assert check_tier("student-phone", "watch")  # too big for a watch: the tiers are really different


def test_check_tier_reports_violations_for_the_teacher():
    bad = check_tier("anyppg-released", "watch")
    assert any("params" in v and "4,044,272" in v for v in bad)
    assert any("MACs" in v for v in bad)
    assert any("TFLM arena" in v for v in bad)  # activations alone are 170,272 B > 64 KiB
    assert check_tier("anyppg-released", "phone")
    with pytest.raises(KeyError, match="unknown tier"):
        check_tier("student-watch", "fridge")


@pytest.mark.parametrize("name", [*STUDENTS, *OVER_ARENA])
def test_student_forward(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 1250))
    assert y.shape == (2, model.out_dim)
    assert model.out_dim == get_model_spec(name).net1d.filter_list[-1]
    assert torch.isfinite(y).all()


def test_int8_weight_bytes_formula():
    # generic model: conv 1->4 k3: 12 weights + 4 x (4 B bias + 4 B scale); BatchNorm (not foldable
    # for a non-Net1D model): 2 x 4 x 4 B; linear 4->2: 8 weights + 2 x 8 B.
    m = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(4, 2))
    assert int8_weight_bytes(m) == (12 + 32) + 32 + (8 + 16)
    # Net1D: folded BatchNorms are free, so it is below the naive "every parameter a byte, every
    # BN an affine" bound but above the weight count alone
    tiny = create_model("tiny")
    weights = sum(p.numel() for n, p in tiny.named_parameters() if n.endswith("weight") and p.dim() > 1)
    assert weights < int8_weight_bytes(tiny) < 4 * count_params(tiny)


def test_budget_table_and_cli(capsys):
    rows = budget_table()
    assert [r["model"] for r in rows] == list_models()
    by_name = {r["model"]: r for r in rows}
    assert by_name["student-watch-slim"]["watch"] == "ok"
    assert by_name["student-watch-k9"]["watch"] == "over: arena"
    assert by_name["student-phone"]["phone"] == "ok"
    assert by_name["anyppg-released"]["watch"].startswith("over:")
    assert cli_main(["budget", "student-watch-slim", "student-phone"]) == 0
    out = capsys.readouterr().out
    assert "| student-watch-slim |" in out and "| student-phone |" in out and "| watch |" in out
