"""Deployment budgets: what a registered model costs per 10 s window, and whether it fits a device tier.

Costs come from :func:`~anyppg_edge.models.net1d.model_stats` (one forward pass with hooks) plus a
size model of the int8 export:

* **params**, **MACs per window** (conv + linear multiply-accumulates) and **peak activation**
  (live elements at the worst op when run layer by layer, as TFLite Micro does) as measured there;
* **int8 weight bytes** = for every Conv1d / Linear: ``weight elements x 1 B`` (symmetric int8, no
  zero points) ``+ out_channels x 4 B`` (int32 bias) ``+ out_channels x 4 B`` (float32 per-output-
  channel scale); a BatchNorm that directly follows a conv (Net1D's ``first_bn``, ``bn2``, ``bn3``) is
  folded into that conv's weights and bias and costs nothing extra; a BatchNorm that cannot be
  folded (Net1D's pre-activation ``bn1``, which follows a residual add) stays a per-channel affine,
  ``2 x channels x 4 B``; a BatchNorm that never runs (``bn1`` of the very first block, or all of
  them with ``use_bn=False``) costs nothing. For a model that is not a Net1D every BatchNorm is
  counted as unfoldable (an upper bound). Activation quantisation parameters (a few bytes per
  tensor) are left out;
* **float32 weight bytes** = ``4 x params`` (the checkpoint as stored, BatchNorm unfolded);
* **peak activation bytes** = peak elements x 1 (int8) and x 4 (float32).

Tiers (:data:`TIERS`): ``watch`` (a microcontroller with a <= 64 KiB int8 tensor arena) and ``phone``
(a phone or Raspberry Pi running ONNX Runtime). The teacher has no tier: ``check_tier`` simply reports
what it violates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from anyppg_edge.errors import UnknownNameError
from anyppg_edge.preprocessing import DEFAULT_CONFIG

__all__ = [
    "TIERS",
    "BudgetRow",
    "TierLimits",
    "budget",
    "budget_table",
    "check_tier",
    "int8_weight_bytes",
    "violations",
]


@dataclass(frozen=True)
class TierLimits:
    """Upper limits of a deployment tier, per 10 s window (1,250 samples at 125 Hz).

    ``max_arena_bytes`` bounds the peak activation at ``arena_bytes_per_element`` bytes per element
    (1: int8 tensors; 4: float32 tensors)."""

    name: str
    max_params: int
    max_macs_per_window: int
    max_int8_weight_bytes: int
    max_arena_bytes: int
    arena_bytes_per_element: int = 1
    note: str = ""


TIERS: dict[str, TierLimits] = {
    "watch": TierLimits(
        name="watch",
        max_params=150_000,
        max_macs_per_window=5_000_000,
        max_int8_weight_bytes=200_000,
        max_arena_bytes=65_536,  # 64 KiB int8 tensor arena, layer-by-layer execution
        arena_bytes_per_element=1,
        note="smartwatch MCU: int8 TFLite Micro, 64 KiB tensor arena",
    ),
    "phone": TierLimits(
        name="phone",
        max_params=1_000_000,
        max_macs_per_window=50_000_000,  # ~50 ms per window at 1 GMAC/s (a Raspberry Pi 4 core)
        max_int8_weight_bytes=1_500_000,
        max_arena_bytes=4 * 1024 * 1024,  # 4 MiB even at float32
        arena_bytes_per_element=4,
        note="phone / Raspberry Pi: ONNX Runtime, float32 or int8",
    ),
}


@dataclass(frozen=True)
class BudgetRow:
    """Measured cost of one model for one window of ``input_samples`` samples."""

    model: str
    input_samples: int
    params: int
    macs_per_window: int
    int8_weight_bytes: int
    float32_weight_bytes: int
    peak_activation_elements: int
    peak_activation_int8_bytes: int
    peak_activation_float32_bytes: int
    conv_receptive_field_samples: int | None = None  # Net1D only (models.net1d.conv_receptive_field_samples)
    tflm_arena_estimate_bytes: int | None = None  # Net1D only (tflm_arena_estimate)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def as_row(self) -> dict[str, Any]:
        """Rounded, human-readable columns for a markdown table."""
        return {
            "model": self.model,
            "params": self.params,
            "MMACs/window": round(self.macs_per_window / 1e6, 2),
            "int8 weights kB": round(self.int8_weight_bytes / 1e3, 1),
            "fp32 weights MB": round(self.float32_weight_bytes / 1e6, 2),
            "peak act int8 kB": round(self.peak_activation_int8_bytes / 1e3, 1),
            "peak act fp32 kB": round(self.peak_activation_float32_bytes / 1e3, 1),
            "TFLM arena est. kB": None if self.tflm_arena_estimate_bytes is None else round(self.tflm_arena_estimate_bytes / 1e3, 1),
            "conv RF samples": self.conv_receptive_field_samples,
        }


def int8_weight_bytes(model: Any) -> int:
    """Size of the int8 export's constants (formula in the module docstring)."""
    from torch import nn

    from anyppg_edge.models.net1d import BasicBlock, Net1D

    folded: set[int] = set()
    unused: set[int] = set()
    if isinstance(model, Net1D):
        if not model.cfg.use_bn:
            unused.update(id(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        folded.add(id(model.first_bn))
        for m in model.modules():
            if isinstance(m, BasicBlock):
                folded.update((id(m.bn2), id(m.bn3)))
                if m.is_first_block:
                    unused.add(id(m.bn1))
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            out_ch = m.out_channels if isinstance(m, nn.Conv1d | nn.Conv2d) else m.out_features
            total += m.weight.numel() + out_ch * 4 + out_ch * 4
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in folded | unused:
            total += 2 * m.num_features * 4
        elif len(list(m.children())) == 0 and any(True for _ in m.parameters(recurse=False)):
            if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                raise TypeError(f"int8_weight_bytes: no size rule for layer type {type(m).__name__}")
    return total


def _resolve(name_or_model: Any) -> tuple[Any, str, int]:
    if isinstance(name_or_model, str):
        from anyppg_edge.models.registry import create_model, get_model_spec

        spec = get_model_spec(name_or_model)
        return create_model(name_or_model), spec.name, spec.input_samples
    from torch import nn

    if not isinstance(name_or_model, nn.Module):
        raise TypeError(
            f"budget() takes a registered model name or a torch nn.Module, got {type(name_or_model).__name__}"
        )
    return name_or_model, getattr(name_or_model, "name", type(name_or_model).__name__), DEFAULT_CONFIG.window_samples


def budget(name_or_model: Any, input_samples: int | None = None) -> BudgetRow:
    """Params, MACs, int8/float32 weight bytes and peak activation of a model for one window.

    ``name_or_model``: a registered name (its config's window length is used) or a built model
    (default 1,250 samples = 10 s at 125 Hz)."""
    from anyppg_edge.models.net1d import Net1D, conv_receptive_field_samples, model_stats

    model, name, default_samples = _resolve(name_or_model)
    n = int(input_samples or default_samples)
    stats = model_stats(model, n, name=name)
    return BudgetRow(
        model=name,
        input_samples=n,
        params=stats.params,
        macs_per_window=stats.macs,
        int8_weight_bytes=int8_weight_bytes(model),
        float32_weight_bytes=4 * stats.params,
        peak_activation_elements=stats.peak_activation_elements,
        peak_activation_int8_bytes=stats.peak_activation_bytes(1),
        peak_activation_float32_bytes=stats.peak_activation_bytes(4),
        conv_receptive_field_samples=conv_receptive_field_samples(model.cfg) if isinstance(model, Net1D) else None,
        tflm_arena_estimate_bytes=tflm_arena_estimate(model, n, stats.peak_activation_elements) if isinstance(model, Net1D) else None,
    )


# TensorFlow Lite Micro's arena = head (the planned activations) + tail (persistent data). The tail
# constants are the host (64-bit) build's: a NodeAndRegistration per op, a TfLiteEvalTensor per
# tensor plus the planner's bookkeeping, an int32 multiplier + int32 shift per output channel of
# every conv, and kernel op data (per-op and per-tensor averages fitted on the exported
# student-watch-k9; tests/test_tflm.py holds the estimate to the measured arena). A 32-bit MCU
# halves the node and eval-tensor structs.
TFLM_NODE_BYTES = 64
TFLM_EVAL_TENSOR_BYTES = 24
TFLM_PLANNER_BYTES_PER_TENSOR = 10
TFLM_PER_CHANNEL_BYTES = 8
TFLM_OP_DATA_BYTES = 50
# While it allocates, TFLM holds per-tensor planning records (freed afterwards) beside the persistent
# tail; for a small graph they, not the activations, set the smallest arena. Fitted on the exported
# student-watch-25hz and -50hz (measured arena minus tail: 68 B per tensor), rounded up to keep the
# estimate an upper bound.
TFLM_ALLOCATION_BYTES_PER_TENSOR = 72


def tflm_graph_counts(model: Any, input_samples: int) -> dict[str, int]:
    """Ops, tensors and conv output channels of the int8 TFLite graph the exporter writes for a Net1D
    (:mod:`anyppg_edge.deploy.export.tflite`): BN folded into convs, the pre-activation BN as a
    depthwise conv, Swish = LOGISTIC + MUL, SE = MEAN + 2 convs + LOGISTIC + MUL, identity path =
    [PAD] + MAX_POOL + [channel PAD], residual ADD; plus QUANTIZE, 2 RESHAPE, the final MEAN and
    DEQUANTIZE. Counted with hooks on one forward pass."""
    import torch
    from torch import nn

    from anyppg_edge.models.net1d import BasicBlock, same_padding

    c = {"convs": 0, "out_channels": 0, "swish": 0, "blocks": 0, "pool": 0, "pool_pad": 0, "channel_pad": 0}
    handles = []

    def conv_hook(mod, inputs, output):
        c["convs"] += 1
        c["out_channels"] += mod.out_channels if isinstance(mod, nn.Conv1d) else mod.out_features

    def bn_hook(mod, inputs, output):  # a BN that runs unfolded: bn1 of a non-first block
        c["convs"] += 1
        c["out_channels"] += mod.num_features

    def block_hook(mod, inputs, output):
        c["blocks"] += 1
        if mod.max_pool is not None:
            c["pool"] += 1
            c["pool_pad"] += same_padding(int(inputs[0].shape[-1]), mod.max_pool.pad_kernel, 1) != (0, 0)
        c["channel_pad"] += tuple(mod.channel_pad) != (0, 0)

    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Linear):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.SiLU):
            handles.append(m.register_forward_hook(lambda *a: c.__setitem__("swish", c["swish"] + 1)))
        elif isinstance(m, BasicBlock):
            handles.append(m.register_forward_hook(block_hook))
            if not m.is_first_block:
                handles.append(m.bn1.register_forward_hook(bn_hook))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, model.cfg.in_channels, input_samples))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    b = c["blocks"]
    ops = c["convs"] + 2 * c["swish"] + 4 * b + c["pool"] + c["pool_pad"] + c["channel_pad"] + 5
    # tensors: every op's output, the input, weight + bias of each conv, and 3 constants the converter
    # shares (the MEAN axis, PAD paddings, RESHAPE shape)
    consts = 2 * c["convs"] + 3
    return {"ops": ops, "tensors": ops + 1 + consts, "conv_out_channels": c["out_channels"]}


