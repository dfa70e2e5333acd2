"""Retrieval metrics on hand-made cases with known answers, pool sampling, and the hand-crafted
spectral baselines on simulated data."""

from __future__ import annotations

import numpy as np
import pytest

from anyppg_edge.data import SimulatorConfig, simulate_cohort, simulate_pair
from anyppg_edge.data.windows import WindowSet, extract_windows
from anyppg_edge.eval.baselines import spectral_features, spectral_peak_hr_bpm
from anyppg_edge.eval.retrieval import (
    _pools,
    metrics_from_ranks,
    paired_pool_bootstrap,
    pooled_ranks,
    pooled_retrieval,
    retrieval_metrics,
    retrieval_ranks,
)
from anyppg_edge.preprocessing import preprocess_ppg_window

TOLERANCES = {
    "metric_abs": 1e-12,  # metrics from integer ranks: exact up to float rounding
    "hr_bpm": 3.0,  # spectral-peak HR on a clean simulated window vs the known mean HR
    # spectral baseline on 8 simulated subjects, pools of 32 (chance 1/32 = 0.031): R@1 must clear
    # five times chance.
    "spectral_r1_over_chance": 5.0,
}


def test_identity_is_perfect():
    x = np.random.default_rng(0).standard_normal((20, 8))
    m = retrieval_metrics(x, x)
    for k in ("R@1", "R@5", "R@10", "mAP@10", "MRR"):
        assert m[k] == 1.0


def test_known_permutation_by_hand():
    # one-hot gallery; query i points at gallery perm[i]; the true match of row i is gallery i.
    # Query i has cosine 1 with gallery perm[i] and 0 with every other row, including (if perm[i]
    # != i) its true match, which then ties with all the other zeros: pessimistic rank = n.
    n = 12
    g = np.eye(n)
    perm = np.arange(n)
    perm[[0, 1]] = [1, 0]  # rows 0 and 1 swapped, 10 rows correct
    q = g[perm]
    ranks = retrieval_ranks(q, g)
    assert ranks.tolist() == [12, 12] + [1] * 10
    m = retrieval_metrics(q, g)
    tol = TOLERANCES["metric_abs"]
    assert m["R@1"] == pytest.approx(10 / 12, abs=tol)
    assert m["R@10"] == pytest.approx(10 / 12, abs=tol)
    assert m["mAP@10"] == pytest.approx(10 / 12, abs=tol)  # rank 12 > 10 counts 0
    assert m["MRR"] == pytest.approx((10 + 2 / 12) / 12, abs=tol)


def test_graded_ranks_by_hand():
    # Unit vectors on a circle (cosine = cos of the angle): gallery i at 10*i degrees (0..90).
    # Even i: query at 10*i + 3 deg: own match 3 deg away, next gallery 7 deg -> rank 1.
    # Odd i: query at 10*i + 14 deg: own 14 deg, gallery i+1 4 deg, i+2 6 deg, i-1 24 deg -> rank 3;
    # i = 9 has no gallery beyond it -> rank 1.
    n = 10
    ang = np.deg2rad(np.arange(n) * 10.0)
    shift = np.deg2rad(np.where(np.arange(n) % 2 == 0, 3.0, 14.0))
    g = np.stack([np.cos(ang), np.sin(ang)], 1)
    q = np.stack([np.cos(ang + shift), np.sin(ang + shift)], 1)
    ranks = retrieval_ranks(q, g)
    # odd i: closer are i+1 (6 deg) and i+2 (4 deg) when they exist; i = 9 has none, i = 7 one more
    expect = [1, 3, 1, 3, 1, 3, 1, 3, 1, 1]
    assert ranks.tolist() == expect
    m = retrieval_metrics(q, g, ks=(1, 2, 5))
    assert m["R@1"] == pytest.approx(6 / 10)
    assert m["R@2"] == pytest.approx(6 / 10)
    assert m["R@5"] == 1.0
    assert m["MRR"] == pytest.approx((6 + 4 / 3) / 10)
    assert m["mAP@5"] == pytest.approx(m["MRR"])


def test_constant_embeddings_are_not_rewarded():
    x = np.ones((16, 4))
    assert retrieval_metrics(x, x)["R@1"] == 0.0


def test_pools_deterministic_and_disjoint():
    rng = np.random.default_rng(0)
    idx = np.arange(1000)
    a = _pools(idx, 64, None, np.random.default_rng(5))
    b = _pools(idx, 64, None, np.random.default_rng(5))
    assert len(a) == 1000 // 64
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    flat = np.concatenate(a)
    assert np.unique(flat).size == flat.size
    more = _pools(idx, 64, 40, np.random.default_rng(5))
    assert len(more) == 40 and all(np.unique(p).size == 64 for p in more)
    q = rng.standard_normal((300, 16))
    g = q + 2.0 * rng.standard_normal((300, 16))
    r1 = pooled_retrieval(q, g, pool_size=64, seed=3)
    r2 = pooled_retrieval(q, g, pool_size=64, seed=3)
    assert r1 == r2
    assert r1["n_pools"] == 4 and r1["n_queries"] == 256
    assert r1["chance_R@1"] == pytest.approx(1 / 64)


def test_pooled_random_embeddings_near_chance():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((64 * 40, 8)), rng.standard_normal((64 * 40, 8))
    r = pooled_retrieval(q, g, pool_size=64)
    assert abs(r["R@1"] - 1 / 64) < 0.01


