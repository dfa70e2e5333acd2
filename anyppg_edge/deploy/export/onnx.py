"""ONNX export of a Net1D encoder (float, and int8 QDQ via onnxruntime's static quantizer).

Every file written here carries its :class:`~anyppg_edge.contract.InputContract` in the ONNX
``metadata_props`` (key :data:`~anyppg_edge.contract.CONTRACT_KEY`, the contract as JSON, plus flat
human-readable copies of the main fields), so a runtime can refuse a preprocessing chain the model
was not trained on.

Two onnxruntime pitfalls are handled here (see ``shared/notes/toolchain-study.md`` sections 3, 7):

* ORT's level-1 ``Pad_Fusion`` folds the explicit **zero** ``Pad`` in front of the identity
  ``MaxPool`` into MaxPool's own ``pads``, which pad with -inf: wrong embeddings whenever a block
  input length is odd (a 10 s window at 125 Hz halves to odd lengths). Every session made here disables it
  (:func:`~anyppg_edge.deploy.runtime.ort_session`), and the quantizer's pre-processing runs the same ORT optimization with it
  disabled (``quant_pre_process`` alone would bake the fused, wrong MaxPool into the int8 file).
* int8 QDQ on x86: S8S8 convolutions run in float unless ``session.qdqisint8allowed=1`` (ARM fuses
  them by default), and U8S8 saturates in the AVX2 kernels unless ``reduce_range=True``.
  :func:`onnx_int8_execution` reports which ops ORT actually runs in int8 on this machine.

onnx, onnxruntime, onnxscript and torch are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import platform
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anyppg_edge import __version__
from anyppg_edge.contract import CONTRACT_KEY, InputContract
from anyppg_edge.deploy.contract_io import FLAT_CONTRACT_KEYS, contract_props, read_onnx_contract
from anyppg_edge.deploy.runtime import ORT_DISABLED_OPTIMIZERS, ort_session, validate_windows
from anyppg_edge.errors import ContractMismatchError
from anyppg_edge.io import atomic_write

if TYPE_CHECKING:
    from anyppg_edge.models.net1d import Net1D

INPUT_NAME = "ppg"
OUTPUT_NAME = "embedding"
PRODUCER = "anyppg-edge"
# ORT op types that compute on int8/uint8 data (after QDQ fusion), in the default and
# com.microsoft domains.
INT8_OPS = frozenset(
    {
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "QGemm",
        "QLinearAdd",
        "QLinearMul",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearSoftmax",
        "QLinearConcat",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "QLinearReduceMean",
        "QLinearWhere",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "NhwcQLinearConv",
    }
)
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# Float ops that do arithmetic (the ones that matter for "is it int8?"); data movement (Pad,
# Reshape, MaxPool on int8 tensors, ...) is listed under "other".
FLOAT_COMPUTE_OPS = frozenset(
    {
        "Conv",
        "FusedConv",
        "NchwcConv",
        "MatMul",
        "FusedMatMul",
        "Gemm",
        "FusedGemm",
        "BatchNormalization",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sigmoid",
        "QuickGelu",
        "ReduceMean",
        "GlobalAveragePool",
        "AveragePool",
        "Softmax",
        "Relu",
        "Sqrt",
        "Pow",
    }
)
CONV_LIKE = frozenset({"Conv", "FusedConv", "NchwcConv", "QLinearConv", "ConvInteger", "NhwcQLinearConv"})


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _atomic_save(model: Any, path: Path) -> Path:
    """Write an ``onnx.ModelProto`` (one file, no external data) through :func:`~anyppg_edge.io.atomic_write`."""
    return atomic_write(path, lambda f: f.write(model.SerializeToString()))


def _set_contract(model: Any, contract: InputContract) -> None:
    """Replace the contract keys in ``model.metadata_props`` and keep any other entries."""
    import onnx

    props = {p.key: p.value for p in model.metadata_props}
    for k in (CONTRACT_KEY, *FLAT_CONTRACT_KEYS):
        props.pop(k, None)
    props.update(contract_props(contract))
    onnx.helper.set_model_props(model, props)
    model.doc_string = (
        f"AnyPPG-edge PPG encoder {contract.model_name} ({contract.artifact_kind}): input "
        f"'{contract.input_name}' [batch, 1, {contract.window_samples}] float32 = one "
        f"{contract.window_s:g} s PPG window at {contract.sample_rate_hz} Hz, preprocessed as "
        f"'{contract.filter}', then '{contract.normalization}'; output '{contract.output_name}' "
        f"[batch, {contract.embedding_dim}] float32. Full input contract (JSON) in metadata_props "
        f"key '{CONTRACT_KEY}'."
    )
    model.producer_name = PRODUCER
    model.producer_version = __version__


# --------------------------------------------------------------------------------------------------
# contract in metadata_props
# --------------------------------------------------------------------------------------------------


def write_onnx_contract(path: str | Path, contract: InputContract) -> Path:
    """Attach (or replace) ``contract`` in an ONNX file's ``metadata_props``, in place, atomically."""
    import onnx

    path = Path(path)
    model = onnx.load_model(str(path))
    _set_contract(model, contract)
    return _atomic_save(model, path)


