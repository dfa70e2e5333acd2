"""The generated C encoder checked end to end: host and emulated Cortex-M against TFLite Micro and the
float model, with its memory and instruction counts (``python -m export c MODEL --golden G.npz``).

Comparisons (rows of :data:`~anyppg_edge.deploy.parity.tolerances.TOLERANCES`):

* C on the host vs TFLM (``int8-c-vs-tflm``: bit-identical);
* C on each emulated board, plain and with the DSP extension's SMLAD in the convolutions
  (``-DANYPPG_USE_DSP``), vs C on the host (the same row: the integer code gives the same bytes on
  x86-64, Cortex-M4 and Cortex-M33, either path);
* C vs the float model's golden embeddings (``int8-vs-float``).

Per board: flash and RAM of the model alone, instructions per window of ``anyppg_encode`` (from
SysTick under ``-icount shift=0``), instructions per MAC, and time and energy per window **derived**
from those counts for the MCU class of that core (:data:`anyppg_edge.deploy.bench.mcu.MCU_CLASSES`:
clock and run current with their datasheet basis) over a CPI range (:data:`CPI_RANGE`, an
assumption: qemu counts instructions, not cycles).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BOARD_MCU", "CPI_RANGE", "c_encoder_report", "c_report_markdown"]

from anyppg_edge.deploy.bench.mcu import BOARD_MCU, CPI_RANGE


def c_encoder_report(
    tflite_path: str | Path,
    out_dir: str | Path,
    windows: np.ndarray,
    reference: np.ndarray | None = None,
    boards: Sequence[str] = ("cortex-m4", "cortex-m33"),
    windows_source: str = "",
) -> dict[str, Any]:
    """Generate, build and check the C encoder of ``tflite_path`` on ``windows`` (float32 [N, L],
    z-scored); ``reference``: the float model's embeddings of the same windows (a golden set)."""
    from anyppg_edge.deploy.bench.mcu import MCU_CLASSES
    from anyppg_edge.deploy.export.c_encoder import CEncoder, build_host_library, generate_c_encoder
    from anyppg_edge.deploy.parity.tolerances import embedding_parity, row_failures, tolerance_failures
    from anyppg_edge.deploy.runtime import open_encoder

    out = Path(out_dir)
    src = out / "src"
    t0 = time.time()
    gen = generate_c_encoder(tflite_path, src)
    host = CEncoder(build_host_library(src), src).embed(windows)
    from anyppg_edge.deploy.contract_io import read_tflite_contract_zip

    cfg = read_tflite_contract_zip(Path(tflite_path)).preprocess_config  # the model's own rate and window
    tflm = open_encoder(tflite_path, cfg, runtime="tflm").embed(windows)
    rows: list[dict[str, Any]] = []

    def compare(label: str, ref: np.ndarray, emb: np.ndarray, row: str) -> None:
        m = embedding_parity(ref, emb)
        fails = row_failures(row, m) if row != "int8-vs-float" else tolerance_failures("tflite-int8", m)
        rows.append({"comparison": label, "tolerance": row, "n_windows": len(emb), "bit_identical": bool(np.array_equal(ref, emb)),
                     **{k: m[k] for k in ("max_abs", "cos_mean", "cos_p1", "cos_min")}, "pass": not fails,
                     "failures": "; ".join(fails)})

    compare("C (host) vs TFLM", tflm, host, "int8-c-vs-tflm")
    if reference is not None:
        compare("C (host) vs float model", np.asarray(reference, np.float32), host, "int8-vs-float")
    board_rows = []
    if boards:
        from anyppg_edge.deploy.export.c_cortexm import model_memory, run_encoder_on_board

        for b in boards:
            mcu = MCU_CLASSES[BOARD_MCU[b]]
            for dsp in (False, True):
                path = "DSP (SMLAD)" if dsp else "plain C"
                r = run_encoder_on_board(src, windows, b, out / b, dsp=dsp)
                compare(f"C ({b}, {path}, qemu) vs C (host)", host, r["embeddings"], "int8-c-vs-tflm")
                mem = model_memory(src, b, out / b, r["stack_bytes"], dsp=dsp)
                instr = r["instructions"]
                t_ms = [float(instr.mean()) * cpi / (mcu.clock_mhz * 1e3) for cpi in CPI_RANGE]
                uj = [t * mcu.run_current_ma * mcu.supply_v for t in t_ms]
                board_rows.append({
                    "board": b,
                    "path": path,
                    "qemu machine": r["machine"],
                    "flash B (model)": mem["flash_bytes"],
                    "RAM B (data+bss+stack)": mem["ram_bytes"],
                    "arena B": gen["arena_bytes"],
                    "stack B": mem["stack_bytes"],
                    "instructions/window": round(float(instr.mean())),
                    "instructions min/max": f"{int(instr.min()):,} / {int(instr.max()):,}",
                    "instructions/MAC": round(float(instr.mean()) / gen["macs"], 2),
                    "MCU for time/energy": mcu.name,
                    "ms/window (derived, CPI 1.0-1.5)": f"{t_ms[0]:.0f}-{t_ms[1]:.0f}",
                    "µJ/window (derived)": f"{uj[0]:.0f}-{uj[1]:.0f}",
                    "current basis": mcu.current_basis,
                })
    compile_only = None
    if not boards:
        from anyppg_edge.deploy.cortexm import toolchain_available

        if toolchain_available():  # the model's memory on a Cortex-M4 without running it
            from anyppg_edge.deploy.export.c_cortexm import model_memory

            compile_only = model_memory(src, "cortex-m4", out / "cortex-m4")
    from anyppg_edge.deploy.contract_io import read_tflite_contract_zip

    report = {
        "model": str(tflite_path),
        "model_name": read_tflite_contract_zip(Path(tflite_path)).model_name,
        "memory_cortex_m4_compile_only": compile_only,
        "windows": len(windows),
        "windows_source": windows_source,
        "generator": {k: gen[k] for k in ("ops", "macs", "arena_bytes", "weight_and_bias_bytes", "logistic_tables", "input_len", "embed_dim")},
        "comparisons": rows,
        "boards": board_rows,
        "cpi_range": list(CPI_RANGE),
        "passed": all(r["pass"] for r in rows),
        "seconds": round(time.time() - t0, 1),
    }
    from anyppg_edge.io import atomic_write_text
    from anyppg_edge.report import write_json

    write_json(out / "c_report.json", report)
    atomic_write_text(out / "c_report.md", c_report_markdown(report))
    return report


