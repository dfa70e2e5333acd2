"""Latency benchmark (issues 7, 16, 22): the bench library and its report, the device runner (one
source with the library: same measurement core, contract reader and encoders), the parsers of
``benchmark_model`` / ``litert-benchmark`` logs and the MCU cost model.

Functional checks only: nothing here asserts a speed (timings belong to the benchmark itself, not
to tests). Artifacts are made from the ``tiny`` registry config (seeded random init, PTQ on the
committed calibration windows): one int8 TFLite with int8 I/O (exercises the (de)quantization) and
one float ONNX. The log parsers and usage errors need none of torch / TensorFlow / brevitas.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge.contract import InputContract
from anyppg_edge.deploy.bench import benchmark_log as BL
from anyppg_edge.deploy.bench import core as C
from anyppg_edge.deploy.bench import device as DEV
from anyppg_edge.deploy.bench import floor as FL
from anyppg_edge.deploy.bench import latency as B
from anyppg_edge.deploy.bench import mcu as M
from anyppg_edge.deploy.bench import report as R
from anyppg_edge.errors import DataFormatError
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "export" / "device_runner.py"
LOGS = Path(__file__).resolve().parent / "fixtures" / "benchmark_logs"
SHA = "0" * 64
ENV_KEYS = {"cpu_model", "cpu_flags", "cores", "os", "python", "packages", "machine", "thread_env", "loadavg"}
HEAVY = ("torch", "onnx", "tensorflow", "brevitas")


def _deps(*names: str) -> None:
    for n in names:
        pytest.importorskip(n)


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    from anyppg_edge.deploy.calibration import load_default_calibration_set

    return load_default_calibration_set().windows[:16].astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
    _deps("torch")
    import torch

    from anyppg_edge.models import create_model

    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture(scope="module")
def artifacts(tiny, windows, tmp_path_factory) -> dict[str, Path]:
    _deps("onnxruntime", "ai_edge_litert", "tensorflow", "brevitas", "onnx")
    from anyppg_edge.deploy.export.onnx import export_onnx_float
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.quantize import quantize_ptq

    d = tmp_path_factory.mktemp("bench_art")
    ptq = quantize_ptq(tiny, [windows[:8, None], windows[8:, None]])
    tfl = export_tflite(
        ptq,
        d / "tiny.int8.tflite",
        InputContract.for_model("tiny", "tflite-int8", tiny.out_dim, SHA),
        int8_io=True,
    )
    onx = export_onnx_float(
        tiny, d / "tiny.float.onnx", InputContract.for_model("tiny", "onnx-float", tiny.out_dim, SHA)
    )
    return {"tflite": tfl, "onnx": onx, "dir": d}


def _run(*args: str, timeout: int = 120, runner: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = runner if runner is not None else [sys.executable, str(RUNNER)]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _strict_json(text: str) -> dict:
    def no_constant(name: str):
        raise AssertionError(f"non-standard JSON constant {name} in the output")

    return json.loads(text, parse_constant=no_constant)


def _check_stats(lat: dict) -> None:
    vals = [lat[k] for k in ("p50", "p90", "p99", "mean", "min")]
    assert all(math.isfinite(v) and v > 0 for v in vals), lat
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# --------------------------------------------------------------------------------------------------
# bench library + report
# --------------------------------------------------------------------------------------------------


def test_bench_tflite_onnx_pytorch_isolated_and_report(artifacts, tiny, windows, tmp_path):
    items = [artifacts["tflite"], artifacts["onnx"], ("pytorch", tiny, "tiny")]
    res = B.bench_artifacts(items, windows, threads=1, warmup=2, runs=12, xnnpack=(True, False), isolate=True)
    assert [r["name"] for r in res] == [
        "tiny.int8.tflite",
        "tiny.int8.tflite (no XNNPACK)",
        "tiny.float.onnx",
        "tiny (PyTorch eager)",
    ]
    kinds = {r["name"]: (r["runtime"], r["artifact_kind"]) for r in res}
    assert kinds["tiny.float.onnx"] == ("onnxruntime", "onnx-float")
    assert kinds["tiny (PyTorch eager)"] == ("pytorch-eager", "pytorch-float")
    for r in res:
        assert r["error"] is None, r["error"]
        assert r["schema"] == C.BENCH_SCHEMA and r["isolated"]
        _check_stats(r["latency_ms"])
        assert len(r["samples_ms"]) == 12 and r["runs"] == 12 and r["warmup"] == 2
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] > 0 and r["rss_delta_mb"] is not None
        assert r["settings"]["threads"] == 1 and r["settings"]["batch"] == 1
        assert ENV_KEYS <= set(r["environment"]) and r["environment"]["packages"]["numpy"]
        assert r["macs"] and r["params"] == 25784  # tiny, from the registry or the module
        assert r["fp32_floor_ms"] == pytest.approx(FL.fp32_floor_ms(r["macs"], r["peak_flops_one_core"]))
    assert res[0]["settings"]["xnnpack"] and not res[1]["settings"]["xnnpack"]
    assert res[0]["file_bytes"] == artifacts["tflite"].stat().st_size

    paths = R.write_bench_report(res, tmp_path / "rep")
    assert set(paths) == {"json", "csv", "md", "png"} and all(p.is_file() for p in paths.values())
    doc = _strict_json(paths["json"].read_text())
    assert doc["baseline"] == "tiny (PyTorch eager)" and len(doc["results"]) == 4
    md = paths["md"].read_text()
    assert "| artifact |" in md and "× vs tiny (PyTorch eager)" in md and "fp32 floor" in md
    assert "1.00×" in md  # the baseline row
    assert paths["csv"].read_text().count("\n") == 5
    name, ups = R.speedups(res, "tiny.float.onnx")
    assert name == "tiny.float.onnx" and ups[2] == pytest.approx(1.0)


def test_bench_in_process_records_failures(artifacts, windows, tmp_path):
    # a contract made for another preprocessing chain: that artifact fails, the others still run
    from anyppg_edge.deploy.export.onnx import write_onnx_contract

    bad = tmp_path / "other_band.onnx"
    shutil.copy(artifacts["onnx"], bad)
    other = PreprocessConfig(ppg_band_hz=(0.5, 4.0))
    write_onnx_contract(bad, InputContract.for_model("tiny", "onnx-float", 64, SHA, cfg=other))
    res = B.bench_artifacts(
        [artifacts["onnx"], bad], windows[:4], warmup=1, runs=5, isolate=False, peak_flops=1e10
    )
    assert res[0]["error"] is None and not res[0]["isolated"]
    _check_stats(res[0]["latency_ms"])
    assert "ppg_band_hz" in res[1]["error"] and math.isnan(res[1]["latency_ms"]["p50"])
    md = R.bench_markdown(res)
    assert "Failed" in md and "other_band.onnx" in md
    # bench.json stays strictly valid JSON: the failed artifact's NaN latencies are null there
    paths = R.write_bench_report(res, tmp_path / "rep", plot=False)
    doc = _strict_json(paths["json"].read_text())
    assert doc["results"][1]["latency_ms"]["p50"] is None and doc["results"][1]["error"]
    odd = tmp_path / "model.pt"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.tflite or \.onnx"):
        B.bench_artifacts([odd], windows, measure_flops=False)


def test_latency_stats_floor_and_strict_json():
    s = C.latency_stats([3.0, 1.0, 2.0, 4.0, 100.0])
    assert s["p50"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["p50"] <= s["p90"] <= s["p99"]
    assert all(math.isnan(v) for v in C.latency_stats([]).values())
    assert FL.fp32_floor_ms(1e6, 2e9) == pytest.approx(1.0)  # 2 MFLOP at 2 GFLOP/s = 1 ms
    with pytest.raises(ValueError):
        FL.fp32_floor_ms(1e6, 0)
    g = FL.gemm_flops_one_core(n=256, repeats=2, isolate=False)
    assert g["flops"] > 0 and g["flops"] == max(g["per_backend"].values())
    text = C.dumps_json(
        {"a": math.nan, "b": [np.float32(1.5), math.inf], "c": (np.int64(2),), "d": np.zeros(2)}
    )
    assert _strict_json(text) == {"a": None, "b": [1.5, None], "c": [2], "d": [0.0, 0.0]}


def test_bench_worker_entry_point_still_runs():
    p = subprocess.run(
        [sys.executable, "-m", "anyppg_edge.deploy.bench.latency", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0 and "--worker" in p.stdout, p.stderr


def test_one_source_no_twins():
    """The device runner is the library: the entry point is a few lines, and no module re-implements
    the measurement core, the contract reader or the config hash."""
    entry = RUNNER.read_text()
    assert len(entry.splitlines()) < 40 and "def " not in entry
    assert "from anyppg_edge.deploy.bench.device import main" in entry
    twins = re.compile(
        r"^\s*(def (latency_stats|environment|read_contract|config_hash|_cpuinfo|_proc_status_kb)\b|class \w*RssProbe\b)",
        re.M,
    )
    bench = ROOT / "anyppg_edge" / "deploy" / "bench"
    for mod in ("device.py", "latency.py", "report.py", "floor.py", "benchmark_log.py"):
        assert not twins.search((bench / mod).read_text()), mod
    assert DEV.measure is C.measure and DEV.read_contract.__module__ == "anyppg_edge.deploy.contract_io"


# --------------------------------------------------------------------------------------------------
# device runner
# --------------------------------------------------------------------------------------------------


def test_device_runner_times_both_kinds(artifacts, windows, tmp_path):
    wpath = tmp_path / "w.npy"
    np.save(wpath, windows[:6])
    bench_keys = set(
        B.bench_artifacts([artifacts["onnx"]], windows[:2], warmup=1, runs=2, isolate=False, peak_flops=1e10)[
            0
        ]
    )
    for kind in ("tflite", "onnx"):
        out = tmp_path / f"{kind}.json"
        p = _run(
            str(artifacts[kind]), "--runs", "15", "--warmup", "2", "--windows", str(wpath), "--out", str(out)
        )
        assert p.returncode == 0, p.stderr
        r = _strict_json(p.stdout)
        assert r == _strict_json(out.read_text())
        assert r["schema"] == C.BENCH_SCHEMA and r["error"] is None and r["contract_check"] == "ok"
        assert r["model_name"] == "tiny" and r["n_windows"] == 6 and len(r["samples_ms"]) == 15
        assert r["runner"] == "anyppg_edge.deploy.bench.device"
        _check_stats(r["latency_ms"])
        assert ENV_KEYS <= set(r["environment"])
        assert bench_keys <= set(r) | {"peak_flops_method"}, bench_keys - set(r)
    assert r["runtime"] == "onnxruntime" and r["settings"]["execution_provider"] == "CPU"
    # the two other ways in: the module itself, and the entry point as a module
    for runner in (
        [sys.executable, "-m", "anyppg_edge.deploy.bench.device"],
        [sys.executable, "-m", "export.device_runner"],
    ):
        p = _run(str(artifacts["onnx"]), "--runs", "2", "--warmup", "1", runner=runner)
        assert p.returncode == 0 and _strict_json(p.stdout)["model_name"] == "tiny", p.stderr


def test_device_runner_refuses_mismatching_contract(artifacts, tmp_path):
    from anyppg_edge.deploy.export.onnx import write_onnx_contract

    ok = _run(str(artifacts["tflite"]), "--check-only")
    assert ok.returncode == 0 and "OK:" in ok.stderr
    p = _run(str(artifacts["tflite"]), "--window-samples", "1000")
    assert p.returncode == DEV.EXIT_CONTRACT == 2
    line = _one_line(p.stderr)
    assert line.startswith("CONTRACT MISMATCH") and "1250" in line and "--window-samples" in line
    assert p.stdout == ""
    # --config: every field must match; the default chain matches, another band does not
    ok_cfg, bad_cfg = tmp_path / "ok.json", tmp_path / "bad.json"
    ok_cfg.write_text(DEFAULT_CONFIG.to_json())
    bad_cfg.write_text(PreprocessConfig(ppg_band_hz=(0.5, 4.0)).to_json())
    assert (
        _run(str(artifacts["onnx"]), "--config", str(ok_cfg), "--runs", "2", "--warmup", "1").returncode == 0
    )
    p = _run(str(artifacts["onnx"]), "--config", str(bad_cfg))
    assert p.returncode == DEV.EXIT_CONTRACT and "ppg_band_hz" in _one_line(p.stderr)
    # another sample rate written into the artifact's contract
    other = tmp_path / "100hz.onnx"
    shutil.copy(artifacts["onnx"], other)
    cfg100 = PreprocessConfig(target_sample_rate_hz=100)
    write_onnx_contract(other, InputContract.for_model("tiny", "onnx-float", 64, SHA, cfg=cfg100))
    p = _run(str(other))
    assert p.returncode == DEV.EXIT_CONTRACT and "100 Hz" in _one_line(p.stderr)
    # a hand-edited contract (its fields no longer hash to its preprocess_config_hash)
    edited = tmp_path / "edited.onnx"
    shutil.copy(artifacts["onnx"], edited)
    c = InputContract.for_model("tiny", "onnx-float", 64, SHA)
    write_onnx_contract(edited, InputContract(**{**c.__dict__, "preprocess_config_hash": "f" * 64}))
    p = _run(str(edited))
    assert p.returncode == DEV.EXIT_CONTRACT and "preprocess_config_hash" in _one_line(p.stderr)
    # no contract at all: refused unless allowed
    import onnx

    bare = tmp_path / "bare.onnx"
    m = onnx.load_model(str(artifacts["onnx"]))
    del m.metadata_props[:]
    onnx.save_model(m, str(bare))
    p = _run(str(bare))
    assert p.returncode == DEV.EXIT_CONTRACT and "no anyppg-edge input contract" in _one_line(p.stderr)
    assert "--allow-missing-contract" in p.stderr
    p = _run(str(bare), "--allow-missing-contract", "--runs", "2", "--warmup", "1")
    assert p.returncode == 0, p.stderr
    assert "no contract" in _strict_json(p.stdout)["contract_check"]


def test_device_runner_embeddings_equal_tflite_encoder_npy_and_golden(artifacts, tiny, windows, tmp_path):
    from anyppg_edge.deploy.parity.golden import make_golden_set
    from anyppg_edge.deploy.runtime import TFLiteEncoder

    wpath, zpath = tmp_path / "w.npy", tmp_path / "z.npy"
    np.save(wpath, windows)
    p = _run(str(artifacts["tflite"]), "--embed", str(wpath), "--save", str(zpath))
    assert p.returncode == 0, p.stderr
    z = np.load(zpath)
    enc = TFLiteEncoder(artifacts["tflite"])
    assert enc.input_quant is not None  # int8 I/O: the (de)quantization is exercised
    np.testing.assert_array_equal(z, enc.embed(windows))
    # a golden set .npz (its checksum verified) works as well as a .npy of windows
    ids = [f"cal/{i}" for i in range(8)]
    golden = make_golden_set(tiny, "tiny", SHA, windows[:8], ids, tmp_path / "g.golden.npz", device="cpu")
    gz = tmp_path / "gz.npy"
    p = _run(str(artifacts["tflite"]), "--embed", str(golden.path), "--save", str(gz))
    assert p.returncode == 0, p.stderr
    out = _strict_json(p.stdout)
    assert out["shape"] == [8, 64] and out["golden_model_name"] == "tiny" and out["golden_checksum_ok"]
    np.testing.assert_array_equal(np.load(gz), enc.embed(golden.windows))
    p = _run(str(artifacts["onnx"]), "--windows", str(golden.path), "--runs", "3", "--warmup", "1")
    assert p.returncode == 0 and _strict_json(p.stdout)["n_windows"] == 8, p.stderr
    # a golden set made for another preprocessing chain is refused; so is an edited one
    other = make_golden_set(tiny, "tiny", SHA, windows[:2], ids[:2], tmp_path / "o.golden.npz", device="cpu",
                            cfg=PreprocessConfig(ppg_band_hz=(0.5, 4.0)))  # fmt: skip
    p = _run(str(artifacts["tflite"]), "--embed", str(other.path), "--save", str(gz))
    assert p.returncode == DEV.EXIT_CONTRACT and "golden set" in _one_line(p.stderr)
    with np.load(golden.path) as g:
        arrays = {k: g[k] for k in g.files}
    arrays["windows"] = arrays["windows"] + 1e-3
    np.savez(tmp_path / "edited.npz", **arrays)
    p = _run(str(artifacts["tflite"]), "--embed", str(tmp_path / "edited.npz"), "--save", str(gz))
    assert p.returncode == DEV.EXIT_USAGE and "checksum" in _one_line(p.stderr)


_BLOCKER = """
import sys
BLOCKED = set(sys.argv[2].split(","))
CHECK = set(BLOCKED)  # must not be loaded at the end
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked by the test: {name}")
        return None
