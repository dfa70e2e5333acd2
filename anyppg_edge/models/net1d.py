"""Net1D: the 1-D CNN backbone of AnyPPG (and ECGFounder), one implementation for every config.

Architecture (matches the official ``resnet1d.Net1D`` and its ``state_dict`` key layout exactly):

* ``first_conv`` (k, stride 2, SAME padding) → ``first_bn`` → Swish;
* stages ``stage_list.{i}`` of ``block_list.{j}`` pre-activation bottleneck blocks:
  BN → Swish → [Dropout] → 1×1 conv → BN → Swish → [Dropout] → grouped k conv (stride on the first
  block of a stage) → BN → Swish → [Dropout] → 1×1 conv → squeeze-and-excitation gate; the identity is
  max-pooled (SAME, zero padded) when the block downsamples and zero-padded on channels when it widens;
* global mean over time → embedding of size ``filter_list[-1]``.

Export notes: no ``einsum`` and no transposes (the SE gate is a broadcast multiply, channel padding
pads dim -2 directly), and :meth:`Net1D.set_static_length` freezes every SAME padding to Python
constants so a graph exported for one window length contains no shape arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.errors import ConfigError, InvalidSignalError
from anyppg_edge.preprocessing import DEFAULT_CONFIG


@dataclass(frozen=True)
class Net1DConfig:
    """Constructor arguments of :class:`Net1D` (names follow the official code)."""

    in_channels: int = 1
    base_filters: int = 64
    ratio: float = 1.0  # bottleneck width = int(out_channels * ratio)
    filter_list: tuple[int, ...] = (64, 160, 160, 400, 400, 512)
    m_blocks_list: tuple[int, ...] = (2, 2, 2, 3, 3, 1)
    kernel_size: int = 3
    stride: int = 2
    groups_width: int = 16  # channels per group of the k-conv: groups = out_channels // groups_width
    use_bn: bool = True
    use_do: bool = True
    dropout_p: float = 0.5
    se_reduction: int = 2  # SE hidden width = out_channels // se_reduction

    def __post_init__(self) -> None:
        object.__setattr__(self, "filter_list", tuple(int(v) for v in self.filter_list))
        object.__setattr__(self, "m_blocks_list", tuple(int(v) for v in self.m_blocks_list))
        if len(self.filter_list) != len(self.m_blocks_list) or not self.filter_list:
            raise ConfigError(
                f"filter_list ({len(self.filter_list)} stages) and m_blocks_list "
                f"({len(self.m_blocks_list)} stages) must be non-empty and the same length"
            )
        for c in self.filter_list:
            if c % self.groups_width:
                raise ConfigError(f"stage width {c} is not a multiple of groups_width={self.groups_width}")

    @property
    def out_dim(self) -> int:
        return self.filter_list[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["filter_list"] = list(self.filter_list)
        d["m_blocks_list"] = list(self.m_blocks_list)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Net1DConfig:
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow-style SAME padding (left, right) for a 1-D op, as the official Net1D computes it."""
    out_len = (length + stride - 1) // stride
    total = max(0, (out_len - 1) * stride + kernel_size - length)
    return total // 2, total - total // 2


class _SamePad(nn.Module):
    """Mixin for ops with SAME padding; pads are computed from the length, or frozen for export."""

    pad_kernel: int
    pad_stride: int
    static_pad: tuple[int, int] | None

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.static_pad
        if pad is None:
            pad = same_padding(int(x.shape[-1]), self.pad_kernel, self.pad_stride)
        if pad == (0, 0):
            return x
        return F.pad(x, pad, mode="constant", value=0.0)

    def out_length(self, length: int) -> int:
        left, right = same_padding(length, self.pad_kernel, self.pad_stride)
        return (length + left + right - self.pad_kernel) // self.op_stride + 1

    @property
    def op_stride(self) -> int:
        raise NotImplementedError


class SamePadConv1d(_SamePad):
    """Conv1d with SAME zero padding; the conv lives in ``.conv`` (official key layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1):
        super().__init__()
        self.pad_kernel, self.pad_stride, self.static_pad = kernel_size, stride, None
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, groups=groups)

    @property
    def op_stride(self) -> int:
        return self.pad_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self._pad(x))


class SamePadMaxPool1d(_SamePad):
    """MaxPool1d(k, stride k) after SAME padding computed with stride 1 and **zero** fill (official).

    Zero fill differs from MaxPool's own -inf padding; keep the explicit pad (see the toolchain notes
    on onnxruntime's Pad_Fusion)."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.pad_kernel, self.pad_stride, self.static_pad = kernel_size, 1, None
        self.max_pool = nn.MaxPool1d(kernel_size=kernel_size)

    @property
    def op_stride(self) -> int:
        return self.pad_kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.max_pool(self._pad(x))