# --------------------------------------------------------------------------------------------------
# float export
# --------------------------------------------------------------------------------------------------


def export_onnx_float(
    model: Net1D,
    path: str | Path,
    contract: InputContract,
    dynamic_batch: bool = True,
    opset: int | None = None,
) -> Path:
    """Export ``model`` (eval mode) to a float ONNX file with ``contract`` in its metadata.

    Input ``ppg`` ``[batch, 1, contract.window_samples]`` float32, output ``embedding``
    ``[batch, D]`` float32; ``batch`` is symbolic with ``dynamic_batch``, else 1. The graph is
    frozen for the contract's window length (:meth:`Net1D.set_static_length`, restored afterwards),
    so it holds constant pads and no shape arithmetic. The stored contract gets
    ``artifact_kind="onnx-float"`` and the exporter versions in ``extra``.
    """
    import onnx
    import torch

    length = contract.window_samples
    if getattr(model, "out_dim", contract.embedding_dim) != contract.embedding_dim:
        raise ContractMismatchError(
            f"contract says embedding_dim={contract.embedding_dim}, model {getattr(model, 'name', '?')} "
            f"outputs {model.out_dim}"
        )
    in_ch = getattr(getattr(model, "cfg", None), "in_channels", 1)
    if in_ch != 1 or tuple(contract.input_shape[1:]) != (1, length):
        raise ContractMismatchError(
            f"contract input_shape {contract.input_shape} does not describe a single-channel "
            f"[batch, 1, samples] input (model has {in_ch} input channels)"
        )
    contract = dataclasses.replace(
        contract,
        artifact_kind="onnx-float",
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_quant=None,
        output_quant=None,
        extra={
            **contract.extra,
            "onnx_exporter": f"torch.onnx.export(dynamo=True) torch {torch.__version__}",
            "dynamic_batch": bool(dynamic_batch),
        },
    )

    was_training = model.training
    old_length = getattr(model, "static_length", None)
    has_static = hasattr(model, "set_static_length")
    # "torchvision is not installed. Skipping torchvision::nms" (x4) on every export
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    old_level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    model.eval()
    try:
        if has_static:
            model.set_static_length(length)
        # batch 2 in the example input: torch.export specialises a dimension of size 1
        example = torch.zeros(2 if dynamic_batch else 1, 1, length)
        kwargs: dict[str, Any] = {}
        if dynamic_batch:
            kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=65536)},)
        if opset is not None:
            kwargs["opset_version"] = opset
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            prog = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                external_data=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
                **kwargs,
            )
        proto = prog.model_proto
    finally:
        reg_log.setLevel(old_level)
        if has_static:
            model.set_static_length(old_length)
        model.train(was_training)

    if dynamic_batch:  # a readable name for the symbolic batch dim in both signatures
        for vi in (proto.graph.input[0], proto.graph.output[0]):
            dim = vi.type.tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_param = "batch"
    opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    contract = dataclasses.replace(contract, extra={**contract.extra, "onnx_opset": opsets.get("ai.onnx")})
    _set_contract(proto, contract)
    onnx.checker.check_model(proto)
    return _atomic_save(proto, Path(path))