sys.meta_path.insert(0, Block())
{prelude}
from anyppg_edge.deploy.bench.device import main
rc = main([sys.argv[1], "--runs", "3", "--warmup", "1"])
loaded = sorted(m for m in CHECK if m in sys.modules)
print("LOADED", loaded, file=sys.stderr)
sys.exit(rc or (3 if loaded else 0))
"""


def test_device_runner_needs_numpy_and_one_runtime_only(artifacts):
    """Imported and run with torch, onnx, tensorflow and brevitas (and the other runtime) unimportable:
    the runner needs the base install and one runtime, and times both kinds end to end."""
    other = {"onnx": "ai_edge_litert,tflite_runtime", "tflite": "onnxruntime"}
    for kind in ("onnx", "tflite"):
        blocked = ",".join([*HEAVY, "onnxscript", "tensorflow_lite_support", "matplotlib", other[kind]])
        code = _BLOCKER.replace("{prelude}", "")
        p = subprocess.run([sys.executable, "-c", code, str(artifacts[kind]), blocked],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        r = _strict_json(p.stdout)
        assert r["error"] is None and r["model_name"] == "tiny" and r["runs"] == 3
        _check_stats(r["latency_ms"])


def test_device_runner_uses_tflite_runtime_when_litert_is_absent(artifacts):
    """Only the older tflite-runtime installed: it is used under LiteRT's name (faked here by the
    already-loaded LiteRT interpreter module, with ai_edge_litert itself unimportable)."""
    prelude = (
        "import types, ai_edge_litert.interpreter as real\n"
        "fake = types.ModuleType('tflite_runtime'); fake.__path__ = []; fake.interpreter = real\n"
        "sys.modules['tflite_runtime'] = fake; sys.modules['tflite_runtime.interpreter'] = real\n"
        "[sys.modules.pop(m) for m in list(sys.modules) if m.split('.')[0] == 'ai_edge_litert']\n"
        "BLOCKED.add('ai_edge_litert')\n"
    )
    code = _BLOCKER.replace("{prelude}", prelude)
    blocked = ",".join([*HEAVY, "onnxruntime"])
    p = subprocess.run([sys.executable, "-c", code, str(artifacts["tflite"]), blocked],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    r = _strict_json(p.stdout)
    assert r["runtime"] == "tflite-runtime" and r["error"] is None


def test_device_runner_usage_errors_exit_2_on_one_line(tmp_path, capsys):
    bad_suffix = tmp_path / "model.pt"
    bad_suffix.write_bytes(b"x")
    not_log = tmp_path / "notes.txt"
    not_log.write_text("ran it on the phone, looked fine\n")
    cases = [
        ([str(tmp_path / "missing.tflite")], "artifact not found"),
        ([str(bad_suffix)], ".tflite or .onnx"),
        (["--parse-benchmark-model", str(tmp_path / "missing.log")], "benchmark log not found"),
        (["--parse-benchmark-model", str(not_log)], "not the output of"),
    ]
    for argv, what in cases:
        assert DEV.main(argv) == DEV.EXIT_USAGE, argv
        err = _one_line(capsys.readouterr().err)
        assert what in err, (argv, err)
    for argv in (["--embed", "w.npy", "x.tflite"], ["x.tflite", "--runs", "0"], ["--bogus"], []):
        with pytest.raises(SystemExit) as e:
            DEV.main(argv)
        assert e.value.code == DEV.EXIT_USAGE
        assert "(see --help)" in _one_line(capsys.readouterr().err)


def test_device_runner_window_and_config_errors(artifacts, tmp_path, capsys):
    art = str(artifacts["onnx"])
    short, ints, cfg = tmp_path / "short.npy", tmp_path / "ints.npy", tmp_path / "cfg.json"
    np.save(short, np.zeros((3, 1000), np.float32))
    np.save(ints, np.zeros((3, 1250), np.int16))
    cfg.write_text('{"ppg_band": 3}')
    for argv, what in (
        ([art, "--windows", str(short)], "1250"),
        ([art, "--embed", str(ints), "--save", str(tmp_path / "z.npy")], "float"),
        ([art, "--config", str(cfg)], "ppg_band"),
        ([art, "--config", str(tmp_path / "nope.json")], "not found"),
    ):
        assert DEV.main(argv) == DEV.EXIT_USAGE, argv
        assert what in _one_line(capsys.readouterr().err), argv


def test_device_runner_failed_run_exits_1(artifacts, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("the first inference gave shape (1, 64) or non-finite values")

    monkeypatch.setattr(DEV, "measure", broken)
    assert DEV.main([str(artifacts["onnx"]), "--runs", "2", "--warmup", "1"]) == DEV.EXIT_FAILED == 1
    captured = capsys.readouterr()
    assert captured.out == "" and _one_line(captured.err).startswith("FAILED:")


# --------------------------------------------------------------------------------------------------
# benchmark_model / litert-benchmark output
# --------------------------------------------------------------------------------------------------

BENCHMARK_MODEL_STDOUT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [1]
INFO: Graph: [/data/local/tmp/student-watch.int8.tflite]
INFO: Signature to run: []
INFO: #threads used for CPU inference: [1]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/student-watch.int8.tflite
INFO: Initialized TensorFlow Lite runtime.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: XNNPACK delegate created.
INFO: Explicitly applied XNNPACK delegate, and the model graph will be completely executed by the delegate.
INFO: The input model file size (MB): 0.272097
INFO: Initialized session in 4.127ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=1148 first=1893 curr=402 min=388 max=1893 avg=434.6 std=71 p5=392 median=421 p95=512

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=2291 first=411 curr=398 min=385 max=1204 avg=426.31 std=38 p5=390 median=419 p95=488

INFO: Inference timings in us: Init: 4127, First inference: 1893, Warmup (avg): 434.6, Inference (avg): 426.31
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=3.45312 overall=4.01953
INFO: Overall peak memory footprint (MB) via periodic monitoring: 9.97656
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 9 MB
"""