def c_report_markdown(report: dict[str, Any]) -> str:
    from anyppg_edge.report import markdown_table

    g = report["generator"]
    cols = ["board", "path", "qemu machine", "flash B (model)", "RAM B (data+bss+stack)", "arena B", "stack B",
            "instructions/window", "instructions/MAC", "MCU for time/energy", "ms/window (derived, CPI 1.0-1.5)",
            "µJ/window (derived)"]
    lines = [
        f"# Generated C encoder: `{Path(report['model']).name}`",
        "",
        f"{sum(g['ops'].values())} int8 ops, {g['macs']:,} MACs per window; static arena {g['arena_bytes']:,} B; "
        f"weights + biases {g['weight_and_bias_bytes']:,} B; {report['windows']} windows ({report['windows_source'] or 'given'}).",
        "",
        "## Parity (tolerances: `anyppg_edge.deploy.parity.tolerances.TOLERANCES`)",
        "",
        markdown_table(report["comparisons"], ["comparison", "tolerance", "n_windows", "bit_identical", "max_abs",
                                               "cos_mean", "cos_p1", "cos_min", "pass"]),
    ]
    m = report.get("memory_cortex_m4_compile_only")
    if m:
        lines += [
            f"Cortex-M4 build of the model (compiled, not run): flash {m['flash_bytes']:,} B, static RAM "
            f"{m['data_bytes'] + m['bss_bytes']:,} B (arena {m['bss_bytes']:,} B) plus stack; the watch tier allows "
            "200 KiB of flash and 64 KiB of RAM.",
            "",
        ]
    if report["boards"]:
        lines += [
            "## Emulated Cortex-M (qemu, `-icount shift=0`: instructions from SysTick, ±40)",
            "",
            markdown_table(report["boards"], cols),
            f"Time and energy are **derived from instruction counts**: instructions × CPI {report['cpi_range'][0]}–"
            f"{report['cpi_range'][1]} (assumption) / the MCU's clock, × its run current and supply. Current basis: "
            + " | ".join(dict.fromkeys(f"{b['board']}: {b['current basis']}" for b in report["boards"])),
            "",
        ]
    return "\n".join(lines) + "\n"
