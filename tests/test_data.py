"""anyppg_edge.data: recording types, readers (shared real data, WFDB, EDF, NPZ), error
handling, and the paired PPG+ECG simulator."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.signal import butter, filtfilt, find_peaks, welch

from anyppg_edge.data import (
    Channel,
    Recording,
    SimulatorConfig,
    load_shared_recordings,
    rate_from_time_column,
    read_bidmc_csv,
    read_edf,
    read_ieee_spc2015,
    read_neurokit_csv,
    read_npz,
    read_recording,
    read_wfdb,
    simulate_cohort,
    simulate_pair,
    write_npz,
)
from anyppg_edge.errors import DataFormatError, InvalidSignalError

IEEE_CHANNELS = {"ppg", "ecg", "ppg2", "acc_x", "acc_y", "acc_z"}


def _ieee_files(shared: Path) -> list[Path]:
    files = sorted(f for f in (shared / "data/ieee_spc2015").glob("DATA_*.mat") if "BPMtrace" not in f.name)
    assert len(files) == 8
    return files


def _high_freq_fraction(ch: Channel) -> float:
    """Fraction of the power (above 0.3 Hz) that lies above 5 Hz: ~0.01 for PPG, > 0.3 for ECG."""
    x = ch.data - np.nanmean(ch.data)
    f, p = welch(x, ch.sample_rate_hz, nperseg=int(8 * ch.sample_rate_hz))
    return float(p[f > 5].sum() / p[f > 0.3].sum())


# ----------------------------------------------------------------------------- shared real data


def test_ieee_spc2015_reader(shared: Path) -> None:
    for f in _ieee_files(shared):
        rec = read_ieee_spc2015(f)
        assert set(rec.channels) == IEEE_CHANNELS
        assert rec.subject_id == f"ieee_spc2015/{f.name[:7]}"
        assert rec.dataset == "ieee_spc2015"
        for ch in rec.channels.values():
            assert ch.sample_rate_hz == 125.0
            assert ch.data.dtype == np.float64 and ch.data.ndim == 1
            assert np.isfinite(ch.data).all()
        assert rec.ppg.unit == "adc" and rec.ecg.unit == "adc" and rec.channel("acc_x").unit == "g"
        assert 280 <= rec.duration_s <= 330, rec.duration_s
        trace = rec.meta["hr_bpm_trace"]
        assert rec.meta["hr_trace_window_s"] == 8.0 and rec.meta["hr_trace_step_s"] == 2.0
        assert trace.ndim == 1
        assert trace.size == math.floor((rec.duration_s - 8) / 2) + 1
        assert np.all((trace > 40) & (trace < 220))
        # the channels are what their names say: the PPG is smooth, the ECG is not
        assert _high_freq_fraction(rec.ppg) < 0.05
        assert _high_freq_fraction(rec.ecg) > 0.2


def test_bidmc_reader(shared: Path) -> None:
    rec = read_bidmc_csv(shared / "data/bidmc/bidmc_01_Signals.csv")
    assert {"ppg", "ecg", "resp"} <= set(rec.channels)
    assert rec.subject_id == "bidmc/bidmc_01"
    assert all(ch.sample_rate_hz == 125.0 for ch in rec.channels.values())
    assert rec.duration_s == pytest.approx(480.0, abs=0.1)
    assert all(np.isfinite(ch.data).all() for ch in rec.channels.values())
    assert _high_freq_fraction(rec.ppg) < 0.05
    assert _high_freq_fraction(rec.ecg) > 0.2


def test_neurokit_reader(shared: Path) -> None:
    rec = read_neurokit_csv(shared / "data/neurokit_resting/bio_resting_5min_100hz.csv")
    assert set(rec.channels) == {"ppg", "ecg", "resp"}
    assert all(ch.sample_rate_hz == 100.0 for ch in rec.channels.values())
    assert rec.duration_s == pytest.approx(300.0, abs=0.1)
    assert all(np.isfinite(ch.data).all() for ch in rec.channels.values())
    assert _high_freq_fraction(rec.ppg) < 0.05
    assert _high_freq_fraction(rec.ecg) > 0.2


def test_load_shared_recordings(shared: Path) -> None:
    recs = load_shared_recordings()
    assert [r.dataset for r in recs] == ["ieee_spc2015"] * 8 + ["bidmc", "neurokit"]
    assert len({r.subject_id for r in recs}) == 10
    assert [r.ppg.sample_rate_hz for r in recs] == [125.0] * 9 + [100.0]
    # root may be the shared folder or its data/ folder
    assert len(load_shared_recordings(shared / "data")) == 10


def test_read_recording_dispatch(shared: Path) -> None:
    assert read_recording(_ieee_files(shared)[0]).dataset == "ieee_spc2015"
    assert read_recording(shared / "data/bidmc/bidmc_01_Signals.csv").dataset == "bidmc"
    assert read_recording(shared / "data/neurokit_resting/bio_resting_5min_100hz.csv").dataset == "neurokit"


def test_bidmc_rounded_time_column_is_uniform() -> None:
    # BIDMC prints 5 significant digits: past 100 s the steps read 0.01, 0.01, 0.00, ...
    t = np.array([float(f"{x:.5g}") for x in np.arange(60001) / 125.0])
    assert set(np.round(np.diff(t), 6)) == {0.0, 0.008, 0.01}
    assert rate_from_time_column(t) == 125.0
    # ... but a 30 ms gap in the same column is caught
    t_gap = t.copy()
    t_gap[20000:] += 0.03
    with pytest.raises(DataFormatError, match="not uniformly sampled"):
        rate_from_time_column(t_gap)


# ----------------------------------------------------------------------------- WFDB / EDF / NPZ


def test_wfdb_roundtrip(tmp_path: Path) -> None:
    import wfdb

    rec = simulate_pair(SimulatorConfig(duration_s=20, seed=4))
    abp = 100 + 20 * np.sin(np.arange(rec.ppg.n_samples) / 40)
    sig = np.column_stack([rec.ecg.data, rec.ppg.data, abp])
    wfdb.wrsamp(
        "rec1",
        fs=125,
        units=["mV", "NU", "mmHg"],
        sig_name=["II", "PLETH", "ABP"],
        p_signal=sig,
        fmt=["16", "16", "16"],
        write_dir=str(tmp_path),
    )
    gains = wfdb.rdheader(str(tmp_path / "rec1")).adc_gain
    back = read_wfdb(tmp_path / "rec1")
    assert set(back.channels) == {"ppg", "ecg", "abp"}
    assert back.meta["channel_labels"] == {"ecg": "II", "ppg": "PLETH", "abp": "ABP"}
    for j, name in enumerate(["ecg", "ppg", "abp"]):
        ch = back.channel(name)
        assert ch.sample_rate_hz == 125.0
        err = np.abs(ch.data - sig[:, j]).max()
        assert err <= 0.5 / gains[j] + 1e-9, (name, err)
    assert back.ecg.unit == "mV"
    # the dispatcher accepts the header path; explicit channel choice works; a wrong one names the labels
    assert read_recording(tmp_path / "rec1.hea").dataset == "wfdb"
    swapped = read_wfdb(tmp_path / "rec1", ppg_channel="ABP")
    assert np.array_equal(swapped.ppg.data, back.channel("abp").data)
    with pytest.raises(DataFormatError, match=r"no channel 'SpO2'.*available: 'II', 'PLETH', 'ABP'"):
        read_wfdb(tmp_path / "rec1", ppg_channel="SpO2")


@pytest.mark.parametrize(("ppg_label", "ecg_label"), [("Pleth", "EKG"), ("PPG", "ECG1"), ("PLETH", "ECG")])
def test_edf_roundtrip_per_channel_rates(tmp_path: Path, ppg_label: str, ecg_label: str) -> None:
    import edfio

    rec = simulate_pair(SimulatorConfig(duration_s=30, sample_rate_hz=256, seed=5))
    ecg = rec.ecg.data  # 256 Hz
    ppg = rec.ppg.data[::4]  # 64 Hz
    spo2 = np.linspace(95, 98, 30)  # 1 Hz
    edf = edfio.Edf(
        [
            edfio.EdfSignal(ppg, 64, label=ppg_label),
            edfio.EdfSignal(ecg, 256, label=ecg_label, physical_dimension="mV"),
            edfio.EdfSignal(spo2, 1, label="SpO2", physical_dimension="%"),
        ]
    )
    path = tmp_path / "rec.edf"
    edf.write(path)
    back = read_recording(path)
    assert set(back.channels) == {"ppg", "ecg", "spo2"}
    assert back.ppg.sample_rate_hz == 64.0
    assert back.ecg.sample_rate_hz == 256.0
    assert back.channel("spo2").sample_rate_hz == 1.0
    assert back.ecg.unit == "mV"
    for name, orig in (("ppg", ppg), ("ecg", ecg), ("spo2", spo2)):
        got = back.channel(name).data
        assert got.shape == orig.shape
        q = (orig.max() - orig.min()) / 65535  # 16-bit quantization step
        assert np.abs(got - orig).max() <= q * 1.01 + 1e-6 * np.abs(orig).max(), name
    assert back.duration_s == pytest.approx(30.0)


def test_edf_missing_ppg_names_available(tmp_path: Path) -> None:
    import edfio

    edfio.Edf(
        [edfio.EdfSignal(np.zeros(100), 10, label="EEG C3"), edfio.EdfSignal(np.zeros(100), 10, label="EKG")]
    ).write(tmp_path / "x.edf")
    with pytest.raises(DataFormatError, match=r"no PPG channel.*available: 'EEG C3', 'EKG'"):
        read_edf(tmp_path / "x.edf")
    ecg_only = read_edf(tmp_path / "x.edf", require=("ecg",))
    assert set(ecg_only.channels) == {"ecg", "eeg_c3"}


def test_npz_roundtrip_exact(tmp_path: Path) -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=10, seed=9, motion_artifact_rate_per_min=12))
    rec.channels["acc_x"] = Channel(np.arange(50, dtype=np.float64) / 3, 25.0, "g")
    path = write_npz(rec, tmp_path / "rec.npz")
    back = read_npz(path)
    assert back.subject_id == rec.subject_id and back.dataset == rec.dataset
    assert list(back.channels) == list(rec.channels)
    for name, ch in rec.channels.items():
        assert np.array_equal(back.channel(name).data, ch.data)
        assert back.channel(name).sample_rate_hz == ch.sample_rate_hz
        assert back.channel(name).unit == ch.unit
    assert set(back.meta) == set(rec.meta)
    for key, val in rec.meta.items():
        if isinstance(val, np.ndarray):
            assert np.array_equal(back.meta[key], val) and back.meta[key].dtype == val.dtype, key
        else:
            assert back.meta[key] == val, key
    assert read_recording(path).subject_id == rec.subject_id


def test_npz_refuses_pickles_and_truncation(tmp_path: Path) -> None:
    bad = tmp_path / "obj.npz"
    np.savez(
        bad, format=np.array("anyppg_edge.recording.v1"), channel_names=np.array([{"a": 1}], dtype=object)
    )
    with pytest.raises(DataFormatError, match=r"obj\.npz.*pickle"):
        read_npz(bad)
    good = write_npz(simulate_pair(SimulatorConfig(duration_s=5)), tmp_path / "ok.npz")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"corrupt or truncated.*trunc\.npz"):
        read_npz(trunc)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(DataFormatError, match="not an anyppg-edge recording"):
        read_npz(other)


# ----------------------------------------------------------------------------- errors

_BIDMC_HEADER = "Time [s], RESP, PLETH, V, AVR, II\n"


def _write_csv(path: Path, header: str, table: np.ndarray, fmt: str = "%.5g") -> Path:
    lines = [header.rstrip("\n")] + [",".join(fmt % v for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return path


def _bidmc_table(n: int = 500, fs: float = 125.0) -> np.ndarray:
    t = np.arange(n) / fs
    rng = np.random.default_rng(0)
    return np.column_stack([t, rng.random((n, 5))])


@pytest.mark.parametrize(
    "reader",
    [read_ieee_spc2015, read_bidmc_csv, read_neurokit_csv, read_wfdb, read_edf, read_npz, read_recording],
)
def test_missing_file(tmp_path: Path, reader) -> None:
    missing = tmp_path / "nope" / "DATA_99_TYPE01.mat"
    with pytest.raises(DataFormatError, match=r"not found.*DATA_99_TYPE01"):
        reader(missing)


def test_load_shared_recordings_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="shared data folder not found"):
        load_shared_recordings(tmp_path / "nowhere")


def test_truncated_mat(shared: Path, tmp_path: Path) -> None:
    src = _ieee_files(shared)[0]
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataFormatError, match=r"corrupt or truncated MATLAB file .*DATA_01_TYPE01\.mat"):
        read_ieee_spc2015(dst)


def test_mat_wrong_sig_shape(tmp_path: Path) -> None:
    p = tmp_path / "DATA_42_TYPE01.mat"
    scipy.io.savemat(p, {"sig": np.zeros((3, 100))})
    with pytest.raises(DataFormatError, match=r"'sig' has shape \(3, 100\); expected \(6, N\)"):
        read_ieee_spc2015(p)
    scipy.io.savemat(p, {"data": np.zeros((6, 100))})
    with pytest.raises(DataFormatError, match=r"no variable 'sig'.*\['data'\]"):
        read_ieee_spc2015(p)


def test_mat_without_bpm_trace_and_test_layout(tmp_path: Path) -> None:
    p = tmp_path / "DATA_42_TYPE01.mat"
    scipy.io.savemat(p, {"sig": np.ones((6, 250))})
    rec = read_ieee_spc2015(p)
    assert "hr_bpm_trace" not in rec.meta and rec.duration_s == 2.0
    scipy.io.savemat(p, {"sig": np.ones((5, 250))})  # IEEE SPC test-set layout: no ECG
    assert set(read_ieee_spc2015(p).channels) == IEEE_CHANNELS - {"ecg"}


def test_corrupt_csv(tmp_path: Path) -> None:
    p = tmp_path / "bidmc_77_Signals.csv"
    p.write_text(_BIDMC_HEADER + "0,0.1,0.2,0.3,0.4,0.5\n0.008,0.1,abc,0.3,0.4,0.5\n")
    with pytest.raises(DataFormatError, match=r"corrupt or unparsable CSV file .*bidmc_77_Signals\.csv"):
        read_bidmc_csv(p)
    # truncated mid-row
    _write_csv(p, _BIDMC_HEADER, _bidmc_table())
    p.write_text(p.read_text()[:-15])
    with pytest.raises(DataFormatError, match=r"bidmc_77_Signals\.csv"):
        read_bidmc_csv(p)
    # binary garbage
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataFormatError, match=r"bidmc_77_Signals\.csv"):
        read_bidmc_csv(p)


def test_csv_missing_pleth(tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "b.csv", "Time [s], RESP, II\n", _bidmc_table()[:, :3])
    with pytest.raises(DataFormatError, match=r"missing column\(s\) PLETH; available: Time \[s\], RESP, II"):
        read_bidmc_csv(p)


def test_csv_non_uniform_and_implausible_time(tmp_path: Path) -> None:
    table = _bidmc_table()
    table[300:, 0] += 0.05  # a 50 ms gap
    p = _write_csv(tmp_path / "gap.csv", _BIDMC_HEADER, table)
    with pytest.raises(DataFormatError, match=r"gap\.csv.*not uniformly sampled"):
        read_bidmc_csv(p)
    table = _bidmc_table()
    table[:, 0] = np.arange(len(table)) * 10.0  # 0.1 Hz: time in ms? not seconds
    p = _write_csv(tmp_path / "slow.csv", _BIDMC_HEADER, table)
    with pytest.raises(DataFormatError, match="implausible sampling rate"):
        read_bidmc_csv(p)
    table = _bidmc_table()
    table[[10, 11], 0] = table[[11, 10], 0]
    p = _write_csv(tmp_path / "back.csv", _BIDMC_HEADER, table)
    with pytest.raises(DataFormatError, match="not increasing"):
        read_bidmc_csv(p)


def test_missing_channel_access() -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=5))
    with pytest.raises(DataFormatError, match=r"no channel 'spo2'; available: ppg, ecg"):
        rec.channel("spo2")
    only_ppg = Recording("x", "test", {"ppg": rec.ppg})
    with pytest.raises(DataFormatError, match=r"no channel 'ecg'; available: ppg"):
        _ = only_ppg.ecg


def test_channel_and_recording_validation() -> None:
    with pytest.raises(InvalidSignalError, match="1-D"):
        Channel(np.zeros((2, 10)), 125.0)
    with pytest.raises(InvalidSignalError, match="numeric"):
        Channel(np.array(["a", "b"]), 125.0)
    for bad_rate in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidSignalError, match="sample_rate_hz"):
            Channel(np.zeros(10), bad_rate)
    ch = Channel(np.arange(10, dtype=np.int16), 5)
    assert ch.data.dtype == np.float64 and ch.duration_s == 2.0
    with pytest.raises(DataFormatError, match="at least one channel"):
        Recording("x", "test", {})
    with pytest.raises(DataFormatError, match="must be a Channel"):
        Recording("x", "test", {"ppg": np.zeros(3)})  # type: ignore[dict-item]


def test_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "x.wav"
    p.write_bytes(b"RIFF")
    with pytest.raises(DataFormatError, match=r"unknown recording format '\.wav'"):
        read_recording(p)


# ----------------------------------------------------------------------------- simulator


def _detect_r_peaks(ecg: Channel) -> np.ndarray:
    """A simple R-peak detector: 1 Hz high-pass, then peaks above half the 99.5th percentile."""
    fs = ecg.sample_rate_hz
    b, a = butter(2, 1.0, btype="high", fs=fs)
    x = filtfilt(b, a, ecg.data)
    peaks, _ = find_peaks(x, height=0.5 * np.percentile(x, 99.5), distance=int(0.25 * fs))
    return peaks / fs


def _inner(times_s: np.ndarray, duration_s: float, margin_s: float = 0.05) -> np.ndarray:
    """Beats not at the very edges (find_peaks cannot see a peak on the first/last sample)."""
    return times_s[(times_s >= margin_s) & (times_s < duration_s - margin_s)]


def test_simulator_deterministic() -> None:
    cfg = SimulatorConfig(duration_s=30, seed=11, motion_artifact_rate_per_min=4, af=True)
    a, b = simulate_pair(cfg), simulate_pair(cfg)
    for name in ("ppg", "ecg"):
        assert np.array_equal(a.channel(name).data, b.channel(name).data)
    assert np.array_equal(a.meta["r_peaks_s"], b.meta["r_peaks_s"])
    c = simulate_pair(SimulatorConfig(duration_s=30, seed=12, motion_artifact_rate_per_min=4, af=True))
    assert not np.allclose(a.ppg.data, c.ppg.data)
    assert not np.allclose(a.ecg.data, c.ecg.data)
    assert a.ppg.n_samples == a.ecg.n_samples == 30 * 125
    assert a.ppg.sample_rate_hz == a.ecg.sample_rate_hz == 125.0


@pytest.mark.parametrize("hr", [50.0, 75.0, 110.0])
def test_simulator_beat_count_and_detector(hr: float) -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=60, mean_hr_bpm=hr, seed=int(hr)))
    truth = rec.meta["r_peaks_s"]
    assert abs(len(truth) - hr) <= 3
    truth, found = _inner(truth, 60), _inner(_detect_r_peaks(rec.ecg), 60)
    assert len(found) == len(truth)
    assert np.abs(found - truth).max() < 0.020
    assert np.nanmedian(rec.meta["hr_bpm_trace"]) == pytest.approx(hr, abs=3)
    assert rec.meta["hr_bpm_trace"].size == (60 - 8) // 2 + 1


def test_simulator_detector_in_af_with_artifacts() -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=120, af=True, motion_artifact_rate_per_min=3, seed=3))
    truth = _inner(rec.meta["r_peaks_s"], 120)
    found = _inner(_detect_r_peaks(rec.ecg), 120)
    assert len(found) == len(truth)
    assert np.abs(found - truth).max() < 0.020


def _ptt_lag_s(rec: Recording) -> float:
    """Lag (s) maximizing the cross-correlation of the R-peak impulse train with the PPG's slope."""
    fs = rec.ppg.sample_rate_hz
    train = np.zeros(rec.ecg.n_samples)
    train[np.round(rec.meta["r_peaks_s"] * fs).astype(int)] = 1.0
    slope = np.gradient(rec.ppg.data)
    lags = np.arange(int(0.6 * fs))
    xc = [np.dot(train[: train.size - k], slope[k:]) for k in lags]
    return float(lags[int(np.argmax(xc))] / fs)