BENCHMARK_MODEL_LOGCAT = """\
07-08 15:33:31.402 I/tflite  ( 5395): Num threads: [4]
07-08 15:33:31.402 I/tflite  ( 5395): Graph: [/data/local/tmp/anyppg-released.int8.tflite]
07-08 15:33:31.402 I/tflite  ( 5395): Use xnnpack: [0]
07-08 15:33:31.517 I/tflite  ( 5395): The input model file size (MB): 4.62642
07-08 15:33:31.519 I/tflite  ( 5395): Initialized session in 112.3ms.
07-08 15:33:31.519 I/tflite  ( 5395): Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
07-08 15:33:32.030 I/tflite  ( 5395): count=1 curr=41230
07-08 15:33:32.030 I/tflite  ( 5395): Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
07-08 15:33:34.101 I/tflite  ( 5395): count=50 first=40112 curr=39876 min=38990 max=45012 avg=4.0213e+04 std=1021
07-08 15:33:34.101 I/tflite  ( 5395): Inference timings in us: Init: 112300, First inference: 41230, Warmup (avg): 41230, Inference (avg): 4.0213e+04
07-08 15:33:34.102 I/tflite  ( 5395): Memory footprint delta from the start of the tool (MB): init=9.125 overall=12.5
"""


def test_parse_benchmark_model_stdout():
    r = BL.parse_benchmark_model(BENCHMARK_MODEL_STDOUT)
    assert r["schema"] == C.BENCH_SCHEMA and r["error"] is None and r["warnings"] == []
    assert r["name"] == "student-watch.int8.tflite" and r["runtime"] == "litert-benchmark_model"
    assert r["settings"] == {"batch": 1, "threads": 1, "xnnpack": True}
    assert r["file_bytes"] == 272097
    assert r["warmup"] == 1148 and r["runs"] == 2291
    lat = r["latency_ms"]
    assert lat["p50"] == pytest.approx(0.419) and lat["mean"] == pytest.approx(0.42631)
    assert lat["min"] == pytest.approx(0.385) and lat["max"] == pytest.approx(1.204)
    assert lat["p5"] == pytest.approx(0.390) and lat["p95"] == pytest.approx(0.488)
    assert lat["p90"] is None and lat["p99"] is None  # not reported by benchmark_model
    assert r["load_ms"] == pytest.approx(4.127) and r["first_inference_ms"] == pytest.approx(1.893)
    assert r["warmup_mean_ms"] == pytest.approx(0.4346)
    assert r["peak_rss_mb"] == pytest.approx(9.97656) and r["rss_delta_mb"] == pytest.approx(4.01953)
    assert r["op_profile"] is None
    bench_keys = {"schema", "name", "artifact", "file_bytes", "settings", "latency_ms", "samples_ms", "load_ms",
                  "first_inference_ms", "peak_rss_mb", "rss_delta_mb", "environment", "error", "runtime"}  # fmt: skip
    assert bench_keys <= set(r)


