"""Data faults and honest reports (issue 22): a shard folder never mixes settings, keeps its subjects'
split when recordings are added, takes splits pinned by name, holds the second wrist PPG as its own
view, does not flip an ECG on a near-even polarity vote, and the distillation and export reports name
the real subjects that are held out (or say plainly that none is).

Every case ends in a clear one-line error with exit 2 (through ``anyppg_edge.cli.main``), a flag in
the output, or a checked result. Folders are small: simulated subjects of 40-60 s and a few real
recordings of ``../shared`` cut every 30-60 s without the ECG quality check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge import preprocessing as pp
from anyppg_edge.cli import main
from anyppg_edge.data import SimulatorConfig, simulate_pair, write_npz
from anyppg_edge.data.recording import Channel, Recording
from anyppg_edge.data.shard_dataset import ShardDataset
from anyppg_edge.data.shards import heldout_subjects, index_subject_splits
from anyppg_edge.data.splits import resolve_subjects, subject_split
from anyppg_edge.data.windows import extract_windows
from anyppg_edge.errors import UnknownNameError, UsageError

SIM = ["--sim-duration-s", "40", "--no-ecg-quality"]
IEEE_01 = Path("data") / "ieee_spc2015" / "DATA_01_TYPE01.mat"
BIDMC = Path("data") / "bidmc" / "bidmc_01_Signals.csv"


def _prepare(out: Path, *args: str) -> int:
    return main(["prepare-data", *args, "--out", str(out)])


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    return err


def _splits(out: Path) -> dict[str, str]:
    """``{subject_id: split}`` of a folder's index."""
    return {k.split("\x1f", 1)[1]: v for k, v in index_subject_splits(out).items()}


