"""Replay: emulated sensor → streaming preprocessor → encoder, checked against the offline reference.

* :func:`replay` runs one :class:`~anyppg_edge.stream.sensor.SensorRun` through a
  :class:`~anyppg_edge.stream.streamer.Streamer` and an encoder (any
  :class:`~anyppg_edge.deploy.runtime.Encoder`: int8 TFLite, ONNX, PyTorch), window by window as a
  watch would, and scores every window against the ground truth of the sensor: whether a fault touched
  it (and then whether it was flagged), the offline reference window on the same sensor samples
  (:func:`~anyppg_edge.preprocessing.preprocess_ppg_window`), the offline window of the source
  recording at its own rate, embedding cosines, heart rate from a linear head against the reference
  HR, and the compute latency of each window.
* :func:`parity_report`: the no-fault parity bars at one output data rate (reference, float32 device
  and causal modes against the offline windows, float-model embedding cosines).
* :func:`harness_summary`: what the main job calls: parity at every rate, chunking invariance, fault
  replays of real recordings through the int8 artifact, report + plots, a dict of bars.

**Heart-rate head** (:func:`fit_hr_head`): ridge regression on standardised embeddings of the encoder
being replayed, fitted on *other* subjects' offline windows against their reference HR
(:func:`~anyppg_edge.eval.probe.window_reference_hr_bpm`: the IEEE SPC 2015 ECG-derived ``BPM0`` trace
where present, NeuroKit R peaks on the window's ECG otherwise), alpha chosen by leave-one-subject-out
cross-validation. The replayed recording's own reference HR comes from its synchronized ECG the same
way, on the window's true time span.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import DataFormatError, InvalidSignalError
from anyppg_edge.report import atomic_write_text, markdown_table, write_json
from anyppg_edge.stream.sensor import (
    DELIVERED,
    STATUS_NAMES,
    Burst,
    SensorConfig,
    SensorRun,
    emulate,
    fault_config,
)
from anyppg_edge.stream.streamer import (
    FLAG_NAMES,
    HARD_FLAGS,
    StreamConfig,
    Streamer,
    StreamWindow,
    flag_names,
    offline_windows,
)

__all__ = [
    "BARS",
    "HrHead",
    "HrTrainingSet",
    "ReplayResult",
    "WindowTruth",
    "chunking_check",
    "cosine",
    "fit_hr_head",
    "harness_summary",
    "hr_training_recordings",
    "load_recording",
    "parity_report",
    "rechunk",
    "reference_hr_bpm",
    "replay",
    "window_truth",
    "write_replay_report",
]

log = logging.getLogger("anyppg_edge.stream")

# the bars
BARS = {
    "parity_max_abs_float64": 1e-5,
    "parity_max_abs_float32_device": 1e-3,
    "parity_min_cosine_float_model": 0.9999,
    "preprocess_ms_per_window": 2.0,  # >= 5000x real time for 10 s windows
    "end_to_end_1h_25hz_s": 60.0,
}
PARITY_RATES_HZ = (25.0, 50.0, 64.0, 100.0, 125.0)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[N, D]`` arrays (NaN rows stay NaN)."""
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(a * b, axis=1) / den


def _stats(x: Any) -> dict[str, float]:
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0}
    return {"n": int(v.size), "mean": float(v.mean()), "min": float(v.min()), "p5": float(np.percentile(v, 5)),
            "median": float(np.median(v)), "max": float(v.max())}


# --------------------------------------------------------------------------------------------------
# recordings
# --------------------------------------------------------------------------------------------------


def load_recording(spec: str | Path | Recording, *, sim_duration_s: float = 300.0) -> Recording:
    """``shared:<subject>`` (a recording of ``../shared/data`` whose subject id ends with or contains
    ``<subject>``, case-insensitive: ``shared:DATA_01``, ``shared:bidmc``, ``shared:neurokit``),
    ``sim[:<seed>]`` (the simulator, ``sim_duration_s`` long) or a file path
    (:func:`~anyppg_edge.data.readers.read_recording`)."""
    if isinstance(spec, Recording):
        return spec
    text = str(spec)
    if text.startswith("shared:"):
        from anyppg_edge.data import load_shared_recordings

        want = text.split(":", 1)[1].strip().lower()
        recs = load_shared_recordings()
        hits = [r for r in recs if r.subject_id.lower().endswith(want)] or [
            r for r in recs if want in r.subject_id.lower()
        ]
        if len(hits) != 1:
            raise DataFormatError(
                f"{text!r} matches {len(hits)} shared recordings; choose one of "
                f"{[r.subject_id for r in recs]}"
            )
        return hits[0]
    if text == "sim" or text.startswith("sim:"):
        from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair

        seed = int(text.split(":", 1)[1]) if ":" in text else 0
        return simulate_pair(SimulatorConfig(duration_s=sim_duration_s, seed=seed))
    from anyppg_edge.data.readers import read_recording

    return read_recording(text)


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


