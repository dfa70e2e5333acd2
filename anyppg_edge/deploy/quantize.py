"""BatchNorm folding, the int8 deploy graph of Net1D, brevitas PTQ calibration and QAT fine-tuning.

:class:`DeployNet1D` is Net1D rewritten as the graph an int8 runtime executes, built from a trained
:class:`~anyppg_edge.models.net1d.Net1D`:

* every BN that follows a conv is folded into it (``first_conv+first_bn``, ``conv1+bn2``,
  ``conv2+bn3``);
* the pre-activation ``bn1`` (BN → Swish → conv, not foldable across the Swish) becomes a depthwise
  1×1 conv (``groups=C``): per-channel int8 scale and int32 bias, no float BN left;
* Swish is ``x * sigmoid(x)`` with the sigmoid output on TFLite's fixed int8 LOGISTIC grid
  (scale 1/256, 256 levels in [0, 1)) and the product re-quantized;
* SE: mean → FC → Swish → FC → sigmoid (fixed grid) → gate multiply, each re-quantized;
* residual add re-quantized; the identity path's zero-padded max-pool and channel padding are
  int8-exact (zero is representable, max commutes with the affine map).

With ``quant=False`` the same graph runs in float (no quantizers): it equals ``Net1D.eval()`` to
float rounding, which is tested. With ``quant=True`` every activation point named in
:attr:`DeployNet1D.act_points` is a brevitas ``QuantIdentity`` (int8 per-tensor, zero point 0),
weights are int8 per-output-channel (narrow range) and biases int32 — brevitas's naming. The
TFLite exporter (:mod:`anyppg_edge.deploy.export.tflite`) rebuilds the same graph in TensorFlow and
places fake-quant ops with exactly these scales, so the scales trained here are the ones in the file.

brevitas is imported lazily (``quant=True`` only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anyppg_edge.errors import ConfigError
from anyppg_edge.models.net1d import BasicBlock, Net1D, same_padding
from anyppg_edge.preprocessing import DEFAULT_CONFIG

log = logging.getLogger(__name__)

SIGMOID_SCALE = 1.0 / 256.0  # TFLite int8 LOGISTIC output: scale 1/256, zero point -128


# ----------------------------------------------------------------------------------- folding


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv/Linear followed by eval-mode BN → one conv with folded weight and bias (float64 math)."""
    w = weight.detach().double()
    b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias.detach().double()
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    shift = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    return w.float(), (b * scale + shift).float()


