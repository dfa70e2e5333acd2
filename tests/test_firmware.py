"""The firmware bundle and the harness driving it (issue 19, items 2-4): ``write_firmware_bundle``
builds with ``make`` alone in a bare copy (host and Cortex-M4), its C code matches the Python
streamer's device path (flags identical, windows within ``stream-c-vs-device``), TFLM bit for bit
where the int8 inputs are identical, and runs on the emulated Cortex-M4 and M33 with the host build's
output, its linked footprint counting the libc / libm / libgcc members it pulls in.
Toolchain parts skip only when the tools are missing and ``CI`` is unset (a failure under CI=true)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from anyppg_edge.data.simulator import SimulatorConfig, simulate_pair
from anyppg_edge.deploy import cortexm
from anyppg_edge.deploy.parity.tolerances import TOLERANCES
from anyppg_edge.errors import ToolchainError
from anyppg_edge.stream import SensorConfig, emulate, fault_config
from anyppg_edge.stream import firmware as fwm

RATES = (25.0, 50.0, 64.0, 100.0, 125.0)


def _need(tools, what):
    from prerequisites import require

    require(all(shutil.which(t) for t in tools), f"{what} missing ({', '.join(tools)})")


@pytest.fixture(scope="module")
def host_tools():
    _need(("gcc", "make", "ar"), "host C toolchain")


@pytest.fixture(scope="module")
def toolchain():
    _need(cortexm.TOOLS, f"Cortex-M toolchain (apt-get install {' '.join(cortexm.APT_PACKAGES)})")


@pytest.fixture(scope="module")
def bundles(slim_int8, host_tools, tmp_path_factory):
    """One bundle of the watch student per rate: ``{odr: dir}``."""
    _, path = slim_int8
    return {odr: _write(path, tmp_path_factory.mktemp(f"fw{int(odr)}"), odr) for odr in RATES}


def _write(path, d, odr):
    fwm.write_firmware_bundle(path, d, odr)
    return d


def test_bundle_is_self_contained_and_builds(bundles, slim_int8, tmp_path):
    """A bare copy (nothing else from the project, no network) builds with make: host and, with the
    toolchain, Cortex-M4; the README and the config header carry the contract and the model's scale."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundles[25.0], copy)
    m = fwm.read_bundle(copy)
    cfg_h = (copy / "anyppg_stream_config.h").read_text()
    assert "student-watch-slim" in cfg_h and "ANYPPG_STREAM_HAS_QUANT 1" in cfg_h
    assert f"{m['input_quant']['scale']!r}" in (copy / "anyppg_firmware_config.h").read_text()
    assert "Input contract" in (copy / "README.md").read_text()
    for src in ("anyppg_firmware.c", "anyppg_stream.c", "anyppg_model.c"):
        assert "malloc" not in (copy / src).read_text()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    r = subprocess.run(["make", "-C", str(copy), "-j2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in ("libanyppg_firmware.a", "libanyppg_firmware.so", "anyppg_example"):
        assert (copy / "build" / "host" / f).is_file()
    if cortexm.toolchain_available():
        r = subprocess.run(["make", "-C", str(copy), "-j2", "cortex-m4"], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert (copy / "build" / "cortex-m4" / "anyppg_example.elf").is_file()


def test_new_tolerance_row():
    assert TOLERANCES[fwm.C_DEVICE_ROW] == {"max_abs_max": 1e-4, "int8_same_frac_min": 0.999, "int8_max_step_max": 1.0}


@pytest.mark.parametrize("odr", RATES)
def test_firmware_matches_python_and_tflm_every_rate(bundles, slim_int8, odr):
    """Clean and fault scenarios at every rate: flags identical, windows within 1e-4 of the float32
    device path, int8 inputs >= 99.9 % identical, C embeddings bit-identical to TFLM where they are."""
    pytest.importorskip("tflite_micro")
    from anyppg_edge.deploy.runtime import open_encoder

    model, path = slim_int8
    fw = fwm.FirmwareLib(bundles[odr])
    tflm = open_encoder(path, runtime="tflm")
    rec = simulate_pair(SimulatorConfig(duration_s=64.0, seed=3, motion_artifact_rate_per_min=1.0))
    for scfg in (SensorConfig(odr_hz=odr, duration_s=60.0, seed=1),
                 fault_config(odr, 60.0, stall_s=3.0, saturate_s=1.5, seed=2)):
        r = fwm.compare_firmware(fw, emulate(rec, scfg), tflm=tflm, float_encoder=open_encoder(model))
        print(odr, {k: r[k] for k in ("n_windows", "n_ok", "flag_set", "max_abs_vs_device", "int8_same_frac")},
              r.get("vs_tflm"), r.get("vs_float"))
        assert r["flags_identical"] and r["n_ok"] >= 3
        assert not [f for f in r["failures"] if not f.startswith("C vs float")], r["failures"]
        assert r["vs_tflm"]["n_identical_inputs"] >= 0.9 * r["n_ok"]
        assert r["vs_float"]["cos_mean"] > 0.95  # the PTQ test artifact; the 0.99 bar is the trained student's


def test_board_runs_match_host(toolchain, bundles, tmp_path):
    """``firmware_summary`` on both emulated boards over the same fault recording: results identical to
    the host build on each; preprocessing <= 1 M instructions per window at 25 Hz; RAM <= 96 KiB, flash
    <= 256 KiB; the linked firmware counts the libc / libm / libgcc members the objects pull in (the
    M4F's and M33's single-precision FPUs leave the preprocessor's double arithmetic to libgcc)."""
    rec = simulate_pair(SimulatorConfig(duration_s=64.0, seed=4))
    s = fwm.firmware_summary(bundles[25.0], [rec], tmp_path, rates_hz=(25.0,), tflm=False)
    assert s["pass"], s["failures"]
    assert [b["board"] for b in s["boards"]] == ["cortex-m4", "cortex-m33"]
    for br in s["boards"]:
        mem, linked = br["memory"], br["memory"]["linked"]
        print(br["board"], br["instructions"], mem["ram_bytes"], mem["flash_bytes"],
              {k: v for k, v in linked.items() if k != "archive_members"})
        assert br["identical_to_host"] and br["n_windows"] == 11 and br["dropped"] == 0
        # the results file carries each window's host timestamps (bit-identical to the Python streamer:
        # compare_firmware): one 10 s window every 5 s hop on the sensor's (drifting) clock
        res = fwm.read_results(tmp_path / f"board_{br['board']}" / "results.bin", int(fwm.read_bundle(bundles[25.0])["embed_dim"]))
        assert [r["index"] for r in res] == list(range(11))
        t0, t1 = np.array([r["t_start_s"] for r in res]), np.array([r["t_end_s"] for r in res])
        assert np.allclose(t1 - t0, 249 / 25.0, atol=0.05) and np.allclose(np.diff(t0), 5.0, atol=0.05)
        ins = br["instructions"]
        assert ins["preprocess_per_window_mean"] <= 1e6 and ins["preprocess_per_window_max"] <= 1e6
        assert ins["encoder_per_window_mean"] > 1e6 and np.isfinite(ins["total_per_window_mean"])
        assert linked["ram_bytes"] <= 96 * 1024 and linked["flash_bytes"] <= 256 * 1024
        # linked = what the objects keep (the API's unused helpers dropped) + archive members + alignment
        assert linked["flash_bytes"] >= mem["flash_bytes"] > linked["objects_flash_bytes"] > 0.9 * mem["flash_bytes"]
        assert linked["archive_flash_bytes"] > 1000
        assert 0 <= linked["flash_bytes"] - linked["objects_flash_bytes"] - linked["archive_flash_bytes"] < 128
        assert linked["ram_bytes"] >= mem["ram_bytes"] and linked["objects_ram_bytes"] == mem["static_ram_bytes"]
        pulled = {sym: m["archive"] for m in linked["archive_members"] if m["added_flash_bytes"] for sym in m["symbols"]}
        assert {pulled.get(k) for k in ("__aeabi_dmul", "__aeabi_ddiv", "__aeabi_dadd", "__aeabi_d2f")} == {"libgcc.a"}
        assert pulled.get("sqrt") == "libm.a" and pulled.get("floor") == "libm.a"
        nm = subprocess.run(["arm-none-eabi-nm", linked["elf"]], capture_output=True, text=True, check=True).stdout
        assert " T __aeabi_dmul" in nm and " T sqrt" in nm  # in the linked program, not just the map
    md = (tmp_path / "firmware_report.md").read_text()
    assert "| | cortex-m4 (mps2-an386) | cortex-m33 (mps2-an505) |" in md
    assert "whole firmware, linked incl. libc/libm/libgcc: flash B" in md and "`libgcc.a(_arm_muldivdf3.o)`" in md
    assert [b["board"] for b in json.loads((tmp_path / "firmware_summary.json").read_text())["boards"]] == [
        "cortex-m4", "cortex-m33"]
    one = fwm.render_memory_rows(s["boards"][0])  # one board: one column (the bundle's README, export firmware)
    assert one[0] == "| | cortex-m4 (mps2-an386) |" and "linked incl. libc/libm/libgcc: flash B" in one[3]


def test_export_firmware_measures_the_bundle_on_every_board(slim_int8, toolchain, tmp_path, capsys):
    """``export firmware`` (measuring by default): the README's memory and instruction table has one
    column per board the bundle's Makefile builds, from the same simulated recording, and bundle.json
    keeps the figures."""
    from anyppg_edge.cli import main

    _, path = slim_int8
    out = tmp_path / "bundle"
    assert main(["export", "firmware", "--artifact", str(path), "--out", str(out), "--odr-hz", "25"]) == 0
    head = "| | cortex-m4 (mps2-an386) | cortex-m33 (mps2-an505) |"
    assert head in capsys.readouterr().out
    readme = (out / "README.md").read_text()
    assert head in readme and "Not measured" not in readme
    runs = json.loads((out / fwm.MANIFEST).read_text())["boards"]
    assert [b["board"] for b in runs] == list(fwm.FIRMWARE_BOARDS)
    for b in runs:
        assert b["identical_to_host"] and b["instructions"]["total_per_window_mean"] > 0
        assert f"{b['memory']['linked']['flash_bytes']:,}" in readme


def test_board_failures_name_the_board(bundles, tmp_path, monkeypatch):
    def fail(bundle, run, board, workdir=None, timeout_s=600):
        raise ToolchainError(f"the firmware failed on {board} (exit 1)")

    monkeypatch.setattr(fwm, "run_firmware_on_board", fail)
    rec = simulate_pair(SimulatorConfig(duration_s=24.0, seed=5))
    s = fwm.firmware_summary(bundles[25.0], [rec], tmp_path, rates_hz=(25.0,), tflm=False, duration_s=20.0)
    assert not s["pass"] and [f.split(":")[0] for f in s["failures"][-2:]] == ["cortex-m4", "cortex-m33"]
    assert [b["board"] for b in s["boards"]] == ["cortex-m4", "cortex-m33"] and all("error" in b for b in s["boards"])
    assert "- cortex-m33: **failed**" in (tmp_path / "firmware_report.md").read_text()
    with pytest.raises(KeyError, match="cortex-m7"):
        fwm.firmware_summary(bundles[25.0], [rec], tmp_path, boards=("cortex-m7",))