# --------------------------------------------------------------------------------------------------
# heart-rate head
# --------------------------------------------------------------------------------------------------


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
    """Offline windows' embeddings with their reference HR and subject, for :func:`fit_hr_head`."""

    emb: np.ndarray  # [N, D]
    hr_bpm: np.ndarray  # [N]
    subject: np.ndarray  # [N] str

    @classmethod
    def build(cls, encoder: Any, recordings: Sequence[Recording], cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
              hop_s: float = 5.0) -> HrTrainingSet:
        from anyppg_edge.data.windows import extract_windows
        from anyppg_edge.eval.probe import window_reference_hr_bpm

        embs, hrs, groups = [], [], []
        for rec in recordings:
            if not (rec.has("ppg") and rec.has("ecg")):
                continue
            ws = extract_windows(rec, cfg, hop_s=hop_s, ecg_quality=False)
            if not len(ws):
                continue
            hr, _ = window_reference_hr_bpm(ws, [rec], window_s=cfg.window_s)
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


def reference_hr_bpm(rec: Recording, t_start_s: Any, cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG) -> np.ndarray:
    """Reference HR of windows ``[t, t + window_s)`` of ``rec``: its HR trace where it has one (IEEE
    SPC 2015 ``BPM0``, simulator truth), else NeuroKit R peaks on the preprocessed ECG window (record
    polarity corrected). NaN where neither gives one."""
    from anyppg_edge.eval.probe import ecg_heart_rate_bpm, reference_hr_from_trace

    starts = np.asarray(t_start_s, np.float64).ravel()
    hr = np.full(starts.size, np.nan)
    meta = rec.meta
    if meta.get("hr_bpm_trace") is not None:
        hr = reference_hr_from_trace(starts, meta["hr_bpm_trace"], float(meta.get("hr_trace_window_s", 8.0)),
                                     float(meta.get("hr_trace_step_s", 2.0)), cfg.window_s)
    todo = np.flatnonzero(~np.isfinite(hr) & np.isfinite(starts))
    if todo.size and rec.has("ecg"):
        ecg = rec.channel("ecg")
        n = pp.window_length_samples(ecg.sample_rate_hz, cfg)
        raws, where = [], []
        for i in todo:
            a = round(starts[i] * ecg.sample_rate_hz)
            seg = ecg.data[a : a + n] if a >= 0 else np.zeros(0)
            if seg.size == n and np.isfinite(seg).all() and np.ptp(seg) > 0:
                raws.append(seg)
                where.append(i)
        if raws:
            segs, _, _ = pp.correct_ecg_polarity(np.stack(raws), ecg.sample_rate_hz, cfg)
            wins, ok = [], []
            for i, seg in zip(where, segs, strict=True):
                try:
                    wins.append(pp.preprocess_ecg_window(seg, ecg.sample_rate_hz, cfg))
                    ok.append(i)
                except InvalidSignalError:
                    continue
            if wins:
                hr[np.asarray(ok)] = ecg_heart_rate_bpm(np.stack(wins), cfg.target_sample_rate_hz)
    return hr


# --------------------------------------------------------------------------------------------------
# ground truth of a window
# --------------------------------------------------------------------------------------------------


@dataclass
class WindowTruth:
    seq0: int | None  # trace index of the window's first sample (None: not mappable)
    affected: bool  # a fault touched the window's samples
    reasons: list[str]


def window_truth(run: SensorRun, w: StreamWindow, n_win: int) -> WindowTruth:
    """Map a streamed window onto the sensor's ground truth: the trace index of its first sample
    (the produced sample nearest its first timestamp, which timestamp jitter below a quarter period
    cannot confuse) and whether any of its ``n_win`` samples was lost (dropped, overflow, reset),
    saturated, or spans a reset, or whether the window's last slot does not land on the truth's."""
    tr = run.trace
    half = 0.5 / tr.odr_hz
    i = int(np.searchsorted(tr.t_true_s, w.t_start_s - half))
    if i >= len(tr) or abs(tr.t_true_s[i] - w.t_start_s) >= half:
        return WindowTruth(None, True, ["no-sample-at-start"])
    j = i + n_win
    reasons = []
    if j > len(tr):
        return WindowTruth(None, True, ["past-end"])
    st = tr.status[i:j]
    if (st != DELIVERED).any():
        reasons += sorted({STATUS_NAMES[int(c)] for c in st[st != DELIVERED]})
    if tr.run[i] != tr.run[j - 1]:
        reasons.append("reset")
    t0, t1 = tr.t_true_s[i], tr.t_true_s[j - 1]
    if any(a <= t1 and b >= t0 for a, b in tr.dead_intervals_s):
        reasons.append("reset")
    if tr.saturated[i:j].any():
        reasons.append("saturated")
    # the streamer's window must also *end* where the truth's does (no mis-counted slots)
    if abs(tr.t_true_s[j - 1] - w.t_end_s) >= half:
        reasons.append("misaligned")
    return WindowTruth(i, bool(reasons), sorted(set(reasons)))


# --------------------------------------------------------------------------------------------------
# replay
# --------------------------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """Per-window rows, the windows themselves, embeddings and a summary."""

    subject_id: str
    sensor: dict[str, Any]
    stream: dict[str, Any]
    encoder: str
    windows: list[StreamWindow]
    rows: list[dict[str, Any]]
    embeddings: np.ndarray  # [N, D] (NaN rows for flagged windows)
    summary: dict[str, Any]
    run: SensorRun = field(repr=False)