def test_parse_benchmark_model_logcat_and_failure():
    r = BL.parse_benchmark_model(BENCHMARK_MODEL_LOGCAT)
    assert r["error"] is None and r["name"] == "anyppg-released.int8.tflite"
    assert r["settings"]["threads"] == 4 and r["settings"]["xnnpack"] is False
    assert r["warmup"] == 1 and r["runs"] == 50
    assert r["latency_ms"]["mean"] == pytest.approx(40.213) and r["latency_ms"]["p50"] is None
    assert r["first_inference_ms"] == pytest.approx(41.23) and r["peak_rss_mb"] is None
    assert r["rss_delta_mb"] == pytest.approx(12.5)
    fail = BL.parse_benchmark_model(
        "INFO: Created TensorFlow Lite delegate for GPU.\n"
        "ERROR: Following operations are not supported by GPU delegate:\nBenchmarking failed.\n"
    )
    assert fail["error"] and "GPU delegate" in fail["error"]
    truncated = BENCHMARK_MODEL_STDOUT.split("INFO: Inference timings")[0]
    assert "truncated" in BL.parse_benchmark_model(truncated)["error"]
    assert "truncated" in BL.parse_benchmark_log(truncated)["error"]


def test_parse_benchmark_model_op_profiling_tables():
    """Fixture written to the documented layout (see fixtures/benchmark_logs/README.md)."""
    r = BL.parse_benchmark_log((LOGS / "benchmark_model_op_profiling.log").read_text())
    assert r["source_format"] == "benchmark_model" and r["error"] is None and r["warnings"] == []
    assert r["name"] == "student-watch-k9.int8.tflite" and r["settings"]["xnnpack"] is False
    assert r["warmup"] == 287 and r["runs"] == 50 and r["latency_ms"]["p50"] == pytest.approx(2.731)
    assert r["rss_delta_mb"] == pytest.approx(2.0625) and r["init_rss_delta_mb"] == pytest.approx(1.53906)
    init, reg = r["op_profile"]["initialization"], r["op_profile"]["regular_runs"]
    assert [row["node_type"] for row in init["run_order"]] == ["AllocateTensors"]
    assert init["timings_us"] == {"count": 1, "curr": 412.0}
    order = reg["run_order"]
    assert len(order) == reg["nodes_executed"] == reg["nodes_observed"] == 165
    assert order[0] == {"node_type": "QUANTIZE", "first_ms": 0.006, "avg_ms": 0.003, "pct": 0.107,
                        "cdf_pct": 0.107, "mem_kb": 0.0, "times_called": 1, "name": "[tfl.quantize]:0"}  # fmt: skip
    assert order[-1]["node_type"] == "DEQUANTIZE" and order[-1]["cdf_pct"] == pytest.approx(100.0)
    assert sum(row["pct"] for row in order) == pytest.approx(100.0, abs=0.2)
    assert len(reg["top_by_computation_time"]) == 10
    by_type = {row["node_type"]: row for row in reg["summary_by_node_type"]}
    assert by_type["CONV_2D"]["count"] == 48 and sum(row["count"] for row in by_type.values()) == 165
    assert reg["timings_us"]["count"] == 50
    _strict_json(C.dumps_json(r))


