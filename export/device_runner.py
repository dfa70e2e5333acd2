#!/usr/bin/env python3
"""Portable latency runner for anyppg-edge encoders: one file, numpy + a runtime, nothing else.

Runs on a Raspberry Pi 4/5 (64-bit OS), in Termux on an Android phone, or on any host with Python
>= 3.9 and either ``ai-edge-litert`` (or the older ``tflite-runtime``) for ``.tflite`` files or
``onnxruntime`` for ``.onnx`` files; all have aarch64 wheels. It imports neither ``anyppg_edge`` nor
torch / tensorflow / tflite-support. Copy this file and the artifact to the device and run::

    python3 device_runner.py student-watch.int8.tflite --threads 1 --runs 200 --warmup 20 --out r.json
    python3 device_runner.py student-watch.int8.onnx --windows windows.npy
    python3 device_runner.py student-watch.int8.tflite --embed windows.npy --save emb.npy
    python3 device_runner.py --parse-benchmark-model benchmark_model.log --out r.json

Before anything is timed the artifact's **input contract** (the JSON the exporter packs into the file:
a zip archive appended to the ``.tflite`` flatbuffer, or ONNX ``metadata_props`` key
``anyppg_edge.input_contract``) is checked: its schema, 125 Hz sample rate and 1250-sample (10 s)
window (or those of ``--config``, a preprocessing-config JSON, whose every field must then match the
contract's, hash included), and that the model's input/output tensors are what the contract says.
A mismatch exits with status 2 and says what differs. ``--allow-missing-contract`` accepts a file
without one (the model's own input length is then checked against the expected window).

Timing: ``--warmup`` runs (the first timed on its own), then ``--runs`` timed single-window runs
(batch 1, ``[1, 1, 1250]``) cycling through ``--windows`` (preprocessed windows ``[N, 1250]``,
``.npy``; default: 16 synthetic z-scored PPG-like windows). One sample is quantize (int8 input) +
set input + invoke + read output + dequantize, Python's GC off. The JSON printed on stdout has the
schema of ``python -m export bench`` results (``anyppg-edge/bench-result/v1``): p50/p90/p99/mean/min
latency in ms, load time, peak RSS, runtime settings and the device environment.

``--embed W.npy --save OUT.npy`` writes the float32 embeddings ``[N, D]`` of the windows instead (for
cross-architecture parity checks); ``--check-only`` checks the contract and the model's tensors and
exits (0: fine, 2: mismatch). ``--parse-benchmark-model LOG`` turns the text output of LiteRT's
C++ ``benchmark_model`` (e.g. ``adb shell /data/local/tmp/benchmark_model --graph=... --num_threads=1``,
or its logcat lines) into the same JSON schema (:func:`parse_benchmark_model`).

Android without Python (LiteRT's prebuilt ``benchmark_model`` for android_aarch64; it feeds random
inputs and knows nothing of the contract, so check that first on the host)::

    python3 device_runner.py student-watch.int8.tflite --check-only
    adb push benchmark_model student-watch.int8.tflite /data/local/tmp/
    adb shell chmod +x /data/local/tmp/benchmark_model
    adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/student-watch.int8.tflite \
        --num_threads=1 --num_runs=200 --warmup_runs=20 --use_xnnpack=true > bm.log 2>&1
    python3 device_runner.py --parse-benchmark-model bm.log --out phone.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "anyppg-edge/bench-result/v1"
CONTRACT_SCHEMA = "anyppg-edge/input-contract/v1"
CONTRACT_KEY = "anyppg_edge.input_contract"
CONTRACT_FILE = CONTRACT_KEY + ".json"
DEFAULT_SAMPLE_RATE_HZ = 125
DEFAULT_WINDOW_SAMPLES = 1250
PACKAGES = ("numpy", "torch", "onnxruntime", "ai-edge-litert", "tflite-runtime", "tensorflow")
FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
    "neon", "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
EXIT_CONTRACT = 2


class ContractError(Exception):
    """The artifact's input contract is absent, malformed, or does not match what is expected."""


