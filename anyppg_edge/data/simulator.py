"""Paired PPG + ECG simulator: the embedded default data for demos and fast tests (no downloads).

Model, per beat k with R-peak time ``r_k``:

* **Rhythm.** Sinus rhythm: RR_k = 60 / HR - RSA * resp(r_k) + LF * sin(2 pi 0.1 Hz r_k) + e_k, with
  ``e`` an AR(1) Gaussian process of standard deviation ``hrv_sdnn_ms`` (RSA: the RR shortens in
  inspiration). AF-like rhythm (``af=True``): RR drawn i.i.d. from a gamma law with coefficient of
  variation ``af_rr_cv`` (no RSA, no P wave, small fibrillatory f-waves on the ECG).
* **ECG.** Sum of Gaussian P, Q, R, S, T waves placed relative to each R peak; the T wave's delay
  and width scale with sqrt(preceding RR) (Bazett-like QT), the R amplitude with respiration.
* **PPG.** Each beat's pulse starts at ``r_k + PTT_k`` (PTT = ``pulse_transit_s`` + beat-to-beat
  jitter + respiratory modulation). Pulse = asymmetric Gaussian systolic wave (peak 2.5 rise-SDs
  after the onset, where it is at 4 % of its height) + a smaller delayed diastolic (dicrotic) wave;
  its amplitude is modulated by respiration and by the preceding RR (short RR -> weaker beat).
  Respiration also moves the PPG baseline. The PPG is therefore coupled beat by beat to the ECG.
* **Nuisances.** Slow baseline wander on both, random motion-artifact bursts (large band-limited
  0.3-4 Hz noise) on the PPG, optional mains hum on the ECG, white sensor noise.

Everything is drawn from one ``numpy.random.Generator`` seeded by ``seed``: same config, same
arrays. One hour at 125 Hz takes well under a second.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from scipy.signal import lfilter

from anyppg_edge.data.recording import Channel, Recording
from anyppg_edge.errors import InvalidSignalError

HR_TRACE_WINDOW_S = 8.0
HR_TRACE_STEP_S = 2.0
_PRE_ROLL_S = 3.0  # beats simulated before t = 0 so the first seconds look like the rest


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of :func:`simulate_pair`. Amplitudes: ECG in mV, PPG in units of the mean pulse
    height (``a.u.``); noise/wander/artifact amplitudes in the same units as their signal."""

    duration_s: float = 60.0
    sample_rate_hz: float = 125.0
    # rhythm
    mean_hr_bpm: float = 70.0
    hrv_sdnn_ms: float = 30.0  # SD of the random (AR(1)) RR component
    rsa_amplitude_ms: float = 25.0  # respiratory sinus arrhythmia, sinus rhythm only
    lf_amplitude_ms: float = 15.0  # ~0.1 Hz (Mayer wave) RR oscillation, sinus rhythm only
    resp_rate_hz: float = 0.25
    af: bool = False  # AF-like irregularly irregular rhythm
    af_rr_cv: float = 0.22  # coefficient of variation of RR in AF
    # pulse transit and PPG morphology
    pulse_transit_s: float = 0.2  # R peak -> PPG pulse onset
    pulse_transit_jitter_s: float = 0.005  # beat-to-beat SD
    pulse_transit_resp_s: float = 0.005  # respiratory modulation amplitude
    ppg_rise_sd_s: float = 0.045  # systolic upstroke (left SD)
    ppg_fall_sd_s: float = 0.12  # systolic downslope (right SD)
    dicrotic_ratio: float = 0.4  # diastolic wave height / systolic height
    dicrotic_delay_s: float = 0.28  # systolic peak -> diastolic peak, at RR = 0.8 s
    dicrotic_sd_s: float = 0.09
    ppg_resp_amplitude_mod: float = 0.1  # relative pulse-height modulation by respiration
    ppg_resp_baseline: float = 0.1  # respiration-induced intensity variation of the baseline
    # ECG morphology (mV)
    ecg_p_amplitude_mv: float = 0.12
    ecg_r_amplitude_mv: float = 1.0
    ecg_s_amplitude_mv: float = 0.25  # depth of the S wave
    ecg_t_amplitude_mv: float = 0.3
    ecg_powerline_amplitude_mv: float = 0.0
    powerline_hz: float = 50.0
    # nuisances
    motion_artifact_rate_per_min: float = 0.0
    motion_artifact_amplitude: float = 2.0
    ecg_noise_std: float = 0.02
    ppg_noise_std: float = 0.02
    baseline_wander_amplitude: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        def check(cond: bool, what: str) -> None:
            if not cond:
                raise InvalidSignalError(f"SimulatorConfig: {what}")

        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "af":
                check(isinstance(v, bool | np.bool_), f"af must be a bool, got {v!r}")
            elif f.name == "seed":
                check(isinstance(v, int | np.integer) and v >= 0, f"seed must be an int >= 0, got {v!r}")
            else:
                check(
                    isinstance(v, int | float | np.number) and math.isfinite(v),
                    f"{f.name} must be a finite number, got {v!r}",
                )
        check(self.duration_s > 0, f"duration_s must be > 0, got {self.duration_s}")
        check(self.sample_rate_hz >= 20, f"sample_rate_hz must be >= 20 Hz, got {self.sample_rate_hz}")
        check(20 <= self.mean_hr_bpm <= 240, f"mean_hr_bpm must be in 20-240, got {self.mean_hr_bpm}")
        check(0 < self.resp_rate_hz < 2, f"resp_rate_hz must be in (0, 2), got {self.resp_rate_hz}")
        check(
            0 <= self.pulse_transit_s < 1, f"pulse_transit_s must be in [0, 1) s, got {self.pulse_transit_s}"
        )
        check(0 < self.af_rr_cv < 1, f"af_rr_cv must be in (0, 1), got {self.af_rr_cv}")
        for name in ("ppg_rise_sd_s", "ppg_fall_sd_s", "dicrotic_sd_s"):
            check(getattr(self, name) > 0, f"{name} must be > 0")
        for name in (
            "hrv_sdnn_ms",
            "rsa_amplitude_ms",
            "lf_amplitude_ms",
            "pulse_transit_jitter_s",
            "pulse_transit_resp_s",
            "motion_artifact_rate_per_min",
            "motion_artifact_amplitude",
            "ecg_noise_std",
            "ppg_noise_std",
            "baseline_wander_amplitude",
            "dicrotic_ratio",
            "ecg_powerline_amplitude_mv",
        ):
            check(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")


# ----------------------------------------------------------------------------- building blocks


def _band_noise(rng: np.random.Generator, n: int, fs: float, f_lo: float, f_hi: float) -> np.ndarray:
    """Unit-SD Gaussian noise band-limited to [f_lo, f_hi] Hz (FFT brick-wall)."""
    if n < 2:
        return np.zeros(n)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec[(f < f_lo) | (f > f_hi)] = 0.0
    x = np.fft.irfft(spec, n)
    sd = x.std()
    return x / sd if sd > 0 else x


def _slow_noise(rng: np.random.Generator, t: np.ndarray, f_hi: float) -> np.ndarray:
    """Unit-SD noise below ``f_hi`` Hz evaluated at times ``t`` (made on a coarse grid, then
    linearly interpolated: cheap for hour-long signals)."""
    fs_low = max(8.0 * f_hi, 1.0)
    t0, t1 = float(t[0]) - 1.0, float(t[-1]) + 1.0
    grid = np.arange(t0, t1 + 1.0 / fs_low, 1.0 / fs_low)
    return np.interp(t, grid, _band_noise(rng, grid.size, fs_low, 0.0, f_hi))


def _add_waves(
    out: np.ndarray,
    fs: float,
    centers_s: np.ndarray,
    amps: np.ndarray,
    sd_left_s: np.ndarray | float,
    sd_right_s: np.ndarray | float | None = None,
) -> None:
    """Add one (asymmetric) Gaussian per beat to ``out`` in place: width ``sd_left_s`` before the
    centre, ``sd_right_s`` after it (same as left when None)."""
    if centers_s.size == 0:
        return
    sd_l = np.broadcast_to(np.asarray(sd_left_s, dtype=float), centers_s.shape)
    sd_r = (
        sd_l if sd_right_s is None else np.broadcast_to(np.asarray(sd_right_s, dtype=float), centers_s.shape)
    )
    half = math.ceil(4.0 * max(float(sd_l.max()), float(sd_r.max())) * fs) + 1
    offsets = np.arange(-half, half + 1)
    idx = np.round(centers_s * fs).astype(np.int64)[:, None] + offsets
    dt = idx / fs - centers_s[:, None]
    sd = np.where(dt < 0, sd_l[:, None], sd_r[:, None])
    vals = amps[:, None] * np.exp(-0.5 * (dt / sd) ** 2)
    ok = (idx >= 0) & (idx < out.size)
    out += np.bincount(idx[ok], weights=vals[ok], minlength=out.size)


def hr_trace_from_beats(
    beat_times_s: np.ndarray,
    duration_s: float,
    window_s: float = HR_TRACE_WINDOW_S,
    step_s: float = HR_TRACE_STEP_S,
) -> np.ndarray:
    """Heart rate (bpm) per window [k*step, k*step + window): 60 / mean RR of the beats inside it
    (NaN where fewer than 2 beats). Same window layout as the IEEE SPC 2015 ``BPM0`` traces."""
    b = np.sort(np.asarray(beat_times_s, dtype=float))
    n_win = math.floor((duration_s - window_s) / step_s) + 1 if duration_s >= window_s else 0
    starts = np.arange(n_win) * step_s
    i0 = np.searchsorted(b, starts, side="left")
    i1 = np.searchsorted(b, starts + window_s, side="left") - 1
    n_rr = i1 - i0
    hr = np.full(n_win, np.nan)
    ok = n_rr >= 1
    hr[ok] = 60.0 * n_rr[ok] / (b[i1[ok]] - b[i0[ok]])
    return hr


def _rr_intervals(cfg: SimulatorConfig, rng: np.random.Generator, resp_at) -> np.ndarray:
    """Beat times from -_PRE_ROLL_S to past the end."""
    rr0 = 60.0 / cfg.mean_hr_bpm
    span = cfg.duration_s + _PRE_ROLL_S + 2.0
    n = int(span / rr0 * 1.5) + 20
    if cfg.af:
        k = 1.0 / cfg.af_rr_cv**2
        rr = rng.gamma(k, rr0 / k, size=n)
        rr = np.maximum(rr, 0.25)
        # make sure we have enough beats even for an unlucky draw
        while rr.sum() < span:
            extra = np.maximum(rng.gamma(k, rr0 / k, size=n), 0.25)
            rr = np.concatenate([rr, extra])
    else:
        phi = 0.5
        burn = 50
        z = rng.standard_normal(n + burn)
        e = lfilter([math.sqrt(1 - phi**2)], [1.0, -phi], z)[burn:] * cfg.hrv_sdnn_ms / 1000.0
        lf_phase = rng.uniform(0, 2 * np.pi)
        rr = np.full(n, rr0)
        for _ in range(4):  # fixed point: the modulation depends on the beat times themselves
            t = -_PRE_ROLL_S + np.concatenate([[0.0], np.cumsum(rr[:-1])])
            rr = (
                rr0
                - cfg.rsa_amplitude_ms / 1000.0 * resp_at(t)
                + cfg.lf_amplitude_ms / 1000.0 * np.sin(2 * np.pi * 0.1 * t + lf_phase)
                + e
            )
            rr = np.clip(rr, 0.25, 3.0)
    t = -_PRE_ROLL_S + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    return t[t < cfg.duration_s + 2.0]


# ----------------------------------------------------------------------------- public API


def simulate_pair(cfg: SimulatorConfig | None = None, subject_id: str | None = None) -> Recording:
    """Simulate one synchronized ECG + PPG recording (channels ``"ecg"`` in mV, ``"ppg"`` in a.u.,
    both at ``cfg.sample_rate_hz``). ``meta`` holds the ground truth: ``r_peaks_s`` (R peaks in
    [0, duration)), ``pulse_onsets_s`` and ``pulse_transit_s`` (for the first
    ``len(pulse_onsets_s)`` of those R peaks: the ones whose pulse starts before the end),
    ``hr_bpm_trace`` (8 s windows, 2 s step), ``motion_artifact_intervals_s`` (k x 2), ``af`` and
    ``config``."""
    cfg = cfg or SimulatorConfig()
    rng = np.random.default_rng(cfg.seed)
    fs = float(cfg.sample_rate_hz)
    n = round(cfg.duration_s * fs)
    t = np.arange(n) / fs

    # respiration: a sinusoid with a slowly wandering phase
    resp_phase0 = rng.uniform(0, 2 * np.pi)
    grid = np.arange(-_PRE_ROLL_S - 2.0, cfg.duration_s + 4.0, 0.1)
    phase_noise = 0.6 * _band_noise(rng, grid.size, 10.0, 0.0, 0.05)

    def resp_at(times: np.ndarray) -> np.ndarray:
        return np.sin(
            2 * np.pi * cfg.resp_rate_hz * times + resp_phase0 + np.interp(times, grid, phase_noise)
        )

    beats = _rr_intervals(cfg, rng, resp_at)
    rr0 = 60.0 / cfg.mean_hr_bpm
    rr_prev = np.diff(beats, prepend=beats[0] - rr0)
    nb = beats.size
    resp_b = resp_at(beats)

    # ---- ECG
    ecg = np.zeros(n)
    sq = np.sqrt(rr_prev)
    qrs_mod = (1 + 0.05 * resp_b) * (1 + 0.02 * rng.standard_normal(nb))  # respiration moves the axis
    r_amp = cfg.ecg_r_amplitude_mv * qrs_mod
    if not cfg.af:
        _add_waves(ecg, fs, beats - 0.16, np.full(nb, cfg.ecg_p_amplitude_mv), 0.025)
    _add_waves(ecg, fs, beats - 0.03, -0.12 * r_amp, 0.010)
    _add_waves(ecg, fs, beats, r_amp, 0.011)
    _add_waves(ecg, fs, beats + 0.032, -cfg.ecg_s_amplitude_mv * qrs_mod, 0.012)
    _add_waves(
        ecg,
        fs,
        beats + 0.30 * sq,
        cfg.ecg_t_amplitude_mv * (1 + 0.03 * rng.standard_normal(nb)),
        0.05 * sq,
        0.06 * sq,
    )
    if cfg.af:  # fibrillatory waves, 4-8 Hz, waxing and waning
        f_af = rng.uniform(5.0, 7.0)
        env = 1 + 0.5 * _slow_noise(rng, t, 0.3)
        ecg += 0.04 * env * np.sin(2 * np.pi * f_af * t + 3.0 * _slow_noise(rng, t, 0.5))
    ecg += cfg.baseline_wander_amplitude * (0.5 * resp_at(t) + _slow_noise(rng, t, 0.1))
    if cfg.ecg_powerline_amplitude_mv > 0:
        ecg += cfg.ecg_powerline_amplitude_mv * np.sin(
            2 * np.pi * cfg.powerline_hz * t + rng.uniform(0, 2 * np.pi)
        )
    ecg += cfg.ecg_noise_std * rng.standard_normal(n)

    # ---- PPG
    ptt = (
        cfg.pulse_transit_s
        + cfg.pulse_transit_jitter_s * rng.standard_normal(nb)
        + cfg.pulse_transit_resp_s * resp_b
    )
    ptt = np.maximum(ptt, 0.0)
    onsets = beats + ptt
    strength = np.clip(rr_prev / rr0, 0.4, 1.3) ** 0.7  # Frank-Starling: short RR -> weak beat
    amp = strength * (1 + cfg.ppg_resp_amplitude_mod * resp_at(onsets)) * (1 + 0.03 * rng.standard_normal(nb))
    sys_peak = onsets + 2.5 * cfg.ppg_rise_sd_s
    ppg = np.zeros(n)
    _add_waves(ppg, fs, sys_peak, amp, cfg.ppg_rise_sd_s, cfg.ppg_fall_sd_s)
    dia_peak = sys_peak + cfg.dicrotic_delay_s * np.sqrt(np.minimum(rr_prev, 1.5) / 0.8)
    _add_waves(ppg, fs, dia_peak, cfg.dicrotic_ratio * amp, cfg.dicrotic_sd_s)
    ppg += cfg.ppg_resp_baseline * resp_at(t)
    ppg += cfg.baseline_wander_amplitude * _slow_noise(rng, t, 0.1)
    # motion artifacts: Poisson bursts of large band-limited noise with a smooth envelope
    n_art = rng.poisson(cfg.motion_artifact_rate_per_min * cfg.duration_s / 60.0)
    intervals = np.zeros((n_art, 2))
    for j in range(n_art):
        length = rng.uniform(2.0, 8.0)
        start = rng.uniform(0.0, cfg.duration_s)
        i0, i1 = int(start * fs), min(n, int((start + length) * fs))
        m = i1 - i0
        if m < 2:
            intervals[j] = (start, min(start + length, cfg.duration_s))
            continue
        burst = _band_noise(rng, m, fs, 0.3, 4.0) * np.hanning(m)
        ppg[i0:i1] += cfg.motion_artifact_amplitude * rng.uniform(0.5, 1.5) * burst
        intervals[j] = (start, i1 / fs)
    ppg += cfg.ppg_noise_std * rng.standard_normal(n)

    # ---- ground truth
    in_rec = (beats >= 0) & (beats < cfg.duration_s)
    r_peaks = beats[in_rec]
    on = onsets[in_rec]
    keep = np.cumprod(on < cfg.duration_s).astype(bool)  # prefix: pulses that start in the record
    order = np.argsort(intervals[:, 0]) if n_art else np.arange(0)
    meta = {
        "r_peaks_s": r_peaks,
        "pulse_onsets_s": on[keep],
        "pulse_transit_s": on[keep] - r_peaks[keep],
        "hr_bpm_trace": hr_trace_from_beats(r_peaks, cfg.duration_s),
        "hr_trace_window_s": HR_TRACE_WINDOW_S,
        "hr_trace_step_s": HR_TRACE_STEP_S,
        "motion_artifact_intervals_s": intervals[order],
        "af": bool(cfg.af),
        "config": asdict(cfg),
    }
    channels = {"ppg": Channel(ppg, fs, "a.u."), "ecg": Channel(ecg, fs, "mV")}
    return Recording(subject_id or f"sim/seed{cfg.seed}", "simulator", channels, meta)


def simulate_cohort(
    n_subjects: int,
    duration_s: float = 60.0,
    seed: int = 0,
    *,
    sample_rate_hz: float = 125.0,
    af_fraction: float = 0.2,
    motion_artifacts: bool = True,
) -> list[Recording]:
    """``n_subjects`` simulated subjects with their own rhythm and morphology: HR 50-110 bpm,
    ``round(af_fraction * n)`` AF subjects, PTT 0.15-0.35 s, varying PPG/ECG wave shapes, noise and
    (if ``motion_artifacts``) artifact rates. Subject ids ``sim/S000``, ...; deterministic in
    ``seed``. Each subject's config is in ``meta["config"]``."""
    if n_subjects < 0:
        raise InvalidSignalError(f"n_subjects must be >= 0, got {n_subjects}")
    if not 0 <= af_fraction <= 1:
        raise InvalidSignalError(f"af_fraction must be in [0, 1], got {af_fraction}")
    ss = np.random.SeedSequence(seed)
    rng = np.random.default_rng(ss.spawn(1)[0])
    subject_seeds = rng.integers(0, 2**31 - 1, size=n_subjects)
    af_idx = (
        set(rng.choice(n_subjects, size=round(af_fraction * n_subjects), replace=False).tolist())
        if n_subjects
        else set()
    )
    out = []
    for i in range(n_subjects):
        u = rng.uniform
        hr = u(50, 110)
        slow = 70.0 / hr
        cfg = SimulatorConfig(
            duration_s=duration_s,
            sample_rate_hz=sample_rate_hz,
            mean_hr_bpm=hr,
            hrv_sdnn_ms=u(10, 50) * slow,
            rsa_amplitude_ms=u(5, 40) * slow,
            lf_amplitude_ms=u(5, 25) * slow,
            resp_rate_hz=u(0.15, 0.4),
            af=i in af_idx,
            af_rr_cv=u(0.15, 0.3),
            pulse_transit_s=u(0.15, 0.35),
            pulse_transit_jitter_s=u(0.002, 0.01),
            ppg_rise_sd_s=u(0.035, 0.06),
            ppg_fall_sd_s=u(0.09, 0.16),
            dicrotic_ratio=u(0.15, 0.6),
            dicrotic_delay_s=u(0.22, 0.34),
            dicrotic_sd_s=u(0.07, 0.12),
            ppg_resp_amplitude_mod=u(0.03, 0.15),
            ppg_resp_baseline=u(0.03, 0.2),
            ecg_p_amplitude_mv=u(0.05, 0.2),
            ecg_r_amplitude_mv=u(0.6, 1.6),
            ecg_s_amplitude_mv=u(0.1, 0.5),
            ecg_t_amplitude_mv=u(0.1, 0.45) * (1 if u() > 0.1 else -1),
            motion_artifact_rate_per_min=u(0.0, 1.0) if motion_artifacts else 0.0,
            motion_artifact_amplitude=u(1.0, 3.0),
            ecg_noise_std=u(0.01, 0.05),
            ppg_noise_std=u(0.01, 0.05),
            baseline_wander_amplitude=u(0.05, 0.3),
            seed=int(subject_seeds[i]),
        )
        out.append(simulate_pair(cfg, subject_id=f"sim/S{i:03d}"))
    return out


__all__ = ["SimulatorConfig", "hr_trace_from_beats", "simulate_cohort", "simulate_pair"]
