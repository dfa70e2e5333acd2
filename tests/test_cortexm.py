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


LIBRARY = r"""
#include <math.h>
#include <stdint.h>
double lib_norm(const double *x, int n) {  /* double on a single-precision FPU: libgcc + libm */
    double s = 0.0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return sqrt(s / n);
}
int64_t lib_div(int64_t a, int64_t b) { return a / b; }  /* 64-bit division: libgcc */
static volatile uint8_t lib_table[3000];
int lib_unused(int i) { return lib_table[i]; }  /* nothing calls it: dropped with its table */
"""

USER = r"""
#include <stdint.h>
double lib_norm(const double *x, int n);
int64_t lib_div(int64_t a, int64_t b);
static volatile double vx[2];
static volatile int64_t va, vb;
volatile double sink;
volatile int64_t sink64;
int main(void) {
    double x[2] = {vx[0], vx[1]};
    sink = lib_norm(x, 2);
    sink64 = lib_div(va, vb);
    return 0;
}
"""


def test_link_footprint_and_map(toolchain, tmp_path):
    """A library object linked with a user: the link map parsed (its kept sections add up to the ELF's
    sizes), the libgcc / libm members it pulls in named and counted, its unused function dropped."""
    import subprocess

    b = cortexm.BOARDS["cortex-m4"]
    (tmp_path / "lib.c").write_text(LIBRARY)
    obj = tmp_path / "lib.o"
    subprocess.run(["arm-none-eabi-gcc", *b.cflags, "-O2", "-std=c99", "-ffunction-sections", "-fdata-sections",
                    "-c", str(tmp_path / "lib.c"), "-o", str(obj)], check=True)
    fp = cortexm.link_footprint([obj], USER, tmp_path / "fp", b)
    m = cortexm.parse_link_map(fp["map"])
    for kind, outputs in (("text", ("text", "rodata", "vectors", "exidx")), ("data", ("data",)), ("bss", ("bss",))):
        kept = sum(s["size"] for s in m["sections"] if s["output"].rsplit(".", 1)[-1] in outputs)
        kept += sum(v for k, v in m["fill"].items() if k.rsplit(".", 1)[-1] in outputs)
        assert kept == fp["elf_sizes"][kind], kind  # every byte of the ELF accounted for
    why = {(i["archive"], i["member"]): (i["referenced_by"], i["symbol"]) for i in m["included"]}
    sqrt_member = next(k for k in why if k[0] == "libm.a" and why[k][1] == "sqrt")
    assert why[sqrt_member][0] == str(obj.resolve())
    assert m["symbols"]["lib_norm"] == str(obj.resolve()) and "lib_unused" not in m["symbols"]
    assert cortexm.archive_member(m["symbols"]["__aeabi_ddiv"])[0] == "libgcc.a"
    pulled = {sym: mm["archive"] for mm in fp["archive_members"] for sym in mm["symbols"]}
    assert {pulled[s] for s in ("__aeabi_dadd", "__aeabi_dmul", "__aeabi_ddiv", "__aeabi_ldivmod")} == {"libgcc.a"}
    assert pulled["sqrt"] == "libm.a"
    lib_size = cortexm.section_sizes(obj)
    assert fp["objects_flash_bytes"] < lib_size["text"] and fp["objects_ram_bytes"] == 0  # lib_unused, lib_table gone
    assert fp["archive_flash_bytes"] > 1000 and fp["stub_flash_bytes"] > 0
    assert fp["flash_bytes"] - fp["objects_flash_bytes"] - fp["archive_flash_bytes"] in range(0, 64)
    assert fp["flash_bytes"] == (fp["elf_sizes"]["text"] + fp["elf_sizes"]["data"]
                                 - fp["baseline_sizes"]["text"] - fp["baseline_sizes"]["data"] - fp["stub_flash_bytes"])