def tflm_arena_estimate(model: Any, input_samples: int, peak_activation_elements: int | None = None) -> int:
    """Estimated TFLM arena (bytes, 64-bit host) of a Net1D's int8 export: the tail of
    :func:`tflm_graph_counts` at the constants above, plus the larger of the head (the layer-by-layer
    peak activation, int8, :func:`~anyppg_edge.models.net1d.model_stats`) and the planner's
    allocation-time records. The measured figure is :func:`anyppg_edge.deploy.tflm.measure_arena` of
    the exported file."""
    if peak_activation_elements is None:
        from anyppg_edge.models.net1d import model_stats

        peak_activation_elements = model_stats(model, input_samples).peak_activation_elements
    n = tflm_graph_counts(model, input_samples)
    tail = (
        n["ops"] * (TFLM_NODE_BYTES + TFLM_OP_DATA_BYTES)
        + n["tensors"] * (TFLM_EVAL_TENSOR_BYTES + TFLM_PLANNER_BYTES_PER_TENSOR)
        + n["conv_out_channels"] * TFLM_PER_CHANNEL_BYTES
    )
    return max(int(peak_activation_elements), n["tensors"] * TFLM_ALLOCATION_BYTES_PER_TENSOR) + tail


def _tier(tier: str | TierLimits) -> TierLimits:
    if isinstance(tier, TierLimits):
        return tier
    try:
        return TIERS[tier]
    except KeyError:
        raise UnknownNameError(f"unknown tier {tier!r}; known: {', '.join(TIERS)}") from None


