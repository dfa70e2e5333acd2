"""The GPU check (issue 21): ``gpu-check prepare`` builds the carry folder, ``gpu-check --device cpu
--tiny`` is the dry run of the command a GPU lease runs (every section, with torch, numpy and scipy
only), its golden sets go through ``export parity`` (the ``gpu-vs-cpu-float`` row for a GPU one),
and a section's failure or the time budget never costs the report.

Self-contained: simulated subjects and a tiny teacher saved here (no ``../shared``). ~30 s on CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anyppg_edge.cli import main
from anyppg_edge.deploy.parity.golden import (
    GoldenSet,
    golden_checksum,
    load_golden_set,
    load_golden_windows,
)
from anyppg_edge.deploy.parity.tolerances import GPU_REFERENCE_ROW, TOLERANCES
from anyppg_edge.errors import DataFormatError
from anyppg_edge.gpu_check import (
    JSON_NAME,
    MD_NAME,
    SECTIONS,
    TINY,
    GpuCheckConfig,
    device_call,
    load_carry,
    peak_tflops,
    run_gpu_check,
)

ROOT = Path(__file__).resolve().parents[1]
# What the device machine lacks or the check must not need: each is unimportable in the dry run.
BLOCKED = ("tqdm", "pandas", "neurokit2", "sklearn", "onnx", "onnxruntime", "onnxscript", "tensorflow", "brevitas",
           "matplotlib", "ai_edge_litert", "tflite_runtime", "tflite_support", "tflite_micro", "wfdb", "edfio",
           "tensorboard", "libusb_package")
# ``sys.modules[name] = None``: ``import name`` fails, ``importlib.util.find_spec(name)`` answers None
# (torch's own optional-dependency probes keep working, as on a machine without them).
_BLOCKER = """
import runpy, sys
BLOCKED = sys.argv[1].split(",")
for name in BLOCKED:
    sys.modules[name] = None
sys.argv = ["anyppg_edge", *sys.argv[2:]]
try:
    runpy.run_module("anyppg_edge", run_name="__main__", alter_sys=True)
finally:
    print("LOADED " + ",".join(n for n in BLOCKED if sys.modules.get(n) is not None), file=sys.stderr)