def test_simulator_pulse_transit() -> None:
    lags = {}
    for ptt in (0.2, 0.3):
        cfg = SimulatorConfig(duration_s=60, pulse_transit_s=ptt, seed=21)
        rec = simulate_pair(cfg)
        onsets, r = rec.meta["pulse_onsets_s"], rec.meta["r_peaks_s"]
        assert len(onsets) in (len(r), len(r) - 1)
        assert np.allclose(onsets - r[: len(onsets)], rec.meta["pulse_transit_s"])
        assert np.mean(rec.meta["pulse_transit_s"]) == pytest.approx(ptt, abs=0.005)
        lag = _ptt_lag_s(rec)
        # the steepest upstroke is 1.5 rise-SDs after the onset
        assert ptt <= lag <= ptt + 2.5 * cfg.ppg_rise_sd_s, lag
        lags[ptt] = lag
    assert lags[0.3] - lags[0.2] == pytest.approx(0.1, abs=0.017)


@pytest.mark.parametrize("hr", [55.0, 75.0, 100.0])
def test_simulator_ppg_spectral_heart_rate(hr: float) -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=120, mean_hr_bpm=hr, seed=7))
    fs = rec.ppg.sample_rate_hz
    f, p = welch(rec.ppg.data, fs, nperseg=int(40 * fs))
    band = (f >= 0.7) & (f <= 3.5)
    assert 60 * f[band][np.argmax(p[band])] == pytest.approx(hr, abs=5)


