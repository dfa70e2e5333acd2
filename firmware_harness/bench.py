"""Speed benchmark of the streaming path (``python -m firmware_harness bench``).

1. **Streaming preprocessing**, one core: for each output data rate, ``--duration-s`` of simulated PPG
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
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ARTIFACT = Path("runs/export/student-watch/student-watch.int8.tflite")
RATES_HZ = (25.0, 50.0, 64.0, 100.0, 125.0)


def pin_one_core(cpu: int | None = None) -> int | None:
    """Pin this process to one CPU (the first allowed one by default); returns it (None if unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


def bench_preprocessing(rates_hz=RATES_HZ, duration_s: float = 600.0, mode: str = "reference", seed: int = 0,
                        hop_s: float = 10.0) -> list[dict[str, Any]]:
    from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
    from anyppg_edge.stream import SensorConfig, StreamConfig, Streamer, emulate

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


def bench_end_to_end(artifact: str | Path = DEFAULT_ARTIFACT, duration_s: float = 3600.0, odr_hz: float = 25.0,
                     hop_s: float = 5.0, seed: int = 0) -> dict[str, Any]:
    from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.stream import SensorConfig, StreamConfig, Streamer, emulate

    t = time.perf_counter()
    enc = open_encoder(str(artifact), threads=1)
    enc.embed(np.zeros((1, enc.window_samples), np.float32))  # first call: lazy imports, interpreter warm-up
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    rec = simulate_pair(SimulatorConfig(duration_s=duration_s + 2.0, seed=seed))
    run = emulate(rec, SensorConfig(odr_hz=odr_hz, duration_s=duration_s, seed=seed))
    emulate_s = time.perf_counter() - t
    streamer = Streamer(StreamConfig(odr_hz=odr_hz, hop_s=hop_s, adc_bits=run.config.adc_bits))
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
              rates_hz=RATES_HZ, modes=("reference", "device"), cpu: int | None = None,
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
    b["preprocess_pass"] = b["preprocess_ms_per_10s_window_max"] <= 2.0
    b["end_to_end_pass"] = None if e2e is None else e2e["end_to_end_s"] <= 60.0
    if out:
        p = Path(out)
        p.mkdir(parents=True, exist_ok=True)
        (p / "bench.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (p / "bench.md").write_text(render_bench(result))
    return result


def render_bench(result: dict[str, Any]) -> str:
    from anyppg_edge.report import markdown_table

    cols = ["odr_hz", "mode", "watermark", "windows", "realtime_factor", "ms_per_10s_signal", "chain_ms_mean",
            "chain_ms_p50", "chain_ms_p99"]
    lines = ["# Firmware-harness benchmark", "",
             f"One CPU (pinned: {result['pinned_cpu']}), threads {result['threads']}, host {result['host']}.", "",
             "## Streaming preprocessing (10 s windows, 10 s hop: one window per 10 s of signal)", "",
             markdown_table(result["preprocessing"], cols)]
    e = result["end_to_end"]
    if e:
        lines += ["", "## End to end: 1 h of 25 Hz PPG → int8 student", "",
                  f"{e['windows']} windows ({e['windows_embedded']} embedded) in **{e['end_to_end_s']:.2f} s** "
                  f"(stream {e['stream_s']:.2f} s + model {e['model_s']:.2f} s; {e['ms_per_window']:.3f} ms per window, "
                  f"{e['realtime_factor']:.0f}x real time); encoder load {e['encoder_load_s']:.2f} s and sensor "
                  f"emulation {e['sensor_emulation_s']:.2f} s not included. Artifact `{e['artifact']}`."]
    b = result["bars"]
    lines += ["", "## Bars", "",
              f"- streaming preprocessing: worst {b['preprocess_ms_per_10s_window_max']:.3f} ms per 10 s window "
              f"(>= {b['preprocess_realtime_factor_min']:.0f}x real time) vs 2 ms: pass {b['preprocess_pass']}",
              f"- end to end 1 h at 25 Hz: {b['end_to_end_1h_s']} s vs 60 s: pass {b['end_to_end_pass']}", ""]
    return "\n".join(lines)