def _exceeded(row: BudgetRow, lim: TierLimits) -> list[tuple[str, str, int, int]]:
    arena = row.peak_activation_elements * lim.arena_bytes_per_element
    arena_what = f"peak activation bytes ({lim.arena_bytes_per_element} B/element)"
    if lim.arena_bytes_per_element == 1 and row.tflm_arena_estimate_bytes is not None:
        arena, arena_what = row.tflm_arena_estimate_bytes, "estimated TFLM arena bytes (activations + persistent)"
    checks = [
        ("params", "params", row.params, lim.max_params),
        ("MACs", "MACs per window", row.macs_per_window, lim.max_macs_per_window),
        ("int8 weights", "int8 weight bytes", row.int8_weight_bytes, lim.max_int8_weight_bytes),
        ("arena", arena_what, arena, lim.max_arena_bytes),
    ]
    return [c for c in checks if c[2] > c[3]]


def violations(row: BudgetRow, tier: str | TierLimits) -> list[str]:
    """The limits of ``tier`` that ``row`` exceeds, one message each (empty: it fits)."""
    lim = _tier(tier)
    return [
        f"{row.model}: {what} {value:,} > {lim.name} limit {limit:,}"
        for _, what, value, limit in _exceeded(row, lim)
    ]


def check_tier(name_or_model: Any, tier: str | TierLimits) -> list[str]:
    """Violations of ``tier``'s limits by a registered model (or a built one); empty when it fits."""
    return violations(budget(name_or_model), tier)


def budget_table(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per model (default: every registered model) with its costs and, per tier, ``ok`` or
    the limits it exceeds."""
    from anyppg_edge.models.registry import list_models

    rows = []
    for name in names or list_models():
        row = budget(name)
        out = row.as_row()
        for tier in TIERS:
            bad = _exceeded(row, TIERS[tier])
            out[tier] = "ok" if not bad else "over: " + ", ".join(short for short, *_ in bad)
        rows.append(out)
    return rows