"""
EXPECTED_FILES = {JSON_NAME, MD_NAME, *(f"{m}.cpu.golden.{ext}" for m in ("tiny", "student-watch-slim", "student-watch-25hz")
                                         for ext in ("npz", "provenance.json"))}


@pytest.fixture(scope="module")
def carry(tmp_path_factory):
    """A carry folder of simulated subjects, the tiny teacher from a file, the seeded inits of the
    student and of the 25 Hz student."""
    import torch

    from anyppg_edge.models import create_model

    root = tmp_path_factory.mktemp("gpu_carry")
    torch.manual_seed(1)
    teacher = root / "tiny_teacher.state_dict.pt"
    torch.save(create_model("tiny").state_dict(), teacher)
    out = root / "carry"
    rc = main(["gpu-check", "prepare", "--out", str(out), "--no-shared", "--sim-subjects", "5", "--no-ecg-quality",
               "--hop-s", "5", "--teacher", str(teacher), "--teacher-model", "tiny", "--student", "none",
               "--native-student", "init", "--golden-n", "12"])
    assert rc == 0
    return out, teacher


@pytest.fixture(scope="module")
def dry_run(carry, tmp_path_factory):
    """The dry run, as the device runs it (``python -m anyppg_edge gpu-check``), with the optional
    dependencies unimportable."""
    out = tmp_path_factory.mktemp("gpu_check_out")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, "-c", _BLOCKER, ",".join(BLOCKED), "gpu-check", "--carry", str(carry[0]), "--out", str(out),
         "--device", "cpu", "--tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    return p, out


def test_prepare_writes_a_carry_folder_and_the_device_call(carry, capsys):
    out, teacher = carry
    c = load_carry(out)
    m = c.manifest
    assert m["teacher"]["model"] == "tiny" and m["teacher"]["file"] == f"checkpoints/teacher/{teacher.name}"
    assert (out / m["teacher"]["file"]).read_bytes() == teacher.read_bytes()
    assert m["student"] == {**m["student"], "model": "student-watch-slim", "file": None, "sha256": "random-init"}
    assert m["native_student"]["model"] == "student-watch-25hz" and c.roles == ["teacher", "student", "native_student"]
    assert m["shards"]["total"]["train_segments"] > 16 and (c.shards / "index.npz").is_file()
    x, ids, meta = load_golden_windows(c.golden_windows)
    assert x.shape == (12, 1250) and x.dtype == np.float32 and len(ids) == 12 and "held-out" in meta["description"]
    assert c.golden_windows_for("student") == c.golden_windows_for("teacher") == c.golden_windows
    # the 25 Hz student's windows: the same held-out windows, sampled like a 25 Hz sensor, in its contract
    x25, ids25, meta25 = load_golden_windows(c.golden_windows_for("native_student"))
    assert c.golden_windows_for("native_student").name == "golden_windows.native25hz.npz"
    assert x25.shape == (12, 250) and ids25 == ids and meta25["preprocess"]["target_sample_rate_hz"] == 25
    assert [w["sample_rate_hz"] for w in m["golden_windows_files"]] == [125, 25]
    assert m["size_bytes"] < 8 * 2**20
    call = device_call("runs/gpu_carry")
    assert call["carry"] == ["runs/gpu_carry"] and call["timeout_s"] <= 600
    for part in ("python3 -m anyppg_edge gpu-check", "--carry runs/gpu_carry", "--out $OUT", "--device cuda"):
        assert part in call["command"]
    # an existing carry folder is kept unless --force; a corrupted golden-windows file is refused
    assert main(["gpu-check", "prepare", "--out", str(out), "--no-shared", "--sim-subjects", "2"]) == 2
    assert "--force" in capsys.readouterr().err
    bad = out.parent / "bad_windows.npz"
    with np.load(c.golden_windows) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["windows"] = arrays["windows"] + np.float32(1e-3)
    np.savez(bad, **arrays)
    with pytest.raises(DataFormatError, match="checksum"):
        load_golden_windows(bad)


def test_prepare_refuses_a_student_at_the_other_rate(tmp_path, capsys):
    """The student reads the teacher's 125 Hz windows, the native student its sensor's: swapped, exit
    2 naming the flag, and nothing written."""
    base = ["gpu-check", "prepare", "--no-shared", "--sim-subjects", "1", "--student", "init"]
    assert main([*base, "--out", str(tmp_path / "a"), "--student-model", "student-watch-25hz"]) == 2
    assert "--native-student" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--native-student", "init",
                 "--native-student-model", "student-watch-slim"]) == 2
    assert "that is a --student" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_dry_run_runs_every_section_with_torch_numpy_scipy_only(dry_run):
    p, out = dry_run
    assert p.returncode == 0, p.stderr[-3000:] + p.stdout[-3000:]
    loaded = [line for line in p.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == ["LOADED "], p.stderr[-500:]  # none of the blocked modules came in
    r = json.loads((out / JSON_NAME).read_text())
    assert r["schema"] == "anyppg-edge/gpu-check/v1" and r["device"] == "cpu"
    assert r["section_order"] == list(SECTIONS) == sorted(r["sections"], key=SECTIONS.index)
    assert {k: v["status"] for k, v in r["sections"].items()} == dict.fromkeys(SECTIONS, "ok")
    assert r["complete"] and r["passed"] and all(c["pass"] for c in r["checks"]) and len(r["checks"]) == 5
    assert set(r["files"]) == EXPECTED_FILES == {f.name for f in out.iterdir()}
    assert sum(f.stat().st_size for f in out.iterdir()) < 2 * 2**20
    assert all(v["seconds"] >= 0 for v in r["sections"].values())
    res = {k: v["result"] for k, v in r["sections"].items()}

    env = res["environment"]
    assert env["torch"] and env["flags_at_start"]["cublas_workspace_config"] and env["matmul_probe"]["tflops"] > 0
    assert "not applicable" in env["channels_last"]

    tp = res["throughput"]
    assert [x["precision"] for x in tp["runs"]] == ["fp32", "tf32", "bf16 autocast"] and not tp["errors"]
    assert tp["flops"]["train_flops_per_sample"] == 6 * tp["flops"]["forward_macs_per_sample"] > 0
    for x in tp["runs"]:
        assert x["samples_per_s"] > 0 and x["step_ms"] > 0 and x["batch_size"] == 8 and x["tflops"] > 0
    assert tp["runs"][0]["tf32_cudnn"] is False and tp["runs"][1]["tf32_cudnn"] is True
    assert res["compile"]["backend"] == "eager" and res["compile"]["runs"][0]["compile"] == "eager"

    mb = res["max_batch"]
    assert mb["largest_fitting_batch"] == 32 and mb["limited_by"] == "cap"
    assert [t["batch_size"] for t in mb["trials"]] == [8, 16, 32]

    tr = res["train_run"]
    assert tr["steps"] == 40 and tr["losses_finite"] and tr["loss_fell"]
    assert tr["loss_last_mean"] < tr["loss_first_mean"] and len(tr["first_losses"]) == 10 and tr["val"]
    assert not tr["autocast"]  # the trainer autocasts on CUDA only

    tm = res["train_match"]
    assert tm["model"] == "tiny-do0" and tm["compared"] == "cpu vs cpu" and tm["tolerance_row"] == "train-gpu-vs-cpu-fp32"
    assert [s["step"] for s in tm["per_step"]] == [1, 2, 3]
    assert all(s["device_loss"] == s["cpu_loss"] and s["rel_err"] == 0 for s in tm["per_step"])  # bit-identical
    assert tm["device_flags"]["deterministic_algorithms"] and not tm["device_flags"]["tf32_cudnn"]

    gd = res["golden"]
    assert [(s["model"], s["sample_rate_hz"]) for s in gd["sets"]] == [
        ("tiny", 125), ("student-watch-slim", 125), ("student-watch-25hz", 25)]
    assert {k: v["windows"] for k, v in gd["window_files"].items()} == {
        "golden_windows.npz": 12, "golden_windows.native25hz.npz": 12}
    for s in gd["sets"]:
        assert s["vs_cpu"]["max_abs"] == 0 and s["tolerance_row"] == "float-vs-float" and s["pass"]
        g = load_golden_set(out / s["file"])  # the `export golden` format, checksum verified
        assert len(g) == 12 and g.device_type == "cpu" and g.provenance["context"]["gpu_check"]["role"] == s["role"]
        assert g.provenance["device"]["deterministic_algorithms"] and not g.provenance["device"]["tf32_cudnn"]
    md = (out / MD_NAME).read_text()
    for heading in ("## Checks", "## Environment", "## Pretraining throughput", "## Largest batch", "## Short real run",
                    "## First training steps", "## Golden sets", "## Sections"):
        assert heading in md


def _forge(g: GoldenSet, path: Path, device_type: str, scale: float = 1.0) -> Path:
    """``g`` re-labelled as made on ``device_type`` (embeddings scaled), checksum recomputed: what a
    GPU golden set of the same model and windows looks like to the parity suite."""
    prov = json.loads(json.dumps(g.provenance))
    prov["device"].update(type=device_type, name=f"forged {device_type} device (test)")
    emb = (g.embeddings * np.float32(scale)).astype(np.float32)
    prov["checksum_sha256"] = golden_checksum(g.windows, emb, g.window_ids.tolist(), prov)
    np.savez_compressed(path, windows=g.windows, embeddings=emb, window_ids=g.window_ids,
                        provenance=np.asarray(json.dumps(prov, sort_keys=True)))
    return path


def test_export_parity_takes_the_golden_sets(dry_run, carry, tmp_path, capsys):
    _, out = dry_run
    _, teacher = carry
    cpu_golden = out / "tiny.cpu.golden.npz"
    common = ["export", "parity", "--no-plot", "--model", "tiny"]
    # the dry run's golden set as the reference: the teacher on this CPU and the golden set itself
    assert main([*common, str(teacher), str(cpu_golden), "--golden", str(cpu_golden), "--out", str(tmp_path / "a")]) == 0
    rows = json.loads((tmp_path / "a" / "parity_report.json").read_text())["rows"]
    assert [(r["kind"], r["tolerance"], r["pass"]) for r in rows] == [
        ("pytorch-float", "float-vs-float", True), ("golden-float", "float-vs-float", True)]

    # a GPU golden set (forged label): the CPU float model and the CPU golden set go through gpu-vs-cpu-float
    gpu = _forge(load_golden_set(cpu_golden), tmp_path / "tiny.cuda.golden.npz", "cuda")
    capsys.readouterr()
    assert main([*common, str(teacher), str(cpu_golden), "--golden", str(gpu), "--out", str(tmp_path / "b")]) == 0
    assert "reference made on a GPU" in capsys.readouterr().out
    rows = json.loads((tmp_path / "b" / "parity_report.json").read_text())["rows"]
    assert [(r["tolerance"], r["pass"]) for r in rows] == [(GPU_REFERENCE_ROW, True)] * 2

    # 1e-3 relative off (10x the row's bound): exit 1, naming the row; also with the roles swapped
    bound = TOLERANCES[GPU_REFERENCE_ROW]["rel_max_abs_max"]
    off = _forge(load_golden_set(cpu_golden), tmp_path / "off.cuda.golden.npz", "cuda", scale=1 + 10 * bound)
    assert main([*common, str(cpu_golden), "--golden", str(off), "--out", str(tmp_path / "c")]) == 1
    assert "rel_max_abs" in capsys.readouterr().err and GPU_REFERENCE_ROW in (tmp_path / "c" / "parity_report.md").read_text()
    assert main([*common, str(off), "--golden", str(cpu_golden), "--out", str(tmp_path / "d")]) == 1
    rows = json.loads((tmp_path / "d" / "parity_report.json").read_text())["rows"]
    assert [(r["kind"], r["tolerance"], r["pass"]) for r in rows] == [("golden-float", GPU_REFERENCE_ROW, False)]

    # the 25 Hz student: its own windows and contract through the same rows
    cpu25 = out / "student-watch-25hz.cpu.golden.npz"
    gpu25 = _forge(load_golden_set(cpu25), tmp_path / "student-watch-25hz.cuda.golden.npz", "cuda")
    assert main(["export", "parity", "--no-plot", "--model", "student-watch-25hz", str(cpu25), "--golden", str(gpu25),
                 "--out", str(tmp_path / "n")]) == 0
    rows = json.loads((tmp_path / "n" / "parity_report.json").read_text())["rows"]
    assert [(r["kind"], r["tolerance"], r["pass"]) for r in rows] == [("golden-float", GPU_REFERENCE_ROW, True)]
    # ... and not against the 125 Hz student's windows
    capsys.readouterr()
    assert main(["export", "parity", "--no-plot", str(out / "student-watch-slim.cpu.golden.npz"), "--golden",
                 str(gpu25), "--out", str(tmp_path / "m")]) == 2

    # a golden set of other windows is not comparable: exit 2 naming the windows
    other = load_golden_set(cpu_golden)
    fewer = GoldenSet(other.windows[:6], other.embeddings[:6], other.window_ids[:6], dict(other.provenance))
    _forge(fewer, tmp_path / "fewer.npz", "cpu")
    capsys.readouterr()
    assert main([*common, str(tmp_path / "fewer.npz"), "--golden", str(gpu), "--out", str(tmp_path / "e")]) == 2
    assert "same windows" in capsys.readouterr().err


def _returned(dry_run_out: Path, dst: Path, device_type: str = "cuda", scale: dict[str, float] | None = None,
              skip: tuple[str, ...] = ()) -> Path:
    """What the device sends back, as a GPU would: the dry run's report and its golden sets relabelled
    (``scale``: per model, embeddings scaled; ``skip``: models whose golden set did not come back)."""
    dst.mkdir()
    (dst / JSON_NAME).write_bytes((dry_run_out / JSON_NAME).read_bytes())
    for f in dry_run_out.glob("*.cpu.golden.npz"):
        model = f.name.removesuffix(".cpu.golden.npz")
        if model not in skip:
            _forge(load_golden_set(f), dst / f"{model}.{device_type}.golden.npz", device_type, (scale or {}).get(model, 1.0))
    return dst


def test_gpu_check_parity_holds_every_carried_model_to_the_returned_golden_sets(dry_run, carry, tmp_path, capsys):
    """Step 3 of the round trip in one command: each carried model's CPU float model and CPU golden set
    against its returned GPU golden set under gpu-vs-cpu-float; a model off by 10x the row, a golden set
    that did not come back, or one of other weights is named."""
    from anyppg_edge.gpu_parity import JSON_NAME as PAR_JSON
    from anyppg_edge.gpu_parity import MD_NAME as PAR_MD
    from anyppg_edge.gpu_parity import find_export

    _, out = dry_run
    c = str(carry[0])
    none = tmp_path / "no_exports"
    none.mkdir()
    common = ["gpu-check", "parity", "--carry", c, "--export-dir", str(none), "--no-plot"]
    ok = _returned(out, tmp_path / "gpu")
    assert main([*common, "--returned", str(ok), "--out", str(tmp_path / "p")]) == 0
    r = json.loads((tmp_path / "p" / PAR_JSON).read_text())
    assert r["passed"] and not r["rehearsal"] and r["reference_devices"] == ["cuda"]
    got = {m["model"]: [(x["kind"], x["tolerance"], x["pass"]) for x in m["rows"]] for m in r["models"]}
    row = (GPU_REFERENCE_ROW, True)
    assert got == {"tiny": [("pytorch-float", *row), ("golden-float", *row)],  # the teacher's file, on this CPU
                   "student-watch-slim": [("golden-float", *row)],  # a random init: no file, its CPU golden set
                   "student-watch-25hz": [("golden-float", *row)]}
    assert all("no artifacts exported from this checkpoint" in m["notes"][0] for m in r["models"])
    md = (tmp_path / "p" / PAR_MD).read_text()
    assert md.startswith("# Parity against the GPU model (PASS)") and "worst rel max abs" in md

    # the 25 Hz student's GPU embeddings 1e-3 relative off (10x the row): exit 1, that model named
    bound = TOLERANCES[GPU_REFERENCE_ROW]["rel_max_abs_max"]
    off = _returned(out, tmp_path / "gpu_off", scale={"student-watch-25hz": 1 + 10 * bound})
    assert main([*common, "--returned", str(off), "--out", str(tmp_path / "q")]) == 1
    r = json.loads((tmp_path / "q" / PAR_JSON).read_text())
    assert [m["model"] for m in r["models"] if not m["passed"]] == ["student-watch-25hz"]
    assert "rel_max_abs" in r["models"][2]["failures"][0]
    # a carried model whose golden set did not come back fails, the others are still checked
    part = _returned(out, tmp_path / "gpu_part", skip=("student-watch-slim",))
    assert main([*common, "--returned", str(part), "--out", str(tmp_path / "s")]) == 1
    r = json.loads((tmp_path / "s" / PAR_JSON).read_text())
    assert [m["passed"] for m in r["models"]] == [True, False, True]
    assert "no golden set of student-watch-slim" in r["models"][1]["failures"][0]
    # a golden set of other weights, or no folder at all: exit 2 with the fix
    other = _returned(out, tmp_path / "gpu_other")
    g = load_golden_set(other / "tiny.cuda.golden.npz")
    g.provenance["checkpoint_sha256"] = "0" * 64
    _forge(g, other / "tiny.cuda.golden.npz", "cuda")
    capsys.readouterr()
    assert main([*common, "--returned", str(other), "--out", str(tmp_path / "t")]) == 2
    assert "not the same weights" in capsys.readouterr().err
    assert main([*common, "--returned", str(tmp_path / "nowhere"), "--out", str(tmp_path / "u")]) == 2
    assert "files_at" in capsys.readouterr().err
    (other / JSON_NAME).write_text("{cut off")  # a damaged report: named, exit 2, no traceback
    assert main([*common, "--returned", str(other), "--out", str(tmp_path / "v")]) == 2
    assert "gpu_check.json is not valid JSON" in capsys.readouterr().err
    # the artifacts of a model are those whose export report names its checkpoint
    exp = tmp_path / "exports" / "tiny"
    exp.mkdir(parents=True)
    (exp / "tiny.int8.tflite").write_bytes(b"x")
    sha = load_carry(c).manifest["teacher"]["sha256"]
    (exp / "export_report.json").write_text(json.dumps({"model": "tiny", "source_sha256": sha, "artifacts": {
        "tflite-int8": "elsewhere/tiny.int8.tflite", "tflite-int8 (PTQ)": "ptq/tiny.int8-ptq.tflite"}}))
    assert find_export("tiny", sha, [tmp_path / "exports"]) == (exp, {"tflite-int8": exp / "tiny.int8.tflite"})
    assert find_export("tiny", "1" * 64, [tmp_path / "exports"]) == (None, {})


def test_a_failing_section_is_recorded_and_the_others_run(carry, tmp_path):
    import shutil

    src, _ = carry
    broken = tmp_path / "carry"
    shutil.copytree(src, broken)
    m = json.loads((broken / "manifest.json").read_text())
    (broken / m["teacher"]["file"]).unlink()
    cfg = GpuCheckConfig(**{**TINY, "carry_dir": str(broken), "out_dir": str(tmp_path / "out"), "device": "cpu",
                            "sections": "golden,train_match"})
    r = run_gpu_check(cfg, log=lambda s: None)
    golden = r["sections"]["golden"]
    assert golden["status"] == "error" and "tiny_teacher" in golden["error"]
    # the teacher failing keeps the student's golden set (made, checked and written)
    assert list(golden["result"]["errors"]) == ["teacher"]
    assert [s["model"] for s in golden["result"]["sets"]] == ["student-watch-slim", "student-watch-25hz"]
    assert (tmp_path / "out" / "student-watch-slim.cpu.golden.npz").is_file()
    assert r["sections"]["train_match"]["status"] == "ok" and not r["passed"] and not r["complete"]
    on_disk = json.loads((tmp_path / "out" / JSON_NAME).read_text())
    assert on_disk["sections"] == json.loads(json.dumps(r["sections"]))
    assert "| golden | error |" in (tmp_path / "out" / MD_NAME).read_text()


def test_time_budget_skips_sections_and_exit_code(carry, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["gpu-check", "--carry", str(carry[0]), "--out", str(out), "--device", "cpu", "--tiny",
               "--sections", "environment,golden", "--time-budget-s", "1"])
    assert rc == 1
    r = json.loads((out / JSON_NAME).read_text())
    assert {k: v["status"] for k, v in r["sections"].items()} == {"environment": "skipped", "golden": "skipped"}
    assert all("time budget" in v["reason"] for v in r["sections"].values()) and not r["passed"]
    assert "INCOMPLETE" in capsys.readouterr().out
    # usage errors: exit 2 on one line
    assert main(["gpu-check", "--out", str(out), "--device", "cpu", "--sections", "warp-drive"]) == 2
    assert main(["gpu-check", "--carry", str(tmp_path / "nowhere"), "--out", str(out), "--device", "cpu",
                 "--sections", "golden"]) == 1  # recorded as the section's error: the report still comes back
    assert "gpu-check prepare" in json.loads((out / JSON_NAME).read_text())["sections"]["golden"]["error"]


def test_peak_table_and_training_flops():
    from anyppg_edge.gpu_check import PEAK_DENSE_TFLOPS, _flops
    from anyppg_edge.models import create_model
    from anyppg_edge.models.net1d import model_stats

    assert peak_tflops("NVIDIA H200")["bf16"] == PEAK_DENSE_TFLOPS["H200"]["bf16"]
    assert peak_tflops("NVIDIA GeForce RTX 3090") is None
    f = _flops("tiny")
    tower = model_stats(create_model("tiny")).macs
    assert 2 * tower < f["forward_macs_per_sample"] < 2 * tower * 1.2  # two towers + small projection heads
    assert f["train_flops_per_sample"] == 6 * f["forward_macs_per_sample"]