class BasicBlock(nn.Module):
    """Pre-activation bottleneck block with squeeze-and-excitation (official layout)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        ratio: float,
        kernel_size: int,
        stride: int,
        groups: int,
        downsample: bool,
        is_first_block: bool,
        cfg: Net1DConfig,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample, self.is_first_block = downsample, is_first_block
        self.use_bn, self.use_do = cfg.use_bn, cfg.use_do
        stride = stride if downsample else 1
        mid = int(out_channels * ratio)
        p = cfg.dropout_p

        self.bn1 = nn.BatchNorm1d(in_channels)
        self.activation1 = nn.SiLU()
        self.do1 = nn.Dropout(p)
        self.conv1 = SamePadConv1d(in_channels, mid, 1, 1)
        self.bn2 = nn.BatchNorm1d(mid)
        self.activation2 = nn.SiLU()
        self.do2 = nn.Dropout(p)
        self.conv2 = SamePadConv1d(mid, mid, kernel_size, stride, groups=groups)
        self.bn3 = nn.BatchNorm1d(mid)
        self.activation3 = nn.SiLU()
        self.do3 = nn.Dropout(p)
        self.conv3 = SamePadConv1d(mid, out_channels, 1, 1)
        self.se_fc1 = nn.Linear(out_channels, out_channels // cfg.se_reduction)
        self.se_activation = nn.SiLU()
        self.se_fc2 = nn.Linear(out_channels // cfg.se_reduction, out_channels)
        self.max_pool = SamePadMaxPool1d(stride) if downsample else None
        extra = out_channels - in_channels
        self.channel_pad = (extra // 2, extra - extra // 2)  # zeros before / after on the channel axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = x
        if not self.is_first_block:
            if self.use_bn:
                out = self.bn1(out)
            out = self.activation1(out)
            if self.use_do:
                out = self.do1(out)
        out = self.conv1(out)
        if self.use_bn:
            out = self.bn2(out)
        out = self.activation2(out)
        if self.use_do:
            out = self.do2(out)
        out = self.conv2(out)
        if self.use_bn:
            out = self.bn3(out)
        out = self.activation3(out)
        if self.use_do:
            out = self.do3(out)
        out = self.conv3(out)

        se = self.se_fc2(self.se_activation(self.se_fc1(out.mean(-1))))
        out = out * torch.sigmoid(se).unsqueeze(-1)

        if self.max_pool is not None:
            identity = self.max_pool(identity)
        if self.channel_pad != (0, 0):
            identity = F.pad(identity, (0, 0, *self.channel_pad), mode="constant", value=0.0)
        return out + identity


class BasicStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, i_stage: int, m_blocks: int, cfg: Net1DConfig):
        super().__init__()
        self.block_list = nn.ModuleList(
            BasicBlock(
                in_channels=in_channels if j == 0 else out_channels,
                out_channels=out_channels,
                ratio=cfg.ratio,
                kernel_size=cfg.kernel_size,
                stride=cfg.stride if j == 0 else 1,
                groups=out_channels // cfg.groups_width,
                downsample=j == 0,
                is_first_block=i_stage == 0 and j == 0,
                cfg=cfg,
            )
            for j in range(m_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block_list:
            x = block(x)
        return x


class Net1D(nn.Module):
    """AnyPPG / ECGFounder Net1D encoder: ``[N, in_channels, L]`` float → ``[N, out_dim]`` embedding."""

    def __init__(self, cfg: Net1DConfig | None = None, name: str = "custom"):
        super().__init__()
        self.cfg = cfg = cfg or Net1DConfig()
        self.name = name
        self.static_length: int | None = None
        self.first_conv = SamePadConv1d(cfg.in_channels, cfg.base_filters, cfg.kernel_size, stride=2)
        self.first_bn = nn.BatchNorm1d(cfg.base_filters)
        self.first_activation = nn.SiLU()
        self.stage_list = nn.ModuleList()
        in_ch = cfg.base_filters
        for i, (out_ch, m) in enumerate(zip(cfg.filter_list, cfg.m_blocks_list, strict=True)):
            self.stage_list.append(BasicStage(in_ch, out_ch, i, m, cfg))
            in_ch = out_ch

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise InvalidSignalError(f"Net1D expects a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[1] != self.cfg.in_channels:
            raise InvalidSignalError(
                f"Net1D expects input of shape [batch, {self.cfg.in_channels}, samples], got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise InvalidSignalError(f"Net1D expects a floating-point input, got dtype {x.dtype}")
        if self.static_length is not None and x.shape[-1] != self.static_length:
            raise InvalidSignalError(
                f"this Net1D is frozen for {self.static_length}-sample windows "
                f"(set_static_length), got {x.shape[-1]} samples"
            )
        if x.shape[-1] < 2:
            raise InvalidSignalError(f"Net1D needs at least 2 samples, got {x.shape[-1]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        out = self.first_conv(x)
        if self.cfg.use_bn:
            out = self.first_bn(out)
        out = self.first_activation(out)
        for stage in self.stage_list:
            out = stage(out)
        return out.mean(-1)

    def set_static_length(self, length: int | None) -> Net1D:
        """Freeze all SAME paddings for inputs of ``length`` samples (None: dynamic again)."""
        if length is not None and length < 2:
            raise ConfigError(f"static length must be >= 2 samples, got {length}")
        self.static_length = length
        cur = length
        for m in self.modules():
            if isinstance(m, BasicBlock) and cur is not None:
                block_in = cur
                for sub in (m.conv1, m.conv2, m.conv3):
                    sub.static_pad = same_padding(cur, sub.pad_kernel, sub.pad_stride)
                    cur = sub.out_length(cur)
                if m.max_pool is not None:
                    m.max_pool.static_pad = same_padding(block_in, m.max_pool.pad_kernel, 1)
            elif m is self.first_conv and cur is not None:
                m.static_pad = same_padding(cur, m.pad_kernel, m.pad_stride)
                cur = m.out_length(cur)
            elif isinstance(m, _SamePad) and length is None:
                m.static_pad = None
        return self


@dataclass
class ModelStats:
    """Cost of one forward pass of a single window."""

    name: str
    input_samples: int
    params: int
    macs: int  # multiply-accumulates of conv and linear layers
    peak_activation_elements: int  # live elements at the worst op, layer-by-layer execution
    activation_elements_per_layer: dict[str, int] = field(default_factory=dict)

    def peak_activation_bytes(self, bytes_per_element: int = 1) -> int:
        return self.peak_activation_elements * bytes_per_element

    def as_row(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "input_samples": self.input_samples,
            "params": self.params,
            "MMACs/window": round(self.macs / 1e6, 2),
            "peak act int8 kB": round(self.peak_activation_bytes(1) / 1e3, 1),
            "peak act fp32 kB": round(self.peak_activation_bytes(4) / 1e3, 1),
        }


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def conv_receptive_field_samples(cfg: Net1DConfig) -> int:
    """Input samples that one position of the last stage's output depends on through the convolution
    path (first conv, then each block's ``conv2``; 1x1 convs add nothing). The squeeze-excitation gates
    see the whole input, but only as one gain per channel, so they are left out: this is the span over
    which a feature can measure timing before the final average over time."""
    k = cfg.kernel_size
    rf, jump = k, 2  # first_conv: kernel k, stride 2
    for n_blocks in cfg.m_blocks_list:
        for j in range(n_blocks):
            rf += (k - 1) * jump
            jump *= cfg.stride if j == 0 else 1
    return rf


def model_stats(model: nn.Module, input_samples: int = DEFAULT_CONFIG.window_samples, name: str | None = None) -> ModelStats:
    """Params, MACs per window and peak activation size, measured by hooks on one forward pass.

    Peak activation models an interpreter that runs layer by layer (as TFLite Micro does): at each
    leaf op the live tensors are the op's inputs and output plus the block inputs still held for
    residual connections; a Swish (SiLU) holds three (its input, the sigmoid, the product), as the
    int8 graph computes it. Functional ops (pad, add, mean) are folded into their neighbours.
    """
    in_ch = getattr(getattr(model, "cfg", None), "in_channels", 1)
    macs = 0
    peak = 0
    per_layer: dict[str, int] = {}
    held: list[int] = []
    handles = []

    def leaf_hook(mod_name: str):
        def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            nonlocal macs, peak
            n_in = sum(t.numel() for t in inputs if isinstance(t, torch.Tensor))
            if isinstance(mod, nn.Conv1d):
                macs += output.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0]
            elif isinstance(mod, nn.Linear):
                macs += output.numel() * mod.in_features
            live = n_in + output.numel() + sum(held)
            if isinstance(mod, nn.SiLU):  # int8 Swish = LOGISTIC + MUL: x, sigmoid(x) and x*sigmoid(x) live
                live += output.numel()
            per_layer[mod_name] = live
            peak = max(peak, live)

        return hook

    def _hold(mod: nn.Module, inputs: tuple) -> None:
        held.append(inputs[0].numel())  # block input stays live until the residual add

    def _release(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        held.pop()  # (a forward hook must return None, or it would replace the output)

    for mod_name, mod in model.named_modules():
        if isinstance(mod, BasicBlock):
            handles.append(mod.register_forward_pre_hook(_hold))
            handles.append(mod.register_forward_hook(_release))
        elif len(list(mod.children())) == 0:
            handles.append(mod.register_forward_hook(leaf_hook(mod_name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_ch, input_samples))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return ModelStats(
        name=name or getattr(model, "name", type(model).__name__),
        input_samples=input_samples,
        params=count_params(model),
        macs=macs,
        peak_activation_elements=peak,
        activation_elements_per_layer=per_layer,
    )
