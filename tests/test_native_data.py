"""Native-rate data (issue 20): the sensor's sampling as one library function, native-rate windows,
their companion shards, and distillation that pairs the teacher's 125 Hz window with the student's
native-rate window of the same 10 s."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anyppg_edge.cli import main
from anyppg_edge.data import Channel, load_shared_recordings, simulate_cohort
from anyppg_edge.data.native_rate import (
    as_sensor_recording,
    model_input_recording,
    native_rate_windows,
    sample_like_sensor,
)
from anyppg_edge.data.shard_dataset import ShardDataset
from anyppg_edge.data.shards import prepare_shards
from anyppg_edge.data.windows import extract_windows
from anyppg_edge.errors import ConfigError
from anyppg_edge.models.registry import get_model_spec
from anyppg_edge.preprocessing import DEFAULT_CONFIG, native_config
from anyppg_edge.stream.sensor import SensorConfig, emulate


@pytest.fixture(scope="module")
def recs():
    return simulate_cohort(3, duration_s=40.0, seed=3)


def test_native_config_and_model_spec_contract():
    c25 = get_model_spec("student-watch-25hz").preprocess_config()
    assert (c25.target_sample_rate_hz, c25.window_samples) == (25, 250)
    assert c25 == native_config(DEFAULT_CONFIG, 25)
    assert get_model_spec("student-watch-50hz").preprocess_config().window_samples == 500
    assert get_model_spec("student-watch-slim").preprocess_config() is DEFAULT_CONFIG  # 125 Hz: the official chain
    with pytest.raises(ConfigError, match=r"Nyquist 7\.5 Hz"):
        native_config(DEFAULT_CONFIG, 15)  # cannot carry the 0.5-8 Hz band


def test_sensor_sampling_is_the_emulators(recs):
    rec = recs[0]
    ppg = rec.channel("ppg")
    same = sample_like_sensor(ppg, ppg.sample_rate_hz)  # the spline is exact at the source's own samples
    np.testing.assert_allclose(same.data, ppg.data, rtol=0, atol=1e-9 * np.abs(ppg.data).max())
    for rate in (25, 50):
        ideal = sample_like_sensor(ppg, rate)
        run = emulate(rec, SensorConfig(odr_hz=rate))
        n = run.trace.codes.size
        assert n == ideal.n_samples
        # the emulator's codes are these samples through the ADC: off by at most half a code
        analog = run.offset_codes + run.gain * ideal.data[:n]
        assert np.abs(run.trace.codes - analog).max() <= 0.5 + 1e-6


def test_sensor_sampling_keeps_gaps(recs):
    data = recs[0].channel("ppg").data.copy()
    data[1000:1100] = np.nan  # 0.8 s of a 125 Hz source
    out = sample_like_sensor(Channel(data, 125.0), 25.0)
    t = np.arange(out.n_samples) / 25.0
    assert np.isnan(out.data[(t > 1000 / 125) & (t < 1099 / 125)]).all()
    assert np.isfinite(out.data[t < 990 / 125]).all()


def test_native_windows_equal_the_windows_of_the_sensor_recording(recs):
    for rate in (25, 50):
        cfg = native_config(DEFAULT_CONFIG, rate)
        ws = extract_windows(model_input_recording(recs[1], cfg), cfg, hop_s=5.0, ecg_quality=False)
        nw = native_rate_windows(recs[1], ws.start_s, rate)
        assert ws.ppg.shape == (len(ws), 10 * rate) and nw.ok.all()
        np.testing.assert_array_equal(ws.ppg, nw.x)
    assert model_input_recording(recs[1], DEFAULT_CONFIG) is recs[1]  # 125 Hz: the recording itself
    late = native_rate_windows(recs[1], [35.0], 25)  # runs past the 40 s recording
    assert not late.ok[0] and "past the recording" in late.reason[0] and np.isnan(late.x[0]).all()
    assert as_sensor_recording(recs[1], 25).channel("ecg") is recs[1].channel("ecg")


def test_companion_shards_row_for_row(tmp_path, recs):
    out = tmp_path / "data"
    prepare_shards(recs, out, hop_s=5.0, ecg_quality=False, dtype="float32", progress=False, native_rates_hz=(50, 25))
    ds = ShardDataset(out, split="all")
    assert ds.native_rates == [25, 50] and ds.sample_rate_hz == 125
    idx = np.arange(len(ds))
    for rate in (25, 50):
        x = ds.get_ppg(idx[::-1], rate)  # any order
        assert x.shape == (len(ds), 1, 10 * rate)
        for rec in recs:
            rows = np.flatnonzero(ds.subject_ids[::-1] == rec.subject_id)
            starts = ds.start_s[::-1][rows]
            np.testing.assert_array_equal(x[rows, 0], native_rate_windows(rec, starts, rate).x)
    np.testing.assert_array_equal(ds.get_ppg(idx, 125), ds.get_batch(idx)[0])
    with pytest.raises(ConfigError, match="--native-rates 30"):
        ds.get_ppg(idx, 30)
    # the folder's native rates are one of its settings: another set is refused, naming the flag
    with pytest.raises(ConfigError, match="--native-rates"):
        prepare_shards(recs, out, hop_s=5.0, ecg_quality=False, dtype="float32", progress=False, native_rates_hz=(25,))
    with pytest.raises(ConfigError, match="shards' own rate"):
        prepare_shards(recs, tmp_path / "x", native_rates_hz=(125,), progress=False)


def test_distill_native_student_from_125hz_teacher(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["prepare-data", "--sim-subjects", "8", "--sim-duration-s", "60", "--hop-s", "5", "--no-ecg-quality",
                 "--native-rates", "25", "--out", str(data)]) == 0
    teacher = tmp_path / "teacher"
    assert main(["pretrain", "--shards", str(data), "--model", "tiny", "--steps", "2", "--batch-size", "8",
                 "--eval-every", "2", "--checkpoint-every", "2", "--out", str(teacher)]) == 0
    out = tmp_path / "kd"
    assert main(["distill", "--shards", str(data), "--teacher", str(teacher / "last.pt"), "--student",
                 "student-watch-25hz", "--steps", "4", "--batch-size", "8", "--eval-every", "4",
                 "--checkpoint-every", "4", "--out", str(out)]) == 0
    rep = json.loads((out / "retention.json").read_text())
    assert rep["student_input_rate_hz"] == 25 and rep["budget"][0]["model"] == "student-watch-25hz"
    assert rep["n_heldout_windows"] > 0 and np.isfinite(rep["cosine"]["mean"])
    capsys.readouterr()
    # a 50 Hz student needs 50 Hz windows: refused with the command that makes them
    assert main(["distill", "--shards", str(data), "--teacher", str(teacher / "last.pt"), "--student",
                 "student-watch-50hz", "--steps", "4", "--batch-size", "8", "--out", str(tmp_path / "kd50")]) == 2
    assert "--native-rates 50" in capsys.readouterr().err


def test_shared_native_windows_are_finite_and_normalised(shared):
    rec = load_shared_recordings()[0]
    nw = native_rate_windows(rec, np.arange(0, 200, 10.0), 25)
    assert nw.ok.all()
    np.testing.assert_allclose(nw.x.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(nw.x.std(1), 1, atol=1e-4)


def test_reference_heart_rate_is_measured_at_the_reference_rate(shared):
    """A native-rate model is scored against the same ECG heart rate as a 125 Hz one: R peaks found on
    an ECG brought down to 25 Hz are far off (why the reference stays at 125 Hz)."""
    from anyppg_edge.eval.heart_rate import ecg_heart_rate_bpm, recording_reference_hr_bpm

    rec = next(r for r in load_shared_recordings() if r.dataset.startswith("ieee"))
    c25 = native_config(DEFAULT_CONFIG, 25)
    starts = np.arange(0, 150, 10.0)
    np.testing.assert_array_equal(recording_reference_hr_bpm(rec, starts, c25)[0],
                                  recording_reference_hr_bpm(rec, starts, DEFAULT_CONFIG)[0])
    a = extract_windows(rec, DEFAULT_CONFIG, hop_s=10.0, ecg_quality=False)
    b = extract_windows(rec, c25, hop_s=10.0, ecg_quality=False)
    both = np.intersect1d(a.start_s, b.start_s)
    err = np.abs(ecg_heart_rate_bpm(a.ecg[np.isin(a.start_s, both)], 125.0)
                 - ecg_heart_rate_bpm(b.ecg[np.isin(b.start_s, both)], 25.0))
    assert np.nanmedian(err) > 10.0, err
