"""Calibration sets for int8 quantization: stratified, deterministic builds from the simulator, the
shared real recordings and shard folders; checksummed save/load; the committed default; the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge import __version__
from anyppg_edge.data import Channel, Recording, simulate_cohort
from anyppg_edge.data.shards import prepare_shards
from anyppg_edge.deploy import calibration as cal
from anyppg_edge.deploy.calibration import (
    CALIBRATION_SCHEMA,
    CalibrationSet,
    build_calibration_set,
    default_calibration_dir,
    iter_batches,
    load_calibration_set,
    load_default_calibration_set,
    ppg_quality,
    save_calibration_set,
)
from anyppg_edge.deploy.calibration.build import _select
from anyppg_edge.errors import ContractMismatchError, DataFormatError
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

L = DEFAULT_CONFIG.window_samples
META_FIELDS = (
    "source",
    "dataset",
    "subject_id",
    "start_s",
    "hr_bpm",
    "hr_source",
    "quality",
    "hr_bin",
    "quality_level",
    "stratum",
)


@pytest.fixture(scope="module")
def recordings() -> list[Recording]:
    return simulate_cohort(5, duration_s=60.0, seed=1)


@pytest.fixture(scope="module")
def small_set(recordings) -> CalibrationSet:
    return build_calibration_set([recordings], n_windows=24, seed=0, progress=False)


@pytest.fixture()
def saved(small_set, tmp_path):
    out = tmp_path / "cal"
    save_calibration_set(small_set, out)
    return out


def test_build_from_simulator_recordings(small_set, recordings):
    cs = small_set
    assert cs.windows.dtype == np.float32 and cs.windows.shape == (24, L)
    assert cs.windows.flags.c_contiguous
    for name in META_FIELDS:
        assert len(getattr(cs, name)) == 24, name
    # preprocessed model inputs: z-scored per window
    np.testing.assert_allclose(cs.windows.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(cs.windows.std(axis=1), 1, atol=1e-3)
    assert np.isfinite(cs.hr_bpm).all() and ((cs.hr_bpm > 30) & (cs.hr_bpm < 240)).all()
    assert set(cs.hr_source) == {"ecg-rpeaks"}  # every simulated window has an ECG
    assert ((cs.quality >= 0) & (cs.quality <= 1)).all()
    assert set(cs.source) == {"recordings"}
    assert set(cs.hr_bin) <= set(cal.HR_BIN_LABELS) and set(cs.quality_level) <= set(cal.QUALITY_LEVELS)
    for s, sid, hb, ql in zip(cs.stratum, cs.subject_id, cs.hr_bin, cs.quality_level, strict=True):
        assert s == f"simulator:{sid}|{hb} bpm|q-{ql}"
    # HR labels agree with the simulator's ground truth (its HR trace) to a few bpm
    by_id = {r.subject_id: r for r in recordings}
    for sid, t0, hr in zip(cs.subject_id, cs.start_s, cs.hr_bpm, strict=True):
        trace = np.asarray(by_id[sid].meta["hr_bpm_trace"])
        k = int(t0 // 2)
        assert abs(hr - np.nanmean(trace[k : k + 2])) < 10
    m = cs.manifest
    assert m["schema"] == CALIBRATION_SCHEMA and m["created_by"] == __version__
    assert m["count"] == m["requested"] == 24 and m["window_samples"] == L and m["sample_rate_hz"] == 125
    assert m["sha256"] == cal.windows_sha256(cs.windows)
    assert m["preprocess_config_hash"] == DEFAULT_CONFIG.config_hash()
    assert m["preprocess"] == DEFAULT_CONFIG.to_dict()
    assert m["sources"] == ["recordings"] and m["seed"] == 0
    assert sum(m["counts"]["subject"].values()) == 24
    assert sum(m["counts"]["quality"].values()) == sum(m["counts"]["hr_bin"].values()) == 24
    assert json.loads(json.dumps(m)) == m  # plain JSON


def test_stratification_covers_all_subjects_hr_bins_and_quality_levels(small_set, recordings):
    cs = small_set
    assert set(cs.subject_id) == {r.subject_id for r in recordings}
    per_subject = np.array(list(cs.manifest["counts"]["subject"].values()))
    assert per_subject.max() - per_subject.min() <= 1  # round-robin over subjects
    cov = cs.manifest["coverage"]
    for what in ("subject", "hr_bin", "quality"):
        assert cov[what]["missing"] == [] and cov[what]["selected"] == cov[what]["pool"], what
    assert set(cs.quality_level) == set(cal.QUALITY_LEVELS)
    assert cov["hr_bin"]["pool"] >= 2  # the cohort spans several HR bins, all drawn
    # tertile edges split the labelled pool into three levels; selected windows respect them
    lo, hi = cs.manifest["quality_tertile_edges"]
    assert (cs.quality[cs.quality_level == "low"] <= lo).all()
    assert (cs.quality[cs.quality_level == "high"] > hi).all()
    # no window drawn twice
    assert len(set(zip(cs.subject_id, cs.start_s, strict=True))) == len(cs)


def test_select_reaches_rare_strata_first():
    # 3 subjects; one holds the only high-HR windows; 3 draws must cover all subjects and that bin
    subject = np.array(["a"] * 20 + ["b"] * 20 + ["c"] * 20)
    hr_idx = np.array([1] * 20 + [1] * 20 + [1] * 18 + [4] * 2)
    q_idx = np.tile([0, 1, 2, 0], 15)
    chosen = _select(subject, hr_idx, q_idx, 3, np.random.default_rng(0))
    assert sorted(subject[chosen]) == ["a", "b", "c"]
    assert 4 in hr_idx[chosen]
    assert len(set(q_idx[chosen])) == 3
    # asking for more than the pool returns the whole pool, once each
    everything = _select(subject, hr_idx, q_idx, 100, np.random.default_rng(0))
    assert sorted(everything.tolist()) == list(range(60))


def test_deterministic_under_seed(recordings, small_set):
    again = build_calibration_set([recordings], n_windows=24, seed=0, progress=False)
    assert again.manifest == small_set.manifest
    np.testing.assert_array_equal(again.windows, small_set.windows)
    for name in META_FIELDS:
        np.testing.assert_array_equal(getattr(again, name), getattr(small_set, name))
    other = build_calibration_set([recordings], n_windows=24, seed=1, progress=False)
    assert other.manifest["sha256"] != small_set.manifest["sha256"]
    assert set(other.subject_id) == set(small_set.subject_id)


def test_save_load_round_trip(small_set, saved):
    assert sorted(p.name for p in saved.iterdir()) == ["manifest.json", "meta.json", "windows.npy"]
    cs = load_calibration_set(saved)
    np.testing.assert_array_equal(cs.windows, small_set.windows)
    assert cs.windows.dtype == np.float32
    for name in META_FIELDS:
        np.testing.assert_array_equal(getattr(cs, name), getattr(small_set, name))
    assert cs.manifest == json.loads((saved / "manifest.json").read_text())
    assert cs.manifest["sha256"] == small_set.manifest["sha256"]
    # saving the loaded set again reproduces the same bytes
    again = saved.parent / "again"
    save_calibration_set(cs, again)
    for f in ("windows.npy", "meta.json", "manifest.json"):
        assert (again / f).read_bytes() == (saved / f).read_bytes(), f


def test_corruption_is_a_data_format_error(saved):
    w = saved / "windows.npy"
    raw = bytearray(w.read_bytes())
    raw[-7] ^= 0x40  # flip one bit in the last window
    w.write_bytes(bytes(raw))
    with pytest.raises(DataFormatError, match="sha256"):
        load_calibration_set(saved)
    w.write_bytes(bytes(raw[: len(raw) // 2]))  # truncated
    with pytest.raises(DataFormatError, match=r"windows\.npy"):
        load_calibration_set(saved)
    w.unlink()
    with pytest.raises(DataFormatError, match=r"missing windows\.npy"):
        load_calibration_set(saved)


def test_metadata_and_manifest_tampering(saved):
    meta = saved / "meta.json"
    cols = json.loads(meta.read_text())
    cols["hr_bpm"][0] += 1.0
    meta.write_text(json.dumps(cols))
    with pytest.raises(DataFormatError, match=r"meta\.json"):
        load_calibration_set(saved)
    meta.unlink()
    with pytest.raises(DataFormatError, match=r"missing meta\.json"):
        load_calibration_set(saved)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="unreadable calibration manifest"):
        load_calibration_set(saved)
    (saved / "manifest.json").unlink()
    with pytest.raises(DataFormatError, match="not a calibration set folder"):
        load_calibration_set(saved)


def test_other_preprocessing_config_is_a_contract_mismatch(saved):
    other = PreprocessConfig(ecg_lowpass_hz=40.0)
    with pytest.raises(ContractMismatchError, match="preprocessing config hash"):
        load_calibration_set(saved, cfg=other)
    assert len(load_calibration_set(saved, cfg=None)) == 24  # no config check asked


def test_iter_batches(small_set):
    batches = list(iter_batches(small_set, 10))
    assert [b.shape for b in batches] == [(10, 1, L), (10, 1, L), (4, 1, L)]
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches)[:, 0], small_set.windows)
    batches[0][:] = 0  # a copy: the set is untouched
    assert small_set.manifest["sha256"] == cal.windows_sha256(small_set.windows)
    assert [b.shape[0] for b in iter_batches(small_set, 1)] == [1] * 24
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_batches(small_set, 0))


def test_ppg_quality_separates_clean_pulse_from_noise():
    fs, t = 125.0, np.arange(L) / 125.0
    pulse = np.sin(2 * np.pi * 1.2 * t) + 0.4 * np.sin(2 * np.pi * 2.4 * t)
    noise = np.random.default_rng(0).standard_normal(L)
    q = ppg_quality(np.stack([pulse, noise]), [72.0, 72.0], fs=fs)
    assert q[0] > 0.95 and q[1] < 0.4
    assert ppg_quality(np.stack([pulse]), [110.0], fs=fs)[0] < 0.1  # wrong HR: power elsewhere


def test_ppg_only_recordings_use_the_spectral_heart_rate(recordings):
    rec = recordings[0]
    no_ecg = Recording(rec.subject_id, rec.dataset, {"ppg": Channel(rec.ppg.data, rec.ppg.sample_rate_hz)})
    cs = build_calibration_set([[no_ecg]], n_windows=4, seed=0, progress=False)
    assert len(cs) == 4 and set(cs.hr_source) == {"ppg-spectral"}
    assert abs(np.median(cs.hr_bpm) - rec.meta["config"]["mean_hr_bpm"]) < 10


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, recordings):
    out = tmp_path_factory.mktemp("cal_shards")
    prepare_shards(recordings[:3], out, hop_s=10.0, ecg_quality=False, progress=False)
    return out


def test_build_from_shards(tmp_path, recordings, shard_dir):
    cs = build_calibration_set([shard_dir], n_windows=9, seed=0, progress=False)
    assert len(cs) == 9 and set(cs.subject_id) == {r.subject_id for r in recordings[:3]}
    assert cs.manifest["sources"] == [f"shards:{shard_dir}"]
    assert set(cs.hr_source) == {"ecg-rpeaks"}
    np.testing.assert_array_equal(
        cs.windows, cs.windows.astype(np.float16).astype(np.float32)
    )  # float16 shards
    with pytest.raises(ContractMismatchError):
        build_calibration_set([shard_dir], 4, cfg=PreprocessConfig(ecg_lowpass_hz=40.0), progress=False)
    with pytest.raises(DataFormatError, match="not a directory"):
        build_calibration_set([tmp_path / "nowhere"], 4, progress=False)


def test_bad_arguments(recordings):
    with pytest.raises(ValueError, match="n_windows"):
        build_calibration_set(["simulator"], n_windows=0, progress=False)
    with pytest.raises(ValueError, match="no calibration sources"):
        build_calibration_set([], progress=False)
    with pytest.raises(TypeError, match="list of sources"):
        build_calibration_set("simulator", progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unsupported calibration source"):
        build_calibration_set([42], progress=False)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="given twice"):
        build_calibration_set(["simulator", "simulator"], progress=False)


# Rebuilding the committed default from the simulator on another numpy/scipy release: measured
# 3.6e-7 max abs on the z-scored float32 windows and ~1e-10 relative on the quality/HR columns
# (numpy 2.4.6 / scipy 1.17.1 vs the release that wrote the files).
REBUILD_TOLERANCES = {"windows_max_abs": 1e-5, "meta_rtol": 1e-7}


def test_committed_default_loads_and_matches_its_manifest(monkeypatch, tmp_path):
    d = default_calibration_dir()
    assert d == Path(cal.__file__).resolve().parent / "default"
    assert sum(p.stat().st_size for p in d.iterdir()) < 400_000
    cs = load_default_calibration_set()
    m = cs.manifest
    assert m == json.loads((d / "manifest.json").read_text())
    assert (m["sources"], m["count"], m["seed"]) == (["simulator"], 64, 0)
    assert cs.windows.shape == (64, L) and cal.windows_sha256(cs.windows) == m["sha256"]
    assert m["coverage"]["subject"]["missing"] == [] and m["coverage"]["quality"]["missing"] == []
    # without the folder (an installed package) the same set is rebuilt from the simulator: this also
    # proves the committed files are what the code produces (else: python -m calibration_data default)
    monkeypatch.setattr(cal, "default_calibration_dir", lambda: tmp_path / "absent")
    rebuilt = load_default_calibration_set()
    # the same windows selected (exact labels, strata and times) and the same values up to the float
    # rounding of another numpy/scipy release (a fresh install may resolve newer ones than the one
    # that wrote the files): hashes of float data cannot be compared across library versions
    stale = "stale default: run `python -m calibration_data default`"
    for col in ("subject_id", "source", "dataset", "stratum", "quality_level", "hr_bin", "hr_source", "start_s"):
        assert np.array_equal(getattr(rebuilt, col), getattr(cs, col)), (col, stale)
    assert np.abs(rebuilt.windows - cs.windows).max() <= REBUILD_TOLERANCES["windows_max_abs"], stale
    for col in ("quality", "hr_bpm"):
        np.testing.assert_allclose(getattr(rebuilt, col), getattr(cs, col), rtol=REBUILD_TOLERANCES["meta_rtol"],
                                   err_msg=stale)
    np.testing.assert_array_equal(rebuilt.stratum, cs.stratum)


def test_build_from_shared_covers_several_datasets(shared):
    cs = build_calibration_set(["shared"], n_windows=32, seed=0, hop_s=10.0, progress=False)
    m = cs.manifest
    assert len(cs) == 32 and m["sources"] == ["shared"] and set(cs.source) == {"shared"}
    assert set(cs.dataset) == {"ieee_spc2015", "bidmc", "neurokit"}
    assert len(set(cs.subject_id)) == 10 and m["coverage"]["subject"]["missing"] == []
    assert m["coverage"]["hr_bin"]["missing"] == [] and m["coverage"]["quality"]["missing"] == []
    assert len(set(cs.hr_bin)) >= 3  # resting (60-100 bpm) and running (>= 120 bpm) windows
    assert "ecg-rpeaks" in set(cs.hr_source)
    assert sum(m["rejected"].values()) > 0  # the quality gates did drop windows, and say so
    assert m["candidates"]["by_dataset"].keys() == {"ieee_spc2015", "bidmc", "neurokit"}


def test_cli_build_and_show(tmp_path, capsys, shard_dir, recordings):
    from anyppg_edge.cli.calibration import main

    # a shard folder as the source keeps this fast; "simulator" is what the committed default uses
    out = tmp_path / "built" / "cli9"
    argv = ["build", "--source", str(shard_dir), "--n", "9", "--seed", "3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "# Calibration set: 9 windows" in text and "| HR bin (bpm) |" in text
    assert all(f"| {r.subject_id} |" in text for r in recordings[:3])
    cs = load_calibration_set(out)
    assert len(cs) == 9 and cs.manifest["seed"] == 3 and cs.manifest["sources"] == [f"shards:{shard_dir}"]
    assert main(["show", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == cs.manifest
    shutil.rmtree(out)
    assert main(["show", str(out)]) == 2  # a user mistake: one line, exit 2, no traceback
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no manifest.json" in err and "Traceback" not in err