def test_parse_op_profile_other_layouts():
    """The older layout with a [start] column (tensorflow/lite/tools/benchmark README), and LiteRT's
    space-aligned summarizer with delegate op types holding spaces, behind logcat prefixes."""
    old = (
        "Operator-wise Profiling Info for Regular Benchmark Runs:\n"
        "============================== Run Order ==============================\n"
        "\t             [node type]\t  [start]\t  [first]\t [avg ms]\t     [%]\t  [cdf%]\t  [mem KB]\t[times called]\t[Name]\n"
        "\t                 CONV_2D\t    0.000\t    0.310\t    0.301\t 60.000%\t 60.000%\t     0.000\t        1\t[conv_a]:0\n"
        "\t                    MEAN\t    0.302\t    0.205\t    0.200\t 40.000%\t100.000%\t     0.000\t        1\t[pool]:1\n"
        "\n"
    )
    p = BL.parse_op_profile(old)["regular_runs"]["run_order"]
    assert p[1] == {"node_type": "MEAN", "start_ms": 0.302, "first_ms": 0.205, "avg_ms": 0.2, "pct": 40.0,
                    "cdf_pct": 100.0, "mem_kb": 0.0, "times_called": 1, "name": "[pool]:1"}  # fmt: skip
    pre = "07-08 15:33:34.101 I/tflite  ( 5395): "
    litert = "\n".join(
        pre + ln
        for ln in [
            "Operator-wise Profiling Info for Regular Benchmark Runs:",
            "============================== Run Order ==============================",
            "                   [node type]    [first]   [avg ms]        [%]     [cdf%]   [mem KB] [times called]     [Name]",
            "                      QUANTIZE      0.199      0.203     1.328%     1.328%      0.000          1 [tfl.quantize]:0",
            " Convolution (NHWC, QC8) IGEMM      0.398      0.407     2.658%     3.986%      0.000          1 Delegate/Convolution (NHWC, QC8) IGEMM:0",
            "",
            "Delegate Statistics:",
            "Op Name                                                                     Count    Avg(us)    Min(us)    Max(us)  Total(us)",
            "Delegate/Convolution (NHWC, QC8) IGEMM                                         50     407.10        398        431      20355",
        ]
    )  # fmt: skip
    reg = BL.parse_op_profile(litert)["regular_runs"]
    conv = reg["run_order"][1]
    assert conv["node_type"] == "Convolution (NHWC, QC8) IGEMM" and conv["avg_ms"] == pytest.approx(0.407)
    assert conv["name"] == "Delegate/Convolution (NHWC, QC8) IGEMM:0"
    assert reg["delegate_statistics"] == [{"name": "Delegate/Convolution (NHWC, QC8) IGEMM", "count": 50,
                                           "avg_us": 407.1, "min_us": 398, "max_us": 431, "total_us": 20355}]  # fmt: skip


