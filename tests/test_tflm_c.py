"""Firmware-ready TFLM output (issue 17, item 4): ``python -m export tflm MODEL.tflite --out DIR``.

A tiny Net1D is exported three ways (int8 with int8 I/O, int8 with float I/O, float); for each, the
generated project must hold the .tflite byte for byte, the arena TFLM measured, exactly the model's
ops, I/O constants equal to the model's own, and compile with ``g++ -Wall -Wextra -Werror`` against
stub TFLM headers (tests/fixtures/tflm_stub) that mirror the real API, so that it cannot rot."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from anyppg_edge.cli import main as cli_main  # noqa: E402
from anyppg_edge.cli._common import EXIT_USER_ERROR  # noqa: E402
from anyppg_edge.contract import InputContract  # noqa: E402
from anyppg_edge.deploy.contract_io import count_zip_archives, read_contract  # noqa: E402
from anyppg_edge.deploy.export.tflm_c import (  # noqa: E402
    FILES,
    TFLM_RESOLVER_METHODS,
    resolver_method,
    symbol_for,
    write_tflm_project,
)
from anyppg_edge.deploy.tflm import measure_arena, op_requirements  # noqa: E402
from anyppg_edge.errors import ContractMismatchError, UnknownNameError  # noqa: E402

STUB = Path(__file__).parent / "fixtures" / "tflm_stub"
KINDS = ("int8-io", "float-io", "float")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """A two-stage Net1D (16/32 channels, seeded) as int8 TFLite with int8 I/O, int8 with float I/O
    (QUANTIZE/DEQUANTIZE inside) and float TFLite, each with its input contract."""
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.quantize import build_deploy_model, quantize_ptq
    from anyppg_edge.models.net1d import Net1D, Net1DConfig

    torch.manual_seed(0)
    model = Net1D(Net1DConfig(base_filters=16, filter_list=(16, 32), m_blocks_list=(1, 1)), name="tflm-c-test").eval()
    windows = np.random.default_rng(0).standard_normal((16, 1, 1250)).astype(np.float32)
    ptq = quantize_ptq(model, [windows[:8], windows[8:]])
    d = tmp_path_factory.mktemp("tflm_artifacts")

    def contract(kind: str) -> InputContract:
        return InputContract.for_model("tflm-c test.v1", kind, 32, "ab" * 32)

    return {
        "int8-io": export_tflite(ptq, d / "tiny.int8io.int8.tflite", contract("tflite-int8"), int8_io=True),
        "float-io": export_tflite(ptq, d / "tiny.int8.tflite", contract("tflite-int8"), int8_io=False),
        "float": export_tflite(build_deploy_model(model), d / "tiny.float.tflite", contract("tflite-float")),
    }


@pytest.fixture(scope="module")
def projects(artifacts, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    out = tmp_path_factory.mktemp("tflm_projects")
    return {k: (write_tflm_project(p, out / k), out / k) for k, p in artifacts.items()}


@pytest.fixture(scope="session")
def gxx() -> str:
    from prerequisites import require

    exe = shutil.which("g++")
    require(exe, "g++ not found: the generated C++ cannot be compiled")
    return exe


def _syntax_check(gxx: str, folder: Path, sources: list[Path]) -> subprocess.CompletedProcess:
    cmd = [gxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-I", str(STUB), "-I", str(folder)]
    return subprocess.run([*cmd, *map(str, sources)], capture_output=True, text=True, timeout=120)


def _constant(text: str, name: str) -> str:
    m = re.search(rf"\b{name} = ([^;]+);", text)
    assert m, f"{name} not found"
    return m[1].strip()


# ------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("kind", KINDS)
def test_writes_every_file_and_reports_them(projects, kind):
    report, out = projects[kind]
    assert sorted(Path(f).name for f in report["files"]) == sorted(FILES)
    assert all((out / f).is_file() and (out / f).stat().st_size > 0 for f in FILES)
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("kind", KINDS)
def test_model_bytes_round_trip_exactly(artifacts, projects, kind):
    report, out = projects[kind]
    sym = report["symbol"]
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", sym) and "__" not in sym
    cc = (out / "model_data.cc").read_text()
    m = re.search(rf"alignas\(16\) const unsigned char {sym}\[\] = \{{\n(.*?)\n\}};", cc, re.S)
    assert m, "aligned array definition not found"
    rows = m[1].splitlines()
    assert all(len(re.findall(r"0x[0-9a-f]{2}", r)) == 12 for r in rows[:-1]) and 1 <= len(rows[-1].split(",")) - 1 <= 12
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", m[1]))
    assert data == artifacts[kind].read_bytes()
    assert int(_constant(cc, f"const unsigned int {sym}_len")) == len(data)
    h = (out / "model_data.h").read_text()
    assert f"extern const unsigned char {sym}[];" in h and f"extern const unsigned int {sym}_len;" in h


@pytest.mark.parametrize("kind", KINDS)
def test_arena_constant_is_the_measured_minimum(artifacts, projects, kind):
    report, out = projects[kind]
    arena = measure_arena(artifacts[kind])
    cfg = (out / "model_config.h").read_text()
    assert int(_constant(cfg, "constexpr size_t kAnyppgArenaBytes")) == arena.min_arena_bytes
    assert f"head {arena.head_bytes} B" in cfg and f"tail {arena.tail_bytes} B" in cfg
    assert f"about {arena.mcu32_bytes} B" in cfg
    assert report["arena"]["min_arena_bytes"] == arena.min_arena_bytes
    assert f"{arena.min_arena_bytes:,} B" in (out / "README.md").read_text()


@pytest.mark.parametrize("kind", KINDS)
def test_op_registration_is_exactly_the_models_ops(artifacts, projects, kind):
    report, out = projects[kind]
    ops_h = (out / "model_ops.h").read_text()
    called = re.findall(r"resolver\.(Add\w+)\(\);", ops_h)
    by_method = {v: k for k, v in TFLM_RESOLVER_METHODS.items()}
    req = op_requirements(artifacts[kind])
    assert sorted(by_method[m] for m in called) == sorted(req.ops)
    assert len(called) == len(set(called))  # each op once: a second Add* would fail at run time
    assert int(_constant(ops_h, "constexpr int kAnyppgOpCount")) == len(req.ops)
    assert "inline TfLiteStatus AnyppgRegisterOps(tflite::MicroMutableOpResolver<kAnyppgOpCount>& resolver)" in ops_h
    assert report["ops"] == {k: TFLM_RESOLVER_METHODS[k] for k in req.ops}
    assert ("QUANTIZE" in req.ops) == (kind == "float-io")


@pytest.mark.parametrize("kind", KINDS)
def test_io_constants_and_contract_header_come_from_the_model(artifacts, projects, kind):
    _, out = projects[kind]
    c = read_contract(artifacts[kind])
    cfg = (out / "model_config.h").read_text()
    assert int(_constant(cfg, "constexpr int kAnyppgInputLength")) == c.window_samples == 1250
    assert int(_constant(cfg, "constexpr int kAnyppgEmbeddingDim")) == c.embedding_dim == 32
    assert int(_constant(cfg, "constexpr int kAnyppgSampleRateHz")) == c.sample_rate_hz
    for what, q in (("Input", c.input_quant), ("Output", c.output_quant)):
        assert _constant(cfg, f"constexpr bool kAnyppg{what}IsInt8") == ("true" if kind == "int8-io" else "false")
        if kind == "int8-io":  # the C literal is the model's float32 scale exactly
            assert np.float32(_constant(cfg, f"constexpr float kAnyppg{what}Scale").rstrip("f")) == np.float32(q.scale)
            assert int(_constant(cfg, f"constexpr int32_t kAnyppg{what}ZeroPoint")) == q.zero_point
    assert ("QUANTIZEs its input" in cfg) == (kind == "float-io")
    if kind == "float-io":  # the int8 quantization inside: the same model exported with int8 I/O has it at its I/O
        io8 = read_contract(artifacts["int8-io"])
        for what, q in (("Input", io8.input_quant), ("Output", io8.output_quant)):
            assert np.float32(_constant(cfg, f"constexpr float kAnyppgModel{what}Scale").rstrip("f")) == np.float32(q.scale)
            assert int(_constant(cfg, f"constexpr int32_t kAnyppgModel{what}ZeroPoint")) == q.zero_point
    flat = " ".join(line.removeprefix("//").strip() for line in cfg.splitlines() if line.startswith("//"))
    for text in (c.model_name, f"{c.sample_rate_hz} Hz", f"{c.window_s:g} s = {c.window_samples} samples", c.filter,
                 c.normalization, c.source_checkpoint_sha256, c.preprocess_config_hash, "tflite-micro checked",
                 "grouped CONV_2D", "CONV_2D(", "min runtime version"):
        assert text in flat, text
    readme = (out / "README.md").read_text()
    assert c.filter in readme and c.normalization in readme and "kAnyppgArenaBytes" in readme


# ---------------------------------------------------------------------------------------- compile


@pytest.mark.parametrize("kind", KINDS)
def test_generated_cpp_compiles_against_the_tflm_api(projects, gxx, kind):
    _, out = projects[kind]
    r = _syntax_check(gxx, out, [out / "main.cc", out / "model_data.cc"])
    assert r.returncode == 0, r.stderr[-4000:]


def test_stub_catches_a_wrong_resolver_method(projects, gxx, tmp_path):
    """The compile check can fail: a method TFLM does not have is an error against the stubs."""
    _, out = projects["int8-io"]
    bad = tmp_path / "model_ops.h"
    bad.write_text((out / "model_ops.h").read_text().replace("resolver.AddConv2D()", "resolver.AddConv1D()", 1))
    shutil.copy(out / "main.cc", tmp_path / "main.cc")
    for f in ("model_data.h", "model_config.h"):
        shutil.copy(out / f, tmp_path / f)
    r = _syntax_check(gxx, tmp_path, [tmp_path / "main.cc"])
    assert r.returncode != 0 and "AddConv1D" in r.stderr


def test_stub_resolver_declares_every_method_of_the_table():
    header = (STUB / "tensorflow/lite/micro/micro_mutable_op_resolver.h").read_text()
    declared = set(re.findall(r"TfLiteStatus (Add\w+)\(", header))
    assert set(TFLM_RESOLVER_METHODS.values()) <= declared, set(TFLM_RESOLVER_METHODS.values()) - declared
    assert len(set(TFLM_RESOLVER_METHODS.values())) == len(TFLM_RESOLVER_METHODS)


# ------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("op", ["CUSTOM:MyOp", "CONV_3D", "BUILTIN_999"])
def test_op_outside_the_table_is_refused_by_name(op):
    with pytest.raises(UnknownNameError, match=re.escape(repr(op))):
        resolver_method(op)
    assert resolver_method("CONV_2D") == "AddConv2D" and resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"


def test_symbol_is_a_c_identifier():
    assert symbol_for("student-watch-k9", "tflite-int8") == "g_student_watch_k9_int8_model_data"
    assert symbol_for("3x..Teacher  v2", "tflite-float") == "g_3x_teacher_v2_float_model_data"
    assert symbol_for("--", "tflite-int8") == "g_model_int8_model_data"


def test_file_without_contract_is_refused_with_the_fix(artifacts, tmp_path):
    buf = artifacts["int8-io"].read_bytes()
    bare = buf[: buf.find(b"PK\x03\x04")]  # the flatbuffer without its metadata zip
    assert count_zip_archives(bare) == 0 and bare[4:8] == b"TFL3"
    p = tmp_path / "bare.int8.tflite"
    p.write_bytes(bare)
    with pytest.raises(ContractMismatchError, match=r"no input contract.*python -m export all"):
        write_tflm_project(p, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- CLI


def test_cli_writes_the_project(artifacts, tmp_path, capsys):
    assert cli_main(["export", "tflm", str(artifacts["int8-io"]), "--out", str(tmp_path / "fw")]) == 0
    out = capsys.readouterr().out
    assert all(f"written: {tmp_path / 'fw' / f}" in out for f in FILES)
    assert "TFLM arena" in out and "head" in out and "32-bit MCU" in out


def test_cli_refuses_a_missing_file_with_one_line_and_exit_2(tmp_path, capsys):
    assert cli_main(["export", "tflm", str(tmp_path / "nowhere.tflite"), "--out", str(tmp_path / "fw")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "TFLite model not found" in err
