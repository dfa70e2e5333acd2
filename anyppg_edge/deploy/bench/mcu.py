"""MCU cost model: flash, RAM, latency and energy of an int8 encoder per 10 s window on watch-class MCUs.

Every number this module returns is an **estimate** from a model's MACs, parameters and peak
activation (:func:`~anyppg_edge.models.net1d.model_stats`, :func:`~anyppg_edge.models.budget.budget`)
and the assumptions below, never a measurement: nothing here has run on the MCUs named. Measured host
latencies come from :mod:`anyppg_edge.deploy.bench.latency`; put them next to these, never in place of them.

Model (TFLite Micro with CMSIS-NN kernels, int8 weights and activations, layer-by-layer execution):

* **flash** = the int8 model flatbuffer + the runtime code. The flatbuffer is the int8 constants
  (``budget.int8_weight_bytes``: int8 weights, int32 biases, a float32 scale per output channel) + the
  remaining per-channel quantization parameters the TFLite schema stores for weights *and* biases
  (float32 scale + int64 zero point each: :attr:`CostAssumptions.quant_bytes_per_out_channel` per
  output channel) + :attr:`~CostAssumptions.flatbuffer_bytes_per_op` per operator (operator and
  tensor tables), with ``ops ~= ops_per_layer x`` the model's executed layers. Those three constants
  were fitted on this toolkit's own exported int8 files (student-watch: 272 kB file vs 267 kB
  estimated; anyppg-released: 4.63 MB vs 4.64 MB); the runtime (TFLM interpreter, op resolver,
  ~10 CMSIS-NN kernels) is an assumed :attr:`~CostAssumptions.runtime_flash_bytes`;
* **RAM** = tensor arena + persistent runtime data. Arena = peak live int8 activation bytes
  (layer by layer, residual inputs held) x (1 + planner slack) + CMSIS-NN im2col scratch;
  persistent = an int32 multiplier and shift per output channel (TFLM's per-channel requantization)
  + a per-tensor and per-operator overhead. Stack, application and sensor buffers are not counted;
* **latency** = MACs / (effective int8 MACs per cycle of the core with CMSIS-NN) x (1 + non-MAC
  overhead for pooling, activations, requantization, residual adds and operator dispatch) / clock;
* **energy** per window = run current x supply voltage x latency (active CPU only; sleep current,
  sensor and radio are not included). Average power assumes one window every 10 s.

:data:`MCU_CLASSES` states each core's clock, memory, effective MACs/cycle and run current with the
basis of each figure: a datasheet value, or an explicit assumption where no figure was found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_ASSUMPTIONS",
    "MCU_CLASSES",
    "CostAssumptions",
    "McuClass",
    "McuEstimate",
    "ModelCost",
    "mcu_estimate",
    "mcu_markdown",
    "mcu_table",
    "model_cost",
]

WINDOW_S = 10.0  # one embedding per 10 s window

_CMSIS_NN_M_BASIS = (
    "assumption: CMSIS-NN s8 convolutions on Armv7E-M/Armv8-M Mainline DSP cores widen int8 to int16 "
    "and use SMLAD (2 MACs per instruction); im2col, requantization and loop overhead leave about "
    "0.5 MAC/cycle on a single-issue core (background: Lai et al. 2018, 'CMSIS-NN: Efficient Neural "
    "Network Kernels for Arm Cortex-M CPUs', arXiv:1801.06601; not measured for this model)"
)


# Cycles per instruction assumed to turn qemu's instruction counts (the generated C encoder on an
# emulated Cortex-M4 / M33, ``python -m export c --golden``) into time: these cores retire most ALU
# and MAC instructions in 1 cycle, loads in 2 (1 when pipelined), taken branches in 2-4 (ARM
# Cortex-M4 / M33 Technical Reference Manuals, instruction timing); flash wait states add more. An
# assumption, not a measurement; estimates use its midpoint.
CPI_RANGE = (1.0, 1.5)
# emulated board -> the MCU class whose clock and run current turn its instruction counts into time
BOARD_MCU = {"cortex-m4": "nrf52840", "cortex-m33": "nrf5340"}


@dataclass(frozen=True)
class McuClass:
    """A microcontroller class: clock, memory, int8 throughput and run current, with their basis."""

    key: str
    name: str
    core: str
    clock_mhz: float
    flash_kb: int
    ram_kb: int
    int8_macs_per_cycle: float
    macs_basis: str
    run_current_ma: float
    supply_v: float
    current_basis: str
    accelerator: str | None = None
    optional: bool = False  # listed only on request (NPU parts)


MCU_CLASSES: dict[str, McuClass] = {
    "nrf52840": McuClass(
        key="nrf52840",
        name="Cortex-M4F @ 64 MHz (nRF52840)",
        core="Cortex-M4F",
        clock_mhz=64,
        flash_kb=1024,
        ram_kb=256,
        int8_macs_per_cycle=0.5,
        macs_basis=_CMSIS_NN_M_BASIS,
        run_current_ma=3.3,
        supply_v=3.0,
        current_basis=(
            "nRF52840 Product Specification, CPU running CoreMark from flash at 64 MHz, DC/DC, 3 V: 3.3 mA "
            "(quoted from the PS; the copy consulted here showed only the compounded figure CPU + radio "
            "TX 0 dBm = 8.1 mA, IS0, docs.nordicsemi.com ps_nrf52840, consistent with it)"
        ),
    ),
    "nrf5340": McuClass(
        key="nrf5340",
        name="Cortex-M33 @ 128 MHz (nRF5340 app core)",
        core="Cortex-M33 (DSP extension)",
        clock_mhz=128,
        flash_kb=1024,
        ram_kb=512,
        int8_macs_per_cycle=0.5,
        macs_basis=_CMSIS_NN_M_BASIS,
        run_current_ma=5.9,
        supply_v=3.0,
        current_basis=(
            "nRF5340 Product Specification ICPU0_FLASH: CPU running CoreMark at 64 MHz from flash, cache "
            "enabled, 3 V: 2.7 mA (docs.nordicsemi.com); 128 MHz assumed 2 x 2.7 mA + 10 % for the higher "
            "core voltage the PS says 128 MHz requests = 5.9 mA (assumption)"
        ),
    ),
    "stm32h7": McuClass(
        key="stm32h7",
        name="Cortex-M7 @ 480 MHz (STM32H7)",
        core="Cortex-M7 (dual-issue, DSP extension)",
        clock_mhz=480,
        flash_kb=2048,
        ram_kb=1024,
        int8_macs_per_cycle=1.0,
        macs_basis=(
            "assumption: the dual-issue M7 overlaps loads with SMLAD, about 2x a single-issue M4/M33 per "
            "cycle with CMSIS-NN (background: the M7's DSP extension works on 4 int8 lanes per 32-bit "
            "register, OpenMV docs 'CMSIS-NN'; CMSIS-NN paper arXiv:1801.06601 benchmarks on M7)"
        ),
        run_current_ma=130.0,
        supply_v=3.3,
        current_basis=(
            "assumption: no datasheet figure retrieved; STM32H743-class parts draw of the order of "
            "100-150 mA in Run mode at 480 MHz from flash with caches on; 130 mA used"
        ),
    ),
    "m55-u55": McuClass(
        key="m55-u55",
        name="Cortex-M55 + Ethos-U55-128 @ 160 MHz",
        core="Cortex-M55 (Helium) + Ethos-U55 NPU, 128 MACs/cycle",
        clock_mhz=160,
        flash_kb=2048,
        ram_kb=1024,
        int8_macs_per_cycle=40.0,
        macs_basis=(
            "assumption: Ethos-U55-128 peaks at 128 int8 MACs/cycle; ~30 % utilisation assumed for these "
            "narrow 1-D convolutions after Vela compilation (not measured)"
        ),
        run_current_ma=12.0,
        supply_v=1.8,
        current_basis="assumption: ~12 mA at 1.8 V for the M55 + U55 subsystem at 160 MHz (no datasheet figure retrieved)",
        accelerator="Ethos-U55-128",
        optional=True,
    ),
}


@dataclass(frozen=True)
class CostAssumptions:
    """The constants of the flash/RAM/latency model (see the module docstring)."""

    non_mac_overhead: float = 0.20  # assumption
    runtime_flash_bytes: int = 60_000  # assumption: TFLM interpreter + op resolver + ~10 CMSIS-NN kernels
    quant_bytes_per_out_channel: int = 25  # fitted on this toolkit's int8 .tflite files
    flatbuffer_bytes_per_op: int = 210  # fitted on this toolkit's int8 .tflite files
    ops_per_layer: float = 1.3  # TFLite operators per executed layer (fitted, same files)
    arena_slack: float = 0.15  # assumption: TFLM greedy memory planner vs the ideal peak
    scratch_bytes: int = 4_096  # assumption: CMSIS-NN im2col buffer (2 x in_ch x kernel int16 is < 4 kB here)
    persistent_bytes_per_out_channel: int = 8  # TFLM: int32 multiplier + int32 shift per output channel
    persistent_bytes_per_op: int = 96  # assumption: node, registration and eval-tensor structures

    def table(self) -> list[dict[str, Any]]:
        basis = {
            "non_mac_overhead": "assumption",
            "runtime_flash_bytes": "assumption",
            "quant_bytes_per_out_channel": "fitted on student-watch / anyppg-released int8 .tflite",
            "flatbuffer_bytes_per_op": "fitted on student-watch / anyppg-released int8 .tflite",
            "ops_per_layer": "fitted on student-watch / anyppg-released int8 .tflite",
            "arena_slack": "assumption",
            "scratch_bytes": "assumption",
            "persistent_bytes_per_out_channel": "TFLM per-channel requantization arrays",
            "persistent_bytes_per_op": "assumption",
        }
        return [{"constant": k, "value": v, "basis": basis[k]} for k, v in asdict(self).items()]


DEFAULT_ASSUMPTIONS = CostAssumptions()


@dataclass(frozen=True)
class ModelCost:
    """What the MCU model needs to know about one encoder for one window."""

    model: str
    macs: int
    params: int
    peak_activation_elements: int
    int8_weight_bytes: int
    out_channels: int  # sum of output channels of every conv / linear layer
    layers: int  # executed leaf layers (model_stats)
    tflm_arena_estimate_bytes: int | None = None  # models.budget.tflm_arena_estimate (Net1D)


def model_cost(name_or_model: Any, input_samples: int | None = None) -> ModelCost:
    """:class:`ModelCost` of a registered model name or a built ``nn.Module`` (needs torch)."""
    from torch import nn

    from anyppg_edge.models.budget import _resolve, int8_weight_bytes, tflm_arena_estimate
    from anyppg_edge.models.net1d import Net1D, model_stats

    model, name, default_samples = _resolve(name_or_model)
    n = int(input_samples or default_samples)
    s = model_stats(model, n, name=name)
    out_ch = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d))
    out_ch += sum(m.out_features for m in model.modules() if isinstance(m, nn.Linear))
    return ModelCost(
        model=name,
        macs=int(s.macs),
        params=int(s.params),
        peak_activation_elements=int(s.peak_activation_elements),
        int8_weight_bytes=int(int8_weight_bytes(model)),
        out_channels=int(out_ch),
        layers=len(s.activation_elements_per_layer),
        tflm_arena_estimate_bytes=tflm_arena_estimate(model, n, s.peak_activation_elements) if isinstance(model, Net1D) else None,
    )


@dataclass(frozen=True)
class McuEstimate:
    """Estimated cost of one model on one MCU class, per 10 s window (every field an estimate)."""

    model: str
    mcu: str
    macs: int
    latency_ms: float
    duty_pct: float  # latency / window length
    energy_uj: float
    avg_power_uw: float  # one window every 10 s, active CPU only
    model_flash_bytes: int
    flash_bytes: int  # model + runtime code
    arena_bytes: int
    ram_bytes: int  # arena + persistent runtime data
    fits_flash: bool
    fits_ram: bool
    watch_tier: list[str] = field(default_factory=list)  # budget violations of the 'watch' tier
    label: str = "estimate"
    latency_basis: str = ""  # measured instruction counts (emulated core) or the MACs/cycle assumption

    @property
    def fits_watch_tier(self) -> bool:
        return not self.watch_tier

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits_watch_tier": self.fits_watch_tier}


def _cost(x: Any) -> ModelCost:
    return x if isinstance(x, ModelCost) else model_cost(x)


def _mcu(x: McuClass | str) -> McuClass:
    if isinstance(x, McuClass):
        return x
    try:
        return MCU_CLASSES[x]
    except KeyError:
        raise KeyError(f"unknown MCU class {x!r}; known: {', '.join(MCU_CLASSES)}") from None


def _watch_violations(c: ModelCost, measured_arena_bytes: int | None = None) -> list[str]:
    """The watch tier's limits ``c`` exceeds; its arena limit applies to TFLM's arena (measured when
    given, else the budget's estimate, else the activations alone)."""
    from anyppg_edge.models.budget import TIERS

    lim = TIERS["watch"]
    arena = measured_arena_bytes or c.tflm_arena_estimate_bytes or c.peak_activation_elements * lim.arena_bytes_per_element
    checks = [
        ("params", c.params, lim.max_params),
        ("MACs", c.macs, lim.max_macs_per_window),
        ("int8 weights", c.int8_weight_bytes, lim.max_int8_weight_bytes),
        ("TFLM arena" + (" (measured)" if measured_arena_bytes else ""), arena, lim.max_arena_bytes),
    ]
    return [f"{what} {v:,} > {limit:,}" for what, v, limit in checks if v > limit]


def mcu_estimate(
    model: Any, mcu: McuClass | str, assumptions: CostAssumptions = DEFAULT_ASSUMPTIONS,
    measured_arena_bytes: int | None = None, measured_instructions: dict[str, float] | None = None,
) -> McuEstimate:
    """Estimated flash, RAM, latency and energy of ``model`` (registered name, ``nn.Module`` or
    :class:`ModelCost`) on ``mcu`` (key of :data:`MCU_CLASSES` or a :class:`McuClass`).
    ``measured_arena_bytes`` (TFLM's measured arena of the model's int8 file,
    :func:`anyppg_edge.deploy.tflm.measure_arena`: activations and persistent data together) replaces
    the arena and persistent-data estimates; RAM then adds only the scratch assumption.
    ``measured_instructions`` (emulated board → instructions per window of the generated C encoder):
    for an MCU class whose core was emulated (:data:`BOARD_MCU`), latency = instructions × the
    midpoint of :data:`CPI_RANGE` / clock instead of the MACs-per-cycle assumption."""
    c, m, a = _cost(model), _mcu(mcu), assumptions
    if m.int8_macs_per_cycle <= 0 or m.clock_mhz <= 0:
        raise ValueError(f"{m.key}: MACs/cycle and clock must be positive")
    ops = math.ceil(a.ops_per_layer * c.layers)
    board = next((b for b, key in BOARD_MCU.items() if key == m.key), None)
    if measured_instructions and board in measured_instructions:
        cycles = float(measured_instructions[board]) * sum(CPI_RANGE) / 2
        basis = f"qemu {board}: {measured_instructions[board]:,.0f} instructions x CPI {sum(CPI_RANGE) / 2:g}"
    else:
        cycles = c.macs / m.int8_macs_per_cycle * (1.0 + a.non_mac_overhead)
        basis = f"assumption: {m.int8_macs_per_cycle:g} MAC/cycle + {a.non_mac_overhead:.0%} overhead"
    latency_ms = cycles / (m.clock_mhz * 1e6) * 1e3
    energy_uj = m.run_current_ma * m.supply_v * latency_ms  # mA x V x ms = µJ
    model_flash = (
        c.int8_weight_bytes + a.quant_bytes_per_out_channel * c.out_channels + a.flatbuffer_bytes_per_op * ops
    )
    flash = model_flash + a.runtime_flash_bytes
    if measured_arena_bytes is not None:
        arena = int(measured_arena_bytes)
        ram = arena + a.scratch_bytes
    else:
        arena = math.ceil(c.peak_activation_elements * (1.0 + a.arena_slack)) + a.scratch_bytes
        ram = arena + a.persistent_bytes_per_out_channel * c.out_channels + a.persistent_bytes_per_op * ops
    return McuEstimate(
        model=c.model,
        mcu=m.key,
        macs=c.macs,
        latency_ms=latency_ms,
        duty_pct=latency_ms / (WINDOW_S * 1e3) * 100.0,
        energy_uj=energy_uj,
        avg_power_uw=energy_uj / WINDOW_S,
        model_flash_bytes=int(model_flash),
        flash_bytes=int(flash),
        arena_bytes=int(arena),
        ram_bytes=int(ram),
        fits_flash=flash <= m.flash_kb * 1024,
        fits_ram=ram <= m.ram_kb * 1024,
        watch_tier=_watch_violations(c, measured_arena_bytes),
        latency_basis=basis,
    )


def _mcus(mcus: Sequence[McuClass | str] | None, include_optional: bool) -> list[McuClass]:
    if mcus is not None:
        return [_mcu(m) for m in mcus]
    return [m for m in MCU_CLASSES.values() if include_optional or not m.optional]


def mcu_table(
    models: Sequence[Any] | None = None,
    mcus: Sequence[McuClass | str] | None = None,
    include_optional: bool = False,
    assumptions: CostAssumptions = DEFAULT_ASSUMPTIONS,
    measured_file_bytes: dict[str, int] | None = None,
    measured_arena_bytes: dict[str, int] | None = None,
    measured_instructions: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """One row per model x MCU class (default: every registered model, the non-optional MCUs), all
    figures labelled estimates; ``measured_file_bytes`` (model name → size of its int8 ``.tflite``)
    adds the real file size next to the flash estimate, ``measured_arena_bytes`` (model name → TFLM
    measured arena) replaces the arena estimate (column ``arena kB (TFLM measured)``),
    ``measured_instructions`` (model name → {emulated board → instructions per window}) the latency
    model of the MCU classes whose core was emulated (column ``latency basis``)."""
    if models is None:
        from anyppg_edge.models.registry import list_models

        models = list_models()
    rows = []
    for model in models:
        c = _cost(model)
        arena_m = (measured_arena_bytes or {}).get(c.model)
        for m in _mcus(mcus, include_optional):
            e = mcu_estimate(c, m, assumptions, arena_m, (measured_instructions or {}).get(c.model))
            row = {
                "model": c.model,
                "MCU": m.name,
                "MMACs": round(c.macs / 1e6, 2),
                "latency ms (est.)": round(e.latency_ms) if e.latency_ms >= 1000 else round(e.latency_ms, 1),
                "duty % of 10 s (est.)": round(e.duty_pct, 2),
                "energy µJ/window (est.)": round(e.energy_uj)
                if e.energy_uj >= 100
                else round(e.energy_uj, 1),
                "avg power µW (est.)": round(e.avg_power_uw)
                if e.avg_power_uw >= 100
                else round(e.avg_power_uw, 1),
                "model flash kB (est.)": round(e.model_flash_bytes / 1e3, 1),
                "flash kB incl. runtime (est.)": round(e.flash_bytes / 1e3, 1),
                ("arena kB (TFLM measured)" if arena_m is not None else "arena kB (est.)"): round(e.arena_bytes / 1e3, 1),
                "RAM kB (est.)": round(e.ram_bytes / 1e3, 1),
                "fits flash": "yes" if e.fits_flash else f"no ({m.flash_kb} kB)",
                "fits RAM": "yes" if e.fits_ram else f"no ({m.ram_kb} kB)",
                "watch tier": "ok" if e.fits_watch_tier else "over: " + "; ".join(e.watch_tier),
                "latency basis": e.latency_basis,
            }
            if measured_file_bytes and c.model in measured_file_bytes:
                row["int8 .tflite kB (measured)"] = round(measured_file_bytes[c.model] / 1e3, 1)
            rows.append(row)
    return rows


def mcu_markdown(
    models: Sequence[Any] | None = None,
    mcus: Sequence[McuClass | str] | None = None,
    include_optional: bool = False,
    assumptions: CostAssumptions = DEFAULT_ASSUMPTIONS,
    measured_file_bytes: dict[str, int] | None = None,
    measured_arena_bytes: dict[str, int] | None = None,
    measured_instructions: dict[str, dict[str, float]] | None = None,
) -> str:
    """The estimate table plus the assumptions (MCU classes with the basis of each figure, model
    constants), as markdown."""
    from anyppg_edge.report import markdown_table

    rows = mcu_table(models, mcus, include_optional, assumptions, measured_file_bytes, measured_arena_bytes,
                     measured_instructions)
    columns = list(dict.fromkeys(k for r in rows for k in r))  # union: the measured column is sparse
    mcu_rows = [
        {
            "MCU": m.name,
            "clock MHz": m.clock_mhz,
            "flash kB": m.flash_kb,
            "RAM kB": m.ram_kb,
            "int8 MAC/cycle": m.int8_macs_per_cycle,
            "MAC/cycle basis": m.macs_basis,
            "run mA": m.run_current_ma,
            "V": m.supply_v,
            "current basis": m.current_basis,
        }
        for m in _mcus(mcus, include_optional)
    ]
    return (
        "**Estimates, not measurements**: nothing below ran on an MCU. Per 10 s window, int8 TFLite "
        "Micro + CMSIS-NN, layer-by-layer; energy is active CPU only.\n\n"
        + markdown_table(rows, columns)
        + "\nMCU assumptions:\n\n"
        + markdown_table(mcu_rows)
        + "\nModel constants:\n\n"
        + markdown_table(assumptions.table())
    )
