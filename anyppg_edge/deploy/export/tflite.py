"""TFLite export: a TensorFlow-native rebuild of the deploy graph, converted with TFLiteConverter.

Route (chosen from the measured toolchain study in ``../shared/notes/toolchain-study.md``): the deploy
graph of :mod:`anyppg_edge.deploy.quantize` is rebuilt op for op as a ``tf.Module`` whose signature
keeps PyTorch's ``[1, 1, L]`` (NCW, C=1) input; convs are ``tf.nn.conv2d`` on ``[N, 1, L, C]``
(grouped convs natively, the SE FCs as 1×1 convs) so the TFLite graph has no transposes. Compared
with litert-torch (a TRANSPOSE around every conv, PT2E leaves BN/pad/mean float) and onnx2tf (changes
the I/O layout), this gives the simplest fully-int8 graph. A per-channel 1×1 conv (the pre-activation BN) is emitted
as DEPTHWISE_CONV_2D, and the converted graph's ops are put in the order of least peak activation
memory (:mod:`anyppg_edge.deploy.export.schedule`), which is the order TFLite Micro plans its arena by.

* **float**: the folded float graph, plain conversion.
* **int8 from brevitas** (QAT or PTQ): at every activation point of the brevitas model a
  ``fake_quant_with_min_max_vars`` op with *that point's brevitas scale*, and per-channel
  ``fake_quant_with_min_max_vars_per_channel`` (narrow range) on every weight with the brevitas
  weight scales; the converter turns the fake-quant graph into int8 kernels with those scales, so the
  file computes what brevitas trained (int32 biases at ``s_in * s_w``, LOGISTIC on its fixed 1/256
  grid, which the brevitas sigmoid quantizer also uses).
* **int8 PTQ by the converter** (``representative_dataset``) is available for comparison.

TensorFlow is imported lazily.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.contract import InputContract, QuantParams
from anyppg_edge.deploy.export.schedule import schedule_for_memory
from anyppg_edge.deploy.quantize import ActQuant, DeployNet1D, activation_quant_params, layer_weights
from anyppg_edge.io import atomic_write

log = logging.getLogger(__name__)

# Fake-quant ops are named ``aq__<point>``: TFLite keeps the name in the int8 tensor it produces,
# which is how per-layer parity finds the tensor of each brevitas activation point.
TENSOR_PREFIX = "aq__"


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


class _TFGraph:
    """Builds the forward function of a :class:`DeployNet1D` in TensorFlow. ``affine_depthwise``:
    the per-channel 1×1 convs as DEPTHWISE_CONV_2D (default) or as grouped CONV_2D."""

    def __init__(self, dmodel: DeployNet1D, act_quant: dict[str, ActQuant] | None, affine_depthwise: bool = True):
        self.affine_depthwise = affine_depthwise
        self.tf = _tf()
        self.dmodel = dmodel
        self.act_quant = act_quant
        self.weights = layer_weights(dmodel)
        self.L = dmodel.spec_input_samples
        self.consts: dict[str, Any] = {}
        tf = self.tf
        for name, d in self.weights.items():
            w = d["weight"]
            if w.ndim == 3:  # conv [out, in/g, k] -> [1, k, in/g, out]
                w = np.transpose(w, (2, 1, 0))[None]
            else:  # linear [out, in] -> 1x1 conv [1, 1, in, out]
                w = np.transpose(w, (1, 0))[None, None]
            wt = tf.constant(np.ascontiguousarray(w, np.float32))
            if act_quant is not None:
                s = d["scale"].astype(np.float32)
                wt = tf.quantization.fake_quant_with_min_max_vars_per_channel(
                    wt, min=-127.0 * s, max=127.0 * s, num_bits=8, narrow_range=True
                )
            self.consts[name] = (wt, tf.constant(d["bias"].astype(np.float32)))

    # -- ops ---------------------------------------------------------------------------------------
    def fq(self, name: str, x):
        if self.act_quant is None:
            return x
        aq = self.act_quant[name]
        lo, hi = aq.range
        return self.tf.quantization.fake_quant_with_min_max_vars(
            x, min=lo, max=hi, num_bits=aq.bit_width, name=f"{TENSOR_PREFIX}{name}"
        )

    def conv(self, name: str, x, pad: tuple[int, int] = (0, 0), stride: int = 1):
        tf = self.tf
        if pad != (0, 0):
            x = tf.pad(x, [[0, 0], [0, 0], [pad[0], pad[1]], [0, 0]])
        w, b = self.consts[name]
        y = tf.nn.conv2d(x, w, strides=[1, 1, stride, 1], padding="VALID")
        return tf.nn.bias_add(y, b)

    def conv_mod(self, name: str, mod, x):
        return self.conv(name, x, tuple(mod.pad), int(mod.conv.stride[0]))

    def channel_affine(self, name: str, x):
        """A per-channel 1x1 conv (groups == channels: the pre-activation BN) as DEPTHWISE_CONV_2D,
        the op TFLite Micro has always supported and CMSIS-NN optimises (a grouped CONV_2D with
        groups == channels computes the same, but needs a recent TFLM)."""
        tf = self.tf
        if not self.affine_depthwise:
            return self.conv(name, x)
        w, b = self.consts[name]  # [1, 1, 1, C]: per-channel quantized along C
        wd = tf.reshape(w, [1, 1, -1, 1])  # depthwise filter [kh, kw, C, multiplier]
        y = tf.nn.depthwise_conv2d(x, wd, strides=[1, 1, 1, 1], padding="VALID")
        return tf.nn.bias_add(y, b)

    def swish(self, prefix: str, x):
        x = self.fq(f"{prefix}_pre", x)
        s = self.fq(f"{prefix}_sig", self.tf.sigmoid(x))
        return self.fq(f"{prefix}_out", x * s)

    # -- forward -----------------------------------------------------------------------------------
    def __call__(self, x):
        tf = self.tf
        h = self.fq("input", x)
        h = tf.reshape(h, [-1, 1, self.L, 1])  # NCW with C=1 -> N,H=1,W=L,C=1
        h = self.swish("first", self.conv_mod("first", self.dmodel.first, h))
        for i, (mods, meta) in enumerate(zip(self.dmodel.blocks, self.dmodel.block_meta, strict=True)):
            p = f"b{i}"
            # the identity path first: the block input then dies at conv1 instead of living through
            # the whole residual branch (TFLM's planner follows op order; ~1 tensor less at the peak)
            identity = h
            k = meta["pool_kernel"]
            if k:
                pl, pr = meta["pool_pad"]
                if (pl, pr) != (0, 0):
                    identity = tf.pad(identity, [[0, 0], [0, 0], [pl, pr], [0, 0]])
                identity = tf.nn.max_pool2d(identity, ksize=[1, k], strides=[1, k], padding="VALID")
            cl, cr = meta["channel_pad"]
            if (cl, cr) != (0, 0):
                identity = tf.pad(identity, [[0, 0], [0, 0], [0, 0], [cl, cr]])
            out = h
            if "affine" in mods:
                out = self.swish(f"{p}_a0", self.channel_affine(f"{p}_affine", out))
            out = self.swish(f"{p}_a1", self.conv_mod(f"{p}_conv1", mods["conv1"], out))
            out = self.swish(f"{p}_a2", self.conv_mod(f"{p}_conv2", mods["conv2"], out))
            out = self.fq(f"{p}_conv3", self.conv_mod(f"{p}_conv3", mods["conv3"], out))
            se = self.fq(f"{p}_se_mean", tf.reduce_mean(out, axis=2, keepdims=True))
            se = self.swish(f"{p}_seh", self.conv(f"{p}_se_fc1", se))
            se = self.fq(f"{p}_se_fc2", self.conv(f"{p}_se_fc2", se))
            gate = self.fq(f"{p}_se_gate", tf.sigmoid(se))
            out = self.fq(f"{p}_se_out", out * gate)
            h = self.fq(f"{p}_add", out + identity)
        pooled = self.fq("pool", tf.reduce_mean(h, axis=2))  # [N, 1, C]
        return tf.reshape(pooled, [-1, self.dmodel.out_dim])


def tf_module(dmodel: DeployNet1D, act_quant: dict[str, ActQuant] | None = None, affine_depthwise: bool = True):
    """A ``tf.Module`` with ``serve(ppg[1, 1, L]) -> embedding[1, D]`` computing the deploy graph
    (float, or with brevitas fake-quant when ``act_quant`` is given)."""
    tf = _tf()
    graph = _TFGraph(dmodel, act_quant, affine_depthwise)

    class Net1DModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 1, graph.L], tf.float32, name="ppg")])
        def serve(self, ppg):
            return {"embedding": graph(ppg)}

    return Net1DModule()


def _convert(module, configure: Callable[[Any], None] | None = None) -> bytes:
    tf = _tf()
    cf = module.serve.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    if configure is not None:
        configure(conv)
    return conv.convert()


def _io_quant(model_bytes: bytes) -> tuple[QuantParams | None, QuantParams | None]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model_bytes)
    res = []
    for d in (it.get_input_details()[0], it.get_output_details()[0]):
        scale, zp = d["quantization"]
        res.append(QuantParams(float(scale), int(zp), np.dtype(d["dtype"]).name) if d["dtype"] == np.int8 else None)
    return res[0], res[1]


def export_tflite(
    dmodel: DeployNet1D,
    path: str | Path,
    contract: InputContract,
    int8_io: bool = False,
    representative: Iterable[np.ndarray] | None = None,
    memory: str = "planned",
    affine_depthwise: bool = True,
) -> Path:
    """Write one TFLite artifact with its contract as tflite-support metadata.

    * ``dmodel.quant`` False, no ``representative``: float TFLite (``contract.artifact_kind`` must
      be ``tflite-float``);
    * ``dmodel.quant`` True: full-int8 with the brevitas scales (``tflite-int8``);
    * ``dmodel.quant`` False with ``representative`` windows: full-int8 PTQ by the TFLite converter.
    ``int8_io``: int8 input/output tensors (else float I/O with QUANTIZE/DEQUANTIZE at the ends).
    ``memory`` (the arena levers, measured by :func:`anyppg_edge.deploy.tflm.arena_levers`):
    ``"planned"`` (default) = ops in the order of least peak activation plus TFLM's offline arena plan;
    ``"ordered"`` = that order, TFLM plans online; ``"converter"`` = the converter's order as is.
    ``affine_depthwise``: the pre-activation BN as DEPTHWISE_CONV_2D (default) or a grouped CONV_2D.
    """
    from dataclasses import replace

    from anyppg_edge.deploy.export.metadata import write_tflite_metadata

    if not dmodel.variant.exportable:
        raise ValueError(f"quantization variant {dmodel.variant.name!r} is an ablation, not an int8 TFLite graph")
    tf = _tf()
    int8 = dmodel.quant or representative is not None
    want = "tflite-int8" if int8 else "tflite-float"
    if contract.artifact_kind != want:
        raise ValueError(f"contract says {contract.artifact_kind!r} but this export produces {want!r}")
    if memory not in ("planned", "ordered", "converter"):
        raise ValueError(f"memory must be 'planned', 'ordered' or 'converter', got {memory!r}")
    act_quant = activation_quant_params(dmodel) if dmodel.quant else None
    module = tf_module(dmodel, act_quant, affine_depthwise)

    def configure(conv) -> None:
        if not int8:
            return
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        if dmodel.quant:
            # The converter validates "full-int8 needs a representative_dataset" before it has looked
            # at the graph; for a fake-quant (QAT) graph it then takes every range from the fake-quant
            # ops and never calls this generator (tested: the file's scales equal brevitas's).
            conv.representative_dataset = lambda: iter([[np.zeros((1, 1, dmodel.spec_input_samples), np.float32)]])
        elif representative is not None:
            windows = [np.asarray(w, np.float32).reshape(1, 1, dmodel.spec_input_samples) for w in representative]

            def gen():
                for w in windows:
                    yield [w]

            conv.representative_dataset = gen

    model_bytes = _convert(module, configure)
    # TFLM runs ops in file order and plans the arena from their lifetimes: take the order with the
    # least peak activation memory (same ops, same results)
    if memory != "converter":
        model_bytes, sched = schedule_for_memory(model_bytes, offline_plan=memory == "planned")
        log.info("op order: peak live activations %d -> %d B", sched.peak_before_bytes, sched.peak_after_bytes)
    in_q, out_q = _io_quant(model_bytes)
    extra = dict(contract.extra)
    extra.update(
        {
            "route": "tf-native + TFLiteConverter"
            + (" (brevitas fake-quant scales)" if dmodel.quant else " (converter PTQ)" if int8 else ""),
            "tensorflow": tf.__version__,
        }
    )
    contract = replace(contract, input_quant=in_q, output_quant=out_q, extra=extra)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".nometa.tflite")
    atomic_write(tmp, lambda f: f.write(model_bytes))
    try:
        write_tflite_metadata(tmp, contract, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def tf_reference_embeddings(dmodel: DeployNet1D, windows: np.ndarray, quant: bool | None = None) -> np.ndarray:
    """Run the TF graph eagerly (no conversion): isolates TF-port error from converter error."""
    tf = _tf()
    use_q = dmodel.quant if quant is None else quant
    graph = _TFGraph(dmodel, activation_quant_params(dmodel) if use_q else None)
    outs = [graph(tf.constant(np.asarray(w, np.float32).reshape(1, 1, -1))).numpy() for w in windows]
    return np.concatenate(outs).astype(np.float32)