def replay(
    run: SensorRun,
    encoder: Any,
    *,
    hop_s: float = 5.0,
    mode: str = "reference",
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
    float_encoder: Any | None = None,
    hr_head: HrHead | None = None,
    stream_kw: dict[str, Any] | None = None,
) -> ReplayResult:
    """Stream ``run`` window by window into ``encoder`` (an Encoder, an artifact path or an
    ``nn.Module``, opened with :func:`~anyppg_edge.deploy.runtime.open_encoder` against ``cfg``) and
    score every window against the truth (see the module docstring)."""
    from anyppg_edge.deploy.runtime import open_encoder

    enc = open_encoder(encoder, cfg)
    fenc = open_encoder(float_encoder, cfg) if float_encoder is not None else None
    odr = run.config.odr_hz
    scfg = StreamConfig(odr_hz=odr, hop_s=hop_s, mode=mode, adc_bits=run.config.adc_bits, **(stream_kw or {}))
    streamer = Streamer(scfg, cfg)
    windows: list[StreamWindow] = []
    emb_rows: list[np.ndarray | None] = []
    model_s: list[float] = []
    latency_s: list[float] = []
    t_all = time.perf_counter()

    def take(ws: list[StreamWindow], push_s: float) -> None:
        for w in ws:
            windows.append(w)
            if w.ok:
                t = time.perf_counter()
                emb_rows.append(enc.embed(w.x[None])[0])
                dt = time.perf_counter() - t
            else:
                emb_rows.append(None)
                dt = 0.0
            model_s.append(dt)
            latency_s.append(push_s + dt)

    for b in run.bursts:
        t = time.perf_counter()
        ws = streamer.push(b.codes, b.timestamps_s, reset=b.reset)
        take(ws, time.perf_counter() - t)
    t = time.perf_counter()
    take(streamer.flush(), time.perf_counter() - t)
    wall_s = time.perf_counter() - t_all

    n_win = streamer.n_win
    dim = enc.embedding_dim
    emb = np.full((len(windows), dim), np.nan, np.float32)
    for i, e in enumerate(emb_rows):
        if e is not None:
            emb[i] = e
    truths = [window_truth(run, w, n_win) for w in windows]
    codes = run.trace.codes
    ppg = run.source.channel("ppg")
    n_rec = pp.window_length_samples(ppg.sample_rate_hz, cfg)

    def offline_same(tr: WindowTruth) -> np.ndarray | None:
        if tr.seq0 is None or run.trace.run[tr.seq0] != run.trace.run[tr.seq0 + n_win - 1]:
            return None
        try:
            return pp.preprocess_ppg_window(codes[tr.seq0 : tr.seq0 + n_win], odr, cfg)
        except InvalidSignalError:
            return None

    def offline_rec(tr: WindowTruth) -> np.ndarray | None:
        if tr.seq0 is None:
            return None
        a = round(run.trace.t_true_s[tr.seq0] * ppg.sample_rate_hz)
        seg = ppg.data[a : a + n_rec]
        try:
            return pp.preprocess_ppg_window(seg, ppg.sample_rate_hz, cfg)
        except InvalidSignalError:
            return None

    off_same = [offline_same(tr) for tr in truths]
    off_rec = [offline_rec(tr) for tr in truths]

    def embed_rows(e: Any, xs: list[np.ndarray | None]) -> np.ndarray:
        out = np.full((len(xs), e.embedding_dim), np.nan, np.float32)
        idx = [i for i, x in enumerate(xs) if x is not None]
        if idx:
            out[idx] = e.embed(np.stack([xs[i] for i in idx]))
        return out

    ok = np.array([w.ok for w in windows], bool)
    e_off_same = embed_rows(enc, [x if ok[i] else None for i, x in enumerate(off_same)])
    cos_same = cosine(emb, e_off_same)
    cos_rec_f = np.full(len(windows), np.nan)
    cos_float_parity = np.full(len(windows), np.nan)
    if fenc is not None:
        f_rec = embed_rows(fenc, [x if ok[i] else None for i, x in enumerate(off_rec)])
        cos_rec_f = cosine(emb, f_rec)
        f_stream = embed_rows(fenc, [w.x if w.ok else None for w in windows])
        f_same = embed_rows(fenc, [x if ok[i] else None for i, x in enumerate(off_same)])
        cos_float_parity = cosine(f_stream, f_same)
    hr_pred = np.full(len(windows), np.nan)
    if hr_head is not None and ok.any():
        hr_pred[ok] = hr_head.predict(emb[ok])
    t_true = np.array([run.trace.t_true_s[tr.seq0] if tr.seq0 is not None else w.t_start_s
                       for w, tr in zip(windows, truths, strict=True)])
    hr_ref = reference_hr_bpm(run.source, t_true, cfg)

    rows = []
    for i, (w, tr) in enumerate(zip(windows, truths, strict=True)):
        xs = off_same[i]
        max_abs = float(np.abs(w.x - xs).max()) if (w.x is not None and xs is not None) else math.nan
        rows.append({
            "index": w.index, "t_start_s": round(w.t_start_s, 4), "t_true_start_s": round(float(t_true[i]), 4),
            "flags": ",".join(w.flag_names), "ok": bool(w.ok), "affected": tr.affected,
            "truth": ",".join(tr.reasons), "n_filled": w.n_filled, "n_missing": w.n_missing,
            "max_abs_vs_offline": max_abs, "cos_vs_offline_same_encoder": float(cos_same[i]),
            "cos_vs_float_offline_recording": float(cos_rec_f[i]), "cos_float_stream_vs_offline": float(cos_float_parity[i]),
            "hr_pred_bpm": float(hr_pred[i]), "hr_ref_bpm": float(hr_ref[i]),
            "preprocess_ms": w.preprocess_s * 1e3, "model_ms": model_s[i] * 1e3, "latency_ms": latency_s[i] * 1e3,
        })

    affected = np.array([tr.affected for tr in truths], bool)
    flagged = np.array([w.flags != 0 for w in windows], bool)
    clean = ~affected & ~flagged
    max_abs_clean = [r["max_abs_vs_offline"] for r, c in zip(rows, clean, strict=True) if c]
    interp = np.array([bool(w.flags & ~HARD_FLAGS) and w.ok for w in windows], bool)
    hr_err = hr_pred - hr_ref
    flag_counts = Counter(name for w in windows for name in w.flag_names)
    lat = np.asarray(latency_s) * 1e3
    summary = {
        "subject_id": run.source.subject_id,
        "odr_hz": odr, "hop_s": hop_s, "mode": mode, "encoder": repr(enc), "encoder_kind": f"{enc.name} {enc.kind}",
        "duration_s": float(run.trace.t_true_s[-1] - run.trace.t_true_s[0]),
        "n_windows": len(windows), "n_ok": int(ok.sum()), "n_flagged": int(flagged.sum()),
        "flag_counts": {name: int(flag_counts.get(name, 0)) for name in FLAG_NAMES.values()},
        "n_affected": int(affected.sum()),
        "n_affected_unflagged": int((affected & ~flagged).sum()),
        "all_affected_flagged": bool(not (affected & ~flagged).any()),
        "n_clean_unaffected": int(clean.sum()),
        "parity_max_abs_clean": float(np.nanmax(max_abs_clean)) if max_abs_clean and np.isfinite(max_abs_clean).any() else math.nan,
        "sensor_counts": run.trace.counts(),
        "drift_ppm_config": run.config.drift_ppm,
        "drift_ppm_estimated": streamer.estimated_drift_ppm,
        "cos_vs_offline_same_encoder": _stats(cos_same[ok]),
        "cos_vs_offline_same_encoder_clean": _stats(cos_same[clean & ok]),
        "cos_vs_offline_same_encoder_interpolated": _stats(cos_same[interp]),
        "cos_vs_float_offline_recording": _stats(cos_rec_f[ok]),
        "cos_float_stream_vs_offline": _stats(cos_float_parity[ok]),
        "hr_mae_bpm": float(np.nanmean(np.abs(hr_err))) if np.isfinite(hr_err).any() else math.nan,
        "hr_n": int(np.isfinite(hr_err).sum()),
        "hr_head": None if hr_head is None else {"alpha": hr_head.alpha, "n_train": hr_head.n_train,
                                                 "subjects": len(hr_head.subjects), "cv_mae_bpm": hr_head.cv_mae_bpm},
        "latency_ms": {"p50": float(np.median(lat)) if lat.size else math.nan,
                       "p95": float(np.percentile(lat, 95)) if lat.size else math.nan,
                       "max": float(lat.max()) if lat.size else math.nan},
        "preprocess_ms_mean": float(np.mean([w.preprocess_s for w in windows]) * 1e3) if windows else math.nan,
        "model_ms_mean": float(np.mean([m for m, o in zip(model_s, ok, strict=True) if o]) * 1e3) if ok.any() else math.nan,
        "algorithmic_latency_s": _algorithmic_latency(streamer, scfg),
        "wall_s": wall_s,
    }
    return ReplayResult(run.source.subject_id, run.config.to_dict(), dataclasses.asdict(scfg), repr(enc), windows,
                        rows, emb, summary, run)