# --------------------------------------------------------------------------------------------------
# onnxruntime sessions and int8 quantization
# --------------------------------------------------------------------------------------------------


class _WindowReader:
    """``CalibrationDataReader`` over ``[B, 1, L]`` float32 batches, re-batched to what the model accepts."""

    def __init__(self, batches: Iterable[np.ndarray], input_name: str, window_samples: int, batch_one: bool):
        self.input_name, self.window_samples, self.batch_one = input_name, window_samples, batch_one
        self._it: Iterator[np.ndarray] = iter(batches)
        self._pending: list[np.ndarray] = []
        self.n_windows = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        while not self._pending:
            b = next(self._it, None)
            if b is None:
                return None
            x = validate_windows(b, self.window_samples)
            if len(x) == 0:
                continue
            self._pending = [x[i : i + 1] for i in range(len(x))] if self.batch_one else [x]
        x = self._pending.pop(0)
        self.n_windows += len(x)
        return {self.input_name: np.ascontiguousarray(x)}

    def unread(self, item: dict[str, np.ndarray]) -> None:
        x = item[self.input_name]
        self._pending.insert(0, x)
        self.n_windows -= len(x)

    def rewind(self) -> None:  # part of the reader protocol; the calibrators here read once
        raise NotImplementedError("calibration batches are consumed once")


