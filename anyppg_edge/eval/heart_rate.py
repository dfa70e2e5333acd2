"""Heart rate of 10 s windows: the one reference-HR policy, and the ridge HR head on embeddings.

**Reference HR** (:func:`reference_heart_rates`). A window's heart rate is the first of these that
gives one, in this order:

1. ``"trace"``: the recording's HR trace, mapped onto the window by time
   (:func:`reference_hr_from_trace`). The trace is ``meta["hr_bpm_trace"]``: IEEE SPC 2015 ``BPM0``
   (ECG-derived HR of 8 s windows every 2 s, from the reader) or the simulator's ground truth in the
   same layout;
2. ``"ecg-rpeaks"``: the R peaks of the window's preprocessed ECG (:func:`ecg_heart_rate_bpm`:
   neurokit2, ``60 / median RR``, at least 3 peaks), accepted when within ``valid_bpm``;
3. ``"ppg-spectral"``: the Welch spectral peak of the window's PPG in ``ppg_band_hz``
   (:func:`~anyppg_edge.eval.baselines.spectral_peak_hr_bpm`);

else NaN (``"none"``). :class:`HrPolicy` says which steps apply; two settings are in use:

* :data:`REFERENCE_POLICY` (trace, then the ECG with any finite HR, no PPG step): the *evaluation
  reference*: targets of the HR probe and of the parity suite (:func:`window_reference_hr_bpm`),
  the firmware-harness replay's per-window reference (:func:`recording_reference_hr_bpm`) and the
  HR head's training targets (:class:`HrTrainingSet`). A PPG model is scored against it, so it is
  never PPG-derived: a window with neither trace nor ECG HR stays NaN and is left out.
* ``anyppg_edge.deploy.calibration.HR_POLICY`` (no trace, the ECG within 30-240 bpm, then the PPG
  spectral peak): *calibration labels*, used only to stratify calibration windows by HR bin and to
  score PPG quality, so every window needs a value; the committed default calibration set was built
  with it.

The three places that used to write this policy each (the probe, the replay, the calibration set)
call :func:`reference_heart_rates`; they differ only in the :class:`HrPolicy` they pass.

**HR head** (:func:`fit_hr_head`): ridge regression on standardised embeddings of an encoder (any
object with ``embed([N, L]) -> [N, D]``), fitted on *other* subjects' offline windows against their
reference HR, alpha chosen by leave-one-subject-out cross-validation. The firmware harness fits one
per replayed recording and scores its predictions on the streamed windows.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import InvalidSignalError

__all__ = [
    "REFERENCE_POLICY",
    "SOURCES",
    "HrHead",
    "HrPolicy",
    "HrTrainingSet",
    "ecg_heart_rate_bpm",
    "fit_hr_head",
    "hr_training_recordings",
    "recording_reference_hr_bpm",
    "reference_heart_rates",
    "reference_hr_from_trace",
    "window_reference_hr_bpm",
]

MIN_PEAKS_FOR_HR = 3
SOURCE_TRACE, SOURCE_ECG, SOURCE_PPG, SOURCE_NONE = "trace", "ecg-rpeaks", "ppg-spectral", "none"
SOURCES = (SOURCE_TRACE, SOURCE_ECG, SOURCE_PPG, SOURCE_NONE)


# ----------------------------------------------------------------------------- the estimators


def ecg_heart_rate_bpm(ecg_windows: Any, sample_rate_hz: float = 125.0) -> np.ndarray:
    """Heart rate (bpm) of each ECG window: R peaks by ``neurokit2.ecg_peaks`` (on the
    ``ecg_clean``-ed window), ``60 / median RR``. NaN for a window with fewer than 3 R peaks or where
    peak detection fails (e.g. a flat window). ``ecg_windows``: ``[n, samples]`` (or ``[n, 1, samples]``
    or one 1-D window), normally the preprocessed windows of :func:`~anyppg_edge.data.windows.extract_windows`."""
    try:
        import neurokit2 as nk
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("ecg_heart_rate_bpm needs neurokit2: pip install 'anyppg-edge[data]'") from exc
    x = np.asarray(ecg_windows, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim == 3 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 2:
        raise ValueError(f"ecg_windows must be [n, samples] (or [n, 1, samples]), got shape {x.shape}")
    fs = float(sample_rate_hz)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sample_rate_hz must be finite and > 0, got {sample_rate_hz}")
    hr = np.full(x.shape[0], np.nan)
    for i, w in enumerate(x):
        if not np.isfinite(w).all() or np.ptp(w) == 0:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean = nk.ecg_clean(w, sampling_rate=round(fs))
                _, info = nk.ecg_peaks(clean, sampling_rate=round(fs), correct_artifacts=False)
        except Exception:  # neurokit raises assorted errors on degenerate windows: no HR for those
            continue
        peaks = np.asarray(info.get("ECG_R_Peaks", []), dtype=np.float64)
        if peaks.size >= MIN_PEAKS_FOR_HR:
            hr[i] = 60.0 / (np.median(np.diff(peaks)) / fs)
    return hr


def reference_hr_from_trace(
    window_start_s: Any,
    trace_bpm: Any,
    trace_window_s: float = 8.0,
    trace_step_s: float = 2.0,
    window_s: float = 10.0,
) -> np.ndarray:
    """Map an HR trace (entry k covers ``[k * step, k * step + trace_window)`` s, as IEEE SPC 2015
    ``BPM0``) onto windows ``[start, start + window_s)``.

    When the trace windows are no longer than ours, a window's reference is the mean of the (finite)
    trace entries whose span lies entirely inside it, i.e. whose centre is within
    ``(window_s - trace_window_s) / 2`` of the window's centre (for 10 s windows on a 2 s grid: the
    two 8 s entries starting at ``start`` and ``start + 2`` s, whose mean is centred on the window);
    NaN when there is none (e.g. past the end of the trace). When the trace windows are longer than
    ours, the entry with the nearest centre is used if it is within half a step of ours."""
    starts = np.asarray(window_start_s, dtype=np.float64).ravel()
    trace = np.asarray(trace_bpm, dtype=np.float64).ravel()
    if trace_window_s <= 0 or trace_step_s <= 0 or window_s <= 0:
        raise ValueError("trace_window_s, trace_step_s and window_s must be > 0")
    centres = np.arange(trace.size) * trace_step_s + trace_window_s / 2
    out = np.full(starts.size, np.nan)
    if trace.size == 0:
        return out
    for i, t0 in enumerate(starts):
        c = t0 + window_s / 2
        if trace_window_s <= window_s:
            inside = (np.abs(centres - c) <= (window_s - trace_window_s) / 2 + 1e-9) & np.isfinite(trace)
            if inside.any():
                out[i] = trace[inside].mean()
        else:
            k = int(np.argmin(np.abs(centres - c)))
            if abs(centres[k] - c) <= trace_step_s / 2 + 1e-9:
                out[i] = trace[k]
    return out


# ----------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class HrPolicy:
    """Which steps of the reference-HR order apply (see the module docstring).

    ``use_trace``: take the recording's HR trace first; ``valid_bpm``: accept an ECG R-peak HR only
    within ``[lo, hi]`` bpm (``None``: any finite value); ``ppg_fallback``: where neither gives an HR,
    the PPG spectral peak in ``ppg_band_hz``."""

    use_trace: bool = True
    valid_bpm: tuple[float, float] | None = None
    ppg_fallback: bool = False
    ppg_band_hz: tuple[float, float] = (0.7, 3.5)

    def accepts(self, hr_bpm: np.ndarray) -> np.ndarray:
        ok = np.isfinite(hr_bpm)
        if self.valid_bpm is not None:
            ok &= (hr_bpm >= self.valid_bpm[0]) & (hr_bpm <= self.valid_bpm[1])
        return ok


REFERENCE_POLICY = HrPolicy()

Windows = np.ndarray | Callable[[np.ndarray], np.ndarray]


def _rows(windows: Windows, rows: np.ndarray) -> np.ndarray:
    x = windows(rows) if callable(windows) else np.asarray(windows)[rows]
    x = np.asarray(x, dtype=np.float64)
    return x[:, 0] if x.ndim == 3 and x.shape[1] == 1 else x


def reference_heart_rates(
    start_s: Any,
    *,
    ecg: Windows | None = None,
    ppg: Windows | None = None,
    has_ecg: Any = None,
    meta: Mapping[str, Any] | None = None,
    sample_rate_hz: float = 125.0,
    window_s: float = 10.0,
    policy: HrPolicy = REFERENCE_POLICY,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference HR (bpm) of ``n`` windows starting at ``start_s`` (s), by the order of the module
    docstring under ``policy``. Returns ``(hr_bpm [n], source [n])``, source one of :data:`SOURCES`.

    ``ecg`` / ``ppg``: the windows' preprocessed ECG / PPG ``[n, samples]`` at ``sample_rate_hz``, or
    a function of the indices of the windows that still need an HR returning theirs (so a caller
    cuts and filters only those); a row of NaN is a window without a usable signal. ``has_ecg``:
    ``[n]`` bool, windows that have an ECG (default: all). ``meta``: the recording's ``meta``, whose
    ``hr_bpm_trace`` (with ``hr_trace_window_s``, ``hr_trace_step_s``; default 8 s / 2 s) is the trace;
    all windows must then come from that one recording."""
    starts = np.asarray(start_s, dtype=np.float64).ravel()
    hr = np.full(starts.size, np.nan)
    source = np.full(starts.size, SOURCE_NONE, dtype=object)
    trace = None if meta is None else meta.get("hr_bpm_trace")
    if policy.use_trace and trace is not None:
        t = reference_hr_from_trace(starts, trace, float(meta.get("hr_trace_window_s", 8.0)),
                                    float(meta.get("hr_trace_step_s", 2.0)), window_s)
        got = np.isfinite(t)
        hr[got], source[got] = t[got], SOURCE_TRACE
    if ecg is not None:
        need = ~np.isfinite(hr)
        if has_ecg is not None:
            need &= np.asarray(has_ecg, dtype=bool).ravel()
        rows = np.flatnonzero(need)
        if rows.size:
            est = ecg_heart_rate_bpm(_rows(ecg, rows), sample_rate_hz)
            ok = policy.accepts(est)
            hr[rows[ok]], source[rows[ok]] = est[ok], SOURCE_ECG
    if policy.ppg_fallback and ppg is not None:
        rows = np.flatnonzero(~np.isfinite(hr))
        if rows.size:
            from anyppg_edge.eval.baselines import spectral_peak_hr_bpm

            x = _rows(ppg, rows)
            fin = np.isfinite(x).all(axis=1)
            if fin.any():
                est = np.asarray(spectral_peak_hr_bpm(x[fin], fs=sample_rate_hz, band_hz=policy.ppg_band_hz))
                hr[rows[fin]], source[rows[fin]] = est.reshape(-1), SOURCE_PPG
    return hr, source.astype(str)