def test_parse_benchmark_model_old_peak_memory_line():
    r = BL.parse_benchmark_log((LOGS / "benchmark_model_old_peak_memory.log").read_text())
    assert r["error"] is None and r["source_format"] == "benchmark_model"
    assert r["settings"] == {"batch": 1, "threads": 1, "xnnpack": True}
    assert r["warmup"] == 812 and r["runs"] == 1651 and r["latency_ms"]["p50"] is None
    assert r["latency_ms"]["mean"] == pytest.approx(0.60183) and r["first_inference_ms"] == pytest.approx(
        1.387
    )
    assert r["rss_delta_mb"] == pytest.approx(3.01953) and r["init_rss_delta_mb"] == pytest.approx(2.32812)
    assert r["peak_rss_mb"] is None and "peak-RSS increase" in r["rss_method"]


def test_parse_litert_benchmark_captured_logs():
    """Real output of litert-benchmark (ai-edge-litert's tool), captured on this machine."""
    r = BL.parse_benchmark_log((LOGS / "litert_benchmark_student_int8.log").read_text())
    assert r["source_format"] == "litert-benchmark" and r["error"] is None, r["error"]
    assert r["name"] == "student-watch-k9.int8.tflite" and r["runtime"] == "litert-benchmark"
    assert r["warmup"] == 20 and r["runs"] == 200
    assert r["settings"] == {"batch": 1, "threads": 1, "accelerators": ["CPU"], "fully_accelerated": True,
                             "xnnpack": True}  # fmt: skip
    lat = r["latency_ms"]
    assert (
        lat["p50"] == pytest.approx(0.09)
        and lat["mean"] == pytest.approx(0.11)
        and lat["max"] == pytest.approx(4.19)
    )
    assert lat["p5"] == pytest.approx(0.09) and lat["p95"] == pytest.approx(0.10) and lat["p99"] is None
    assert r["load_ms"] == pytest.approx(3.05) and r["first_inference_ms"] == pytest.approx(0.22)
    assert r["model_size_mib"] == pytest.approx(0.23) and r["warnings"]  # NPU / plugin warnings kept
    stdout_only = BL.parse_benchmark_log((LOGS / "litert_benchmark_teacher_int8_stdout.log").read_text())
    assert stdout_only["error"] is None and stdout_only["name"] == "litert-benchmark"
    assert stdout_only["runs"] == 30 and stdout_only["latency_ms"]["mean"] == pytest.approx(1.65)
    j = BL.parse_benchmark_log((LOGS / "litert_benchmark_student_int8.result.json").read_text())
    assert j["source_format"] == "litert-benchmark --result_json" and j["error"] is None
    assert j["runs"] == 50 and j["warmup"] == 5 and j["settings"]["threads"] == 1
    assert j["latency_ms"]["p50"] == pytest.approx(0.09) and j["load_ms"] == pytest.approx(4.34)
    missing = BL.parse_benchmark_log((LOGS / "litert_benchmark_missing_model.log").read_text())
    assert "Model file not found" in missing["error"] and missing["latency_ms"]["mean"] is None
    text = (LOGS / "litert_benchmark_student_int8.log").read_text()
    assert "truncated" in BL.parse_benchmark_log(text.split("BENCHMARK RESULTS")[0])["error"]
    for res in (r, stdout_only, j, missing):
        _strict_json(C.dumps_json(res))
    with pytest.raises(DataFormatError):
        BL.parse_benchmark_log("hello\n")


