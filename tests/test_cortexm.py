"""Emulated Cortex-M4 / M33 (issue 18): the qemu harness itself, then the generated C encoder on both
boards, bit-identical to the host build and to TFLite Micro, with its memory and instruction counts.
Needs arm-none-eabi-gcc + newlib + qemu-system-arm (``make test`` installs them as root): skipped
without them on a user's machine, a failure under CI=true."""

from __future__ import annotations

import numpy as np
import pytest

from anyppg_edge.deploy import cortexm

WATCH_FLASH_BYTES = 200 * 1024
WATCH_RAM_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def toolchain():
    from prerequisites import require

    require(cortexm.toolchain_available(), f"Cortex-M toolchain missing: apt-get install {' '.join(cortexm.APT_PACKAGES)}")


PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
#include "cortexm_timer.h"
static int32_t work(int n) {
    volatile int32_t acc = 0;
    int32_t buf[256];
    for (int i = 0; i < 256; i++) buf[i] = i;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < 256; i++) acc += buf[i] * r;
    return acc;
}
int main(void) {
    FILE *f = fopen("out.txt", "w");
    if (!f) return 3;
    anyppg_timer_start();
    anyppg_stack_paint();
    for (int n = 10; n <= 40; n *= 2) {
        uint64_t t0 = anyppg_cycles();
        int32_t v = work(n);
        uint64_t t1 = anyppg_cycles();
        fprintf(f, "%d %ld %lu\n", n, (long)v, (unsigned long)(t1 - t0));
    }
    fprintf(f, "%lu\n", (unsigned long)anyppg_stack_used());
    fclose(f);
    return 5;
}
"""


@pytest.mark.parametrize("board", list(cortexm.BOARDS))
def test_harness_counts_instructions_and_stack(toolchain, board, tmp_path):
    (tmp_path / "prog.c").write_text(PROGRAM)
    elf = cortexm.build_program([tmp_path / "prog.c"], tmp_path / "prog.elf", board)
    r = cortexm.run_program(elf, board, cwd=tmp_path, timeout_s=60)
    assert r.returncode == 5, r.stderr[-500:]  # exit code through semihosting
    *loops, stack = (tmp_path / "out.txt").read_text().split("\n")[:4]
    rows = [tuple(int(v) for v in line.split()) for line in loops]
    assert [v for _, v, _ in rows] == [sum(i * r for r in range(n) for i in range(256)) for n, _, _ in rows]
    ticks = [t for *_, t in rows]
    assert 1.9 < ticks[1] / ticks[0] < 2.1 and 1.9 < ticks[2] / ticks[1] < 2.1  # proportional to the work
    assert 1024 <= int(stack) < 2048  # the 1 KiB local buffer, and little more
    assert cortexm.section_sizes(elf)["text"] > 0


def test_missing_toolchain_is_named(monkeypatch):
    monkeypatch.setattr(cortexm.shutil, "which", lambda name: None)
    with pytest.raises(ImportError, match="apt-get install gcc-arm-none-eabi"):
        cortexm.require_toolchain()


def test_generated_encoder_on_cortex_m4_and_m33(toolchain, slim_int8, ieee_windows, tmp_path):
    """The watch student's C encoder: bit-identical to TFLM on the host and on both emulated boards,
    within the int8 row of the float model, and inside the watch tier's flash and RAM."""
    pytest.importorskip("tflite_micro")
    from anyppg_edge.deploy.export.c_report import c_encoder_report
    from anyppg_edge.deploy.quantize import float_embeddings

    model, path = slim_int8
    x = ieee_windows[:6]
    rep = c_encoder_report(path, tmp_path, x, float_embeddings(model, x[:, None]))
    assert rep["passed"] and [r["comparison"] for r in rep["comparisons"]] == [
        "C (host) vs TFLM", "C (host) vs float model",
        *(f"C ({b}, {p}, qemu) vs C (host)" for b in ("cortex-m4", "cortex-m33") for p in ("plain C", "DSP (SMLAD)")),
    ]
    assert all(r["bit_identical"] for r in rep["comparisons"] if r["tolerance"] == "int8-c-vs-tflm")
    for b in rep["boards"]:
        assert b["flash B (model)"] <= WATCH_FLASH_BYTES and b["RAM B (data+bss+stack)"] <= WATCH_RAM_BYTES
        assert b["arena B"] == rep["generator"]["arena_bytes"] and b["instructions/window"] > rep["generator"]["macs"]
    plain, dsp = ([b["instructions/window"] for b in rep["boards"] if b["path"] == p] for p in ("plain C", "DSP (SMLAD)"))
    assert all(d < p for d, p in zip(dsp, plain, strict=True))  # SMLAD pays on both cores
    assert "derived from instruction counts" in (tmp_path / "c_report.md").read_text()
    assert np.isfinite([b["instructions/MAC"] for b in rep["boards"]]).all()