def window_reference_hr_bpm(
    windows: Any,
    recordings: Sequence[Any],
    window_s: float = 10.0,
    prefer_trace: bool = True,
    *,
    policy: HrPolicy = REFERENCE_POLICY,
    sample_rate_hz: float = 125.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference HR per window of a :class:`~anyppg_edge.data.windows.WindowSet` cut from ``recordings``
    (:func:`reference_heart_rates` on each recording's windows, with its ``meta`` and the windows'
    preprocessed ECG; ``prefer_trace=False`` skips the trace).

    Returns ``(hr_bpm [n], source [n])`` with source ``"trace"`` where the trace gave the HR and
    ``"ecg"`` where the ECG was used (NaN where it found fewer than 3 R peaks); ``"ppg-spectral"``
    only under a policy with the PPG step. (The parity suite counts ``"trace"`` and ``"ecg"``.)"""
    if not prefer_trace:
        policy = dataclasses.replace(policy, use_trace=False)
    by_subject: dict[str, Any] = {}
    for rec in recordings:
        if rec.subject_id in by_subject:
            raise ValueError(f"two recordings share subject_id {rec.subject_id!r}")
        by_subject[rec.subject_id] = rec
    subjects = np.asarray(windows.subject_id).astype(str)
    hr = np.full(len(subjects), np.nan)
    source = np.full(len(subjects), "ecg", dtype=object)
    for sid in np.unique(subjects):
        if sid not in by_subject:
            raise ValueError(f"windows of subject {sid!r} but no recording with that subject_id")
        idx = np.flatnonzero(subjects == sid)
        h, s = reference_heart_rates(
            np.asarray(windows.start_s)[idx],
            ecg=lambda rows, idx=idx: np.asarray(windows.ecg)[idx[rows]],
            ppg=lambda rows, idx=idx: np.asarray(windows.ppg)[idx[rows]],
            meta=by_subject[sid].meta,
            sample_rate_hz=sample_rate_hz,
            window_s=window_s,
            policy=policy,
        )
        hr[idx] = h
        source[idx] = np.where(np.isin(s, (SOURCE_ECG, SOURCE_NONE)), "ecg", s)
    return hr, source.astype(str)


def recording_reference_hr_bpm(
    rec: Recording,
    t_start_s: Any,
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
    policy: HrPolicy = REFERENCE_POLICY,
) -> tuple[np.ndarray, np.ndarray]:
    """Reference HR of windows ``[t, t + cfg.window_s)`` of ``rec`` at any start times (e.g. the true
    time spans of streamed windows): :func:`reference_heart_rates` with ``rec``'s trace and, for the
    windows it does not cover, the ECG cut from ``rec`` at those times (record polarity corrected
    over them, then :func:`~anyppg_edge.preprocessing.preprocess_ecg_window`). Returns
    ``(hr_bpm, source)``; NaN where no step gives an HR. The windows are cut at the reference rate
    whatever ``cfg``'s (:func:`~anyppg_edge.data.native_rate.reference_config`): a native-rate model
    is scored against the same reference HR as a 125 Hz one."""
    from anyppg_edge.data.native_rate import reference_config

    cfg = reference_config(cfg)
    starts = np.asarray(t_start_s, dtype=np.float64).ravel()

    def cut(name: str, rows: np.ndarray) -> tuple[list[int], list[np.ndarray], float]:
        ch = rec.channel(name)
        n = pp.window_length_samples(ch.sample_rate_hz, cfg)
        where, raws = [], []
        for k, i in enumerate(rows):
            if not np.isfinite(starts[i]):
                continue
            a = round(starts[i] * ch.sample_rate_hz)
            seg = ch.data[a : a + n] if a >= 0 else np.zeros(0)
            if seg.size == n and np.isfinite(seg).all() and np.ptp(seg) > 0:
                where.append(k)
                raws.append(seg)
        return where, raws, ch.sample_rate_hz

    def ecg(rows: np.ndarray) -> np.ndarray:
        out = np.full((rows.size, cfg.window_samples), np.nan)
        where, raws, fs = cut("ecg", rows)
        if raws:
            segs, _, _ = pp.correct_ecg_polarity(np.stack(raws), fs, cfg)
            for k, seg in zip(where, segs, strict=True):
                try:
                    out[k] = pp.preprocess_ecg_window(seg, fs, cfg)
                except InvalidSignalError:
                    continue
        return out

    def ppg(rows: np.ndarray) -> np.ndarray:
        out = np.full((rows.size, cfg.window_samples), np.nan)
        where, raws, fs = cut("ppg", rows)
        for k, seg in zip(where, raws, strict=True):
            try:
                out[k] = pp.preprocess_ppg_window(seg, fs, cfg)
            except InvalidSignalError:
                continue
        return out

    return reference_heart_rates(
        starts,
        ecg=ecg if rec.has("ecg") else None,
        ppg=ppg if rec.has("ppg") else None,
        meta=rec.meta,
        sample_rate_hz=cfg.target_sample_rate_hz,
        window_s=cfg.window_s,
        policy=policy,
    )


# ----------------------------------------------------------------------------- the HR head


def hr_training_recordings(target: Recording, recordings: Sequence[Recording] | None, seed: int) -> list[Recording]:
    """Recordings to fit the HR head on: the given ones without ``target``'s subject; default: the
    other shared recordings (a real target) or a simulated cohort (a simulated target)."""
    if recordings is None:
        from anyppg_edge.paths import shared_available

        if target.dataset != "simulator" and shared_available():
            from anyppg_edge.data import load_shared_recordings

            recordings = load_shared_recordings()
        else:
            from anyppg_edge.data.simulator import simulate_cohort

            recordings = simulate_cohort(6, duration_s=120.0, seed=seed + 1000)
    return [r for r in recordings if r.subject_id != target.subject_id and r.has("ppg") and r.has("ecg")]


@dataclass
class HrHead:
    """Ridge regression embeddings → HR (bpm) on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    alpha: float
    n_train: int
    subjects: list[str]
    cv_mae_bpm: float = math.nan

    def predict(self, emb: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(np.asarray(emb, np.float64)) - self.mean) / self.scale
        return z @ self.coef + self.intercept


def _ridge(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    ym = float(y.mean())
    zm = z.mean(axis=0)
    zc = z - zm
    coef = np.linalg.solve(zc.T @ zc + alpha * np.eye(z.shape[1]), zc.T @ (y - ym))
    return coef, ym - float(zm @ coef)


@dataclass
class HrTrainingSet:
    """Offline windows' embeddings with their reference HR (:func:`window_reference_hr_bpm`) and
    subject, for :func:`fit_hr_head`."""

    emb: np.ndarray  # [N, D]
    hr_bpm: np.ndarray  # [N]
    subject: np.ndarray  # [N] str

    @classmethod
    def build(cls, encoder: Any, recordings: Sequence[Recording], cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
              hop_s: float = 5.0) -> HrTrainingSet:
        from anyppg_edge.data.native_rate import is_native_rate, model_input_recording
        from anyppg_edge.data.windows import extract_windows

        embs, hrs, groups = [], [], []
        for rec in recordings:
            if not (rec.has("ppg") and rec.has("ecg")):
                continue
            # the windows a model of this contract reads (a native-rate model: as its sensor samples them)
            ws = extract_windows(model_input_recording(rec, cfg), cfg, hop_s=hop_s, ecg_quality=False)
            if not len(ws):
                continue
            if is_native_rate(cfg):  # the reference HR from the recording's ECG at the reference rate
                hr, _ = recording_reference_hr_bpm(rec, ws.start_s, cfg)
            else:
                hr, _ = window_reference_hr_bpm(ws, [rec], window_s=cfg.window_s,
                                                sample_rate_hz=cfg.target_sample_rate_hz)
            keep = np.isfinite(hr)
            if not keep.any():
                continue
            embs.append(encoder.embed(ws.ppg[keep]))
            hrs.append(hr[keep])
            groups += [rec.subject_id] * int(keep.sum())
        if not embs:
            return cls(np.zeros((0, 0)), np.zeros(0), np.zeros(0, str))
        return cls(np.concatenate(embs).astype(np.float64), np.concatenate(hrs), np.asarray(groups))


def fit_hr_head(
    encoder: Any,
    recordings: Sequence[Recording] | HrTrainingSet,
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
    hop_s: float = 5.0,
    alphas: Sequence[float] = (1.0, 10.0, 100.0, 1000.0, 1e4),
    exclude_subject: str | None = None,
) -> HrHead:
    """Fit the HR head on ``recordings`` (or a prebuilt :class:`HrTrainingSet`), leaving out
    ``exclude_subject``; alpha by leave-one-subject-out CV."""
    data = recordings if isinstance(recordings, HrTrainingSet) else HrTrainingSet.build(encoder, recordings, cfg, hop_s)
    keep = data.subject != exclude_subject if exclude_subject is not None else np.ones(data.hr_bpm.size, bool)
    if not keep.any():
        raise InvalidSignalError("no training window with a reference heart rate for the HR head")
    emb, y, g = data.emb[keep], data.hr_bpm[keep], data.subject[keep]
    mean, scale = emb.mean(axis=0), emb.std(axis=0) + 1e-8
    z = (emb - mean) / scale
    subjects = sorted(set(g.tolist()))
    best_alpha, best_mae = float(alphas[len(alphas) // 2]), math.nan
    if len(subjects) >= 2:
        maes = []
        for a in alphas:
            err = np.zeros(y.size)
            for s in subjects:
                test = g == s
                coef, b0 = _ridge(z[~test], y[~test], a)
                err[test] = z[test] @ coef + b0 - y[test]
            maes.append(float(np.abs(err).mean()))
        i = int(np.argmin(maes))
        best_alpha, best_mae = float(alphas[i]), maes[i]
    coef, b0 = _ridge(z, y, best_alpha)
    return HrHead(mean, scale, coef, b0, best_alpha, int(y.size), subjects, best_mae)