def bn_as_depthwise(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as a depthwise 1×1 conv: weight ``[C, 1, 1]``, bias ``[C]``."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    shift = bn.bias.detach().double() - bn.running_mean.detach().double() * scale
    return scale.float().reshape(-1, 1, 1), shift.float()


# ------------------------------------------------------------------------------ quantizers


def _quantizers() -> dict[str, Any]:
    """brevitas quantizer classes (imported lazily). Names follow brevitas: Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat, Int32Bias; the sigmoid grid is a constant-scale Uint8 quantizer."""
    from brevitas.inject.enum import RestrictValueType, ScalingImplType
    from brevitas.quant import (
        Int8ActPerTensorFloat,
        Int8WeightPerChannelFloat,
        Int32Bias,
        Uint8ActPerTensorFloat,
    )

    class Uint8SigmoidOutConst(Uint8ActPerTensorFloat):
        """TFLite's fixed LOGISTIC output grid: k/256, k = 0..255 (scale = max_val / 255)."""

        scaling_impl_type = ScalingImplType.CONST
        restrict_scaling_type = RestrictValueType.FP
        max_val = 255.0 / 256.0

    class Int16ActPerTensorFloat(Int8ActPerTensorFloat):
        """16-bit variant, for the higher-precision ablation only (not exportable to int8 TFLite)."""

        bit_width = 16

    return {
        "act16": Int16ActPerTensorFloat,
        "act": Int8ActPerTensorFloat,
        "weight": Int8WeightPerChannelFloat,
        "bias": Int32Bias,
        "sigmoid": Uint8SigmoidOutConst,
    }


def _val(x: Any) -> torch.Tensor:
    """Plain tensor of a brevitas QuantTensor (its dequantized value) or of a tensor."""
    return x.value if hasattr(x, "value") and not isinstance(x, torch.Tensor) else x


# ---------------------------------------------------------------------------- deploy graph


@dataclass
class ConvSpec:
    """One conv of the deploy graph, in PyTorch layout, with its SAME padding frozen."""

    weight: torch.Tensor  # [out, in/groups, k]
    bias: torch.Tensor  # [out]
    stride: int
    groups: int
    pad: tuple[int, int]


@dataclass
class BlockSpec:
    affine: ConvSpec | None  # pre-activation BN as depthwise 1×1 (None in the first block)
    conv1: ConvSpec
    conv2: ConvSpec
    conv3: ConvSpec
    se_fc1: tuple[torch.Tensor, torch.Tensor]  # Linear weight [h, C], bias [h]
    se_fc2: tuple[torch.Tensor, torch.Tensor]
    pool_kernel: int | None  # identity max-pool kernel (= stride) when the block downsamples
    pool_pad: tuple[int, int] = (0, 0)
    channel_pad: tuple[int, int] = (0, 0)


@dataclass
class DeploySpec:
    """Net1D after folding, for one fixed window length: what both PyTorch and TF graphs build from."""

    input_samples: int
    in_channels: int
    first: ConvSpec
    blocks: list[BlockSpec] = field(default_factory=list)

    @property
    def out_dim(self) -> int:
        return int(self.blocks[-1].conv3.weight.shape[0]) if self.blocks else int(self.first.weight.shape[0])


def deploy_spec(model: Net1D, input_samples: int = DEFAULT_CONFIG.window_samples) -> DeploySpec:
    """Fold a Net1D (eval semantics: BN running stats, no dropout) into a :class:`DeploySpec`."""
    if not model.cfg.use_bn:
        raise NotImplementedError("deploy graph needs use_bn=True (every registered config has it)")
    cur = input_samples

    def conv_spec(m, w: torch.Tensor, b: torch.Tensor) -> ConvSpec:
        nonlocal cur
        pad = same_padding(cur, m.pad_kernel, m.pad_stride)
        cur = m.out_length(cur)
        return ConvSpec(w, b, m.conv.stride[0], m.conv.groups, pad)

    w, b = fold_bn(model.first_conv.conv.weight, model.first_conv.conv.bias, model.first_bn)
    first = conv_spec(model.first_conv, w, b)
    spec = DeploySpec(input_samples=input_samples, in_channels=model.cfg.in_channels, first=first)
    for stage in model.stage_list:
        for blk in stage.block_list:
            assert isinstance(blk, BasicBlock)
            block_in = cur
            affine = None
            if not blk.is_first_block:
                aw, ab = bn_as_depthwise(blk.bn1)
                affine = ConvSpec(aw, ab, 1, int(aw.shape[0]), (0, 0))
            c1 = conv_spec(blk.conv1, *fold_bn(blk.conv1.conv.weight, blk.conv1.conv.bias, blk.bn2))
            c2 = conv_spec(blk.conv2, *fold_bn(blk.conv2.conv.weight, blk.conv2.conv.bias, blk.bn3))
            c3 = conv_spec(blk.conv3, blk.conv3.conv.weight.detach().float(), blk.conv3.conv.bias.detach().float())
            pool_k = blk.max_pool.pad_kernel if blk.max_pool is not None else None
            spec.blocks.append(
                BlockSpec(
                    affine=affine,
                    conv1=c1,
                    conv2=c2,
                    conv3=c3,
                    se_fc1=(blk.se_fc1.weight.detach().float(), blk.se_fc1.bias.detach().float()),
                    se_fc2=(blk.se_fc2.weight.detach().float(), blk.se_fc2.bias.detach().float()),
                    pool_kernel=pool_k,
                    pool_pad=same_padding(block_in, pool_k, 1) if pool_k else (0, 0),
                    channel_pad=tuple(blk.channel_pad),
                )
            )
    return spec


class _Conv(nn.Module):
    """SAME-padded conv of the deploy graph (float nn.Conv1d or brevitas QuantConv1d)."""

    def __init__(self, cs: ConvSpec, quant: bool):
        super().__init__()
        out_c, in_per_group, k = cs.weight.shape
        kw = dict(stride=cs.stride, groups=cs.groups, bias=True)
        if quant:
            import brevitas.nn as qnn

            qz = _quantizers()
            self.conv = qnn.QuantConv1d(
                in_per_group * cs.groups, out_c, k, weight_quant=qz["weight"], bias_quant=qz["bias"], **kw
            )
        else:
            self.conv = nn.Conv1d(in_per_group * cs.groups, out_c, k, **kw)
        with torch.no_grad():
            self.conv.weight.copy_(cs.weight)
            self.conv.bias.copy_(cs.bias)
        self.pad = tuple(cs.pad)

    def forward(self, x: Any) -> torch.Tensor:
        if self.pad != (0, 0):
            x = F.pad(x, self.pad)
        return self.conv(x)


class _Linear(nn.Module):
    def __init__(self, wb: tuple[torch.Tensor, torch.Tensor], quant: bool):
        super().__init__()
        w, b = wb
        if quant:
            import brevitas.nn as qnn

            qz = _quantizers()
            self.fc = qnn.QuantLinear(w.shape[1], w.shape[0], bias=True, weight_quant=qz["weight"], bias_quant=qz["bias"])
        else:
            self.fc = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.copy_(b)

    def forward(self, x: Any) -> torch.Tensor:
        return self.fc(x)


@dataclass(frozen=True)
class QuantVariant:
    """How Swish/sigmoid/SE are quantized. The default is what exports: every point int8, sigmoid
    outputs on TFLite's fixed 1/256 LOGISTIC grid. The others are measured alternatives
    (:mod:`anyppg_edge.deploy.export.ablation`): activation points whose name contains one of
    ``wide_points`` kept at 16 bit, or hard-sigmoid (``relu6(x + 3) / 6``) in place of the sigmoid
    in every Swish and SE gate (hard-swish)."""

    name: str = "int8"
    wide_points: tuple[str, ...] = ()
    hard_sigmoid: bool = False

    @property
    def exportable(self) -> bool:
        return not self.wide_points and not self.hard_sigmoid


DEFAULT_VARIANT = QuantVariant()


class DeployNet1D(nn.Module):
    """Net1D as its int8 deploy graph (see module docstring). ``[N, 1, L]`` → ``[N, D]``."""

    def __init__(
        self, spec: DeploySpec, quant: bool = False, name: str = "net1d", variant: QuantVariant = DEFAULT_VARIANT
    ):
        super().__init__()
        self.variant = variant
        self.spec_input_samples = spec.input_samples
        self.quant = quant
        self.name = name
        self.act_points: list[str] = []
        self.q = nn.ModuleDict()
        self.first = _Conv(spec.first, quant)
        self._point("input")
        self._swish_points("first")
        self.blocks = nn.ModuleList()
        self.block_meta: list[dict[str, Any]] = []
        for i, bs in enumerate(spec.blocks):
            p = f"b{i}"
            mods = nn.ModuleDict(
                {
                    "conv1": _Conv(bs.conv1, quant),
                    "conv2": _Conv(bs.conv2, quant),
                    "conv3": _Conv(bs.conv3, quant),
                    "se_fc1": _Linear(bs.se_fc1, quant),
                    "se_fc2": _Linear(bs.se_fc2, quant),
                }
            )
            if bs.affine is not None:
                mods["affine"] = _Conv(bs.affine, quant)
                self._swish_points(f"{p}_a0")
            self._swish_points(f"{p}_a1")
            self._swish_points(f"{p}_a2")
            self._point(f"{p}_conv3")
            self._point(f"{p}_se_mean")
            self._swish_points(f"{p}_seh")  # SE hidden: fc1 output, sigmoid, swish
            self._point(f"{p}_se_fc2")
            self._point(f"{p}_se_gate", sigmoid=True)
            self._point(f"{p}_se_out")
            self._point(f"{p}_add")
            self.blocks.append(mods)
            self.block_meta.append(
                {"pool_kernel": bs.pool_kernel, "pool_pad": tuple(bs.pool_pad), "channel_pad": tuple(bs.channel_pad)}
            )
        self._point("pool")
        self.out_dim = spec.out_dim

    # -- quantization points ----------------------------------------------------------------------
    def _point(self, name: str, sigmoid: bool = False) -> None:
        if name in self.q:
            raise ConfigError(f"duplicate quantization point {name!r}")
        if self.quant:
            import brevitas.nn as qnn

            qz = _quantizers()
            wide = any(w in name for w in self.variant.wide_points)
            kind = "act16" if wide else "sigmoid" if sigmoid and not self.variant.hard_sigmoid else "act"
            mod: nn.Module = qnn.QuantIdentity(act_quant=qz[kind], return_quant_tensor=True)
        else:
            mod = nn.Identity()
        self.q[name] = mod
        self.act_points.append(name)

    def _swish_points(self, prefix: str) -> None:
        """conv output, sigmoid output (fixed grid), swish output."""
        self._point(f"{prefix}_pre")
        self._point(f"{prefix}_sig", sigmoid=True)
        self._point(f"{prefix}_out")

    def _swish(self, x: torch.Tensor, prefix: str) -> Any:
        x = self.q[f"{prefix}_pre"](x)
        s = self.q[f"{prefix}_sig"](self._sigmoid(_val(x)))
        return self.q[f"{prefix}_out"](_val(x) * _val(s))

    def _sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x) if self.variant.hard_sigmoid else torch.sigmoid(x)

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.spec_input_samples:
            raise ConfigError(f"DeployNet1D expects [N, 1, {self.spec_input_samples}], got {tuple(x.shape)}")
        q = self.q
        h = q["input"](x)
        h = self._swish(self.first(h), "first")
        for i, (mods, meta) in enumerate(zip(self.blocks, self.block_meta, strict=True)):
            p = f"b{i}"
            identity = h
            out = h
            if "affine" in mods:
                out = self._swish(mods["affine"](out), f"{p}_a0")
            out = self._swish(mods["conv1"](out), f"{p}_a1")
            out = self._swish(mods["conv2"](out), f"{p}_a2")
            out = q[f"{p}_conv3"](mods["conv3"](out))
            se = q[f"{p}_se_mean"](_val(out).mean(-1))
            se = self._swish(mods["se_fc1"](se), f"{p}_seh")
            se = q[f"{p}_se_fc2"](mods["se_fc2"](se))
            gate = q[f"{p}_se_gate"](self._sigmoid(_val(se)))
            out = q[f"{p}_se_out"](_val(out) * _val(gate).unsqueeze(-1))
            if meta["pool_kernel"]:
                identity = F.max_pool1d(F.pad(identity, meta["pool_pad"]), meta["pool_kernel"])
            idv = _val(identity)
            if meta["channel_pad"] != (0, 0):
                idv = F.pad(idv, (0, 0, *meta["channel_pad"]))
            h = q[f"{p}_add"](_val(out) + idv)
        return _val(q["pool"](_val(h).mean(-1)))


