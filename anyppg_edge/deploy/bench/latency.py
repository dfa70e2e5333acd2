"""Latency benchmark of exported encoders (TFLite, ONNX) and the PyTorch model, one 10 s window at a time.

:func:`bench_artifacts` measures every artifact the same way, with the measurement core of
:mod:`anyppg_edge.deploy.bench.core` (which the device runner :mod:`anyppg_edge.deploy.bench.device`
uses too):

* **load**: wall time to open the artifact (interpreter / session creation, tensor allocation and
  the input-contract check);
* **warm-up**: ``warmup`` untimed runs after the first one (the first is timed on its own,
  ``first_inference_ms``);
* **timed runs**: ``runs`` single-window inferences (batch 1, ``[1, 1, L]``), cycling through the
  given real windows; one sample is the runtime call including the int8 (de)quantization of an
  int8-I/O model, excluding the input validation of :meth:`Encoder.embed` (which is the same for
  every runtime). Python's garbage collector is off during the timed loop;
* **statistics**: p50 / p90 / p99 / mean / min / max / std in ms (:func:`~anyppg_edge.deploy.bench.core.latency_stats`),
  plus every sample (for the plot);
* **memory**: peak RSS of the process and the part attributable to the artifact. With ``isolate``
  each artifact runs in a fresh interpreter process (``python -m anyppg_edge.deploy.bench.latency --worker``)
  whose imports happen first; then the kernel's peak-RSS counter is reset so that what loading and
  running the artifact cost is measured (:class:`~anyppg_edge.deploy.bench.core.RssProbe`);
* **settings and environment**: runtime and version, threads, LiteRT's XNNPACK delegate on/off,
  onnxruntime's ``qdqisint8allowed``, the file size, the model's MACs and fp32 floor
  (:mod:`anyppg_edge.deploy.bench.floor`) and :func:`~anyppg_edge.deploy.bench.core.environment` in
  every result.

Results have the schema ``anyppg-edge/bench-result/v1``; :mod:`anyppg_edge.deploy.bench.report`
turns them into tables, a plot and files.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.bench.core import (
    BENCH_SCHEMA,
    THREAD_ENV_VARS,
    environment,
    latency_stats,
    measure,
    package_version,
    preload_runtime,
    runtime_settings,
    worker_env,
)
from anyppg_edge.deploy.bench.floor import fp32_floor_ms, gemm_flops_one_core
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = ["BENCH_SCHEMA", "bench_artifacts"]

log = logging.getLogger(__name__)

WORKER_TIMEOUT_S = 1800


# --------------------------------------------------------------------------------------------------
# opening and measuring one artifact
# --------------------------------------------------------------------------------------------------


def _open_tflite(path: Path, cfg: PreprocessConfig, threads: int, use_xnnpack: bool) -> Any:
    from anyppg_edge.deploy.runtime import TFLiteEncoder

    return TFLiteEncoder(path, cfg, threads=threads, use_xnnpack=use_xnnpack)


def _open(spec: dict[str, Any], module: Any, cfg: PreprocessConfig) -> tuple[Any, dict[str, Any]]:
    """(encoder, {"runtime", "package"}) for one spec."""
    threads = int(spec["threads"])
    kind = spec["kind"]
    if kind == "tflite":
        runtime, package = preload_runtime(".tflite")
        enc = _open_tflite(Path(spec["path"]), cfg, threads, bool(spec["xnnpack"]))
        return enc, {"runtime": runtime, "package": package}
    if kind == "onnx":
        from anyppg_edge.deploy.runtime import OnnxEncoder

        runtime, package = preload_runtime(".onnx")
        enc = OnnxEncoder(Path(spec["path"]), cfg, threads=threads, int8_allowed=bool(spec["int8_allowed"]))
        return enc, {"runtime": runtime, "package": package}
    if kind == "pytorch":
        import torch

        from anyppg_edge.deploy.runtime import TorchEncoder

        torch.set_num_threads(threads)
        if module is None:
            module = torch.load(spec["module_path"], map_location="cpu", weights_only=False)
        enc = TorchEncoder(module.eval(), cfg=cfg, batch_size=1, threads=threads)
        return enc, {"runtime": "pytorch-eager", "package": "torch"}
    raise ValueError(f"unknown artifact kind {kind!r}")


def _measure(
    spec: dict[str, Any], windows: np.ndarray, module: Any = None, cfg: PreprocessConfig = DEFAULT_CONFIG
) -> dict[str, Any]:
    """Load, warm up and time one artifact in this process; the per-artifact part of a result."""
    holder: dict[str, Any] = {}

    def open_it() -> Any:
        enc, holder["rt"] = _open(spec, module, cfg)
        return enc

    _enc, part = measure(open_it, windows, int(spec["warmup"]), int(spec["runs"]))
    rt = holder["rt"]
    # the runtime version after timing: importlib.metadata is slow
    return {"runtime": rt["runtime"], "runtime_version": package_version(rt["package"]), **part}


# --------------------------------------------------------------------------------------------------
# items → specs, isolation
# --------------------------------------------------------------------------------------------------


def _specs(
    items: Sequence[Any], threads: int, warmup: int, runs: int, xnnpack: Sequence[bool], int8_allowed: bool
) -> list[tuple[dict[str, Any], Any]]:
    common = {"threads": int(threads), "warmup": int(warmup), "runs": int(runs)}
    out: list[tuple[dict[str, Any], Any]] = []
    for item in items:
        if isinstance(item, tuple | list) and item and item[0] == "pytorch":
            module = item[1]
            name = item[2] if len(item) > 2 else getattr(module, "name", type(module).__name__)
            spec = {
                **common, "kind": "pytorch", "name": f"{name} (PyTorch eager)", "path": None,
                "settings": {"threads": int(threads), "batch": 1, "precision": "float32"},
            }  # fmt: skip
            out.append((spec, module))
            continue
        if not isinstance(item, str | os.PathLike):
            raise TypeError(
                f"bench items are .tflite/.onnx paths or ('pytorch', nn.Module, name) tuples, got {item!r}"
            )
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"artifact not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".tflite":
            for xnn in xnnpack:
                name = path.name if xnn else f"{path.name} (no XNNPACK)"
                settings = runtime_settings(".tflite", threads, xnnpack=xnn)
                out.append(
                    (
                        {
                            **common,
                            "kind": "tflite",
                            "name": name,
                            "path": str(path),
                            "xnnpack": bool(xnn),
                            "settings": settings,
                        },
                        None,
                    )
                )
        elif suffix == ".onnx":
            settings = runtime_settings(".onnx", threads, int8_allowed=int8_allowed)
            out.append(
                (
                    {
                        **common,
                        "kind": "onnx",
                        "name": path.name,
                        "path": str(path),
                        "int8_allowed": bool(int8_allowed),
                        "settings": settings,
                    },
                    None,
                )
            )
        else:
            raise ValueError(f"{path}: cannot bench {suffix!r} (expected .tflite or .onnx)")
    return out


def _run_isolated(
    spec: dict[str, Any], module: Any, windows_path: Path, tmp: Path, i: int, cfg: PreprocessConfig
) -> dict[str, Any]:
    spec = dict(spec)
    if module is not None:
        import torch

        spec["module_path"] = str(tmp / f"module_{i}.pt")
        try:
            torch.save(module, spec["module_path"])
        except Exception as e:  # a module whose class cannot be pickled (defined in a function, ...)
            log.warning("%s cannot be pickled for a fresh process (%s); measured in-process", spec["name"], e)
            return {**_measure(spec, np.load(windows_path), module, cfg), "isolated": False}
    spec_path, out_path = tmp / f"spec_{i}.json", tmp / f"result_{i}.json"
    spec_path.write_text(json.dumps({**spec, "windows": str(windows_path), "config": cfg.to_dict()}))
    threads = str(spec["threads"])
    env = worker_env({**os.environ, **dict.fromkeys(THREAD_ENV_VARS, threads)})
    proc = subprocess.run(
        [sys.executable, "-m", "anyppg_edge.deploy.bench.latency", "--worker", str(spec_path), str(out_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT_S,
    )
    if proc.returncode != 0 or not out_path.is_file():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-8:]
        raise RuntimeError(f"worker exited with {proc.returncode}: " + " | ".join(tail))
    return {**json.loads(out_path.read_text()), "isolated": True}


def _model_cost(model_name: str, module: Any, window_samples: int) -> dict[str, Any]:
    """MACs and params of the model behind an artifact (registry config by name, or the module)."""
    try:
        from anyppg_edge.models.net1d import model_stats

        if module is not None:
            s = model_stats(module, window_samples)
        else:
            from anyppg_edge.models.registry import create_model, list_models

            if model_name not in list_models():
                return {"macs": None, "params": None}
            s = model_stats(create_model(model_name), window_samples)
        return {"macs": int(s.macs), "params": int(s.params)}
    except Exception as e:  # no torch on a device install, an unregistered model, ...
        log.debug("no MACs for %s: %s", model_name, e)
        return {"macs": None, "params": None}


def _error_result(spec: dict[str, Any], err: BaseException | str) -> dict[str, Any]:
    return {"runtime": None, "latency_ms": latency_stats([]), "samples_ms": [], "error": str(err)}


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------


def bench_artifacts(
    items: Sequence[Any],
    windows: Any,
    threads: int = 1,
    warmup: int = 20,
    runs: int = 200,
    xnnpack: Sequence[bool] = (True,),
    isolate: bool = True,
    onnx_int8_allowed: bool = False,
    peak_flops: float | None = None,
    measure_flops: bool = True,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
) -> list[dict[str, Any]]:
    """Benchmark every item on single windows; one result dict per artifact x XNNPACK setting.

    ``items``: ``.tflite`` / ``.onnx`` paths and/or ``("pytorch", nn.Module, name)`` tuples;
    ``windows``: preprocessed windows ``[N, L]`` (cycled through by the runs); ``xnnpack``: the
    XNNPACK settings to run every TFLite artifact with (``(True, False)`` runs both);
    ``isolate``: each artifact in a fresh process (attributable peak RSS, no interference between
    runtimes); ``peak_flops``: fp32 FLOP/s of one core for the floor (measured once when None and
    ``measure_flops``). An artifact that fails (contract mismatch, runtime error) gets a result with
    ``error`` set and NaN latencies; the others still run."""
    from anyppg_edge.deploy.runtime import validate_windows

    if runs < 1 or warmup < 1:
        raise ValueError(f"runs and warmup must be >= 1, got runs={runs}, warmup={warmup}")
    w = validate_windows(windows, cfg.window_samples)[:, 0, :]
    if len(w) == 0:
        raise ValueError("bench_artifacts needs at least one window")
    specs = _specs(items, threads, warmup, runs, tuple(xnnpack), onnx_int8_allowed)
    env = environment()
    flops_info: dict[str, Any] | None = None
    if peak_flops is None and measure_flops:
        flops_info = gemm_flops_one_core(isolate=isolate)
        peak_flops = flops_info["flops"]
    results: list[dict[str, Any]] = []
    costs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="anyppg_bench_") as tmpdir:
        tmp = Path(tmpdir)
        windows_path = tmp / "windows.npy"
        np.save(windows_path, w)
        for i, (spec, module) in enumerate(specs):
            log.info("bench %d/%d: %s", i + 1, len(specs), spec["name"])
            try:
                part = (
                    _run_isolated(spec, module, windows_path, tmp, i, cfg)
                    if isolate
                    else {**_measure(spec, w, module, cfg), "isolated": False}
                )
                part.setdefault("error", None)
            except Exception as e:  # recorded, the other artifacts still run
                log.error("bench %s failed: %s", spec["name"], e)
                part = {**_error_result(spec, e), "isolated": isolate}
            path = Path(spec["path"]) if spec["path"] else None
            res: dict[str, Any] = {
                "schema": BENCH_SCHEMA,
                "name": spec["name"],
                "artifact": str(path) if path else None,
                "file_bytes": path.stat().st_size if path else None,
                "settings": spec["settings"],
                "warmup": int(warmup),
                "runs": int(runs),
                "n_windows": len(w),
                "input": "real preprocessed windows",
                **part,
            }
            name = res.get("model_name")
            if name and res.get("error") is None:
                key = f"{name}@{id(module) if module is not None else 'registry'}"
                if key not in costs:
                    costs[key] = _model_cost(name, module, int(res.get("window_samples", cfg.window_samples)))
                res.update(costs[key])
            else:
                res.update({"macs": None, "params": None})
            floor = fp32_floor_ms(res["macs"], peak_flops) if res["macs"] and peak_flops else None
            p50 = res["latency_ms"]["p50"]
            res["peak_flops_one_core"] = peak_flops
            res["fp32_floor_ms"] = floor
            res["p50_over_fp32_floor"] = p50 / floor if floor and math.isfinite(p50) else None
            if flops_info is not None:
                res["peak_flops_method"] = flops_info["method"]
            res["environment"] = env
            results.append(res)
    return results


# --------------------------------------------------------------------------------------------------
# worker process
# --------------------------------------------------------------------------------------------------


def _worker(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    windows = np.load(spec["windows"])
    cfg = PreprocessConfig.from_dict(spec["config"])
    # Import the runtime before the memory probe starts, so RSS counts the artifact, not the library.
    if spec["kind"] in ("tflite", "onnx"):
        preload_runtime("." + spec["kind"])
    else:
        import torch  # noqa: F401

        import anyppg_edge.models.net1d
    import anyppg_edge.deploy.runtime  # noqa: F401

    res = _measure(spec, windows, None, cfg)
    from anyppg_edge.io import write_json

    write_json(out_path, res)
    return 0


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m anyppg_edge.deploy.bench.latency", description="bench worker (internal)"
    )
    ap.add_argument("--worker", nargs=2, metavar=("SPEC_JSON", "OUT_JSON"), required=True)
    args = ap.parse_args(argv)
    return _worker(*args.worker)


def bench_windows(n: int, cfg: PreprocessConfig = DEFAULT_CONFIG) -> tuple[np.ndarray, str]:
    """Real preprocessed windows of contract ``cfg`` from ../shared when present (a native-rate
    contract's sampled like its sensor: :func:`~anyppg_edge.data.native_rate.model_input_recording`),
    else the committed calibration set (125 Hz) or, for a native-rate contract, the calibration
    simulator's cohort sampled like the sensor."""
    from anyppg_edge.data.native_rate import is_native_rate
    from anyppg_edge.deploy.model_windows import model_ppg_windows
    from anyppg_edge.paths import shared_available, shared_dir

    def spread(w: np.ndarray) -> np.ndarray:
        return w[np.unique(np.linspace(0, len(w) - 1, min(n, len(w))).round().astype(int))].astype(np.float32)

    native = f" ({cfg.target_sample_rate_hz} Hz, sampled like the sensor)" if is_native_rate(cfg) else ""
    if shared_available():
        try:
            from anyppg_edge.data import load_shared_recordings

            recs = load_shared_recordings(shared_dir() / "data")
            w = spread(np.concatenate([model_ppg_windows(r, cfg, hop_s=10.0).ppg for r in recs]))
            return w, f"{len(w)} real windows from {len(recs)} recordings of ../shared{native}"
        except Exception as e:  # unreadable shared data: fall back, say so
            log.warning("shared windows unavailable (%s); using the default calibration set", e)
    if is_native_rate(cfg):
        from anyppg_edge.data import simulate_cohort
        from anyppg_edge.deploy.calibration import SIMULATOR_COHORT

        recs = simulate_cohort(SIMULATOR_COHORT["n_subjects"], SIMULATOR_COHORT["duration_s"], SIMULATOR_COHORT["seed"])
        w = spread(np.concatenate([model_ppg_windows(r, cfg, hop_s=10.0).ppg for r in recs]))
        return w, f"{len(w)} windows of the calibration simulator's cohort{native}"
    from anyppg_edge.deploy.calibration import load_default_calibration_set

    cs = load_default_calibration_set(cfg)
    return cs.windows[:n].astype(np.float32), f"{min(n, len(cs))} windows of the committed default calibration set"


if __name__ == "__main__":
    sys.exit(_main())