def _algorithmic_latency(streamer: Streamer, scfg: StreamConfig) -> float:
    """Seconds from a window's last sample to its output, before compute: causal mode waits for the
    resampler's compensated delay; the zero-phase modes need nothing more than the window."""
    if scfg.mode != "causal":
        return 0.0
    return streamer._delay / streamer.cfg.target_sample_rate_hz


# --------------------------------------------------------------------------------------------------
# parity and chunking
# --------------------------------------------------------------------------------------------------


def rechunk(bursts: Sequence[Burst], sizes: Sequence[int]) -> list[Burst]:
    """The same samples cut into bursts of ``sizes`` (cycled), never merging across a reset."""
    out: list[Burst] = []
    groups: list[list[Burst]] = []
    for b in bursts:
        if b.reset or not groups:
            groups.append([])
        groups[-1].append(b)
    k = 0
    for g in groups:
        codes = np.concatenate([b.codes for b in g])
        ts = np.concatenate([b.timestamps_s for b in g])
        pos, first = 0, True
        while pos < codes.size:
            n = max(1, int(sizes[k % len(sizes)]))
            k += 1
            out.append(Burst(codes[pos : pos + n], ts[pos : pos + n], float(ts[min(pos + n, ts.size) - 1]),
                             reset=first and g[0].reset))
            first = False
            pos += n
    return out