def test_simulator_af_irregularity() -> None:
    def rr_stats(af: bool) -> tuple[float, float]:
        rr = np.diff(simulate_pair(SimulatorConfig(duration_s=300, af=af, seed=5)).meta["r_peaks_s"])
        return float(rr.std() / rr.mean()), float(np.sqrt(np.mean(np.diff(rr) ** 2)))

    (cv_sinus, rmssd_sinus), (cv_af, rmssd_af) = rr_stats(False), rr_stats(True)
    assert cv_af >= 3 * cv_sinus
    assert rmssd_af >= 3 * rmssd_sinus


def test_simulator_motion_artifacts_where_reported() -> None:
    rec = simulate_pair(SimulatorConfig(duration_s=300, motion_artifact_rate_per_min=2, seed=8))
    iv = rec.meta["motion_artifact_intervals_s"]
    assert iv.ndim == 2 and iv.shape[1] == 2 and len(iv) >= 3
    t = rec.ppg.times_s()
    inside = np.zeros(t.size, dtype=bool)
    for a, b in iv:
        inside |= (t >= a + 0.3 * (b - a)) & (t < b - 0.3 * (b - a))  # middle of each burst
    outside = np.ones(t.size, dtype=bool)
    for a, b in iv:
        outside &= (t < a) | (t >= b)
    assert rec.ppg.data[inside].std() > 1.5 * rec.ppg.data[outside].std()
    clean = simulate_pair(SimulatorConfig(duration_s=300, seed=8))
    assert len(clean.meta["motion_artifact_intervals_s"]) == 0