def build_deploy_model(
    model: Net1D, input_samples: int = DEFAULT_CONFIG.window_samples, quant: bool = False, variant: QuantVariant = DEFAULT_VARIANT
) -> DeployNet1D:
    """Fold ``model`` and build its deploy graph (float, or brevitas int8 when ``quant``)."""
    was = model.training
    model.eval()
    try:
        spec = deploy_spec(model, input_samples)
    finally:
        model.train(was)
    return DeployNet1D(spec, quant=quant, name=getattr(model, "name", "net1d"), variant=variant).eval()


# ------------------------------------------------------------------------ calibration / QAT


def _batches_as_tensors(batches: Iterable[np.ndarray | torch.Tensor]) -> Iterable[torch.Tensor]:
    for xb in batches:
        t = torch.as_tensor(np.asarray(xb, np.float32))
        yield t.unsqueeze(1) if t.dim() == 2 else t


@torch.no_grad()
def calibrate(qmodel: DeployNet1D, batches: Iterable[np.ndarray | torch.Tensor], progress: bool = False) -> DeployNet1D:
    """Post-training calibration of every activation scale (brevitas ``calibration_mode``: quantization
    off, running percentile statistics on). This alone is the PTQ baseline."""
    from brevitas.graph.calibrate import calibration_mode

    if not qmodel.quant:
        raise ConfigError("calibrate() needs a quant=True DeployNet1D")
    qmodel.eval()
    n = 0
    it = _batches_as_tensors(batches)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="calibrate", unit="batch", leave=False)
    with calibration_mode(qmodel):
        for xb in it:
            qmodel(xb)
            n += len(xb)
    if n == 0:
        raise ConfigError("calibration iterator yielded no windows")
    log.info("calibrated %d activation points on %d windows", len(qmodel.act_points), n)
    return qmodel.eval()