def chunking_check(run: SensorRun, scfg: StreamConfig, cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
                   seed: int = 0, n_patterns: int = 3) -> dict[str, Any]:
    """Stream ``run`` as delivered, sample by sample, in one burst per run segment and in random burst
    patterns: the windows (flags and model inputs) must be identical."""
    ref = Streamer(scfg, cfg).run(run.bursts)
    rng = np.random.default_rng(seed)
    patterns = {"one-sample": [1], "whole": [10**9]}
    for i in range(n_patterns):
        patterns[f"random{i}"] = rng.integers(1, 3 * run.config.fifo_depth, size=64).tolist()
    worst = 0.0
    same = True
    for sizes in patterns.values():
        ws = Streamer(scfg, cfg).run(rechunk(run.bursts, sizes))
        if len(ws) != len(ref) or any(a.flags != b.flags or (a.x is None) != (b.x is None) for a, b in zip(ws, ref, strict=True)):
            same = False
            continue
        for a, b in zip(ws, ref, strict=True):
            if a.x is not None:
                worst = max(worst, float(np.abs(a.x - b.x).max()))
    return {"patterns": list(patterns), "n_windows": len(ref), "identical_flags": same, "max_abs": worst,
            "invariant": same and worst == 0.0}


def parity_report(
    recording: Recording,
    odr_hz: float,
    float_encoder: Any | None = None,
    *,
    hop_s: float = 5.0,
    duration_s: float | None = 120.0,
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
    seed: int = 0,
    modes: Sequence[str] = ("reference", "device", "causal"),
) -> dict[str, Any]:
    """No-fault parity at ``odr_hz``: the sensor's samples streamed in each mode vs the offline
    windows of the same samples (``segment`` + ``preprocess_ppg_window``)."""
    from anyppg_edge.deploy.runtime import open_encoder

    run = emulate(recording, SensorConfig(odr_hz=odr_hz, duration_s=duration_s, seed=seed))
    off = offline_windows(run.trace.codes, odr_hz, hop_s, cfg)
    fenc = open_encoder(float_encoder, cfg) if float_encoder is not None else None
    e_off = None
    if fenc is not None and off.ok.any():
        e_off = np.full((len(off.x), fenc.embedding_dim), np.nan, np.float32)
        e_off[off.ok] = fenc.embed(off.x[off.ok])
    out: dict[str, Any] = {"odr_hz": odr_hz, "hop_s": hop_s, "subject_id": recording.subject_id,
                           "n_offline": len(off.x), "n_offline_ok": int(off.ok.sum())}
    for mode in modes:
        if mode == "causal" and (int(hop_s * odr_hz + 1e-9) * pp.resample_factors(odr_hz, cfg)[0]) % pp.resample_factors(odr_hz, cfg)[1]:
            out[mode] = {"skipped": "hop does not map to whole 125 Hz samples"}
            continue
        scfg = StreamConfig(odr_hz=odr_hz, hop_s=hop_s, mode=mode, adc_bits=run.config.adc_bits)
        t = time.perf_counter()
        ws = Streamer(scfg, cfg).run(run.bursts)
        stream_s = time.perf_counter() - t
        n = min(len(ws), len(off.x))
        same_ok = all(ws[i].ok == bool(off.ok[i]) for i in range(n))
        both = [i for i in range(n) if ws[i].ok and off.ok[i]]
        r: dict[str, Any] = {"n_windows": len(ws), "same_count": len(ws) == len(off.x), "same_flags": same_ok,
                             "ms_per_window": stream_s / max(len(ws), 1) * 1e3}
        if both:
            xs = np.stack([ws[i].x for i in both])
            xo = off.x[both]
            d = np.abs(xs - xo)
            r["max_abs"] = float(d.max())
            r["rms"] = float(np.sqrt(np.mean((xs.astype(np.float64) - xo) ** 2)))
            pear = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(xs, xo, strict=True)]
            r["pearson_min"], r["pearson_mean"] = min(pear), float(np.mean(pear))
            if mode == "causal":
                r["best_lag_ms"], r["pearson_best_lag_mean"] = _best_lag(xs, xo, cfg.target_sample_rate_hz)
            if fenc is not None and e_off is not None:
                c = cosine(fenc.embed(xs), e_off[both])
                r["cos_min"], r["cos_mean"] = float(np.min(c)), float(np.mean(c))
        out[mode] = r
    return out


def _best_lag(xs: np.ndarray, xo: np.ndarray, fs: float, max_lag_s: float = 0.3) -> tuple[float, float]:
    """The lag (ms; positive: the stream is late) maximising the mean correlation, and that mean."""
    best = (0.0, -2.0)
    n = xs.shape[1]
    for lag in range(-int(max_lag_s * fs), int(max_lag_s * fs) + 1):
        a, b = (xs[:, lag:], xo[:, : n - lag]) if lag >= 0 else (xs[:, : n + lag], xo[:, -lag:])
        r = float(np.mean([np.corrcoef(u, v)[0, 1] for u, v in zip(a, b, strict=True)]))
        if r > best[1]:
            best = (lag / fs * 1e3, r)
    return best


# --------------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------------


