"""The device-side latency runner: time an encoder on a Raspberry Pi, a phone (Termux) or any host.

Needs the base install (numpy + scipy: ``pip install anyppg-edge``, or this checkout on
``PYTHONPATH``) and one runtime: ``ai-edge-litert`` (or the older ``tflite-runtime``) for ``.tflite``
files, ``onnxruntime`` for ``.onnx`` files; all have aarch64 wheels. torch, onnx, tensorflow and
brevitas are never imported. It measures with the library's own core
(:mod:`anyppg_edge.deploy.bench.core`), reads the contract with the library's one reader
(:mod:`anyppg_edge.deploy.contract_io`) and runs the artifact in the library's encoders
(:mod:`anyppg_edge.deploy.runtime`: ORT sessions from ``ort_session``, LiteRT with the same int8
(de)quantization), so its figures and embeddings are those of ``python -m export bench``::

    python -m anyppg_edge.deploy.bench.device student-watch.int8.tflite --threads 1 --runs 200 --warmup 20 --out r.json
    python -m anyppg_edge.deploy.bench.device student-watch.int8.onnx --windows windows.npy
    python -m anyppg_edge.deploy.bench.device student-watch.int8.tflite --embed golden.npz --save emb.npy
    python -m anyppg_edge.deploy.bench.device --parse-benchmark-model bm.log --out r.json

(``python export/device_runner.py ...`` and ``python -m export.device_runner ...`` are the same.)

Before anything is timed the artifact's **input contract** is checked: its schema, that it is
self-consistent (its preprocessing fields hash to its ``preprocess_config_hash``), its sample rate
and window length (the default config's, or those of ``--sample-rate`` / ``--window-samples``, or of
``--config``, a preprocessing-config JSON, whose every field must then match the contract's), and
that the model's input/output tensors are what the contract says. ``--allow-missing-contract``
accepts a file without one (the model's own input length is then checked against the window).

Timing: ``--warmup`` runs (the first timed on its own), then ``--runs`` timed single-window runs
(batch 1, ``[1, 1, L]``) cycling through ``--windows`` (preprocessed windows ``[N, L]`` as
``.npy``, or a golden set ``.npz``; default: 16 synthetic z-scored PPG-like windows). One sample is
quantize (int8 input) + set input + invoke + read output + dequantize, Python's GC off. The JSON on
stdout has the schema of ``python -m export bench`` results (``anyppg-edge/bench-result/v1``) and is
strictly valid JSON (no NaN).

``--embed W --save OUT.npy`` writes the float32 embeddings ``[N, D]`` of the windows in ``W`` (a
``.npy`` of windows or a golden set ``.npz``, whose checksum is verified) instead, for
cross-architecture parity checks; ``--check-only`` checks the contract and the model's tensors and
exits. ``--parse-benchmark-model LOG`` turns the output of LiteRT's C++ ``benchmark_model``
(stdout, logcat lines, per-op profiling tables included) or of ``litert-benchmark`` (the tool in the
``ai-edge-litert`` wheel; its text output or ``--result_json`` file) into the same JSON schema
(:mod:`anyppg_edge.deploy.bench.benchmark_log`).

Exit status: 0 fine; 1 a check that ran and failed (a run that produced NaN/Inf or crashed, a
benchmark log that records a failure); 2 a usage mistake (a missing file, a wrong or missing
contract, bad windows, a bad flag), reported on one line with what to do.

Android without Python (LiteRT's prebuilt ``benchmark_model`` for android_aarch64; it feeds random
inputs and knows nothing of the contract, so check that first on the host)::

    python -m anyppg_edge.deploy.bench.device student-watch.int8.tflite --check-only
    adb push benchmark_model student-watch.int8.tflite /data/local/tmp/
    adb shell chmod +x /data/local/tmp/benchmark_model
    adb shell /data/local/tmp/benchmark_model --graph=/data/local/tmp/student-watch.int8.tflite \\
        --num_threads=1 --num_runs=200 --warmup_runs=20 --use_xnnpack=true > bm.log 2>&1
    python -m anyppg_edge.deploy.bench.device --parse-benchmark-model bm.log --out phone.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from anyppg_edge.config import load_preprocess_config
from anyppg_edge.contract import InputContract
from anyppg_edge.deploy.bench.benchmark_log import parse_benchmark_log
from anyppg_edge.deploy.bench.core import (
    BENCH_SCHEMA,
    dumps_json,
    environment,
    measure,
    package_version,
    preload_runtime,
    runtime_settings,
)
from anyppg_edge.deploy.contract_io import read_contract
from anyppg_edge.deploy.runtime import Encoder, OnnxEncoder, TFLiteEncoder, _says_no_contract
from anyppg_edge.errors import (
    AnyPPGError,
    ConfigError,
    ContractMismatchError,
    DataFormatError,
    InvalidSignalError,
    MissingFileError,
)
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = [
    "EXIT_CONTRACT",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "contract_problems",
    "load_windows",
    "main",
    "open_artifact",
    "read_artifact_contract",
    "synthetic_windows",
]

EXIT_FAILED = 1  # a check that ran and failed
EXIT_USAGE = 2  # a user mistake: missing file, bad flag, bad windows
EXIT_CONTRACT = 2  # the artifact's contract is missing or does not match (a user mistake too)
PROG = "python -m anyppg_edge.deploy.bench.device"
RUNNER = "anyppg_edge.deploy.bench.device"
SUFFIXES = (".tflite", ".onnx")


class _Failed(Exception):
    """A check that ran and failed (exit 1)."""


# --------------------------------------------------------------------------------------------------
# the contract
# --------------------------------------------------------------------------------------------------


def read_artifact_contract(path: Path, allow_missing: bool = False) -> InputContract | None:
    """The artifact's contract (the library's one reader); None for a file without one when
    ``allow_missing``. A malformed contract is always a :class:`ContractMismatchError`."""
    try:
        return read_contract(path)
    except ContractMismatchError as e:
        if not _says_no_contract(e, path):
            raise
        if allow_missing:
            return None
        raise ContractMismatchError(
            f"{path} carries no anyppg-edge input contract; re-export it with anyppg-edge, or pass "
            "--allow-missing-contract to time it anyway"
        ) from e


def contract_problems(
    contract: InputContract,
    config: PreprocessConfig | None = None,
    sample_rate_hz: int = DEFAULT_CONFIG.target_sample_rate_hz,
    window_samples: int = DEFAULT_CONFIG.window_samples,
) -> list[str]:
    """What is wrong with ``contract`` for windows of ``window_samples`` at ``sample_rate_hz``, or for
    ``config`` (every field must match, :meth:`InputContract.mismatches`); empty when fine. Without
    ``config`` the contract must also be self-consistent (its fields hash to its
    ``preprocess_config_hash``: :meth:`PreprocessConfig.config_hash`)."""
    if config is not None:
        return contract.mismatches(config)
    bad: list[str] = []
    if contract.sample_rate_hz != int(sample_rate_hz):
        bad.append(
            f"sample rate: artifact expects {contract.sample_rate_hz} Hz, this runner feeds {sample_rate_hz} Hz"
        )
    if contract.window_samples != int(window_samples):
        bad.append(
            f"window: artifact input has {contract.window_samples} samples, this runner feeds {window_samples}"
        )
    try:
        own = contract.preprocess_config
    except (TypeError, ValueError) as e:
        return [
            *bad,
            f"preprocess: the contract's preprocessing fields are not readable by this toolkit ({e})",
        ]
    bad += [f"contract not self-consistent: {m}" for m in contract.mismatches(own)]
    return bad


def _flags_config(sample_rate_hz: int, window_samples: int) -> PreprocessConfig:
    """The default chain at the flags' sample rate and window (for a file without a contract)."""
    try:
        return dataclasses.replace(
            DEFAULT_CONFIG,
            target_sample_rate_hz=int(sample_rate_hz),
            window_s=window_samples / sample_rate_hz,
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--sample-rate {sample_rate_hz} / --window-samples {window_samples}: {e}") from e


# --------------------------------------------------------------------------------------------------
# the artifact
# --------------------------------------------------------------------------------------------------


def open_artifact(
    path: Path,
    cfg: PreprocessConfig,
    threads: int = 1,
    xnnpack: bool = True,
    int8_allowed: bool = False,
    allow_missing_contract: bool = False,
) -> Encoder:
    """The library's encoder for ``path`` (batch 1), its contract checked against ``cfg``."""
    if path.suffix.lower() == ".tflite":
        return TFLiteEncoder(
            path, cfg, threads=threads, use_xnnpack=xnnpack, allow_missing_contract=allow_missing_contract
        )
    return OnnxEncoder(
        path, cfg, threads=threads, int8_allowed=int8_allowed, allow_missing_contract=allow_missing_contract,
        batch_size=1,
    )  # fmt: skip


def _opened(fn: Any) -> Any:
    """Run ``fn()`` (opening an artifact): library errors pass, anything else the runtime raises
    (a truncated or foreign file) becomes a :class:`DataFormatError`."""
    try:
        return fn()
    except AnyPPGError:
        raise
    except Exception as e:  # onnxruntime / LiteRT raise their own types for unloadable files
        raise DataFormatError(
            f"cannot open the artifact ({type(e).__name__}: {e}); is it a complete, valid file?"
        ) from e


# --------------------------------------------------------------------------------------------------
# windows
# --------------------------------------------------------------------------------------------------


def synthetic_windows(n: int = 16, length: int = DEFAULT_CONFIG.window_samples, fs: float = 125.0,
                      seed: int = 0) -> np.ndarray:  # fmt: skip
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


def load_windows(
    path: str | Path, length: int, contract: InputContract | None = None
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Preprocessed windows ``[N, length]`` float32 from a ``.npy`` (``[N, L]`` or ``[N, 1, L]``) or a
    ``.npz`` with a ``windows`` array (a golden set is verified, checksum included, and its
    preprocessing hash must equal the artifact's). ``(windows, description, extra result fields)``."""
    from anyppg_edge.model_input import check_model_input

    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"windows file not found: {p}")
    extra: dict[str, Any] = {}
    if p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                files = set(z.files)
                w = z["windows"] if "windows" in files else None
        except (OSError, ValueError, EOFError) as e:
            raise DataFormatError(f"{p} is not a readable .npz ({type(e).__name__}: {e})") from e
        if w is None:
            raise DataFormatError(
                f"{p} holds no 'windows' array (it has {sorted(files)}); give a golden set or a .npy of windows"
            )
        if "provenance" in files:  # a golden set: verify it, and that it was made for this chain
            from anyppg_edge.deploy.parity.golden import load_golden_set

            g = load_golden_set(p)
            w = g.windows
            h = g.preprocess_config_hash
            if contract is not None and h and h != contract.preprocess_config_hash:
                raise ContractMismatchError(
                    f"golden set {p.name} was made with preprocessing {h[:12]}…, the artifact's contract says "
                    f"{contract.preprocess_config_hash[:12]}…; use a golden set made for this artifact's chain"
                )
            desc = f"golden set {p.name} ({len(g)} windows of {g.model_name})"
            extra = {"golden_set": str(p), "golden_model_name": g.model_name, "golden_checksum_ok": True}
        else:
            desc = f"windows from {p.name}"
    elif p.suffix.lower() == ".npy":
        try:
            w = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataFormatError(f"{p} is not a readable .npy of windows ({type(e).__name__}: {e})") from e
        desc = f"windows from {p.name}"
    else:
        raise DataFormatError(
            f"{p}: windows must be a .npy [N, {length}] or a golden set .npz, got {p.suffix or 'no suffix'!r}"
        )
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise InvalidSignalError(f"{p}: windows must be preprocessed float windows, got dtype {w.dtype}")
    try:
        x = check_model_input(w, length)[:, 0, :]
    except InvalidSignalError as e:
        raise InvalidSignalError(f"{p}: {e}") from e
    if len(x) == 0:
        raise InvalidSignalError(f"{p}: no windows in the file")
    return np.ascontiguousarray(x, dtype=np.float32), desc, extra


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("model", nargs="?", help=".tflite or .onnx artifact")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument(
        "--no-xnnpack", action="store_true", help="LiteRT builtin kernels without the XNNPACK delegate"
    )
    ap.add_argument("--ort-int8-allowed", action="store_true", help="onnxruntime session.qdqisint8allowed=1")
    ap.add_argument(
        "--windows",
        help="preprocessed windows to time on: .npy [N, L] or a golden set .npz (default: synthetic)",
    )
    ap.add_argument("--config", help="preprocessing-config JSON the contract must match")
    ap.add_argument("--sample-rate", type=int, default=DEFAULT_CONFIG.target_sample_rate_hz)
    ap.add_argument("--window-samples", type=int, default=DEFAULT_CONFIG.window_samples)
    ap.add_argument("--allow-missing-contract", action="store_true")
    ap.add_argument(
        "--embed",
        metavar="WINDOWS",
        help="write embeddings of these windows (.npy or golden .npz) instead of timing",
    )
    ap.add_argument("--save", metavar="OUT_NPY", help="where --embed writes the [N, D] float32 embeddings")
    ap.add_argument("--check-only", action="store_true", help="check the contract and tensors, then exit")
    ap.add_argument("--parse-benchmark-model", metavar="LOG",
                    help="parse benchmark_model / litert-benchmark output ('-': stdin)")  # fmt: skip
    ap.add_argument("--out", help="also write the JSON result here")
    return ap


def _emit(obj: dict[str, Any], out: str | None) -> None:
    text = dumps_json(obj)
    if out:
        try:
            Path(out).write_text(text + "\n")
        except OSError as e:
            raise MissingFileError(f"cannot write --out {out}: {e.strerror or e}") from e
    print(text)


def _one_line(msg: str) -> str:
    lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
    return (lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")) if lines else "unknown error"


def _parse_log(args: argparse.Namespace) -> int:
    src = args.parse_benchmark_model
    if src == "-":
        text, name = sys.stdin.read(), "stdin"
    else:
        p = Path(src)
        if not p.is_file():
            raise MissingFileError(f"benchmark log not found: {p}")
        text, name = p.read_text(errors="replace"), str(p)
    res = parse_benchmark_log(text, source=name)
    _emit(res, args.out)
    if res["error"] is not None:
        print(f"FAILED: {_one_line(res['error'])}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _run(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    if args.parse_benchmark_model:
        return _parse_log(args)
    if not args.model:
        ap.error("a model path is required (or --parse-benchmark-model LOG)")
    if args.embed and not args.save:
        ap.error("--embed needs --save OUT.npy")
    if args.runs < 1 or args.warmup < 1:
        ap.error("--runs and --warmup must be >= 1")
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.sample_rate < 1 or args.window_samples < 1:
        ap.error("--sample-rate and --window-samples must be >= 1")
    path = Path(args.model)
    if not path.is_file():
        raise MissingFileError(
            f"artifact not found: {path}; check the path (copy the .tflite/.onnx next to this runner?)"
        )
    if path.suffix.lower() not in SUFFIXES:
        raise DataFormatError(
            f"{path}: cannot run {path.suffix or 'a file without suffix'!r}; give a .tflite or .onnx artifact"
        )

    # 1. the contract, before anything is timed
    config = load_preprocess_config(args.config) if args.config else None
    contract = read_artifact_contract(path, args.allow_missing_contract)
    if contract is not None:
        problems = contract_problems(contract, config, args.sample_rate, args.window_samples)
        if problems:
            raise ContractMismatchError(
                f"{path} does not match the windows this runner feeds: "
                + "; ".join(problems)
                + ". Pass the --config (or --sample-rate / --window-samples) the artifact was built for, or "
                "re-export it for this preprocessing chain"
            )
        cfg = config or contract.preprocess_config
    else:
        cfg = config or _flags_config(args.sample_rate, args.window_samples)
    runtime, package = preload_runtime(path.suffix)  # so that load time and RSS delta are the artifact's
    settings = runtime_settings(path.suffix, args.threads, not args.no_xnnpack, args.ort_int8_allowed)

    def open_it() -> Encoder:
        return _opened(
            lambda: open_artifact(path, cfg, args.threads, not args.no_xnnpack, args.ort_int8_allowed,
                                  args.allow_missing_contract)
        )  # fmt: skip

    check = "ok" if contract is not None else "no contract in the file (allowed by --allow-missing-contract)"
    if args.check_only:
        enc = open_it()
        what = f"{enc.contract.model_name}, {enc.contract.artifact_kind}" if contract else "no contract"
        print(f"OK: {path} ({what}) takes {enc.window_samples}-sample windows at {cfg.target_sample_rate_hz} Hz",
              file=sys.stderr)  # fmt: skip
        return 0

    # 2. embeddings, or timing
    window = contract.window_samples if contract is not None else cfg.window_samples
    if args.embed:
        w, source, extra = load_windows(args.embed, window, contract)
        enc = open_it()
        try:
            z = enc.embed(w)
        except AnyPPGError:
            raise
        except Exception as e:
            raise _Failed(f"{path}: inference failed: {type(e).__name__}: {e}") from e
        if not np.isfinite(z).all():
            raise _Failed(f"{path}: the embeddings hold NaN/Inf")
        try:
            np.save(args.save, z.astype(np.float32))
        except OSError as e:
            raise MissingFileError(f"cannot write --save {args.save}: {e.strerror or e}") from e
        _emit({"embeddings": str(args.save), "shape": list(z.shape), "artifact": str(path), "windows": source,
               "model_name": enc.contract.model_name, "runtime": runtime, "settings": settings,
               "contract_check": check, "runner": RUNNER, **extra}, args.out)  # fmt: skip
        return 0
    if args.windows:
        w, source, _extra = load_windows(args.windows, window, contract)
    else:
        w, source = (
            synthetic_windows(16, window, fs=float(cfg.target_sample_rate_hz)),
            "synthetic z-scored PPG-like windows",
        )
    try:
        _enc, part = measure(open_it, w, args.warmup, args.runs)
    except AnyPPGError:
        raise
    except Exception as e:  # the run itself failed: NaN/Inf, a runtime crash
        raise _Failed(f"{path}: {type(e).__name__}: {e}") from e
    if contract is None:
        part["artifact_kind"] = None  # the encoder's stand-in contract guesses it
    xnn = settings.get("xnnpack", True)
    res = {
        "schema": BENCH_SCHEMA,
        "name": path.name if xnn else f"{path.name} (no XNNPACK)",
        "artifact": str(path),
        "file_bytes": path.stat().st_size,
        "settings": settings,
        "warmup": int(args.warmup),
        "runs": int(args.runs),
        "n_windows": len(w),
        "input": source,
        "runtime": runtime,
        "runtime_version": package_version(package),  # after timing: importlib.metadata is slow
        **part,
        "isolated": True,
        "error": None,
        "macs": None,
        "params": None,
        "peak_flops_one_core": None,
        "fp32_floor_ms": None,
        "p50_over_fp32_floor": None,
        "environment": environment(),
        "runner": RUNNER,
        "contract_check": check,
    }
    lat = res["latency_ms"]
    print(
        f"{res['name']}: p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f}, p99 {lat['p99']:.3f}, "
        f"load {res['load_ms']:.1f} ms, peak RSS {res['peak_rss_mb']} MB ({res['environment']['cpu_model']})",
        file=sys.stderr,
    )
    _emit(res, args.out)
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The runner's command line; returns the exit status (0 fine, 1 failed, 2 usage mistake)."""
    ap = _parser()
    if prog:
        ap.prog = prog
    args = ap.parse_args(argv)
    try:
        return _run(args, ap)
    except ContractMismatchError as e:
        print(f"CONTRACT MISMATCH: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_CONTRACT
    except AnyPPGError as e:
        print(f"{ap.prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as e:  # the runtime this artifact needs is not installed
        print(f"{ap.prog}: error: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except _Failed as e:
        print(f"FAILED: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
