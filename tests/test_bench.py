"""Latency benchmark (issue 7): bench library and CLI report, the portable device runner, the
``benchmark_model`` parser and the MCU cost model.

Functional checks only: nothing here asserts a speed (timings belong to the benchmark itself, not
to tests). Artifacts are made from the ``tiny`` registry config (seeded random init, PTQ on the
committed calibration windows): one int8 TFLite with int8 I/O (exercises the runner's own
(de)quantization) and one float ONNX.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("ai_edge_litert")
pytest.importorskip("tensorflow")
pytest.importorskip("brevitas")

from anyppg_edge.contract import InputContract  # noqa: E402
from anyppg_edge.deploy.bench import latency as B  # noqa: E402
from anyppg_edge.deploy.bench import mcu as M  # noqa: E402
from anyppg_edge.deploy.calibration import load_default_calibration_set  # noqa: E402
from anyppg_edge.models import create_model  # noqa: E402
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "export" / "device_runner.py"
sys.path.insert(0, str(RUNNER.parent))
import device_runner as DR  # noqa: E402

SHA = "0" * 64
ENV_KEYS = {"cpu_model", "cpu_flags", "cores", "os", "python", "packages", "machine", "thread_env", "loadavg"}


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return load_default_calibration_set().windows[:16].astype(np.float32)


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("tiny").eval()


@pytest.fixture(scope="module")
def artifacts(tiny, windows, tmp_path_factory) -> dict[str, Path]:
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


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _check_stats(lat: dict) -> None:
    vals = [lat[k] for k in ("p50", "p90", "p99", "mean", "min")]
    assert all(math.isfinite(v) and v > 0 for v in vals), lat
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]


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
        assert r["schema"] == B.BENCH_SCHEMA and r["isolated"]
        _check_stats(r["latency_ms"])
        assert len(r["samples_ms"]) == 12 and r["runs"] == 12 and r["warmup"] == 2
        assert r["load_ms"] > 0 and r["first_inference_ms"] > 0
        assert r["peak_rss_mb"] > 0 and r["rss_delta_mb"] is not None
        assert r["settings"]["threads"] == 1 and r["settings"]["batch"] == 1
        assert ENV_KEYS <= set(r["environment"]) and r["environment"]["packages"]["numpy"]
        assert r["macs"] and r["params"] == 25784  # tiny, from the registry or the module
        assert r["fp32_floor_ms"] == pytest.approx(B.fp32_floor_ms(r["macs"], r["peak_flops_one_core"]))
    assert res[0]["settings"]["xnnpack"] and not res[1]["settings"]["xnnpack"]
    assert res[0]["file_bytes"] == artifacts["tflite"].stat().st_size

    paths = B.write_bench_report(res, tmp_path / "rep")
    assert set(paths) == {"json", "csv", "md", "png"} and all(p.is_file() for p in paths.values())
    doc = json.loads(paths["json"].read_text())
    assert doc["baseline"] == "tiny (PyTorch eager)" and len(doc["results"]) == 4
    md = paths["md"].read_text()
    assert "| artifact |" in md and "× vs tiny (PyTorch eager)" in md and "fp32 floor" in md
    assert "1.00×" in md  # the baseline row
    assert paths["csv"].read_text().count("\n") == 5
    name, ups = B.speedups(res, "tiny.float.onnx")
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
    md = B.bench_markdown(res)
    assert "Failed" in md and "other_band.onnx" in md
    odd = tmp_path / "model.pt"
    odd.write_bytes(b"")
    with pytest.raises(ValueError, match=r"\.tflite or \.onnx"):
        B.bench_artifacts([odd], windows, measure_flops=False)


def test_latency_stats_and_floor():
    s = B.latency_stats([3.0, 1.0, 2.0, 4.0, 100.0])
    assert s["p50"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["p50"] <= s["p90"] <= s["p99"]
    assert all(math.isnan(v) for v in B.latency_stats([]).values())
    assert B.fp32_floor_ms(1e6, 2e9) == pytest.approx(1.0)  # 2 MFLOP at 2 GFLOP/s = 1 ms
    with pytest.raises(ValueError):
        B.fp32_floor_ms(1e6, 0)
    g = B.gemm_flops_one_core(n=256, repeats=2, isolate=False)
    assert g["flops"] > 0 and g["flops"] == max(g["per_backend"].values())


def test_runner_twins_match_bench():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, 500)
    assert DR.latency_stats(x) == B.latency_stats(x)
    e1, e2 = DR.environment(), B.environment()
    assert set(e1) == set(e2)
    assert {k: e1[k] for k in e1 if k != "loadavg"} == {k: e2[k] for k in e2 if k != "loadavg"}


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
        r = json.loads(p.stdout)
        assert r == json.loads(out.read_text())
        assert r["schema"] == B.BENCH_SCHEMA and r["error"] is None and r["contract_check"] == "ok"
        assert r["model_name"] == "tiny" and r["n_windows"] == 6 and len(r["samples_ms"]) == 15
        _check_stats(r["latency_ms"])
        assert ENV_KEYS <= set(r["environment"])
        assert bench_keys <= set(r) | {"peak_flops_method"}, bench_keys - set(r)
    assert r["runtime"] == "onnxruntime"


def test_device_runner_refuses_mismatching_contract(artifacts, tmp_path):
    from anyppg_edge.deploy.export.onnx import write_onnx_contract

    ok = _run(str(artifacts["tflite"]), "--check-only")
    assert ok.returncode == 0 and "OK:" in ok.stderr
    p = _run(str(artifacts["tflite"]), "--window-samples", "1000")
    assert p.returncode == DR.EXIT_CONTRACT and "CONTRACT MISMATCH" in p.stderr and "1250" in p.stderr
    assert p.stdout == ""
    # --config: every field must match; the default chain matches, another band does not
    ok_cfg, bad_cfg = tmp_path / "ok.json", tmp_path / "bad.json"
    ok_cfg.write_text(DEFAULT_CONFIG.to_json())
    bad_cfg.write_text(PreprocessConfig(ppg_band_hz=(0.5, 4.0)).to_json())
    assert (
        _run(str(artifacts["onnx"]), "--config", str(ok_cfg), "--runs", "2", "--warmup", "1").returncode == 0
    )
    p = _run(str(artifacts["onnx"]), "--config", str(bad_cfg))
    assert p.returncode == DR.EXIT_CONTRACT and "ppg_band_hz" in p.stderr
    # another sample rate written into the artifact's contract
    other = tmp_path / "100hz.onnx"
    shutil.copy(artifacts["onnx"], other)
    cfg100 = PreprocessConfig(target_sample_rate_hz=100)
    write_onnx_contract(other, InputContract.for_model("tiny", "onnx-float", 64, SHA, cfg=cfg100))
    p = _run(str(other))
    assert p.returncode == DR.EXIT_CONTRACT and "100 Hz" in p.stderr
    # no contract at all: refused unless allowed
    import onnx

    bare = tmp_path / "bare.onnx"
    m = onnx.load_model(str(artifacts["onnx"]))
    del m.metadata_props[:]
    onnx.save_model(m, str(bare))
    p = _run(str(bare))
    assert p.returncode == DR.EXIT_CONTRACT and "no anyppg-edge input contract" in p.stderr
    p = _run(str(bare), "--allow-missing-contract", "--runs", "2", "--warmup", "1")
    assert p.returncode == 0, p.stderr
    assert "no contract" in json.loads(p.stdout)["contract_check"]


def test_device_runner_embeddings_equal_tflite_encoder(artifacts, windows, tmp_path):
    from anyppg_edge.deploy.runtime import TFLiteEncoder

    wpath, zpath = tmp_path / "w.npy", tmp_path / "z.npy"
    np.save(wpath, windows)
    p = _run(str(artifacts["tflite"]), "--embed", str(wpath), "--save", str(zpath))
    assert p.returncode == 0, p.stderr
    z = np.load(zpath)
    enc = TFLiteEncoder(artifacts["tflite"])
    assert enc.input_quant is not None  # int8 I/O: the runner's own (de)quantization is exercised
    np.testing.assert_array_equal(z, enc.embed(windows))


def test_device_runner_imports_no_toolkit(artifacts):
    code = (
        "import sys; sys.path.insert(0, 'export'); import device_runner as d; "
        f"rc = d.main([{str(artifacts['tflite'])!r}, '--runs', '2', '--warmup', '1']); "
        "bad = [m for m in ('anyppg_edge', 'torch', 'tensorflow', 'tensorflow_lite_support') if m in sys.modules]; "
        "print('BAD', bad, file=sys.stderr); sys.exit(rc or (3 if bad else 0))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]


# --------------------------------------------------------------------------------------------------
# benchmark_model output
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
    r = DR.parse_benchmark_model(BENCHMARK_MODEL_STDOUT)
    assert r["schema"] == B.BENCH_SCHEMA and r["error"] is None and r["warnings"] == []
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
    bench_keys = {"schema", "name", "artifact", "file_bytes", "settings", "latency_ms", "samples_ms", "load_ms",
                  "first_inference_ms", "peak_rss_mb", "rss_delta_mb", "environment", "error", "runtime"}  # fmt: skip
    assert bench_keys <= set(r)


def test_parse_benchmark_model_logcat_and_failure():
    r = DR.parse_benchmark_model(BENCHMARK_MODEL_LOGCAT)
    assert r["error"] is None and r["name"] == "anyppg-released.int8.tflite"
    assert r["settings"]["threads"] == 4 and r["settings"]["xnnpack"] is False
    assert r["warmup"] == 1 and r["runs"] == 50
    assert r["latency_ms"]["mean"] == pytest.approx(40.213) and r["latency_ms"]["p50"] is None
    assert r["first_inference_ms"] == pytest.approx(41.23) and r["peak_rss_mb"] is None
    assert r["rss_delta_mb"] == pytest.approx(12.5)
    fail = DR.parse_benchmark_model(
        "INFO: Created TensorFlow Lite delegate for GPU.\n"
        "ERROR: Following operations are not supported by GPU delegate:\nBenchmarking failed.\n"
    )
    assert fail["error"] and "GPU delegate" in fail["error"]
    assert (
        "truncated"
        in DR.parse_benchmark_model(BENCHMARK_MODEL_STDOUT.split("INFO: Inference timings")[0])["error"]
    )


def test_device_runner_parse_cli(tmp_path):
    log = tmp_path / "bm.log"
    log.write_text(BENCHMARK_MODEL_STDOUT)
    p = _run("--parse-benchmark-model", str(log))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["latency_ms"]["p50"] == pytest.approx(0.419)


# --------------------------------------------------------------------------------------------------
# MCU cost model
# --------------------------------------------------------------------------------------------------


def test_mcu_model_monotonic_and_labelled():
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
    student = M.mcu_estimate("student-watch", "nrf52840")
    assert student.fits_watch_tier and student.fits_flash and student.fits_ram
    teacher = M.mcu_estimate("anyppg-released", "nrf52840")
    assert not teacher.fits_watch_tier and not teacher.fits_flash
    assert any("arena" in v for v in teacher.watch_tier) and any("MACs" in v for v in teacher.watch_tier)
    md = M.mcu_markdown(["student-watch", "anyppg-released"], include_optional=True,
                        measured_file_bytes={"student-watch": 272_097})  # fmt: skip
    assert "Estimates, not measurements" in md and "(est.)" in md and "assumption" in md
    assert "Ethos-U55" in md and "int8 .tflite kB (measured)" in md
    assert md.count("| student-watch |") == len(M.MCU_CLASSES)


# --------------------------------------------------------------------------------------------------
# emulated aarch64 (optional, slow: downloads ~250 MB into runs/arm64 on first use)
# --------------------------------------------------------------------------------------------------


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
def test_device_runner_under_emulated_aarch64(artifacts, windows, tmp_path):
    """The portable runner and both artifact kinds work on aarch64 (qemu-user, Cortex-A72) and give
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
    r = json.loads(timed.stdout)
    assert r["environment"]["machine"] == "aarch64" and r["error"] is None
    bad = subprocess.run([*prefix, str(RUNNER), str(artifacts["tflite"]), "--window-samples", "1000"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert bad.returncode == DR.EXIT_CONTRACT