def test_simulator_speed_one_hour() -> None:
    t0 = time.perf_counter()
    rec = simulate_pair(SimulatorConfig(duration_s=3600, motion_artifact_rate_per_min=1))
    elapsed = time.perf_counter() - t0
    assert rec.ppg.n_samples == 3600 * 125
    assert elapsed < 5.0, elapsed  # ~0.2 s measured on a 2-core machine


def test_simulate_cohort() -> None:
    cohort = simulate_cohort(10, duration_s=20, seed=1)
    again = simulate_cohort(10, duration_s=20, seed=1)
    assert [r.subject_id for r in cohort] == [f"sim/S{i:03d}" for i in range(10)]
    for a, b in zip(cohort, again, strict=True):
        assert np.array_equal(a.ppg.data, b.ppg.data)
    hrs = [r.meta["config"]["mean_hr_bpm"] for r in cohort]
    assert all(50 <= h <= 110 for h in hrs) and max(hrs) - min(hrs) > 20
    assert sum(r.meta["af"] for r in cohort) == 2
    ptts = [r.meta["config"]["pulse_transit_s"] for r in cohort]
    assert max(ptts) - min(ptts) > 0.05
    other = simulate_cohort(10, duration_s=20, seed=2)
    assert not np.allclose(cohort[0].ppg.data, other[0].ppg.data)


def test_simulator_config_validation() -> None:
    with pytest.raises(InvalidSignalError, match="duration_s"):
        SimulatorConfig(duration_s=-1)
    with pytest.raises(InvalidSignalError, match="mean_hr_bpm"):
        SimulatorConfig(mean_hr_bpm=float("nan"))
    with pytest.raises(InvalidSignalError, match="af must be a bool"):
        SimulatorConfig(af="yes")  # type: ignore[arg-type]
