"""Pretraining shards: preparation (serial/parallel identical, resumable), subject-level splits,
the memory-mapped dataset, and clear errors for config mixing and corrupt shards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge.data import read_recording, simulate_cohort
from anyppg_edge.data.shard_dataset import ShardDataset
from anyppg_edge.data.shards import prepare_shards, write_index
from anyppg_edge.data.splits import recording_splits, subject_split
from anyppg_edge.data.windows import extract_windows
from anyppg_edge.errors import ContractMismatchError, DataFormatError
from anyppg_edge.preprocessing import PreprocessConfig

TOLERANCES = {
    # float16 storage of z-scored float32 windows: half a unit in the last place is 2**-11 relative
    # (|x| rounds to 11 significant bits); z-scored windows stay below |x| = 16, so the absolute error
    # is below 16 * 2**-11 = 7.8e-3.
    "float16_rel": 2.0**-11,
    "float16_abs": 16 * 2.0**-11,
    # float32 storage is exact.
    "float32_abs": 0.0,
}

BIDMC = Path("data") / "bidmc" / "bidmc_01_Signals.csv"


@pytest.fixture(scope="module")
def sources(shared):
    sims = simulate_cohort(4, duration_s=50.0, seed=3)
    return [*sims, str(shared / BIDMC)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, sources):
    out = tmp_path_factory.mktemp("shards_w1")
    summary = prepare_shards(sources, out, hop_s=10.0, workers=1, ecg_quality=False, progress=False)
    return out, summary


def test_layout_summary_and_index(prepared, sources):
    out, summary = prepared
    assert len(summary["run"]["processed"]) == len(sources)
    assert summary["run"]["skipped"] == []
    assert set(summary["datasets"]) == {"simulator", "bidmc"}
    sim = summary["datasets"]["simulator"]
    assert sim["subjects"] == 4 and sim["segments"] == 4 * 5
    assert sim["hours"] == pytest.approx(20 * 10 / 3600, abs=1e-4)
    assert summary["total"]["segments"] == sum(
        summary["total"][f"{s}_segments"] for s in ("train", "val", "test")
    )
    for f in ("index.npz", "summary.json", "summary.md", "preprocess_config.json"):
        assert (out / f).is_file()
    assert "| bidmc |" in (out / "summary.md").read_text()
    side = json.loads(next((out / "shards").glob("bidmc*.json")).read_text())
    assert side["config_hash"] == PreprocessConfig().config_hash()
    assert len(side["start_s"]) == side["n_windows"] > 0
    assert side["subject_id"] == "bidmc/bidmc_01"


def test_workers_give_identical_shards(prepared, sources, tmp_path):
    out1, _ = prepared
    s2 = prepare_shards(sources, tmp_path, hop_s=10.0, workers=2, ecg_quality=False, progress=False)
    names1 = sorted(p.name for p in (out1 / "shards").glob("*.npy"))
    assert names1 == sorted(p.name for p in (tmp_path / "shards").glob("*.npy"))
    for name in names1:
        np.testing.assert_array_equal(np.load(out1 / "shards" / name), np.load(tmp_path / "shards" / name))
    with np.load(out1 / "index.npz") as a, np.load(tmp_path / "index.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert len(s2["run"]["processed"]) == len(sources)


def test_resumable_skips_finished(sources, tmp_path):
    s1 = prepare_shards(sources[:2], tmp_path, ecg_quality=False, progress=False)
    assert len(s1["run"]["processed"]) == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "shards").iterdir()}
    s2 = prepare_shards(sources[:3], tmp_path, ecg_quality=False, progress=False)
    assert s2["run"]["skipped"] == s1["run"]["processed"]
    assert len(s2["run"]["processed"]) == 1
    for name, t in mtimes.items():
        assert (tmp_path / "shards" / name).stat().st_mtime_ns == t, name
    assert s2["total"]["recordings"] == 3
    # no temporary files left behind
    assert not [p for p in (tmp_path / "shards").iterdir() if p.name.startswith(".")]


def test_subject_never_in_two_splits(prepared):
    out, _ = prepared
    with np.load(out / "index.npz") as z:
        keys = np.char.add(np.char.add(z["dataset"], "|"), z["subject_id"])
        split = z["split"]
    for k in np.unique(keys):
        assert len(np.unique(split[keys == k])) == 1, k
    # 5 subjects: every split non-empty
    assert set(np.unique(split)) == {"train", "val", "test"}


def test_recording_splits_are_the_shard_index_splits(shared, tmp_path):
    """The export/golden/parity "held-out" subjects (``recording_splits``) must be exactly the val/test
    subjects of a shard folder made from the same recordings, so that no model is exported or
    parity-tested on windows of its own training subjects."""
    from anyppg_edge.data import load_shared_recordings

    recs = load_shared_recordings(shared / "data")
    prepare_shards(recs, tmp_path, hop_s=30.0, workers=1, ecg_quality=False, progress=False)
    with np.load(tmp_path / "index.npz") as z:
        index = {f"{d}/{s}": sp for d, s, sp in zip(z["dataset"], z["subject_id"], z["split"], strict=True)}
    assert recording_splits(recs) == index
    assert {"train", "val", "test"} == set(index.values())


def test_subject_split_deterministic_and_stable():
    keys = [f"ds\x1fS{i:04d}" for i in range(2000)]
    a = subject_split(keys, seed=1)
    assert a == subject_split(reversed(keys), seed=1)
    assert a != subject_split(keys, seed=2)
    frac = np.mean([a[k] == "train" for k in keys])
    assert 0.76 < frac < 0.84
    # adding subjects does not move existing ones (large corpus: hash thresholds)
    b = subject_split([*keys, "ds\x1fnew"], seed=1)
    assert all(b[k] == a[k] for k in keys)
    for n in (3, 4, 7):
        assert set(subject_split([f"s{i}" for i in range(n)]).values()) == {"train", "val", "test"}


def test_dataset_items_match_extract_windows(prepared, shared):
    out, _ = prepared
    ds = ShardDataset(out, split="all")
    rec = read_recording(shared / BIDMC)
    ws = extract_windows(rec, hop_s=10.0, ecg_quality=False)
    rows = np.flatnonzero(ds.datasets == "bidmc")
    assert rows.size == len(ws)
    order = np.argsort(ds.start_s[rows])
    rows = rows[order]
    np.testing.assert_array_equal(ds.start_s[rows], ws.start_s)
    item = ds[int(rows[3])]
    assert set(item) == {"ppg", "ecg"}
    assert tuple(item["ppg"].shape) == (1, 1250) and str(item["ppg"].dtype) == "torch.float32"
    assert ds.meta(int(rows[3]))["subject_id"] == "bidmc/bidmc_01"
    ppg, ecg = ds.get_batch(rows)
    assert ppg.shape == (len(ws), 1, 1250) and ppg.dtype == np.float32
    for got, want in ((ppg[:, 0], ws.ppg), (ecg[:, 0], ws.ecg)):
        err = np.abs(got - want)
        assert err.max() <= TOLERANCES["float16_abs"]
        assert np.all(err <= TOLERANCES["float16_rel"] * np.abs(want) + 1e-7)
    np.testing.assert_array_equal(item["ppg"].numpy()[0], ppg[3, 0])
    # splits partition the windows
    assert sum(len(ShardDataset(out, s)) for s in ("train", "val", "test")) == len(ds)


def test_float32_is_exact(sources, tmp_path):
    rec = sources[0]
    prepare_shards([rec], tmp_path, dtype="float32", ecg_quality=False, progress=False)
    ds = ShardDataset(tmp_path, split="all")
    ws = extract_windows(rec, hop_s=10.0, ecg_quality=False)
    ppg, ecg = ds.get_batch(np.arange(len(ds)))
    assert np.abs(ppg[:, 0] - ws.ppg).max() <= TOLERANCES["float32_abs"]
    assert np.abs(ecg[:, 0] - ws.ecg).max() <= TOLERANCES["float32_abs"]


def test_get_batch_random_order_and_repeats(prepared):
    out, _ = prepared
    ds = ShardDataset(out, split="all")
    idx = np.random.default_rng(0).integers(0, len(ds), 50)
    ppg, ecg = ds.get_batch(idx)
    for j, i in enumerate(idx):
        w = ds.window(int(i))
        np.testing.assert_array_equal(ppg[j, 0], w[0])
        np.testing.assert_array_equal(ecg[j, 0], w[1])
    with pytest.raises(IndexError):
        ds.get_batch([len(ds)])


def test_mismatched_config_hash_is_refused(sources, tmp_path):
    prepare_shards(sources[:1], tmp_path, ecg_quality=False, progress=False)
    other = PreprocessConfig(ecg_lowpass_hz=40.0)
    with pytest.raises(ContractMismatchError, match="config hash"):
        prepare_shards(sources[1:2], tmp_path, cfg=other, ecg_quality=False, progress=False)
    # a foreign sidecar copied into the folder is caught when the index is built
    foreign = tmp_path.parent / (tmp_path.name + "_other")
    prepare_shards(sources[1:2], foreign, cfg=other, ecg_quality=False, progress=False)
    for p in (foreign / "shards").iterdir():
        shutil.copy(p, tmp_path / "shards" / p.name)
    with pytest.raises(ContractMismatchError, match="another preprocessing config"):
        write_index(tmp_path)
    with pytest.raises(ContractMismatchError):
        ShardDataset(foreign, expected_config_hash=PreprocessConfig().config_hash())


def test_truncated_shard_is_a_clear_error(sources, tmp_path):
    prepare_shards(sources[:2], tmp_path, ecg_quality=False, progress=False)
    shard = sorted((tmp_path / "shards").glob("*.npy"))[0]
    data = shard.read_bytes()
    ds = ShardDataset(tmp_path, split="all")
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=shard.name):
        ds.get_batch(np.arange(len(ds)))
    with pytest.raises(DataFormatError, match=shard.name):
        write_index(tmp_path)