def write_replay_report(result: ReplayResult, out_dir: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """``replay.json`` (summary + rows), ``replay.md`` and the plots ``replay_signal.png``,
    ``replay_cosine.png``, ``replay_hr.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "replay.json", "md": out / "replay.md"}
    write_json(paths["json"], {"summary": result.summary, "sensor": result.sensor, "stream": result.stream,
                               "windows": result.rows})
    if plot:
        paths.update(plot_replay(result, out))
    atomic_write_text(paths["md"], render_replay_markdown(result, paths))
    return paths


def render_replay_markdown(result: ReplayResult, paths: dict[str, Path] | None = None) -> str:
    s = result.summary
    fmt = lambda d: ", ".join(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())  # noqa: E731
    lines = [
        f"# Firmware-harness replay: {s['subject_id']}",
        "",
        f"Sensor {s['odr_hz']:g} Hz, hop {s['hop_s']:g} s, mode `{s['mode']}`, encoder `{s['encoder']}`; "
        f"{s['duration_s']:.1f} s replayed in {s['wall_s']:.2f} s.",
        "",
        f"- sensor: {fmt(s['sensor_counts'])}; drift configured {s['drift_ppm_config']:g} ppm, estimated "
        f"{s['drift_ppm_estimated']:.1f} ppm",
        f"- windows: {s['n_windows']} ({s['n_ok']} to the model; {s['n_flagged']} with a flag, soft or hard: "
        f"{fmt(s['flag_counts'])}; hard flags: {', '.join(flag_names(HARD_FLAGS))})",
        f"- ground truth: {s['n_affected']} windows touched by a fault, {s['n_affected_unflagged']} of them unflagged "
        f"(all flagged: **{s['all_affected_flagged']}**); {s['n_clean_unaffected']} clean windows, max abs vs "
        f"offline {s['parity_max_abs_clean']:.3g}",
        f"- embedding cosine vs offline, same encoder: {fmt(s['cos_vs_offline_same_encoder'])}",
        f"  - clean windows: {fmt(s['cos_vs_offline_same_encoder_clean'])}",
        f"  - interpolated windows: {fmt(s['cos_vs_offline_same_encoder_interpolated'])}",
        f"- embedding cosine vs the float model on the offline window of the recording: "
        f"{fmt(s['cos_vs_float_offline_recording'])}",
        f"- float model, streamed vs offline window: {fmt(s['cos_float_stream_vs_offline'])}",
        f"- HR from the linear head: MAE {s['hr_mae_bpm']:.2f} bpm over {s['hr_n']} windows (head: {s['hr_head']})",
        f"- latency per window (push + model, ms): {fmt(s['latency_ms'])}; preprocessing {s['preprocess_ms_mean']:.3f} "
        f"ms, model {s['model_ms_mean']:.3f} ms; algorithmic {s['algorithmic_latency_s'] * 1e3:.0f} ms",
        "",
    ]
    for key, title in (("signal", "Signal, windows and flags"), ("cosine", "Cosine vs offline"), ("hr", "HR vs reference")):
        if paths and key in paths:
            lines += [f"![{title}]({paths[key].name})", ""]
    cols = ["index", "t_start_s", "flags", "truth", "max_abs_vs_offline", "cos_vs_offline_same_encoder",
            "cos_vs_float_offline_recording", "hr_pred_bpm", "hr_ref_bpm", "latency_ms"]
    lines += ["## Windows", "", markdown_table(result.rows, cols)]
    return "\n".join(lines)


def plot_replay(result: ReplayResult, out: Path) -> dict[str, Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - optional dependency
        log.warning("matplotlib not installed: no replay plots")
        return {}
    paths: dict[str, Path] = {}
    tr = result.run.trace
    rows = result.rows
    fig, (ax, axw) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    deliv = tr.status == DELIVERED
    step = max(1, int(deliv.sum() // 20000))
    ax.plot(tr.t_host_s[deliv][::step], tr.codes[deliv][::step], lw=0.5, color="k")
    for code, color, label in ((1, "tab:orange", "dropped"), (2, "tab:red", "overflow"), (3, "tab:purple", "reset-lost")):
        m = tr.status == code
        if m.any():
            ax.plot(tr.t_true_s[m], tr.codes[m], "|", color=color, ms=8, label=f"{label} ({int(m.sum())})")
    for a, b in tr.dead_intervals_s:
        ax.axvspan(a, b, color="tab:purple", alpha=0.3)
    ax.set_ylabel("ADC code")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result.subject_id}: emulated sensor stream and window flags")
    for i, (w, r) in enumerate(zip(result.windows, rows, strict=True)):
        color = "tab:green" if not w.flags else ("gold" if w.ok else "tab:red")
        axw.barh(i % 3, w.t_end_s - w.t_start_s, left=w.t_start_s, color=color, alpha=0.8, height=0.8)
        if w.flags & HARD_FLAGS:
            axw.text(w.t_start_s, i % 3, r["flags"].replace("interpolated", "interp"), fontsize=6, va="center")
    axw.set_yticks([])
    axw.set_xlabel("host time (s)")
    axw.set_ylabel("windows")
    fig.tight_layout()
    paths["signal"] = out / "replay_signal.png"
    fig.savefig(paths["signal"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    t = np.array([r["t_start_s"] for r in rows])
    for key, label in (("cos_vs_offline_same_encoder", "same encoder, offline window of the sensor samples"),
                       ("cos_vs_float_offline_recording", "float model, offline window of the recording"),
                       ("cos_float_stream_vs_offline", "float model, streamed vs offline")):
        v = np.array([r[key] for r in rows], np.float64)
        if np.isfinite(v).any():
            ax.plot(t, v, "o-", ms=3, lw=0.8, label=label)
    ax.axhline(BARS["parity_min_cosine_float_model"], color="gray", ls="--", lw=0.8)
    ax.set_xlabel("window start (s)")
    ax.set_ylabel("cosine")
    ax.set_title(f"embedding cosine per window vs offline ({result.summary['encoder_kind']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths["cosine"] = out / "replay_cosine.png"
    fig.savefig(paths["cosine"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(t, [r["hr_ref_bpm"] for r in rows], "k-", lw=1.2, label="reference (ECG / BPM trace)")
    ax.plot(t, [r["hr_pred_bpm"] for r in rows], "o", ms=3, color="tab:blue", label="linear head on embeddings")
    ax.set_xlabel("window start (s)")
    ax.set_ylabel("HR (bpm)")
    ax.set_title(f"heart rate, MAE {result.summary['hr_mae_bpm']:.1f} bpm")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths["hr"] = out / "replay_hr.png"
    fig.savefig(paths["hr"], dpi=110)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------------------------------
# the main job's entry point
# --------------------------------------------------------------------------------------------------


def harness_summary(
    artifact_path: str | Path,
    float_model: Any | None,
    recordings: Recording | Sequence[Recording],
    out_dir: str | Path,
    *,
    odr_hz: float = 25.0,
    hop_s: float = 5.0,
    rates_hz: Sequence[float] = PARITY_RATES_HZ,
    parity_duration_s: float = 120.0,
    max_fault_recordings: int | None = None,
    cfg: pp.PreprocessConfig = pp.DEFAULT_CONFIG,
    hr: bool = True,
    hr_recordings: Sequence[Recording] | None = None,
    seed: int = 0,
    plot: bool = True,
) -> dict[str, Any]:
    """The firmware-harness section of the main job.

    * **Parity** (no faults) at every rate of ``rates_hz`` on the first recording (its first
      ``parity_duration_s``): reference, float32 device and causal streams vs the offline windows,
      with the float model's embedding cosines (``float_model``: an ``nn.Module``, an Encoder or an
      artifact path; ``None`` skips the cosines).
    * **Chunking invariance** of the stream of the first recording under the fault scenario.
    * **Faults** (``fault_config``: ±50 ppm drift alternating by recording, 1 % dropped samples, jitter,
      one reset, a 3 s host stall): each real recording (all recordings when none is real; at most
      ``max_fault_recordings``) replayed at ``odr_hz`` through the int8 artifact;
      every fault-touched window must be flagged, clean windows at parity; the int8 embedding cosine
      vs offline (same samples, and vs the float model on the recording's offline window) and HR from
      the linear head (fitted on the other recordings of ``hr_recordings``, default ``recordings``,
      leaving the replayed subject out; see :func:`fit_hr_head`).

    Writes ``harness_report.md``, ``harness_summary.json`` and per-recording replay reports under
    ``out_dir``; returns the summary dict (``bars``: value, threshold and pass of each bar)."""
    from anyppg_edge.deploy.runtime import open_encoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recs = [recordings] if isinstance(recordings, Recording) else list(recordings)
    if not recs:
        raise ValueError("harness_summary needs at least one recording")
    t_all = time.perf_counter()
    enc = open_encoder(str(artifact_path), cfg, threads=1) if isinstance(artifact_path, (str, Path)) else open_encoder(artifact_path, cfg)
    fenc = open_encoder(float_model, cfg) if float_model is not None else None

    parity = [parity_report(recs[0], r, fenc, hop_s=hop_s, duration_s=parity_duration_s, cfg=cfg, seed=seed)
              for r in rates_hz]
    chunk_run = emulate(recs[0], fault_config(odr_hz, min(parity_duration_s, recs[0].duration_s - 1.0), seed=seed))
    chunking = chunking_check(chunk_run, StreamConfig(odr_hz=odr_hz, hop_s=hop_s, adc_bits=chunk_run.config.adc_bits),
                              cfg, seed=seed)

    real = [r for r in recs if r.dataset != "simulator"]
    fault_recs = real or recs
    if max_fault_recordings is not None:
        fault_recs = fault_recs[:max_fault_recordings]
    hr_data = None
    if hr:
        pool = list(hr_recordings) if hr_recordings is not None else recs
        if len(pool) < 2:
            pool = pool + hr_training_recordings(recs[0], None, seed)
        hr_data = HrTrainingSet.build(enc, pool, cfg, hop_s=hop_s)
    faults = []
    for k, rec in enumerate(fault_recs):
        dur = rec.channel("ppg").duration_s - 1.0
        fcfg = fault_config(odr_hz, dur, drift_ppm=50.0 if k % 2 == 0 else -50.0, stall_s=3.0, seed=seed + k)
        run = emulate(rec, fcfg)
        head = None
        if hr_data is not None:
            try:
                head = fit_hr_head(enc, hr_data, cfg, exclude_subject=rec.subject_id)
            except InvalidSignalError as exc:
                log.warning("no HR head for %s: %s", rec.subject_id, exc)
        res = replay(run, enc, hop_s=hop_s, cfg=cfg, float_encoder=fenc, hr_head=head)
        write_replay_report(res, out / "replays" / rec.subject_id.replace("/", "_"), plot=plot)
        faults.append(res.summary)

    def worst(mode: str, key: str, fn=max) -> float:
        vals = [p[mode][key] for p in parity if key in p.get(mode, {})]
        return float(fn(vals)) if vals else math.nan

    int8_cos = [c for f in faults for c in [f["cos_vs_offline_same_encoder"].get("min")] if c is not None]
    bars = {
        "parity_max_abs_float64": {"value": worst("reference", "max_abs"), "threshold": BARS["parity_max_abs_float64"]},
        "parity_max_abs_float32_device": {"value": worst("device", "max_abs"),
                                          "threshold": BARS["parity_max_abs_float32_device"]},
        "parity_min_cosine_float_model_reference": {"value": worst("reference", "cos_min", min),
                                                    "threshold": BARS["parity_min_cosine_float_model"], "higher": True},
        "parity_min_cosine_float_model_device": {"value": worst("device", "cos_min", min),
                                                 "threshold": BARS["parity_min_cosine_float_model"], "higher": True},
        "chunking_invariant": {"value": chunking["invariant"]},
        "faults_all_affected_flagged": {"value": all(f["all_affected_flagged"] for f in faults)},
        "faults_clean_windows_max_abs": {"value": float(np.nanmax([f["parity_max_abs_clean"] for f in faults]))
                                         if faults and np.isfinite([f["parity_max_abs_clean"] for f in faults]).any() else math.nan,
                                         "threshold": BARS["parity_max_abs_float64"]},
    }
    for b in bars.values():
        v = b["value"]
        if isinstance(v, bool):
            b["pass"] = v
        elif not isinstance(v, float) or not math.isfinite(v):
            b["pass"] = None
        else:
            b["pass"] = bool(v >= b["threshold"]) if b.get("higher") else bool(v <= b["threshold"])
    summary = {
        "artifact": str(artifact_path), "encoder": repr(enc), "float_model": None if fenc is None else repr(fenc),
        "odr_hz": odr_hz, "hop_s": hop_s, "preprocess_config_hash": cfg.config_hash(),
        "bars": bars, "parity": parity, "chunking": chunking, "faults": faults,
        "int8_cos_vs_offline_min": float(min(int8_cos)) if int8_cos else math.nan,
        "int8_cos_vs_float_recording_mean": float(np.nanmean([f["cos_vs_float_offline_recording"].get("mean", np.nan)
                                                              for f in faults])) if faults else math.nan,
        "wall_s": time.perf_counter() - t_all,
    }
    write_json(out / "harness_summary.json", summary)
    atomic_write_text(out / "harness_report.md", render_harness_markdown(summary))
    return summary


def render_harness_markdown(summary: dict[str, Any]) -> str:
    lines = ["# Firmware harness", "",
             f"Artifact `{summary['artifact']}` ({summary['encoder']}); float model {summary['float_model']}; "
             f"sensor {summary['odr_hz']:g} Hz, hop {summary['hop_s']:g} s; {summary['wall_s']:.1f} s.", "",
             "## Bars", ""]
    lines.append(markdown_table([{"bar": k, **v} for k, v in summary["bars"].items()], ["bar", "value", "threshold", "pass"]))
    rows = []
    for p in summary["parity"]:
        for mode in ("reference", "device", "causal"):
            r = p.get(mode, {})
            rows.append({"odr_hz": p["odr_hz"], "mode": mode, "windows": r.get("n_windows", "-"),
                         "same flags": r.get("same_flags", "-"), "max_abs": r.get("max_abs", math.nan),
                         "pearson_min": r.get("pearson_min", math.nan), "cos_min": r.get("cos_min", math.nan),
                         "best_lag_ms": r.get("best_lag_ms", "-"), "ms/window": r.get("ms_per_window", math.nan)})
    lines += ["", "## Parity without faults (streamed vs offline windows of the same sensor samples)", "",
              markdown_table(rows)]
    c = summary["chunking"]
    lines += ["", f"Chunking invariance ({', '.join(c['patterns'])}): identical flags {c['identical_flags']}, "
              f"max abs {c['max_abs']:.3g} over {c['n_windows']} windows.", ""]
    rows = []
    for f in summary["faults"]:
        rows.append({"recording": f["subject_id"], "windows": f["n_windows"], "to model": f["n_ok"],
                     "touched": f["n_affected"], "touched unflagged": f["n_affected_unflagged"],
                     "clean max_abs": f["parity_max_abs_clean"],
                     "int8 cos vs offline (min)": f["cos_vs_offline_same_encoder"].get("min", math.nan),
                     "int8 cos vs offline (mean)": f["cos_vs_offline_same_encoder"].get("mean", math.nan),
                     "int8 vs float, recording (mean)": f["cos_vs_float_offline_recording"].get("mean", math.nan),
                     "HR MAE": f["hr_mae_bpm"], "drift est. ppm": f["drift_ppm_estimated"],
                     "latency p95 ms": f["latency_ms"]["p95"]})
    lines += ["## Fault replays (drift ±50 ppm, 1 % drops, jitter, a reset, a 3 s host stall)", "",
              markdown_table(rows), "", "Per-recording reports: `replays/<recording>/replay.md`.", ""]
    return "\n".join(lines)