class _DropPerChannelAxisWarnings(logging.Filter):
    # quantize_static(per_channel=True) asks for axis 1 of every float weight, including the rank-1
    # scale of the pre-activation BatchNormalization it leaves in float; it then warns once per use.
    def filter(self, record: logging.LogRecord) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    flt = _DropPerChannelAxisWarnings()
    root = logging.getLogger()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _ort_basic_optimize(src: Path, dst: Path) -> None:
    """What ``quant_pre_process`` does in its optimization step (ORT level 1), minus Pad_Fusion."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    so.log_severity_level = 3
    ort.InferenceSession(
        str(src),
        so,
        providers=["CPUExecutionProvider"],
        # ConstantSharing renames initializers (ORT's own quant_utils.optimize_model disables it too)
        disabled_optimizers=[*ORT_DISABLED_OPTIMIZERS, "ConstantSharing"],
    )


def quantize_onnx_int8(
    float_path: str | Path,
    out_path: str | Path,
    calibration_batches: Iterable[np.ndarray],
    activation_type: str = "s8",
    reduce_range: bool | None = None,
    per_channel: bool = True,
    extra_options: dict[str, Any] | None = None,
    calibrate_method: str = "minmax",
) -> Path:
    """Static int8 QDQ quantization of a float ONNX file from :func:`export_onnx_float`.

    ``calibration_batches``: float32 ``[B, 1, L]`` (or ``[B, L]``) preprocessed windows.
    ``calibrate_method``: ``"minmax"`` (default), ``"percentile"`` (99.999 %; clips the rare
    extreme activations that motion-corrupted real windows produce, often better for PPG),
    ``"entropy"`` or ``"distribution"``. Weights are int8 (per-channel by default), activations int8 (``"s8"``, the right
    choice for ARM) or uint8 (``"u8"``; then ``reduce_range`` defaults to True, without which x86
    AVX2 u8s8 kernels saturate). Model inputs and outputs stay float32 with QDQ nodes inside.
    The float file's contract is copied with ``artifact_kind="onnx-int8"`` and the quantization
    settings and onnxruntime version in ``extra["quantization"]``.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    act = {"s8": QuantType.QInt8, "u8": QuantType.QUInt8}.get(str(activation_type).lower())
    if act is None:
        raise ValueError(f"activation_type must be 's8' or 'u8', got {activation_type!r}")
    if reduce_range is None:
        reduce_range = act == QuantType.QUInt8
    methods = {m.name.lower(): m for m in CalibrationMethod}
    method = methods.get(str(calibrate_method).lower())
    if method is None:
        raise ValueError(f"calibrate_method must be one of {sorted(methods)}, got {calibrate_method!r}")
    float_path, out_path = Path(float_path), Path(out_path)
    contract = read_onnx_contract(float_path)
    if contract.artifact_kind != "onnx-float":
        raise ContractMismatchError(
            f"{float_path} is a {contract.artifact_kind!r} artifact; quantize the float ONNX export"
        )
    fmodel = onnx.load_model(str(float_path), load_external_data=False)
    in_dims = fmodel.graph.input[0].type.tensor_type.shape.dim
    batch_one = bool(in_dims) and in_dims[0].HasField("dim_value") and in_dims[0].dim_value == 1
    # onnxruntime's histogram collector (percentile/entropy/distribution) stacks the per-batch arrays
    # with np.asarray and fails on a ragged last batch: feed those calibrators one window at a time.
    batch_one = batch_one or calibrate_method.lower() != "minmax"
    input_name = fmodel.graph.input[0].name
    del fmodel

    with tempfile.TemporaryDirectory(prefix="anyppg-quant-") as tmp:
        opt, pre, qout = Path(tmp, "opt.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        _ort_basic_optimize(float_path, opt)
        quant_pre_process(str(opt), str(pre), skip_optimization=True)
        reader = _WindowReader(calibration_batches, input_name, contract.window_samples, batch_one)
        first = reader.get_next()  # fail early and clearly on an empty or invalid calibration set
        if first is None:
            raise ValueError("calibration_batches yielded no windows")
        reader.unread(first)
        # the histogram calibrators print progress to stdout
        with _quiet_quantizer(), contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(pre),
                str(qout),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=bool(reduce_range),
                activation_type=act,
                weight_type=QuantType.QInt8,
                calibrate_method=method,
                extra_options=dict(extra_options or {}),
            )
        qmodel = onnx.load_model(str(qout))

    qcontract = dataclasses.replace(
        contract,
        artifact_kind="onnx-int8",
        extra={
            **contract.extra,
            "quantization": {
                "tool": "onnxruntime.quantization.quantize_static",
                "onnxruntime_version": ort.__version__,
                "format": "QDQ",
                "activation_type": "int8" if act == QuantType.QInt8 else "uint8",
                "weight_type": "int8",
                "per_channel": bool(per_channel),
                "reduce_range": bool(reduce_range),
                "calibrate_method": method.name,
                "calibration_windows": reader.n_windows,
                "io": "float32 (QDQ inside)",
                **({"extra_options": extra_options} if extra_options else {}),
            },
        },
    )
    # keep ORT's own metadata (e.g. onnx.quant.pre_process) and set ours
    _set_contract(qmodel, qcontract)
    onnx.checker.check_model(qmodel)
    return _atomic_save(qmodel, out_path)


def _profile_providers(sess: Any, window_samples: int) -> dict[str, dict[str, int]]:
    """Run one zero window with profiling on; count executed nodes per (provider, op type)."""
    inp = sess.get_inputs()[0]
    x = np.zeros((1, 1, window_samples), np.float32)
    sess.run(None, {inp.name: x})
    prof = sess.end_profiling()
    per: dict[str, Counter] = {}
    try:
        events = json.loads(Path(prof).read_text())
        seen: set[str] = set()
        for ev in events:
            args = ev.get("args") or {}
            if ev.get("cat") != "Node" or "provider" not in args or "op_name" not in args:
                continue
            node = str(ev.get("name", "")).rsplit("_kernel_time", 1)[0]
            if node in seen:  # fence_before / kernel_time / fence_after events of one node
                continue
            seen.add(node)
            per.setdefault(args["provider"], Counter())[args["op_name"]] += 1
    finally:
        Path(prof).unlink(missing_ok=True)
    return {k: dict(sorted(v.items())) for k, v in per.items()}


