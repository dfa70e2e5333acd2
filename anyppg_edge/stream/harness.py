"""The firmware harness around :func:`~anyppg_edge.stream.replay.replay`: its parity checks, the main
job's summary, and the speed benchmark.

* :func:`parity_report`: the no-fault parity bars at one output data rate (reference, float32 device
  and causal modes against the offline windows, float-model embedding cosines);
  :func:`chunking_check`: the same windows whatever the burst sizes (:func:`rechunk`).
* :func:`harness_summary`: what the main job calls: parity at every rate, chunking invariance, fault
  replays of real recordings through the int8 artifact (HR from the head of
  :func:`~anyppg_edge.eval.heart_rate.fit_hr_head`), report + plots, a dict of bars;
  :func:`render_harness_markdown` renders it.
* :func:`run_bench` (``python -m firmware_harness bench``), the speed benchmark:

  1. **Streaming preprocessing**, one core: for each output data rate, ``duration_s`` of simulated PPG
     through the emulated sensor (not timed), then through a :class:`~anyppg_edge.stream.Streamer`
     (timed: every ``push`` of every FIFO burst, quality gates and the reference chain of every window)
     with a 10 s hop, so one window per 10 s of signal: real-time factor = signal seconds / streamer
     seconds, and ms per window. The chain alone (gates + preprocessing of one window) is reported too.
  2. **End to end**: one hour of 25 Hz PPG (simulated, default sensor, 5 s hop) from FIFO bursts to int8
     embeddings: every burst pushed, every window that passes its flags embedded by the int8 TFLite
     student as soon as it completes (one invoke per window, one thread). Encoder loading (with one
     warm-up invoke) and the sensor emulation are timed separately.

  The process is pinned to one CPU (``os.sched_setaffinity``) and BLAS/OpenMP/TFLite to one thread.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge import preprocessing as pp
from anyppg_edge.data.native_rate import is_native_rate, native_rate_windows
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import InvalidSignalError
from anyppg_edge.eval.heart_rate import HrTrainingSet, fit_hr_head, hr_training_recordings
from anyppg_edge.report import atomic_write_text, markdown_table, write_json
from anyppg_edge.stream.replay import BARS, contract_config, cosine, replay, window_truth, write_replay_report
from anyppg_edge.stream.sensor import Burst, SensorConfig, SensorRun, emulate, fault_config
from anyppg_edge.stream.streamer import StreamConfig, Streamer, check_sensor_rate, offline_windows

__all__ = [
    "DEFAULT_ARTIFACT",
    "PARITY_RATES_HZ",
    "bench_end_to_end",
    "bench_preprocessing",
    "chunking_check",
    "contract_odr_hz",
    "contract_rates_hz",
    "harness_summary",
    "parity_report",
    "pin_one_core",
    "rechunk",
    "render_bench",
    "render_harness_markdown",
    "run_bench",
]

log = logging.getLogger("anyppg_edge.stream")

PARITY_RATES_HZ = (25.0, 50.0, 64.0, 100.0, 125.0)
DEFAULT_ODR_HZ = 25.0
DEFAULT_ARTIFACT = Path("runs/export/student-watch/student-watch.int8.tflite")


def contract_odr_hz(cfg: pp.PreprocessConfig) -> float:
    """The sensor rate a model of contract ``cfg`` is replayed at by default: its own rate for a
    native-rate model (the only one it accepts), else a 25 Hz watch sensor."""
    return float(cfg.target_sample_rate_hz) if is_native_rate(cfg) else DEFAULT_ODR_HZ


def contract_rates_hz(cfg: pp.PreprocessConfig, rates_hz: Sequence[float] = PARITY_RATES_HZ) -> tuple[float, ...]:
    """The rates of ``rates_hz`` a model of contract ``cfg`` can be fed at: all of them for the
    reference chain (it resamples any rate), the contract's own rate alone for a native-rate model."""
    return (float(cfg.target_sample_rate_hz),) if is_native_rate(cfg) else tuple(float(r) for r in rates_hz)


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
    windows of the same samples (``segment`` + ``preprocess_ppg_window``).

    A native-rate contract (``cfg`` at the sensor's rate, nothing resampled; any other ``odr_hz`` is
    refused) also gets, per mode, ``max_abs_vs_native_source``: the streamed windows vs
    :func:`~anyppg_edge.data.native_rate.native_rate_windows` of the recording at the windows' true
    start times, the offline windows the model is trained on (an ideal sensor: the same front-end, no
    ADC). That measures the ADC quantisation (plus the float32 rounding of ``device`` mode), not the
    streamer, whose bar is ``max_abs`` against the offline windows of the same codes."""
    from anyppg_edge.deploy.runtime import open_encoder

    check_sensor_rate(cfg, odr_hz)
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
        up, down = pp.resample_factors(odr_hz, cfg)
        if mode == "causal" and (int(hop_s * odr_hz + 1e-9) * up) % down:
            out[mode] = {"skipped": f"hop does not map to whole {cfg.target_sample_rate_hz} Hz samples"}
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
        if is_native_rate(cfg):
            r.update(vs_native_source(run, ws, cfg))
        out[mode] = r
    return out


def vs_native_source(run: SensorRun, windows: Sequence[Any], cfg: pp.PreprocessConfig) -> dict[str, Any]:
    """Streamed windows of a native-rate contract vs
    :func:`~anyppg_edge.data.native_rate.native_rate_windows` of ``run``'s source recording at their
    true start times, over the windows that reach the model, that no fault touched and that the
    offline chain accepts: ``n_vs_native_source`` and ``max_abs_vs_native_source`` (z-scored units;
    the ADC quantisation of the codes, since both come from the same analog front-end)."""
    rows = [(i, window_truth(run, w, cfg.window_samples)) for i, w in enumerate(windows) if w.ok]
    rows = [(i, tr) for i, tr in rows if tr.seq0 is not None and not tr.affected]
    if not rows:
        return {"n_vs_native_source": 0, "max_abs_vs_native_source": math.nan}
    nw = native_rate_windows(run.source, [float(run.trace.t_true_s[tr.seq0]) for _, tr in rows],
                             cfg.target_sample_rate_hz, cfg)
    d = [float(np.abs(windows[i].x.astype(np.float64) - nw.x[k]).max()) for k, (i, _) in enumerate(rows) if nw.ok[k]]
    return {"n_vs_native_source": len(d), "max_abs_vs_native_source": max(d) if d else math.nan}


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
# the main job's entry point
# --------------------------------------------------------------------------------------------------


def harness_summary(
    artifact_path: str | Path,
    float_model: Any | None,
    recordings: Recording | Sequence[Recording],
    out_dir: str | Path,
    *,
    odr_hz: float | None = None,
    hop_s: float = 5.0,
    rates_hz: Sequence[float] | None = None,
    parity_duration_s: float = 120.0,
    max_fault_recordings: int | None = None,
    cfg: pp.PreprocessConfig | None = None,
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

    ``cfg`` None: the artifact's input contract (:func:`~anyppg_edge.stream.replay.contract_config`).
    ``odr_hz`` / ``rates_hz`` None: :func:`contract_odr_hz` / :func:`contract_rates_hz` (for a
    native-rate contract its own rate, the only one it accepts: another is refused).

    Writes ``harness_report.md``, ``harness_summary.json`` and per-recording replay reports under
    ``out_dir``; returns the summary dict (``bars``: value, threshold and pass of each bar)."""
    from anyppg_edge.deploy.runtime import open_encoder

    cfg = contract_config(artifact_path) if cfg is None else cfg
    odr_hz = contract_odr_hz(cfg) if odr_hz is None else float(odr_hz)
    rates_hz = contract_rates_hz(cfg) if rates_hz is None else tuple(float(r) for r in rates_hz)
    for r in (odr_hz, *rates_hz):
        check_sensor_rate(cfg, r)

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
                                                 "threshold": BARS["parity_min_cosine_float_model_device"],
                                                 "higher": True},
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
        "contract_rate_hz": cfg.target_sample_rate_hz, "native_rate": is_native_rate(cfg),
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
             f"sensor {summary['odr_hz']:g} Hz, model input {summary.get('contract_rate_hz', 125)} Hz"
             f"{' (native rate: nothing resampled)' if summary.get('native_rate') else ''}, hop {summary['hop_s']:g} s; "
             f"{summary['wall_s']:.1f} s.", "",
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
            if "max_abs_vs_native_source" in r:  # native-rate contract: vs the windows the model is trained on
                rows[-1]["max_abs vs native source"] = r["max_abs_vs_native_source"]
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