def test_pooled_groups_weighted_and_macro():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((200, 8))
    g = q.copy()
    g[:130] = rng.standard_normal((130, 8))  # group "a": random; group "b": perfect
    labels = np.array(["a"] * 130 + ["b"] * 70)
    r = pooled_retrieval(q, g, pool_size=64, groups=labels)
    assert r["per_group"]["b"]["R@1"] == 1.0
    assert r["per_group"]["a"]["n_queries"] == 128 and r["per_group"]["b"]["n_queries"] == 64
    ra = r["per_group"]["a"]["R@1"]
    assert r["macro"]["R@1"] == pytest.approx((ra + 1.0) / 2)
    assert r["weighted"]["R@1"] == pytest.approx((128 * ra + 64) / 192)
    assert r["R@1"] == r["weighted"]["R@1"]
    r2 = pooled_retrieval(q, g, pool_size=100, groups=labels)
    assert r2["skipped_groups"] == {"b": 70}


def test_pooled_ranks_are_the_pools_of_pooled_retrieval():
    rng = np.random.default_rng(5)
    q = rng.normal(size=(200, 8))
    g = q + rng.normal(scale=1.5, size=q.shape)
    ranks = pooled_ranks(q, g, pool_size=64, seed=3)
    assert [r.size for r in ranks] == [64, 64, 64]
    ref = pooled_retrieval(q, g, pool_size=64, seed=3)
    for key, value in metrics_from_ranks(np.concatenate(ranks)).items():
        assert value == pytest.approx(ref[key], abs=1e-12)  # equal-size pools: mean over pools = over queries
    with pytest.raises(ValueError, match="cannot fill pools"):
        pooled_ranks(q[:10], g[:10], pool_size=64)


def test_paired_pool_bootstrap():
    rng = np.random.default_rng(6)
    base = [rng.integers(1, 65, size=64) for _ in range(20)]
    same = paired_pool_bootstrap(base, [r.copy() for r in base], n_boot=500)
    assert all(v["diff"] == 0 and v["ci95_low"] == 0 == v["ci95_high"] for v in same.values())
    better = [np.maximum(1, r - 10) for r in base]  # every query ranked 10 places higher (or first)
    res = paired_pool_bootstrap(better, base, n_boot=2000, seed=1)
    manual = np.mean(np.concatenate(better) <= 1) - np.mean(np.concatenate(base) <= 1)
    assert res["R@1"]["diff"] == pytest.approx(manual)
    assert 0 < res["MRR"]["ci95_low"] < res["MRR"]["diff"] < res["MRR"]["ci95_high"]
    assert res["MRR"]["p_a_not_better"] == 0.0
    worse = paired_pool_bootstrap(base, better, n_boot=2000, seed=1)
    assert worse["MRR"]["ci95_high"] < 0 and worse["MRR"]["p_a_not_better"] == 1.0
    assert paired_pool_bootstrap(better, base, n_boot=2000, seed=1) == res  # deterministic in seed
    noise = [rng.integers(1, 65, size=64) for _ in range(20)]  # unrelated ranks: the interval holds 0
    n = paired_pool_bootstrap(noise, base, n_boot=2000)
    assert n["MRR"]["ci95_low"] < 0 < n["MRR"]["ci95_high"] and n["R@1"]["ci95_low"] < 0 < n["R@1"]["ci95_high"]
    with pytest.raises(ValueError, match="same pools"):
        paired_pool_bootstrap(base, [r[:10] for r in base])
    with pytest.raises(ValueError, match="same non-zero number"):
        paired_pool_bootstrap(base, base[:3])


def test_spectral_baseline_beats_chance_on_simulated_pairs():
    recs = simulate_cohort(8, duration_s=60.0, seed=11)
    ws = WindowSet.concat([extract_windows(r, hop_s=5.0, ecg_quality=False) for r in recs])
    fp, fe = spectral_features(ws.ppg, ws.ecg)
    assert fp.shape == fe.shape and fp.shape[0] == len(ws)
    np.testing.assert_allclose(fp.mean(axis=1), 0.0, atol=1e-5)
    r = pooled_retrieval(fp, fe, pool_size=32, seed=0)
    assert r["R@1"] > TOLERANCES["spectral_r1_over_chance"] / 32, r


@pytest.mark.parametrize("hr", [55.0, 72.0, 118.0])
def test_spectral_peak_hr(hr):
    rec = simulate_pair(
        SimulatorConfig(
            duration_s=10.0, mean_hr_bpm=hr, hrv_sdnn_ms=5, rsa_amplitude_ms=5, lf_amplitude_ms=0, seed=4
        )
    )
    x = preprocess_ppg_window(rec.ppg.data, rec.ppg.sample_rate_hz)
    est = spectral_peak_hr_bpm(x)
    assert isinstance(est, float)
    assert abs(est - hr) <= TOLERANCES["hr_bpm"]
    batch = spectral_peak_hr_bpm(np.stack([x, x]))
    assert batch.shape == (2,)


def test_heart_rate_codes_rank_by_heart_rate_difference():
    from anyppg_edge.eval.baselines import heart_rate_codes

    hr = np.array([60.0, 61.0, 64.0, 80.0, 120.0, np.nan])
    codes = heart_rate_codes(hr, sigma_bpm=1.0)
    sim = (codes[:5] / np.linalg.norm(codes[:5], axis=1, keepdims=True)) @ (codes[0] / np.linalg.norm(codes[0]))
    assert np.all(np.diff(sim) < 0)  # cosine falls as |HR - 60| grows: 1, 4, 20, 60 bpm
    assert not codes[5].any()  # unknown HR: a zero code, similar to nothing
    # as an oracle (the same rates on both sides) with distinct rates every query is found first
    distinct = heart_rate_codes(np.linspace(50, 180, 64))
    assert pooled_retrieval(distinct, distinct, pool_size=64)["R@1"] == 1.0
    with pytest.raises(ValueError, match="sigma_bpm"):
        heart_rate_codes(hr, sigma_bpm=0)