def _fmt_ops(ops: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def onnx_int8_execution(
    path: str | Path, threads: int = 1, int8_allowed: bool = False, profile: bool = True
) -> dict[str, Any]:
    """Which ops onnxruntime actually executes in int8 for this file, on this machine.

    Saves the graph ORT runs after its optimizations (QDQ fusion happens there) and sorts its nodes
    into int8 compute (QLinearConv, QGemm, QLinearMul/Sigmoid/Add, ...), float compute (Conv,
    MatMul, Mul, Sigmoid, ReduceMean, BatchNormalization, ...), quantize/dequantize and other. With
    ``profile`` it also runs one window with profiling on and reports which execution provider ran
    each op type. ``fully_int8_conv`` is True when every convolution runs as an int8 kernel;
    ``summary`` says it in one line.
    """
    import onnx
    import onnxruntime as ort

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="anyppg-ortopt-") as tmp:
        opt_path = Path(tmp, "optimized.onnx")
        sess = ort_session(
            path,
            threads,
            int8_allowed,
            optimized_model_path=opt_path,
            profile_file_prefix=Path(tmp, "ort_profile") if profile else None,
        )
        optimized = onnx.load_model(str(opt_path), load_external_data=False)
        per_provider: dict[str, dict[str, int]] = {}
        if profile:
            shape = sess.get_inputs()[0].shape
            length = shape[-1] if isinstance(shape[-1], int) else read_onnx_contract(path).window_samples
            per_provider = _profile_providers(sess, length)
    ops = Counter(n.op_type for n in optimized.graph.node)
    int8 = {k: v for k, v in ops.items() if k in INT8_OPS}
    flt = {k: v for k, v in ops.items() if k in FLOAT_COMPUTE_OPS}
    qdq = {k: v for k, v in ops.items() if k in QDQ_OPS}
    other = {k: v for k, v in ops.items() if k not in INT8_OPS | FLOAT_COMPUTE_OPS | QDQ_OPS}
    conv_total = sum(v for k, v in ops.items() if k in CONV_LIKE)
    conv_int8 = sum(v for k, v in ops.items() if k in CONV_LIKE and k in INT8_OPS)
    providers = list(sess.get_providers())
    summary = (
        f"{providers[0]} on {platform.machine()}, onnxruntime {ort.__version__}, "
        f"qdqisint8allowed={int(bool(int8_allowed))}: {conv_int8}/{conv_total} convolutions run as int8 "
        f"kernels; int8 ops {_fmt_ops(int8)}; float compute ops {_fmt_ops(flt)}; "
        f"{sum(qdq.values())} Quantize/DequantizeLinear left"
    )
    return {
        "summary": summary,
        "path": str(path),
        "execution_provider": providers[0],
        "providers": providers,
        "onnxruntime_version": ort.__version__,
        "machine": platform.machine(),
        "threads": int(threads),
        "int8_allowed": bool(int8_allowed),
        "disabled_optimizers": list(ORT_DISABLED_OPTIMIZERS),
        "n_nodes": int(sum(ops.values())),
        "int8_ops": dict(sorted(int8.items())),
        "float_compute_ops": dict(sorted(flt.items())),
        "qdq_ops": dict(sorted(qdq.items())),
        "other_ops": dict(sorted(other.items())),
        "conv_total": conv_total,
        "conv_int8": conv_int8,
        "fully_int8_conv": conv_total > 0 and conv_int8 == conv_total,
        "ops_by_provider": per_provider,
    }