def quantize_ptq(
    model: Net1D,
    batches: Iterable[np.ndarray | torch.Tensor],
    input_samples: int = DEFAULT_CONFIG.window_samples,
    progress: bool = False,
    variant: QuantVariant = DEFAULT_VARIANT,
) -> DeployNet1D:
    """Fold, build the brevitas int8 graph, calibrate: the PTQ baseline."""
    return calibrate(build_deploy_model(model, input_samples, quant=True, variant=variant), batches, progress=progress)


class QatTask(nn.Module):
    """Trainer task: the int8 fake-quant model distilled against the float model's embeddings
    (``batch['t_emb']``, precomputed): MSE relative to the teacher's mean per-dimension variance
    (a scalar: per-dimension normalisation blows up on near-constant dimensions) plus (1 - cosine)."""

    def __init__(self, model: DeployNet1D, t_var: torch.Tensor, mse_weight: float = 1.0, cosine_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.register_buffer("t_var", t_var.mean().clamp_min(1e-12))
        self.mse_weight, self.cosine_weight = mse_weight, cosine_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.model(batch["ppg"])
        t = batch["t_emb"]
        cos = F.cosine_similarity(out, t, dim=-1)
        losses = {
            "mse_loss": self.mse_weight * (((out - t) ** 2) / self.t_var).mean(),
            "cosine_loss": self.cosine_weight * (1 - cos).mean(),
        }
        return {**losses, "teacher_cosine": cos.detach().mean()}

    @torch.no_grad()
    def embed(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return (self.model(batch["ppg"]),)


@dataclass
class QatConfig:
    steps: int = 200
    batch_size: int = 32
    lr: float = 2e-5
    warmup_steps: int = 10
    seed: int = 0
    out_dir: str = "runs/qat"
    resume: bool = False
    progress: bool = True
    checkpoint_every_steps: int = 100


@torch.no_grad()
def float_embeddings(model: nn.Module, windows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    outs = [model(xb) for xb in _batches_as_tensors(windows[i : i + batch_size] for i in range(0, len(windows), batch_size))]
    return torch.cat(outs).numpy().astype(np.float32)


def qat_finetune(
    qmodel: DeployNet1D,
    float_model: nn.Module,
    train_windows: np.ndarray,
    cfg: QatConfig,
    val_windows: np.ndarray | None = None,
) -> tuple[DeployNet1D, dict[str, Any]]:
    """QAT: fine-tune a calibrated int8 model on the trainer (AdamW, warm-up + cosine, clipping,
    atomic checkpoints and exact resume) with a distillation loss against ``float_model``."""
    from anyppg_edge.train.configs import TrainConfig
    from anyppg_edge.train.datasets import TensorDictDataset
    from anyppg_edge.train.trainer import Trainer

    train_windows = np.asarray(train_windows, np.float32)
    t_emb = float_embeddings(float_model, train_windows)
    train_ds = TensorDictDataset({"ppg": train_windows, "t_emb": t_emb})
    val_ds = None
    if val_windows is not None and len(val_windows):
        val_windows = np.asarray(val_windows, np.float32)
        val_ds = TensorDictDataset({"ppg": val_windows, "t_emb": float_embeddings(float_model, val_windows)})
    task = QatTask(qmodel, torch.as_tensor(t_emb.var(0)))
    tcfg = TrainConfig(
        lr=cfg.lr,
        weight_decay=0.0,  # no decay on learned quantization scales
        max_steps=cfg.steps,
        warmup_steps=min(cfg.warmup_steps, cfg.steps),
        batch_size=min(cfg.batch_size, len(train_ds)),
        precision="fp32",
        seed=cfg.seed,
        eval_every_steps=cfg.checkpoint_every_steps if val_ds is not None else 0,
        checkpoint_every_steps=cfg.checkpoint_every_steps,
        log_every_steps=max(1, cfg.steps // 20),
        out_dir=cfg.out_dir,
        resume=cfg.resume,
        tensorboard=False,
        progress=cfg.progress,
    )
    trainer = Trainer(task, train_ds, val_ds, tcfg, device="cpu", extra_config={"qat": cfg.__dict__})
    result = trainer.fit()
    qmodel.eval()
    return qmodel, result


# ----------------------------------------------------------------------- scales for export


@dataclass(frozen=True)
class ActQuant:
    scale: float
    zero_point: float
    bit_width: int
    signed: bool

    @property
    def range(self) -> tuple[float, float]:
        """(min, max) real values of the grid, as TF's fake_quant_with_min_max_vars takes them."""
        if self.signed:
            lo, hi = -(2 ** (self.bit_width - 1)), 2 ** (self.bit_width - 1) - 1
        else:
            lo, hi = 0, 2**self.bit_width - 1
        return (lo - self.zero_point) * self.scale, (hi - self.zero_point) * self.scale


@torch.no_grad()
def activation_quant_params(qmodel: DeployNet1D, sample: torch.Tensor | np.ndarray | None = None) -> dict[str, ActQuant]:
    """The scale / zero point of every activation point, read from the QuantTensors a forward pass
    produces (forward hooks), so the exporter uses exactly what brevitas computes."""
    if not qmodel.quant:
        raise ConfigError("activation_quant_params() needs a quant=True DeployNet1D")
    found: dict[str, ActQuant] = {}
    handles = []
    for name in qmodel.act_points:

        def hook(mod, inp, out, name=name):
            found[name] = ActQuant(
                float(out.scale), float(out.zero_point), int(out.bit_width), bool(out.signed)
            )

        handles.append(qmodel.q[name].register_forward_hook(hook))
    if sample is None:
        sample = torch.zeros(1, 1, qmodel.spec_input_samples)
    try:
        qmodel.eval()
        qmodel(torch.as_tensor(np.asarray(sample, np.float32)).reshape(-1, 1, qmodel.spec_input_samples)[:1])
    finally:
        for h in handles:
            h.remove()
    missing = set(qmodel.act_points) - set(found)
    if missing:
        raise RuntimeError(f"no QuantTensor seen at {sorted(missing)}")
    return found


def weight_layers(model: DeployNet1D) -> dict[str, nn.Module]:
    """Conv/Linear layers of the deploy graph by export name (``first``, ``b3_conv2``, ``b3_se_fc1``…)."""
    out: dict[str, nn.Module] = {"first": model.first.conv}
    for i, mods in enumerate(model.blocks):
        for k, m in mods.items():
            out[f"b{i}_{k}"] = m.conv if isinstance(m, _Conv) else m.fc
    return out


@torch.no_grad()
def layer_weights(model: DeployNet1D) -> dict[str, dict[str, np.ndarray]]:
    """Per layer: float ``weight``/``bias`` (for quant models the fake-quantized int8 weight values)
    and, for quant models, the per-output-channel weight ``scale``."""
    out = {}
    for name, layer in weight_layers(model).items():
        d = {"bias": layer.bias.detach().numpy().astype(np.float32)}
        if model.quant:
            qw = layer.quant_weight()
            d["weight"] = qw.value.detach().numpy().astype(np.float32)
            d["scale"] = qw.scale.detach().reshape(-1).numpy().astype(np.float32)
        else:
            d["weight"] = layer.weight.detach().numpy().astype(np.float32)
        out[name] = d
    return out