def test_device_runner_parse_cli(tmp_path, capsys):
    expect = {
        "benchmark_model_op_profiling.log": 0,
        "benchmark_model_old_peak_memory.log": 0,
        "litert_benchmark_student_int8.log": 0,
        "litert_benchmark_teacher_int8_stdout.log": 0,
        "litert_benchmark_student_int8.result.json": 0,
        "litert_benchmark_missing_model.log": DEV.EXIT_FAILED,
    }
    for name, rc in expect.items():
        out = tmp_path / f"{name}.json"
        assert DEV.main(["--parse-benchmark-model", str(LOGS / name), "--out", str(out)]) == rc, name
        captured = capsys.readouterr()
        r = _strict_json(captured.out)
        assert r == _strict_json(out.read_text()) and r["schema"] == C.BENCH_SCHEMA
        assert (r["error"] is None) == (rc == 0)
        if rc:
            assert _one_line(captured.err).startswith("FAILED:")
    log = tmp_path / "bm.log"
    log.write_text(BENCHMARK_MODEL_STDOUT)
    p = _run("--parse-benchmark-model", str(log))
    assert p.returncode == 0, p.stderr
    assert _strict_json(p.stdout)["latency_ms"]["p50"] == pytest.approx(0.419)


# --------------------------------------------------------------------------------------------------
# MCU cost model
# --------------------------------------------------------------------------------------------------


def test_mcu_model_monotonic_and_labelled():
    _deps("torch")
    base = M.model_cost("student-watch")
    more = M.ModelCost(**{**base.__dict__, "macs": base.macs * 2})
    for key in ("nrf52840", "nrf5340", "stm32h7"):
        a, b = M.mcu_estimate(base, key), M.mcu_estimate(more, key)
        assert b.latency_ms > a.latency_ms > 0 and b.energy_uj > a.energy_uj > 0
        assert a.label == "estimate"
    fast = M.mcu_estimate(base, "stm32h7")
    slow = M.mcu_estimate(base, "nrf52840")
    assert slow.latency_ms > fast.latency_ms
    bigger = M.ModelCost(**{**base.__dict__, "int8_weight_bytes": base.int8_weight_bytes + 10_000})
    assert M.mcu_estimate(bigger, "nrf52840").flash_bytes == slow.flash_bytes + 10_000
    with pytest.raises(KeyError, match="unknown MCU"):
        M.mcu_estimate(base, "z80")