# --------------------------------------------------------------------------------------------------
# statistics and environment (twins of anyppg_edge.deploy.bench.latency: keep in step)
# --------------------------------------------------------------------------------------------------


def latency_stats(samples_ms: Any) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/std (ms) of latency samples; NaN for an empty list."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {k: math.nan for k in ("p50", "p90", "p99", "mean", "min", "max", "std")}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std()),
    }


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


def _package_version(name: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """CPU model and flags of interest, cores, OS, Python and package versions, thread variables, load."""
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("features") or "").split())
    cpu = (
        info.get("model name")
        or info.get("model")
        or info.get("hardware")
        or platform.processor()
        or platform.machine()
    )
    if "cpu part" in info and "model name" not in info:
        cpu = f"{cpu} (CPU implementer {info.get('cpu implementer', '?')}, part {info['cpu part']})"
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        load = None
    return {
        "cpu_model": cpu,
        "cpu_mhz": info.get("cpu mhz"),
        "cpu_flags": sorted(f for f in FLAGS_OF_INTEREST if f in flags),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": affinity,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: _package_version(p) for p in PACKAGES},
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV_VARS},
        "loadavg": load,
    }


# --------------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------------


def _proc_status_kb() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0])
    except (OSError, ValueError):
        pass
    return out


class RssProbe:
    """Peak RSS of this process and the part added since construction (Linux: VmHWM reset)."""

    def __init__(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = "VmHWM" in _proc_status_kb()
        except OSError:
            self.reset = False
        self.start_rss_kb = _proc_status_kb().get("VmRSS")
        self.start_max_kb = self._maxrss()

    @staticmethod
    def _maxrss() -> int | None:
        try:
            import resource
        except ImportError:
            return None
        m = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(m // 1024) if sys.platform == "darwin" else int(m)

    def finish(self) -> dict[str, Any]:
        st = _proc_status_kb()
        if self.reset and self.start_rss_kb is not None and "VmHWM" in st:
            return {
                "peak_rss_mb": st["VmHWM"] / 1024,
                "rss_delta_mb": (st["VmHWM"] - self.start_rss_kb) / 1024,
                "rss_method": "VmHWM after /proc/self/clear_refs reset, minus VmRSS at the reset",
            }
        end = self._maxrss()
        if end is None or self.start_max_kb is None:
            return {"peak_rss_mb": None, "rss_delta_mb": None, "rss_method": "unavailable"}
        return {
            "peak_rss_mb": end / 1024,
            "rss_delta_mb": (end - self.start_max_kb) / 1024,
            "rss_method": "getrusage ru_maxrss delta (a lower bound when imports peaked higher)",
        }


# --------------------------------------------------------------------------------------------------
# the input contract
# --------------------------------------------------------------------------------------------------


def read_contract(path: str | Path) -> dict[str, Any] | None:
    """The contract dict of a ``.tflite`` (zip appendix) or ``.onnx`` (metadata_props) file; None when
    the file carries none. Raises ContractError when it is not valid JSON."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        try:
            with zipfile.ZipFile(path) as zf:
                if CONTRACT_FILE not in zf.namelist():
                    return None
                text = zf.read(CONTRACT_FILE).decode("utf-8")
        except zipfile.BadZipFile:
            return None  # no metadata files packed at all
    elif suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        text = dict(sess.get_modelmeta().custom_metadata_map).get(CONTRACT_KEY)
        if text is None:
            return None
    else:
        raise ValueError(f"{path}: unknown artifact type {suffix!r} (expected .tflite or .onnx)")
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ContractError(f"{path}: the input contract is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise ContractError(f"{path}: the input contract is not a JSON object")
    return d


def config_hash(preprocess: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a preprocessing config (as anyppg_edge's PreprocessConfig)."""
    text = json.dumps(preprocess, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(a[i], b[i]) for i in range(len(a)))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def contract_problems(
    c: dict[str, Any],
    config: dict[str, Any] | None = None,
    sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ,
    window_samples: int = DEFAULT_WINDOW_SAMPLES,
) -> list[str]:
    """What is wrong with contract ``c`` for windows of ``window_samples`` at ``sample_rate_hz`` (or
    those of ``config``, a preprocessing-config dict, whose fields must all match); empty when fine."""
    bad: list[str] = []
    if c.get("schema") != CONTRACT_SCHEMA:
        return [f"schema: contract has {c.get('schema')!r}, this runner reads {CONTRACT_SCHEMA!r}"]
    pre = c.get("preprocess")
    shape = c.get("input_shape")
    if not isinstance(pre, dict) or not isinstance(shape, list) or not shape:
        return ["malformed contract: 'preprocess' (object) and 'input_shape' (list) are required"]
    if config is not None:
        sample_rate_hz = config.get("target_sample_rate_hz", sample_rate_hz)
        if "window_s" in config:
            window_samples = round(float(config["window_s"]) * float(sample_rate_hz))
        for k in sorted(set(config) | set(pre)):
            if k not in config:
                continue  # not given: the sample rate / window checks below still apply
            if not _same(config[k], pre.get(k, "<absent>")):
                bad.append(f"{k}: artifact expects {pre.get(k, '<absent>')!r}, config has {config[k]!r}")
        if not bad and set(config) >= set(pre) and config_hash(config) != c.get("preprocess_config_hash"):
            bad.append(
                "preprocess_config_hash: the config's canonical JSON hashes differently from the contract's"
            )
    rate = pre.get("target_sample_rate_hz")
    if not _same(rate, sample_rate_hz):
        bad.append(f"sample rate: artifact expects {rate} Hz, this runner feeds {sample_rate_hz} Hz")
    if int(shape[-1]) != int(window_samples):
        bad.append(f"window: artifact input has {shape[-1]} samples, this runner feeds {window_samples}")
    if c.get("preprocess_config_hash") and config_hash(pre) != c["preprocess_config_hash"]:
        bad.append(
            "preprocess_config_hash does not match the contract's own preprocess fields (edited contract?)"
        )
    return bad


def _quant_of(d: Any) -> tuple[float, int, str] | None:
    if d is None:
        return None
    return float(d["scale"]), int(d["zero_point"]), str(d.get("dtype", "int8"))


# --------------------------------------------------------------------------------------------------
# runtimes
# --------------------------------------------------------------------------------------------------


def _interpreter_module() -> tuple[Any, Any, str]:
    try:
        from ai_edge_litert import interpreter as m

        return m.Interpreter, getattr(m, "OpResolverType", None), "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as m

        return m.Interpreter, getattr(m, "OpResolverType", None), "tflite-runtime"
    except ImportError as e:
        raise ImportError(
            "running a .tflite needs `pip install ai-edge-litert` (or the older tflite-runtime)"
        ) from e


class TFLiteModel:
    """A ``.tflite`` in the LiteRT interpreter, batch 1; float windows in, float embedding out."""

    runtime = "litert"

    def __init__(self, path: Path, threads: int = 1, xnnpack: bool = True):
        Interpreter, OpResolverType, pkg = _interpreter_module()
        self.package = pkg
        self.runtime = "litert" if pkg == "ai-edge-litert" else "tflite-runtime"
        kw: dict[str, Any] = {"model_path": str(path), "num_threads": int(threads)}
        if not xnnpack:
            if OpResolverType is None:
                raise RuntimeError(f"{pkg} has no OpResolverType: cannot turn XNNPACK off")
            kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = Interpreter(**kw)
        ins, outs = it.get_input_details(), it.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ContractError(
                f"{path}: expected one input and one output tensor, got {len(ins)} and {len(outs)}"
            )
        if int(ins[0]["shape"][0]) != 1:
            it.resize_tensor_input(ins[0]["index"], [1, *[int(v) for v in ins[0]["shape"][1:]]])
        it.allocate_tensors()
        self.it = it
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        self.in_index, self.out_index = inp["index"], out["index"]
        self.in_shape = tuple(int(v) for v in inp["shape"])
        self.in_dtype, self.out_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
        self.in_quant = self._quant(inp)
        self.out_quant = self._quant(out)
        self.window_samples = int(np.prod(self.in_shape[1:]))
        self.embedding_dim = int(np.prod(out["shape"][1:]))
        self.settings = {"threads": int(threads), "batch": 1, "xnnpack": bool(xnnpack)}

    @property
    def runtime_version(self) -> str | None:  # not in __init__: importlib.metadata is slow (load time)
        return _package_version(self.package)

    @staticmethod
    def _quant(d: dict[str, Any]) -> tuple[float, int, str] | None:
        dt = np.dtype(d["dtype"])
        if dt.kind not in "iu":
            return None
        scale, zp = d.get("quantization", (0.0, 0))
        if not scale:
            raise ContractError(f"tensor {d['name']!r} is {dt} without a quantization scale")
        return float(scale), int(zp), dt.name

    def run(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(self.in_shape)
        if self.in_quant is not None:
            scale, zp, dt = self.in_quant
            info = np.iinfo(dt)
            q = np.round(np.asarray(x, np.float64) / scale) + zp
            x = np.clip(q, info.min, info.max).astype(dt)
        self.it.set_tensor(self.in_index, np.ascontiguousarray(x))
        self.it.invoke()
        y = self.it.get_tensor(self.out_index)
        if self.out_quant is not None:
            scale, zp, _ = self.out_quant
            y = ((y.astype(np.float64) - zp) * scale).astype(np.float32)
        return np.asarray(y, np.float32).reshape(-1)


class OnnxModel:
    """An ``.onnx`` in onnxruntime's CPU execution provider (``Pad_Fusion`` disabled, as the toolkit
    does: it mis-fuses the odd-length identity max-pools of Net1D)."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1, int8_allowed: bool = False):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = int(threads)
        so.log_severity_level = 3
        if int8_allowed:
            so.add_session_config_entry("session.qdqisint8allowed", "1")
        self.sess = ort.InferenceSession(
            str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=["Pad_Fusion"]
        )
        self.runtime_version = ort.__version__
        inp, out = self.sess.get_inputs()[0], self.sess.get_outputs()[0]
        if inp.type != "tensor(float)":
            raise ContractError(f"{path}: input {inp.name!r} is {inp.type}, expected tensor(float)")
        self.in_name, self.out_name = inp.name, out.name
        self.in_quant = self.out_quant = None
        self.window_samples = inp.shape[-1] if isinstance(inp.shape[-1], int) else None
        self.embedding_dim = out.shape[-1] if isinstance(out.shape[-1], int) else None
        self.settings = {
            "threads": int(threads),
            "batch": 1,
            "qdqisint8allowed": bool(int8_allowed),
            "execution_provider": "CPU",
        }

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.sess.run([self.out_name], {self.in_name: x})[0], np.float32).reshape(-1)


def _import_runtime(path: Path) -> None:
    if path.suffix.lower() == ".tflite":
        _interpreter_module()
    else:
        import onnxruntime  # noqa: F401


def open_model(path: Path, threads: int, xnnpack: bool, int8_allowed: bool) -> TFLiteModel | OnnxModel:
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return TFLiteModel(path, threads, xnnpack)
    if suffix == ".onnx":
        return OnnxModel(path, threads, int8_allowed)
    raise ValueError(f"{path}: unknown artifact type {suffix!r} (expected .tflite or .onnx)")


def model_problems(m: TFLiteModel | OnnxModel, c: dict[str, Any] | None, window_samples: int) -> list[str]:
    """Differences between the model's I/O tensors and its contract (or the expected window)."""
    bad = []
    want_l = int(c["input_shape"][-1]) if c else int(window_samples)
    if m.window_samples is not None and m.window_samples != want_l:
        bad.append(f"model input holds {m.window_samples} samples, expected {want_l}")
    if c:
        if m.embedding_dim is not None and int(c.get("embedding_dim", -1)) != m.embedding_dim:
            bad.append(
                f"model output has {m.embedding_dim} values, contract embedding_dim {c.get('embedding_dim')}"
            )
        for side, ours in (("input", m.in_quant), ("output", m.out_quant)):
            theirs = _quant_of(c.get(f"{side}_quant"))
            if (ours is None) != (theirs is None):
                bad.append(f"{side}_quant: model {ours}, contract {theirs}")
            elif (
                ours
                and theirs
                and (ours[1:] != theirs[1:] or not math.isclose(ours[0], theirs[0], rel_tol=1e-5))
            ):
                bad.append(f"{side}_quant: model {ours}, contract {theirs}")
    return bad


# --------------------------------------------------------------------------------------------------
# windows, timing, embeddings
# --------------------------------------------------------------------------------------------------


def synthetic_windows(
    n: int = 16, length: int = DEFAULT_WINDOW_SAMPLES, fs: float = 125.0, seed: int = 0
) -> np.ndarray:
    """Deterministic PPG-like windows (pulse + harmonics + baseline wander + noise), z-scored."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / fs
    out = np.empty((n, length), np.float32)
    for i in range(n):
        hr = rng.uniform(0.9, 1.8)  # beats per second
        ph = rng.uniform(0, 2 * np.pi)
        x = (
            np.sin(2 * np.pi * hr * t + ph)
            + 0.4 * np.sin(4 * np.pi * hr * t + 2 * ph)
            + 0.3 * np.sin(2 * np.pi * 0.25 * t)
            + 0.1 * rng.standard_normal(length)
        )
        out[i] = ((x - x.mean()) / (x.std() + 1e-8)).astype(np.float32)
    return out


def load_windows(path: str | Path, length: int) -> np.ndarray:
    w = np.load(path)
    if w.ndim == 3 and w.shape[1] == 1:
        w = w[:, 0, :]
    if w.ndim != 2 or w.shape[1] != length:
        raise ValueError(f"{path}: windows must be [N, {length}] (or [N, 1, {length}]), got {list(w.shape)}")
    if w.dtype.kind not in "f":
        raise ValueError(f"{path}: windows must be preprocessed float windows, got dtype {w.dtype}")
    if len(w) == 0 or not np.isfinite(w).all():
        raise ValueError(f"{path}: windows are empty or hold NaN/Inf")
    return np.ascontiguousarray(w, dtype=np.float32)


def time_model(m: TFLiteModel | OnnxModel, windows: np.ndarray, warmup: int, runs: int) -> dict[str, Any]:
    xs = [np.ascontiguousarray(w.reshape(1, 1, -1), dtype=np.float32) for w in windows]
    n = len(xs)
    t = time.perf_counter()
    y = m.run(xs[0])
    first_ms = (time.perf_counter() - t) * 1e3
    if not np.isfinite(y).all():
        raise RuntimeError("the first inference produced NaN/Inf")
    for i in range(1, warmup):
        m.run(xs[i % n])
    samples: list[float] = []
    was = gc.isenabled()
    gc.disable()
    try:
        for i in range(runs):
            x = xs[(warmup + i) % n]
            t0 = time.perf_counter_ns()
            m.run(x)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        if was:
            gc.enable()
    return {"first_inference_ms": first_ms, "latency_ms": latency_stats(samples), "samples_ms": samples}


def embed(m: TFLiteModel | OnnxModel, windows: np.ndarray) -> np.ndarray:
    return np.stack([m.run(np.ascontiguousarray(w.reshape(1, 1, -1), dtype=np.float32)) for w in windows])


# --------------------------------------------------------------------------------------------------
# LiteRT's C++ benchmark_model output
# --------------------------------------------------------------------------------------------------

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_STAT_RE = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")*)")
_KV_RE = re.compile(r"(\w+)=(" + _NUM + r")")
_TIMINGS_RE = re.compile(
    r"Inference timings in us:\s*Init:\s*(" + _NUM + r"),\s*First inference:\s*(" + _NUM + r"),\s*"
    r"Warmup \(avg\):\s*(" + _NUM + r"),\s*Inference \(avg\):\s*(" + _NUM + r")"
)
_PARAM_RES = {
    "graph": re.compile(r"\bGraph:\s*\[([^\]]*)\]"),
    "threads": re.compile(r"(?:Num threads|#threads used for CPU inference):\s*\[(-?\d+)\]"),
    "xnnpack": re.compile(r"Use xnnpack:\s*\[(\w+)\]", re.I),
    "gpu": re.compile(r"Use gpu:\s*\[(\w+)\]", re.I),
    "nnapi": re.compile(r"Use NNAPI:\s*\[(\w+)\]", re.I),
    "num_runs": re.compile(r"Min num runs:\s*\[(\d+)\]"),
    "warmup_runs": re.compile(r"Min warmup runs:\s*\[(\d+)\]"),
}


def _flag(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes")


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Parse the output of LiteRT's ``benchmark_model`` (plain stdout or logcat lines, any prefix)
    into the bench-result schema.

    Read: ``Graph: [..]``, ``Num threads`` / ``#threads used for CPU inference``, ``Use xnnpack``,
    ``Use gpu`` / ``Use NNAPI`` parameter lines; ``The input model file size (MB): X`` (MB = 1e6
    bytes); ``Initialized session in X ms``; each ``Running benchmark for at least ...`` block and
    its ``count=.. first=.. curr=.. min=.. max=.. avg=.. std=..`` statistics in µs (the first block
    is the warm-up, the last the timed runs; newer builds add ``p5= median= p95=``); ``Inference
    timings in us: Init: .., First inference: .., Warmup (avg): .., Inference (avg): ..``; the
    ``Memory footprint delta ... (MB): init=.. overall=..`` and ``Overall peak memory footprint (MB)``
    lines. ``benchmark_model`` reports no p90/p99 and no per-run samples: those are None / empty; its
    median, when printed, is the p50. ``error`` is set when the run failed or the timings are missing."""
    params: dict[str, Any] = {}
    for k, rx in _PARAM_RES.items():
        m = rx.search(text)
        if m:
            params[k] = m.group(1)
    blocks: list[dict[str, float]] = []
    in_block = False
    for line in text.splitlines():
        if "Running benchmark for at least" in line:
            in_block = True
            continue
        m = _STAT_RE.search(line)
        if m and in_block:
            st = {"count": float(m.group(1))}
            st.update({k: float(v) for k, v in _KV_RE.findall(m.group(2))})
            if "avg" not in st and "curr" in st:  # "count=1 curr=X" / "(all same)"
                st.update(
                    {"first": st["curr"], "min": st["curr"], "max": st["curr"], "avg": st["curr"], "std": 0.0}
                )
            blocks.append(st)
            in_block = False
    timings = _TIMINGS_RE.search(text)
    size = re.search(r"The input model file size \(MB\):\s*(" + _NUM + ")", text)
    init_ms = re.search(r"Initialized session in\s*(" + _NUM + r")\s*ms", text)
    mem = re.search(
        r"Memory footprint delta from the start of the tool \(MB\):\s*init=("
        + _NUM
        + r")\s+overall=("
        + _NUM
        + ")",
        text,
    )
    peak = re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUM + ")", text)

    error_lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "failed" in ln.lower()]
    error = None
    if "Benchmarking failed" in text or timings is None:
        error = (
            "benchmark_model failed: " + " | ".join(error_lines[:5])
            if error_lines
            else "no 'Inference timings in us' line: benchmark_model did not finish or the output is truncated"
        )
    timed = blocks[-1] if blocks else None
    warm = blocks[0] if len(blocks) > 1 else None
    ms = 1e-3
    latency = {k: math.nan for k in ("p50", "p90", "p99", "mean", "min", "max", "std")}
    if timed is not None:
        latency.update(
            {
                "p50": timed["median"] * ms if "median" in timed else None,
                "p90": None,
                "p99": None,
                "mean": timed["avg"] * ms,
                "min": timed["min"] * ms,
                "max": timed["max"] * ms,
                "std": timed.get("std", math.nan) * ms,
            }
        )
        if "p5" in timed:
            latency["p5"] = timed["p5"] * ms
        if "p95" in timed:
            latency["p95"] = timed["p95"] * ms
    elif timings is not None:
        latency.update({"p50": None, "p90": None, "p99": None, "mean": float(timings.group(4)) * ms})
    graph = params.get("graph")
    settings: dict[str, Any] = {"batch": 1}
    if "threads" in params:
        settings["threads"] = int(params["threads"])
    for k in ("xnnpack", "gpu", "nnapi"):
        if k in params:
            settings[k] = _flag(params[k])
    env = dict.fromkeys(
        ("cpu_model", "cpu_mhz", "machine", "cores", "cores_available", "os", "python", "loadavg")
    )
    env.update(
        {
            "cpu_flags": [],
            "packages": {},
            "thread_env": {},
            "note": "device environment not reported by benchmark_model",
        }
    )
    return {
        "schema": SCHEMA,
        "name": Path(graph).name if graph else "benchmark_model",
        "artifact": graph,
        "file_bytes": round(float(size.group(1)) * 1e6) if size else None,
        "settings": settings,
        "warmup": int(warm["count"]) if warm else None,
        "runs": int(timed["count"]) if timed else None,
        "n_windows": None,
        "input": "benchmark_model's own random input",
        "runtime": "litert-benchmark_model",
        "runtime_version": None,
        "model_name": None,
        "artifact_kind": None,
        "embedding_dim": None,
        "window_samples": None,
        "load_ms": float(timings.group(1)) * ms
        if timings
        else (float(init_ms.group(1)) if init_ms else None),
        "first_inference_ms": float(timings.group(2)) * ms if timings else None,
        "warmup_mean_ms": float(timings.group(3)) * ms if timings else None,
        "latency_ms": latency,
        "samples_ms": [],
        "peak_rss_mb": float(peak.group(1)) if peak else None,
        "rss_delta_mb": float(mem.group(2)) if mem else None,
        "rss_method": "benchmark_model memory footprint (MB, approximate)" if mem or peak else "unavailable",
        "isolated": True,
        "error": error,
        "warnings": error_lines if error is None else [],
        "macs": None,
        "params": None,
        "peak_flops_one_core": None,
        "fp32_floor_ms": None,
        "p50_over_fp32_floor": None,
        "environment": env,
    }


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _result(path: Path, m: Any, contract: dict[str, Any] | None, timing: dict[str, Any], load_ms: float,
            mem: dict[str, Any], args: argparse.Namespace, n_windows: int, source: str) -> dict[str, Any]:  # fmt: skip
    xnn = m.settings.get("xnnpack", True)
    return {
        "schema": SCHEMA,
        "name": path.name if xnn else f"{path.name} (no XNNPACK)",
        "artifact": str(path),
        "file_bytes": path.stat().st_size,
        "settings": m.settings,
        "warmup": int(args.warmup),
        "runs": int(args.runs),
        "n_windows": n_windows,
        "input": source,
        "runtime": m.runtime,
        "runtime_version": m.runtime_version,
        "model_name": contract.get("model_name") if contract else path.stem,
        "artifact_kind": contract.get("artifact_kind") if contract else None,
        "embedding_dim": m.embedding_dim,
        "window_samples": m.window_samples,
        "load_ms": load_ms,
        **timing,
        **mem,
        "isolated": True,
        "error": None,
        "macs": None,
        "params": None,
        "peak_flops_one_core": None,
        "fp32_floor_ms": None,
        "p50_over_fp32_floor": None,
        "environment": environment(),
        "runner": "export/device_runner.py",
        "contract_check": "ok"
        if contract
        else "no contract in the file (allowed by --allow-missing-contract)",
    }


def _emit(obj: dict[str, Any], out: str | None) -> None:
    text = json.dumps(obj, indent=2, allow_nan=True)
    if out:
        Path(out).write_text(text + "\n")
    print(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="device_runner.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help=".tflite or .onnx artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument(
        "--no-xnnpack", action="store_true", help="LiteRT builtin kernels without the XNNPACK delegate"
    )
    ap.add_argument("--ort-int8-allowed", action="store_true", help="onnxruntime session.qdqisint8allowed=1")
    ap.add_argument("--windows", help="preprocessed windows [N, L] .npy to time on (default: synthetic)")
    ap.add_argument("--config", help="preprocessing-config JSON the contract must match")
    ap.add_argument("--sample-rate", type=int, default=DEFAULT_SAMPLE_RATE_HZ)
    ap.add_argument("--window-samples", type=int, default=DEFAULT_WINDOW_SAMPLES)
    ap.add_argument("--allow-missing-contract", action="store_true")
    ap.add_argument(
        "--embed", metavar="WINDOWS_NPY", help="write embeddings of these windows instead of timing"
    )
    ap.add_argument("--save", metavar="OUT_NPY", help="where --embed writes the [N, D] float32 embeddings")
    ap.add_argument("--check-only", action="store_true", help="check the contract and tensors, then exit")
    ap.add_argument(
        "--parse-benchmark-model", metavar="LOG", help="parse benchmark_model output ('-': stdin)"
    )
    ap.add_argument("--out", help="also write the JSON result here")
    args = ap.parse_args(argv)

    if args.parse_benchmark_model:
        src = args.parse_benchmark_model
        text = sys.stdin.read() if src == "-" else Path(src).read_text(errors="replace")
        res = parse_benchmark_model(text)
        _emit(res, args.out)
        return 0 if res["error"] is None else 1
    if not args.model:
        ap.error("a model path is required (or --parse-benchmark-model LOG)")
    if args.embed and not args.save:
        ap.error("--embed needs --save OUT.npy")
    if args.runs < 1 or args.warmup < 1:
        ap.error("--runs and --warmup must be >= 1")
    path = Path(args.model)
    if not path.is_file():
        print(f"ERROR: artifact not found: {path}", file=sys.stderr)
        return 1

    # 1. the contract, before anything is timed
    config = json.loads(Path(args.config).read_text()) if args.config else None
    try:
        contract = read_contract(path)
        if contract is None:
            if not args.allow_missing_contract:
                raise ContractError(
                    f"{path} carries no anyppg-edge input contract ({CONTRACT_FILE}); re-export it, or "
                    "pass --allow-missing-contract to run it anyway"
                )
            problems: list[str] = []
        else:
            problems = contract_problems(contract, config, args.sample_rate, args.window_samples)
        if problems:
            raise ContractError(
                f"{path} does not match the input this runner feeds:\n  " + "\n  ".join(problems)
            )
        window = int(contract["input_shape"][-1]) if contract else args.window_samples
        if config is not None and contract is None and "window_s" in config:
            window = round(
                float(config["window_s"]) * float(config.get("target_sample_rate_hz", args.sample_rate))
            )
        _import_runtime(path)  # so that load time and RSS delta are the artifact's, not the library's
        probe = RssProbe()
        t0 = time.perf_counter()
        m = open_model(path, args.threads, not args.no_xnnpack, args.ort_int8_allowed)
        load_ms = (time.perf_counter() - t0) * 1e3
        io_problems = model_problems(m, contract, window)
        if io_problems:
            raise ContractError(
                f"{path}: the model's tensors do not match its contract:\n  " + "\n  ".join(io_problems)
            )
    except ContractError as e:
        print(f"CONTRACT MISMATCH: {e}", file=sys.stderr)
        return EXIT_CONTRACT
    mw = m.window_samples or window
    if args.check_only:
        what = f"{contract.get('model_name')}, {contract.get('artifact_kind')}" if contract else "no contract"
        print(f"OK: {path} ({what}) takes {mw}-sample windows at {args.sample_rate} Hz", file=sys.stderr)
        return 0

    # 2. embeddings, or timing
    if args.embed:
        w = load_windows(args.embed, mw)
        z = embed(m, w)
        np.save(args.save, z.astype(np.float32))
        _emit({"embeddings": str(args.save), "shape": list(z.shape), "artifact": str(path),
               "runtime": m.runtime, "settings": m.settings}, args.out)  # fmt: skip
        return 0
    if args.windows:
        w, source = load_windows(args.windows, mw), f"windows from {Path(args.windows).name}"
    else:
        w, source = synthetic_windows(16, mw), "synthetic z-scored PPG-like windows"
    timing = time_model(m, w, args.warmup, args.runs)
    res = _result(path, m, contract, timing, load_ms, probe.finish(), args, len(w), source)
    lat = res["latency_ms"]
    print(
        f"{res['name']}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}, "
        f"load {load_ms:.1f} ms, peak RSS {res['peak_rss_mb']} MB ({res['environment']['cpu_model']})",
        file=sys.stderr,
    )
    _emit(res, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
