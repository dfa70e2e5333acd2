"""Replay: emulated sensor → streaming preprocessor → encoder, checked against the offline reference.

:func:`replay` runs one :class:`~anyppg_edge.stream.sensor.SensorRun` through a
:class:`~anyppg_edge.stream.streamer.Streamer` and an encoder (any
:class:`~anyppg_edge.deploy.runtime.Encoder`: int8 TFLite, ONNX, PyTorch), window by window as a
watch would, and scores every window against the ground truth of the sensor: whether a fault touched
it (and then whether it was flagged), the offline reference window on the same sensor samples
(:func:`~anyppg_edge.preprocessing.preprocess_ppg_window`), the offline window of the source
recording (at its own rate for the reference chain; for a native-rate contract the window the model is
trained on, :func:`~anyppg_edge.data.native_rate.native_rate_windows`), embedding cosines, heart rate from a linear head
(:func:`~anyppg_edge.eval.heart_rate.fit_hr_head`) against the reference HR of the window's true time
span (:func:`~anyppg_edge.eval.heart_rate.recording_reference_hr_bpm`: the recording's HR trace,
else the R peaks of its synchronized ECG), and the compute latency of each window.
:func:`write_replay_report` writes its JSON, markdown and plots.

The harness checks built on it (parity at every rate, chunking invariance, the main job's
``harness_summary``) and the speed benchmark are in :mod:`anyppg_edge.stream.harness`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.native_rate import is_native_rate, native_rate_windows
from anyppg_edge.data.recording import Recording
from anyppg_edge.deploy.parity.tolerances import TOLERANCES
from anyppg_edge.errors import DataFormatError, InvalidSignalError
from anyppg_edge.eval.heart_rate import HrHead, recording_reference_hr_bpm
from anyppg_edge.report import atomic_write_text, markdown_table, write_json
from anyppg_edge.stream.sensor import DELIVERED, STATUS_NAMES, SensorRun
from anyppg_edge.stream.streamer import (
    FLAG_NAMES,
    HARD_FLAGS,
    StreamConfig,
    Streamer,
    StreamWindow,
    flag_names,
)

__all__ = [
    "BARS",
    "ReplayResult",
    "WindowTruth",
    "contract_config",
    "cosine",
    "load_recording",
    "plot_replay",
    "render_replay_markdown",
    "replay",
    "window_truth",
    "write_replay_report",
]

log = logging.getLogger("anyppg_edge.stream")

# the bars. The parity bars are a view of the one tolerance table
# (anyppg_edge.deploy.parity.tolerances.TOLERANCES, rows stream-reference-vs-offline and
# stream-device-vs-offline: streamed vs offline windows, max_abs of the window and the float model's
# embedding cosine); the two speed budgets below are not tolerances.
_REFERENCE_ROW, _DEVICE_ROW = TOLERANCES["stream-reference-vs-offline"], TOLERANCES["stream-device-vs-offline"]
BARS = {
    "parity_max_abs_float64": _REFERENCE_ROW["max_abs_max"],
    "parity_max_abs_float32_device": _DEVICE_ROW["max_abs_max"],
    "parity_min_cosine_float_model": _REFERENCE_ROW["cos_min_min"],
    "parity_min_cosine_float_model_device": _DEVICE_ROW["cos_min_min"],
    "preprocess_ms_per_window": 2.0,  # >= 5000x real time for 10 s windows
    "end_to_end_1h_25hz_s": 60.0,
}


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


def contract_config(artifact: Any, model_name: str | None = None) -> pp.PreprocessConfig:
    """The preprocessing chain of ``artifact``'s input contract: an ``.onnx`` / ``.tflite`` file (its
    embedded contract), a ``.pt`` checkpoint (its registry model's
    :meth:`~anyppg_edge.models.registry.ModelSpec.preprocess_config`; ``model_name`` for a bare
    ``state_dict``) or an Encoder (its contract). Anything else (an ``nn.Module``): the default chain.
    A native-rate model's chain is at its sensor rate (e.g. 25 Hz, nothing resampled)."""
    if isinstance(artifact, (str, Path)):
        path = Path(artifact)
        if path.suffix.lower() == ".pt":
            from anyppg_edge.models.loading import load_encoder
            from anyppg_edge.models.registry import get_model_spec

            return get_model_spec(load_encoder(path, model_name).model_name).preprocess_config()
        from anyppg_edge.deploy.contract_io import read_contract

        return read_contract(path).preprocess_config
    contract = getattr(artifact, "contract", None)
    if contract is not None and hasattr(contract, "preprocess_config"):
        return contract.preprocess_config
    return pp.DEFAULT_CONFIG


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

    native = is_native_rate(cfg)

    def offline_native(trs: list[WindowTruth]) -> list[np.ndarray | None]:
        # a native-rate model's offline window of the recording: as an ideal sensor at its rate samples it
        idx = [k for k, tr in enumerate(trs) if tr.seq0 is not None]
        out: list[np.ndarray | None] = [None] * len(trs)
        if idx:
            nw = native_rate_windows(ppg, [float(run.trace.t_true_s[trs[k].seq0]) for k in idx],
                                     cfg.target_sample_rate_hz, cfg)
            for j, k in enumerate(idx):
                out[k] = nw.x[j] if nw.ok[j] else None
        return out

    off_same = [offline_same(tr) for tr in truths]
    off_rec = offline_native(truths) if native else [offline_rec(tr) for tr in truths]

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
    hr_ref, _ = recording_reference_hr_bpm(run.source, t_true, cfg)

    rows = []
    for i, (w, tr) in enumerate(zip(windows, truths, strict=True)):
        xs = off_same[i]
        max_abs = float(np.abs(w.x - xs).max()) if (w.x is not None and xs is not None) else math.nan
        xr = off_rec[i] if native else None
        max_abs_src = float(np.abs(w.x - xr).max()) if (w.x is not None and xr is not None) else math.nan
        rows.append({
            "index": w.index, "t_start_s": round(w.t_start_s, 4), "t_true_start_s": round(float(t_true[i]), 4),
            "flags": ",".join(w.flag_names), "ok": bool(w.ok), "affected": tr.affected,
            "truth": ",".join(tr.reasons), "n_filled": w.n_filled, "n_missing": w.n_missing,
            "max_abs_vs_offline": max_abs, "max_abs_vs_native_source": max_abs_src,
            "cos_vs_offline_same_encoder": float(cos_same[i]),
            "cos_vs_float_offline_recording": float(cos_rec_f[i]), "cos_float_stream_vs_offline": float(cos_float_parity[i]),
            "hr_pred_bpm": float(hr_pred[i]), "hr_ref_bpm": float(hr_ref[i]),
            "preprocess_ms": w.preprocess_s * 1e3, "model_ms": model_s[i] * 1e3, "latency_ms": latency_s[i] * 1e3,
        })

    affected = np.array([tr.affected for tr in truths], bool)
    flagged = np.array([w.flags != 0 for w in windows], bool)
    clean = ~affected & ~flagged
    max_abs_clean = [r["max_abs_vs_offline"] for r, c in zip(rows, clean, strict=True) if c]
    src_clean = np.array([r["max_abs_vs_native_source"] for r, c in zip(rows, clean, strict=True) if c], np.float64)
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
        # native-rate contract: clean streamed windows vs native_rate_windows of the source: the ADC
        # quantisation (no faults); with drift or a reset also the sensor's sample-phase offset from k / odr
        "contract_rate_hz": cfg.target_sample_rate_hz, "native_rate": native,
        "native_source_max_abs_clean": float(np.nanmax(src_clean)) if np.isfinite(src_clean).any() else math.nan,
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
        f"Sensor {s['odr_hz']:g} Hz, model input {s.get('contract_rate_hz', 125)} Hz"
        f"{' (native rate: nothing resampled)' if s.get('native_rate') else ''}, hop {s['hop_s']:g} s, "
        f"mode `{s['mode']}`, encoder `{s['encoder']}`; "
        f"{s['duration_s']:.1f} s replayed in {s['wall_s']:.2f} s.",
        "",
        f"- sensor: {fmt(s['sensor_counts'])}; drift configured {s['drift_ppm_config']:g} ppm, estimated "
        f"{s['drift_ppm_estimated']:.1f} ppm",
        f"- windows: {s['n_windows']} ({s['n_ok']} to the model; {s['n_flagged']} with a flag, soft or hard: "
        f"{fmt(s['flag_counts'])}; hard flags: {', '.join(flag_names(HARD_FLAGS))})",
        f"- ground truth: {s['n_affected']} windows touched by a fault, {s['n_affected_unflagged']} of them unflagged "
        f"(all flagged: **{s['all_affected_flagged']}**); {s['n_clean_unaffected']} clean windows, max abs vs "
        f"offline {s['parity_max_abs_clean']:.3g}"
        + (f"; vs the native-rate windows of the source recording (an ideal sensor on the k / odr grid: ADC "
           f"quantisation, plus the sample-phase offsets of clock drift and resets in a fault run) "
           f"{s['native_source_max_abs_clean']:.3g}" if s.get("native_rate") else ""),
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


# Names that moved out of this module, still importable from it until anyppg_edge/cli/harness.py imports
# them from their new homes (then delete this).