def test_mcu_watch_tier_verdicts():
    _deps("torch")
    student = M.mcu_estimate("student-watch-slim", "nrf52840")
    assert student.fits_watch_tier and student.fits_flash and student.fits_ram
    # the k9 student: in the watch tier on every limit but TFLM's arena (estimated, then measured)
    k9 = M.mcu_estimate("student-watch-k9", "nrf52840")
    assert [v.split(" ")[0:2] for v in k9.watch_tier] == [["TFLM", "arena"]]
    # an emulated core's measured instruction count replaces the MACs/cycle assumption for that core only
    slim_m4 = M.mcu_estimate("student-watch-slim", "nrf52840", measured_instructions={"cortex-m4": 20_000_000})
    assert slim_m4.latency_ms == pytest.approx(20e6 * sum(M.CPI_RANGE) / 2 / 64e3) and "qemu cortex-m4" in slim_m4.latency_basis
    slim_m7 = M.mcu_estimate("student-watch-slim", "stm32h7", measured_instructions={"cortex-m4": 20_000_000})
    assert slim_m7.latency_basis.startswith("assumption") and slim_m7.latency_ms == M.mcu_estimate("student-watch-slim", "stm32h7").latency_ms
    k9m = M.mcu_estimate("student-watch-k9", "nrf52840", measured_arena_bytes=80_576)
    assert k9m.arena_bytes == 80_576 and "TFLM arena (measured) 80,576 > 65,536" in k9m.watch_tier
    teacher = M.mcu_estimate("anyppg-released", "nrf52840")
    assert not teacher.fits_watch_tier and not teacher.fits_flash
    assert any("arena" in v for v in teacher.watch_tier) and any("MACs" in v for v in teacher.watch_tier)
    md = M.mcu_markdown(["student-watch-slim", "anyppg-released"], include_optional=True,
                        measured_file_bytes={"student-watch-slim": 150_000},
                        measured_arena_bytes={"student-watch-slim": 62_256})  # fmt: skip
    assert "Estimates, not measurements" in md and "(est.)" in md and "assumption" in md
    assert "Ethos-U55" in md and "int8 .tflite kB (measured)" in md and "arena kB (TFLM measured)" in md
    assert md.count("| student-watch-slim |") == len(M.MCU_CLASSES) and "| 62.3 |" in md


# --------------------------------------------------------------------------------------------------
# emulated aarch64 (optional, slow: downloads ~250 MB into runs/arm64 on first use)
# --------------------------------------------------------------------------------------------------


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
def test_device_runner_under_emulated_aarch64(artifacts, windows, tmp_path):
    """The device runner and both artifact kinds work on aarch64 (qemu-user, Cortex-A72) and give
    the x86 embeddings (cosine >= 0.9999). A correctness check: emulated timings mean nothing."""
    import os

    script = ROOT / "export" / "setup_qemu_arm64.sh"
    cache = os.environ.get("ANYPPG_ARM64_CACHE", str(ROOT / "runs" / "arm64"))
    setup = subprocess.run(["bash", str(script), cache], capture_output=True, text=True, timeout=1800)
    if setup.returncode != 0:
        msg = f"emulated aarch64 setup failed (network? apt?): {setup.stderr[-1500:]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    prefix = subprocess.run(
        ["bash", str(script), "--print-run-prefix", cache], capture_output=True, text=True, check=True
    ).stdout.split()
    wpath = tmp_path / "w.npy"
    np.save(wpath, windows[:6])
    for kind in ("tflite", "onnx"):
        z_arm, z_x86 = tmp_path / f"{kind}_arm.npy", tmp_path / f"{kind}_x86.npy"
        # on x86, onnxruntime runs S8S8 QDQ convs in float unless qdqisint8allowed (ARM runs them int8)
        extra = ["--ort-int8-allowed"] if kind == "onnx" else []
        args = [str(RUNNER), str(artifacts[kind]), "--embed", str(wpath), *extra]
        arm = subprocess.run(
            [*prefix, *args, "--save", str(z_arm)], cwd=ROOT, capture_output=True, text=True, timeout=900
        )
        assert arm.returncode == 0, arm.stderr[-2000:]
        x86 = subprocess.run(
            [sys.executable, *args, "--save", str(z_x86)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert x86.returncode == 0, x86.stderr[-2000:]
        a, b = np.load(z_arm), np.load(z_x86)
        assert a.shape == b.shape == (6, 64)
        assert _cos(a, b).min() >= 0.9999, (kind, _cos(a, b).min())
    timed = subprocess.run(
        [*prefix, str(RUNNER), str(artifacts["tflite"]), "--runs", "3", "--warmup", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert timed.returncode == 0, timed.stderr[-2000:]
    r = _strict_json(timed.stdout)
    assert r["environment"]["machine"] == "aarch64" and r["error"] is None
    bad = subprocess.run([*prefix, str(RUNNER), str(artifacts["tflite"]), "--window-samples", "1000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert bad.returncode == DEV.EXIT_CONTRACT