def _sidecars(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*.json"))]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """4 simulated subjects, hop 10 s, float16, no ECG quality check, seed 0."""
    out = tmp_path_factory.mktemp("faults") / "base"
    assert _prepare(out, "--sim-subjects", "4", *SIM) == 0
    return out


@pytest.fixture
def folder(base, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(base, out)
    return out


# -- 1. one folder, one set of settings -------------------------------------------------------------


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--sim-subjects", "4", *SIM, "--hop-s", "5"], "made with hop_s=10; this run asks for hop_s=5"),
        (["--sim-subjects", "4", *SIM, "--dtype", "float32"], "made with dtype=float16; this run asks for dtype=float32"),
        (["--sim-subjects", "4", "--sim-duration-s", "40"], "made with ecg_quality=False; this run asks for ecg_quality=True"),
        (["--sim-subjects", "4", *SIM, "--seed", "1"], "made with split_seed=0; this run asks for split_seed=1"),
        (["--sim-subjects", "4", *SIM, "--second-ppg"], "made with second_ppg=False"),
        (["--sim-subjects", "6", *SIM, "--hop-s", "5", "--dtype", "float32"], "hop_s=10, dtype=float16"),
    ],
    ids=["hop", "dtype", "ecg-quality", "seed", "second-ppg", "two-settings"],
)
def test_other_settings_are_refused_and_the_folder_is_untouched(folder, args, phrase, capsys):
    before = {p.name: p.read_bytes() for p in [*folder.iterdir(), *(folder / "shards").iterdir()] if p.is_file()}
    assert _prepare(folder, *args) == 2
    err = _err_line(capsys)
    assert phrase in err and "--force" in err and "Refusing to mix" in err
    after = {p.name: p.read_bytes() for p in [*folder.iterdir(), *(folder / "shards").iterdir()] if p.is_file()}
    assert after == before


def test_force_replaces_the_shards_and_keeps_the_split(folder, capsys):
    split_before = _splits(folder)
    assert _prepare(folder, "--sim-subjects", "4", *SIM, "--hop-s", "5", "--force") == 0
    assert "--force: replaced the folder's previous shards" in capsys.readouterr().out
    sides = _sidecars(folder)
    assert len(sides) == 4 and {s["hop_s"] for s in sides} == {5.0}  # nothing of hop 10 is left
    assert _splits(folder) == split_before
    assert len(ShardDataset(folder, "all")) == 4 * 7  # 40 s at hop 5: 7 windows each
    # the folder now has the new settings: the same run again skips everything, the old one is refused
    assert _prepare(folder, "--sim-subjects", "4", *SIM, "--hop-s", "5") == 0
    assert "skipped (already done) ['simulator__sim_S000" in capsys.readouterr().out
    assert _prepare(folder, "--sim-subjects", "4", *SIM) == 2
    assert "made with hop_s=5" in _err_line(capsys)


def _strip_settings(out: Path) -> None:
    """What a folder looked like before settings were recorded."""
    cfg = json.loads((out / "preprocess_config.json").read_text())
    cfg.pop("settings")
    (out / "preprocess_config.json").write_text(json.dumps(cfg))
    for p in (out / "shards").glob("*.json"):
        side = json.loads(p.read_text())
        for k in ("settings", "ecg_polarity", "view", "views", "second_ppg"):
            side.pop(k, None)
        p.write_text(json.dumps(side))


def _mix_hops(out: Path) -> None:
    """A folder mixed by the old prepare-data: one shard cut at another hop."""
    p = sorted((out / "shards").glob("*.json"))[0]
    side = json.loads(p.read_text())
    side["hop_s"] = side["settings"]["hop_s"] = 5.0
    p.write_text(json.dumps(side))


@pytest.mark.parametrize(
    "damage, phrase",
    [(_strip_settings, "ecg_polarity_agreement=majority (> 1/2, before issue 22)"),
     (_mix_hops, "already mixes shards made with different settings (hop_s: 10.0, 5.0)")],
    ids=["legacy-polarity-rule", "already-mixed"],
)
def test_old_or_mixed_folders_are_refused_until_forced(folder, damage, phrase, capsys):
    damage(folder)
    assert _prepare(folder, "--sim-subjects", "5", *SIM) == 2
    assert phrase in _err_line(capsys)
    assert _prepare(folder, "--sim-subjects", "5", *SIM, "--force") == 0
    assert len(_sidecars(folder)) == 5


# -- 1b/2. splits: kept when subjects are added, pinned by name ----------------------------------------


def test_adding_subjects_keeps_every_existing_subject_in_its_split(folder):
    before = _splits(folder)
    keys = [f"simulator\x1fsim/S{i:03d}" for i in range(6)]
    redrawn = {k.split("\x1f")[1]: v for k, v in subject_split(keys).items()}
    assert any(redrawn[s] != sp for s, sp in before.items())  # what re-drawing the split would have done
    assert _prepare(folder, "--sim-subjects", "6", *SIM) == 0
    after = _splits(folder)
    assert {s: after[s] for s in before} == before and len(after) == 6
    # the new subjects' splits are deterministic: the same two steps in another folder give the same index
    other = folder.parent / "again"
    assert _prepare(other, "--sim-subjects", "4", *SIM) == 0 and _prepare(other, "--sim-subjects", "6", *SIM) == 0
    assert _splits(other) == after


@pytest.mark.parametrize(
    "pins, code, expect",
    [
        (["--val-subjects", "S001", "--test-subjects", "sim/S002"], 0,
         {"sim/S000": "train", "sim/S001": "val", "sim/S002": "test", "sim/S003": "train", "sim/S004": "train"}),
        (["--test-subjects", "simulator/sim/S004,S000"], 0, {"sim/S004": "test", "sim/S000": "test"}),
        (["--test-subjects", "S009"], 2, "unknown --test-subjects name 'S009': the folder's subjects are sim/S000, "),
        (["--val-subjects", "S001", "--test-subjects", "sim/S001"], 2, "sim/S001 pinned to both val and test"),
    ],
    ids=["val-and-test", "dataset-form-and-bare", "unknown", "in-two-splits"],
)
def test_splits_pinned_by_name(tmp_path, pins, code, expect, capsys):
    out = tmp_path / "pinned"
    assert _prepare(out, "--sim-subjects", "5", *SIM, *pins) == code
    if code:
        assert expect in _err_line(capsys)
        assert not (out / "index.npz").exists()
        return
    got = _splits(out)
    assert {s: got[s] for s in expect} == expect
    assert "pinned: " in capsys.readouterr().out
    # later runs without pins keep them
    assert _prepare(out, "--sim-subjects", "6", *SIM) == 0
    assert {s: _splits(out)[s] for s in expect} == expect


def test_pin_names_at_the_library_level():
    keys = ["ds1\x1fa/X", "ds2\x1fb/X", "ds2\x1fb/Y"]
    assert resolve_subjects(["b/Y", "ds1/a/X", "Y"], keys) == ["ds2\x1fb/Y", "ds1\x1fa/X"]
    with pytest.raises(UsageError, match="'X' is ambiguous: it names a/X, b/X"):
        resolve_subjects(["X"], keys)
    with pytest.raises(UnknownNameError, match=r"unknown subject 'Z'.*a/X, b/X, b/Y"):
        resolve_subjects(["Z"], keys)


def test_empty_pin_list_is_refused_at_parse_time(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _prepare(tmp_path / "x", "--sim-subjects", "2", "--val-subjects", ",")
    assert e.value.code == 2 and "names no subject" in capsys.readouterr().err


# -- 3. the second wrist PPG ----------------------------------------------------------------------------


def test_second_ppg_is_its_own_view_of_the_same_subject(shared, tmp_path, capsys):
    out = tmp_path / "ppg2"
    assert _prepare(out, str(shared / IEEE_01), "--sim-subjects", "2", *SIM, "--hop-s", "30", "--second-ppg",
                    "--test-subjects", "DATA_01") == 0
    printed = capsys.readouterr().out
    assert "--second-ppg: 1 subject(s) with a second PPG view: ieee_spc2015/DATA_01" in printed
    assert "view `ppg2`" in printed
    ds = ShardDataset(out, "all")
    ieee = ds.subject_ids == "ieee_spc2015/DATA_01"
    assert set(ds.views[ieee]) == {"ppg", "ppg2"} and set(ds.views[~ieee]) == {"ppg"}
    assert set(_splits(out).items()) >= {("ieee_spc2015/DATA_01", "test")}  # both views: the subject's split
    one, two = np.flatnonzero(ieee & (ds.views == "ppg")), np.flatnonzero(ieee & (ds.views == "ppg2"))
    common = sorted(set(ds.start_s[one]) & set(ds.start_s[two]))
    assert len(common) >= 5
    i1 = one[np.isin(ds.start_s[one], common)]
    i2 = two[np.isin(ds.start_s[two], common)]
    (p1, e1), (p2, e2) = ds.get_batch(i1), ds.get_batch(i2)
    np.testing.assert_array_equal(e1, e2)  # the same ECG windows ...
    assert np.abs(p1 - p2).mean() > 0.1  # ... paired with another PPG sensor
    # evaluation splits serve one PPG per ECG window; training groups never hold one ECG window twice
    test = ShardDataset(out, "test")
    assert set(test.views) == {"ppg"} and len(test) == len(one)
    assert len(ShardDataset(out, "test", views=("ppg", "ppg2"))) == len(one) + len(two)
    assert len(set(ShardDataset(out, "all").groups[ieee])) == 2


def test_second_ppg_without_a_ppg2_channel_says_so(tmp_path, capsys):
    assert _prepare(tmp_path / "d", "--sim-subjects", "2", *SIM, "--second-ppg") == 0
    assert "(no recording of this folder has a 'ppg2' channel)" in capsys.readouterr().out


# -- 4. ECG polarity ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_negated, flipped, near_even",
    [(0, False, False), (5, False, True), (6, True, False), (9, True, False)],
    ids=["upright", "56-44-left-alone", "6-of-9-flipped", "all-inverted"],
)
def test_polarity_is_flipped_only_on_a_clear_vote(tmp_path, n_negated, flipped, near_even, capsys):
    rec = simulate_pair(SimulatorConfig(duration_s=90.0, seed=5), subject_id="sim/polarity")
    ecg = rec.channel("ecg").data.copy()
    n = int(10 * rec.channel("ecg").sample_rate_hz)
    ecg[: n_negated * n] *= -1  # the first n_negated of the 9 windows look inverted
    rec = Recording(rec.subject_id, rec.dataset, {**rec.channels, "ecg": Channel(ecg, 125.0)})
    path = write_npz(rec, tmp_path / "rec.npz")
    out = tmp_path / "d"
    assert _prepare(out, str(path), "--no-ecg-quality") == 0
    printed = capsys.readouterr().out
    (side,) = _sidecars(out)
    pol = side["ecg_polarity"]
    assert (pol["inverted_windows"], pol["voting_windows"]) == (n_negated, 9)
    assert (pol["flipped"], pol["ambiguous"]) == (flipped, near_even)
    assert ("left as recorded on a near-even vote: sim/polarity (5/9 inverted)" in printed) == near_even
    if near_even:  # the official bare-majority rule would have flipped this record
        raw = np.stack([ecg[i * n:(i + 1) * n] for i in range(9)])
        assert pp.correct_ecg_polarity(raw, 125.0)[2]
    stored = ShardDataset(out, "all").get_batch(np.arange(9))[1][:, 0]
    as_recorded = extract_windows(rec, hop_s=10.0, ecg_quality=False, correct_polarity=False).ecg
    np.testing.assert_allclose(stored, -as_recorded if flipped else as_recorded, atol=8e-3)


# -- 5. honest held-out naming ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pins, real, phrase",
    [
        (["--test-subjects", "bidmc_01"], ["bidmc/bidmc_01"], "held-out real subjects (val+test of "),
        (["--val-subjects", "S000", "--test-subjects", "S001"], [],
         "no real subject is held out: the val+test split of "),
    ],
    ids=["real-subject-held-out", "only-simulated-held-out"],
)
def test_heldout_subjects_are_named_from_the_index(shared, tmp_path, pins, real, phrase):
    out = tmp_path / "d"
    assert _prepare(out, str(shared / BIDMC), "--sim-subjects", "3", *SIM, "--hop-s", "30", *pins) == 0
    held = heldout_subjects(out)
    assert held["real"] == real and phrase in held["text"]
    if not real:
        assert held["simulated"] == ["sim/S000", "sim/S001"] and held["real_in_train"] == ["bidmc/bidmc_01"]


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core box: one torch thread is several times faster than two."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_distillation_report_says_when_no_real_subject_is_held_out(tmp_path, one_thread):
    data = tmp_path / "data"
    assert _prepare(data, "--sim-subjects", "4", "--sim-duration-s", "60", "--hop-s", "5", "--no-ecg-quality") == 0
    teacher = tmp_path / "teacher"
    assert main(["pretrain", "--shards", str(data), "--model", "tiny", "--steps", "2", "--batch-size", "8",
                 "--eval-every", "2", "--checkpoint-every", "2", "--out", str(teacher)]) == 0
    out = tmp_path / "kd"
    assert main(["distill", "--shards", str(data), "--teacher", str(teacher / "last.pt"), "--student", "tiny",
                 "--steps", "2", "--batch-size", "8", "--eval-every", "2", "--checkpoint-every", "2",
                 "--out", str(out)]) == 0
    md = (out / "retention.md").read_text()
    assert "**No real subject is held out**: the val+test split of" in md
    rep = json.loads((out / "retention.json").read_text())
    assert rep["heldout_subjects"]["real"] == [] and len(rep["heldout_subjects"]["simulated"]) == 2


@pytest.fixture(scope="module")
def shared_shards(shared, tmp_path_factory):
    """All 10 real recordings of ../shared in train (the two simulated subjects are val and test)."""
    out = tmp_path_factory.mktemp("faults") / "all_real_train"
    assert _prepare(out, "--shared", "--sim-subjects", "2", *SIM, "--hop-s", "60",
                    "--val-subjects", "S000", "--test-subjects", "S001") == 0
    return out


def test_export_data_names_the_real_heldout_subjects_of_the_shards_used(shared_shards, tmp_path):
    from anyppg_edge.deploy.export.build import shared_export_data

    kw = dict(n_calibration=8, n_eval=8, hop_s=60.0)
    data = shared_export_data(shards=shared_shards, **kw)
    assert data.description.startswith("no real subject is held out: the model's shards")
    assert data.heldout_subjects == [] and data.heldout_checked
    # the same shards with DATA_07 moved to test: it is named as held out, and only it
    moved = tmp_path / "moved"
    shutil.copytree(shared_shards, moved)
    assert _prepare(moved, "--shared", "--sim-subjects", "2", *SIM, "--hop-s", "60", "--test-subjects", "DATA_07") == 0
    data = shared_export_data(shards=moved, **kw)
    assert data.heldout_subjects == ["ieee_spc2015/DATA_07"]
    assert "held out from the model's training" in data.description
    # without the shards, the description does not claim the model never saw them
    assert "whether the model trained on them is not checked" in shared_export_data(**kw).description