# --------------------------------------------------------------------------------------------------
# the speed benchmark
# --------------------------------------------------------------------------------------------------


def pin_one_core(cpu: int | None = None) -> int | None:
    """Pin this process to one CPU (the first allowed one by default); returns it (None if unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


def bench_preprocessing(rates_hz=PARITY_RATES_HZ, duration_s: float = 600.0, mode: str = "reference", seed: int = 0,
                        hop_s: float = 10.0) -> list[dict[str, Any]]:
    from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair

    rec = simulate_pair(SimulatorConfig(duration_s=duration_s + 2.0, seed=seed))
    rows = []
    for odr in rates_hz:
        run = emulate(rec, SensorConfig(odr_hz=odr, duration_s=duration_s, seed=seed))
        streamer = Streamer(StreamConfig(odr_hz=odr, hop_s=hop_s, mode=mode, adc_bits=run.config.adc_bits))
        windows = []
        t = time.perf_counter()
        for b in run.bursts:
            windows += streamer.push(b.codes, b.timestamps_s, reset=b.reset)
        windows += streamer.flush()
        total = time.perf_counter() - t
        chain = np.array([w.preprocess_s for w in windows]) * 1e3
        rows.append({
            "odr_hz": odr, "mode": mode, "hop_s": hop_s, "signal_s": duration_s, "bursts": len(run.bursts),
            "watermark": run.config.watermark, "windows": len(windows), "stream_s": total,
            "realtime_factor": duration_s / total, "ms_per_window": total / len(windows) * 1e3,
            "ms_per_10s_signal": total / duration_s * 10 * 1e3,
            "chain_ms_mean": float(chain.mean()), "chain_ms_p50": float(np.median(chain)),
            "chain_ms_p99": float(np.percentile(chain, 99)),
        })
    return rows


def bench_end_to_end(artifact: str | Path = DEFAULT_ARTIFACT, duration_s: float = 3600.0, odr_hz: float | None = None,
                     hop_s: float = 5.0, seed: int = 0) -> dict[str, Any]:
    """``duration_s`` of simulated PPG from FIFO bursts to the artifact's embeddings; the chain is the
    artifact's contract, ``odr_hz`` None :func:`contract_odr_hz` (25 Hz, or a native-rate model's rate)."""
    from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
    from anyppg_edge.deploy.runtime import open_encoder

    cfg = contract_config(artifact)
    odr_hz = contract_odr_hz(cfg) if odr_hz is None else float(odr_hz)
    t = time.perf_counter()
    enc = open_encoder(str(artifact), cfg, threads=1)
    enc.embed(np.zeros((1, enc.window_samples), np.float32))  # first call: lazy imports, interpreter warm-up
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    rec = simulate_pair(SimulatorConfig(duration_s=duration_s + 2.0, seed=seed))
    run = emulate(rec, SensorConfig(odr_hz=odr_hz, duration_s=duration_s, seed=seed))
    emulate_s = time.perf_counter() - t
    streamer = Streamer(StreamConfig(odr_hz=odr_hz, hop_s=hop_s, adc_bits=run.config.adc_bits), cfg)
    n_win = n_ok = 0
    model_s = 0.0
    t = time.perf_counter()
    for b in run.bursts:
        for w in streamer.push(b.codes, b.timestamps_s, reset=b.reset):
            n_win += 1
            if w.ok:
                t_m = time.perf_counter()
                enc.embed(w.x[None])
                model_s += time.perf_counter() - t_m
                n_ok += 1
    total = time.perf_counter() - t
    return {
        "artifact": str(artifact), "encoder": repr(enc), "odr_hz": odr_hz, "hop_s": hop_s,
        "signal_s": duration_s, "samples": run.n_delivered, "bursts": len(run.bursts),
        "windows": n_win, "windows_embedded": n_ok, "end_to_end_s": total,
        "model_s": model_s, "stream_s": total - model_s, "ms_per_window": total / max(n_win, 1) * 1e3,
        "realtime_factor": duration_s / total, "encoder_load_s": load_s, "sensor_emulation_s": emulate_s,
    }


def run_bench(artifact: str | Path = DEFAULT_ARTIFACT, *, duration_s: float = 600.0, e2e_duration_s: float = 3600.0,
              rates_hz=PARITY_RATES_HZ, modes=("reference", "device"), cpu: int | None = None,
              out: str | Path | None = None) -> dict[str, Any]:
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pinned = pin_one_core(cpu)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        prep = []
        for mode in modes:
            prep += bench_preprocessing(rates_hz, duration_s, mode=mode)
        e2e = bench_end_to_end(artifact, e2e_duration_s) if artifact else None
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
    result = {
        "preprocessing": prep, "end_to_end": e2e, "pinned_cpu": pinned,
        "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")},
        "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                 "python": platform.python_version(), "loadavg_before": load},
        "bars": {
            "preprocess_ms_per_10s_window_max": max(r["ms_per_10s_signal"] for r in prep if r["mode"] == "reference"),
            "preprocess_realtime_factor_min": min(r["realtime_factor"] for r in prep if r["mode"] == "reference"),
            "end_to_end_1h_s": None if e2e is None else e2e["end_to_end_s"],
        },
    }
    b = result["bars"]
    b["preprocess_pass"] = b["preprocess_ms_per_10s_window_max"] <= BARS["preprocess_ms_per_window"]
    b["end_to_end_pass"] = None if e2e is None else e2e["end_to_end_s"] <= BARS["end_to_end_1h_25hz_s"]
    if out:
        p = Path(out)
        p.mkdir(parents=True, exist_ok=True)
        (p / "bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (p / "bench.md").write_text(render_bench(result))
    return result


def render_bench(result: dict[str, Any]) -> str:
    cols = ["odr_hz", "mode", "watermark", "windows", "realtime_factor", "ms_per_10s_signal", "chain_ms_mean",
            "chain_ms_p50", "chain_ms_p99"]
    lines = ["# Firmware-harness benchmark", "",
             f"One CPU (pinned: {result['pinned_cpu']}), threads {result['threads']}, host {result['host']}.", "",
             "## Streaming preprocessing (10 s windows, 10 s hop: one window per 10 s of signal)", "",
             markdown_table(result["preprocessing"], cols)]
    e = result["end_to_end"]
    if e:
        lines += ["", f"## End to end: 1 h of {e['odr_hz']:g} Hz PPG → int8 student", "",
                  f"{e['windows']} windows ({e['windows_embedded']} embedded) in **{e['end_to_end_s']:.2f} s** "
                  f"(stream {e['stream_s']:.2f} s + model {e['model_s']:.2f} s; {e['ms_per_window']:.3f} ms per window, "
                  f"{e['realtime_factor']:.0f}x real time); encoder load {e['encoder_load_s']:.2f} s and sensor "
                  f"emulation {e['sensor_emulation_s']:.2f} s not included. Artifact `{e['artifact']}`."]
    b = result["bars"]
    lines += ["", "## Bars", "",
              f"- streaming preprocessing: worst {b['preprocess_ms_per_10s_window_max']:.3f} ms per 10 s window "
              f"(>= {b['preprocess_realtime_factor_min']:.0f}x real time) vs {BARS['preprocess_ms_per_window']:g} ms: "
              f"pass {b['preprocess_pass']}",
              f"- end to end 1 h at {e['odr_hz'] if e else 25:g} Hz: {b['end_to_end_1h_s']} s vs {BARS['end_to_end_1h_25hz_s']:g} s: "
              f"pass {b['end_to_end_pass']}", ""]
    return "\n".join(lines)
