"""The generated C encoder on emulated Cortex-M4 and Cortex-M33: embeddings, instructions, memory.

:func:`run_encoder_on_board` cross-compiles the generated sources
(:func:`anyppg_edge.deploy.export.c_encoder.generate_c_encoder`) with a driver that reads float32
windows from a host file, quantizes each with the model's input scale, times ``anyppg_encode`` (the
int8 network alone) with SysTick, records the stack high-water mark by stack painting, dequantizes
and writes the embeddings back (:mod:`anyppg_edge.deploy.cortexm`: qemu ``mps2-an386`` / ``mps2-an505``,
semihosting, ``-icount shift=0``). All windows go through one program run.

:func:`model_memory` is the model alone on the target: flash = text + rodata of ``anyppg_model.o``
(weights, multipliers, LOGISTIC tables, code), RAM = its data + bss (the static arena) + the stack
high-water mark of ``anyppg_encode``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.deploy.cortexm import (
    BOARDS,
    INSTRUCTIONS_PER_TICK,
    build_program,
    run_program,
    section_sizes,
)
from anyppg_edge.errors import DataFormatError

__all__ = ["model_memory", "run_encoder_on_board"]

CORTEXM_OPT = "-O2"

_DRIVER = """/* Cortex-M driver of the generated encoder (semihosting files, SysTick, stack painting) */
#include <stdio.h>
#include <stdint.h>
#include "anyppg_encoder.h"
#include "cortexm_timer.h"

int main(void) {
    static float window[ANYPPG_INPUT_LEN];
    static float embedding[ANYPPG_EMBED_DIM];
    static int8_t q[ANYPPG_INPUT_LEN];
    static int8_t e8[ANYPPG_EMBED_DIM];
    uint32_t stack_max = 0u;
    long n = 0;
    FILE *in = fopen("windows.f32", "rb");
    FILE *out = fopen("emb.f32", "wb");
    FILE *o8 = fopen("emb.i8", "wb");
    FILE *tk = fopen("ticks.u32", "wb");
    if (!in || !out || !o8 || !tk) { printf("cannot open files\\n"); return 2; }
    anyppg_timer_start();
    while (fread(window, sizeof(float), ANYPPG_INPUT_LEN, in) == ANYPPG_INPUT_LEN) {
        uint64_t t0, t1;
        uint32_t ticks, used;
        anyppg_quantize_input(window, q);
        anyppg_stack_paint();
        t0 = anyppg_cycles();
        if (anyppg_encode(q, e8) != 0) { return 1; }
        t1 = anyppg_cycles();
        used = anyppg_stack_used();
        if (used > stack_max) { stack_max = used; }
        anyppg_dequantize_output(e8, embedding);
        ticks = (uint32_t)(t1 - t0);
        fwrite(embedding, sizeof(float), ANYPPG_EMBED_DIM, out);
        fwrite(e8, 1, ANYPPG_EMBED_DIM, o8);
        fwrite(&ticks, sizeof(ticks), 1, tk);
        ++n;
    }
    fclose(in); fclose(out); fclose(o8); fclose(tk);
    printf("windows %ld stack %lu\\n", n, (unsigned long)stack_max);
    return 0;
}
"""


def run_encoder_on_board(
    src_dir: str | Path, windows: np.ndarray, board: str, workdir: str | Path, timeout_s: float = 900,
    dsp: bool = False,
) -> dict[str, Any]:
    """Build and run the generated encoder in ``src_dir`` on ``board`` over ``windows`` (float32
    [N, L]); returns float and int8 embeddings, instructions per window of ``anyppg_encode`` (SysTick
    ticks × 40, ±40) and the stack high-water mark (bytes). ``dsp``: build with ``-DANYPPG_USE_DSP``
    (the convolutions' dual 16-bit multiply-accumulate path, SMLAD)."""
    src = Path(src_dir)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    w = np.ascontiguousarray(np.asarray(windows, np.float32).reshape(len(windows), -1))
    (wd / "driver_cortexm.c").write_text(_DRIVER)
    elf = build_program(
        [src / "anyppg_model.c", src / "anyppg_io.c", wd / "driver_cortexm.c"],
        wd / f"encoder_{board}{'_dsp' if dsp else ''}.elf", board,
        include_dirs=[src], opt=CORTEXM_OPT, defines=["ANYPPG_USE_DSP"] if dsp else [],
    )
    (wd / "windows.f32").write_bytes(w.tobytes())
    r = run_program(elf, board, cwd=wd, timeout_s=timeout_s)
    if r.returncode != 0 or "windows" not in r.stdout:
        raise DataFormatError(f"the encoder failed on {board} (exit {r.returncode}): {r.stdout[-500:]} {r.stderr[-1500:]}")
    n_done, stack = (int(v) for v in r.stdout.split("windows", 1)[1].split()[::2][:2])
    if n_done != len(w):
        raise DataFormatError(f"{board}: {n_done} of {len(w)} windows encoded")
    emb8 = np.fromfile(wd / "emb.i8", np.int8).reshape(len(w), -1)
    ticks = np.fromfile(wd / "ticks.u32", np.uint32).astype(np.int64)
    return {
        "board": board,
        "dsp": dsp,
        "machine": BOARDS[board].machine,
        "embeddings": np.fromfile(wd / "emb.f32", np.float32).reshape(len(w), -1),
        "embeddings_int8": emb8,
        "instructions": ticks * INSTRUCTIONS_PER_TICK,
        "stack_bytes": stack,
        "elf": str(elf),
    }


def model_memory(
    src_dir: str | Path, board: str, workdir: str | Path, stack_bytes: int | None = None, dsp: bool = False
) -> dict[str, int]:
    """Flash and RAM of ``anyppg_model.c`` alone, cross-compiled for ``board`` (``-O2``; ``dsp``: the
    SMLAD path, ``-DANYPPG_USE_DSP``)."""
    src, wd = Path(src_dir), Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    obj = wd / f"anyppg_model_{board}{'_dsp' if dsp else ''}.o"
    cmd = ["arm-none-eabi-gcc", *BOARDS[board].cflags, CORTEXM_OPT, "-std=c99", "-Wall", "-Wextra", "-Werror",
           "-pedantic", "-ffunction-sections", "-fdata-sections", *(["-DANYPPG_USE_DSP"] if dsp else []),
           "-c", str(src / "anyppg_model.c"), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise DataFormatError(f"arm-none-eabi-gcc failed on the model:\n{r.stderr[-3000:]}")
    s = section_sizes(obj)
    out = {"flash_bytes": s["text"] + s["data"], "data_bytes": s["data"], "bss_bytes": s["bss"]}
    if stack_bytes is not None:
        out["stack_bytes"] = int(stack_bytes)
        out["ram_bytes"] = s["data"] + s["bss"] + int(stack_bytes)
    return out
