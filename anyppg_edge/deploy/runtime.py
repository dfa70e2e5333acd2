"""One interface over the runtimes an encoder can run in: PyTorch, onnxruntime, LiteRT (TFLite) and
TensorFlow Lite Micro (``open_encoder(path, runtime="tflm")``).

An :class:`Encoder` maps preprocessed windows ``[N, L]`` or ``[N, 1, L]`` (float32, L =
``contract.window_samples``) to embeddings ``[N, D]`` float32. Inputs are validated first
(shape, dtype, NaN/Inf after the cast to float32 → :class:`~anyppg_edge.errors.InvalidSignalError`),
and must look z-scored, as the contract's normalization says (per-window mean and std within
:data:`~anyppg_edge.model_input.ZSCORE_MEAN_MAX` / ``ZSCORE_STD_MIN..ZSCORE_STD_MAX``; raw ADC codes are
refused; ``check_normalized=False`` on the encoder or on :meth:`Encoder.embed` turns this off).
Embeddings are checked too: NaN/Inf output is an ``InvalidSignalError`` naming the windows when
their inputs are not z-scored, a :class:`~anyppg_edge.errors.CheckpointError` (a broken model) when
they are. File-backed encoders read the artifact's :class:`~anyppg_edge.contract.InputContract` and
compare it with the :class:`~anyppg_edge.preprocessing.PreprocessConfig` in use: a mismatch (another
PPG band, window length, sample rate, ...) is a :class:`~anyppg_edge.errors.ContractMismatchError`,
and so is a file without a contract unless ``allow_missing_contract=True``, and a contract whose
``artifact_kind`` is not what the graph is (an int8 TFLite claiming ``tflite-float``, a float ONNX
graph claiming ``onnx-int8``).

    enc = open_encoder("student-watch.int8.tflite")   # or .onnx, or an nn.Module
    z = enc.embed(windows)                              # [N, D] float32

Only numpy is imported at module level; torch, onnxruntime and ai_edge_litert are imported by the
encoder that needs them, so the ONNX/TFLite encoders run on a device without torch.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.contract import CONTRACT_KEY, InputContract, QuantParams
from anyppg_edge.deploy.contract_io import contract_from_metadata, read_contract, read_tflite_contract_zip
from anyppg_edge.errors import (
    CheckpointError,
    ContractMismatchError,
    InvalidSignalError,
    MissingFileError,
    UsageError,
)
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = [
    "Encoder",
    "OnnxEncoder",
    "TFLiteEncoder",
    "TflmEncoder",
    "TorchEncoder",
    "open_encoder",
    "read_contract",
    "validate_windows",
]


def validate_windows(windows: Any, window_samples: int) -> np.ndarray:
    """Check ``[N, L]`` / ``[N, 1, L]`` real, finite windows; return ``[N, 1, L]`` float32
    (:func:`anyppg_edge.model_input.check_model_input`, numpy only: no torch on a device install)."""
    from anyppg_edge.model_input import check_model_input

    return check_model_input(windows, window_samples)


def _validate_float_windows(windows: Any, window_samples: int) -> np.ndarray:
    """Encoders take preprocessed (z-scored) float windows: an integer array is raw ADC counts or a
    quantized tensor and is refused rather than silently cast."""
    arr = np.asarray(windows)
    if arr.dtype.kind in "iu" or arr.dtype == np.bool_:
        raise InvalidSignalError(
            f"encoder input must be preprocessed float windows (float32), got dtype {arr.dtype}: raw "
            "counts or already-quantized values? Run the preprocessing chain first; int8 models "
            "quantize internally with their own input scale"
        )
    return validate_windows(arr, window_samples)


class Encoder(ABC):
    """Preprocessed windows → embeddings, whatever runs underneath.

    Attributes: ``name`` (model name), ``contract`` (:class:`InputContract`), ``kind`` (artifact
    kind: ``pytorch-float``, ``onnx-float``, ``onnx-int8``, ``tflite-float``, ``tflite-int8``),
    ``path`` (the artifact, None for an in-memory model), ``check_normalized`` (refuse windows that
    are not z-scored; default True, every constructor and :func:`open_encoder` take it).
    """

    contract: InputContract
    path: Path | None = None
    check_normalized: bool = True

    @property
    def name(self) -> str:
        return self.contract.model_name

    @property
    def kind(self) -> str:
        return self.contract.artifact_kind

    @property
    def window_samples(self) -> int:
        return self.contract.window_samples

    @property
    def embedding_dim(self) -> int:
        return self.contract.embedding_dim

    def embed(self, windows: Any, *, check_normalized: bool | None = None) -> np.ndarray:
        """Embeddings ``[N, D]`` float32 of windows ``[N, L]`` or ``[N, 1, L]`` (float, z-scored).

        ``check_normalized`` (default: the encoder's attribute, True unless opened with
        ``check_normalized=False``): refuse windows that are clearly not z-scored
        (:func:`anyppg_edge.model_input.check_normalized`)."""
        from anyppg_edge.model_input import check_normalized as _check_norm

        x = _validate_float_windows(windows, self.window_samples)
        if len(x) == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        if self.check_normalized if check_normalized is None else check_normalized:
            _check_norm(x, f"{self!r} input")
        with np.errstate(over="ignore", invalid="ignore"):  # a float64 output beyond float32: Inf, checked below
            out = np.asarray(self._run(np.ascontiguousarray(x)), dtype=np.float32)
        if out.shape != (len(x), self.embedding_dim):
            raise ContractMismatchError(
                f"{self!r} produced embeddings of shape {out.shape}, contract says "
                f"[{len(x)}, {self.embedding_dim}]"
            )
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            self._nonfinite_output(x, np.flatnonzero(~finite))
        return out

    def _nonfinite_output(self, x: np.ndarray, rows: np.ndarray) -> None:
        """Raise for NaN/Inf embeddings of windows ``rows``: the input's fault when those windows are
        not z-scored (InvalidSignalError), the model's when they are (CheckpointError)."""
        from anyppg_edge.model_input import not_normalized, window_stats

        which = f"windows {rows[:10].tolist()}{' ...' if rows.size > 10 else ''} ({rows.size} of {len(x)})"
        odd = rows[not_normalized(x[rows])]
        if odd.size:
            mean, std = window_stats(x[odd[:3]])
            shown = "; ".join(f"window {i}: mean {m:.3g}, std {s:.3g}" for i, m, s in zip(odd[:3], mean, std, strict=True))
            raise InvalidSignalError(
                f"{self!r} produced NaN/Inf embeddings for {which}: their inputs are not z-scored ({shown}) "
                "and overflow the model. Feed per-window z-scored windows (preprocess_ppg_window or the "
                "Streamer); check_normalized=False only skips the input check, it cannot make such windows work"
            )
        raise CheckpointError(
            f"{self!r} produced NaN/Inf embeddings for {which} although their inputs are finite z-scored "
            "windows: the model itself is broken (NaN/Inf weights, or a layer that overflows). Re-export "
            "the artifact from a good checkpoint"
        )

    __call__ = embed

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Validated ``[N, 1, L]`` float32 → ``[N, D]``."""

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r}{where})"


# --------------------------------------------------------------------------------------------------
# contracts
# --------------------------------------------------------------------------------------------------


def _assumed_contract(
    path: Path, kind: str, window_samples: int, embedding_dim: int, cfg: PreprocessConfig
) -> InputContract:
    """Stand-in contract for a file that has none (``allow_missing_contract=True``): the model's own
    input length must still equal the config's window."""
    if window_samples != cfg.window_samples:
        raise ContractMismatchError(
            f"{path} carries no input contract and its input has {window_samples} samples, but the "
            f"preprocessing config gives {cfg.window_samples}-sample windows "
            f"({cfg.window_s:g} s at {cfg.target_sample_rate_hz} Hz)"
        )
    return InputContract.for_model(
        path.stem,
        kind,
        embedding_dim,
        source_checkpoint_sha256="",
        cfg=cfg,
        extra={"contract": f"assumed: {path.name} carries no input contract"},
    )


def _checked_contract(
    path: Path,
    reader: Callable[[], InputContract],
    cfg: PreprocessConfig,
    allow_missing: bool,
    fallback: Callable[[], InputContract],
    is_missing: Callable[[ContractMismatchError], bool],
) -> InputContract:
    """The artifact's contract checked against ``cfg``; with ``allow_missing`` an *absent* contract
    (never a malformed one) is replaced by ``fallback()``."""
    try:
        contract = reader()
    except ContractMismatchError as e:
        if not (allow_missing and is_missing(e)):
            raise
        return fallback()
    return contract.check(cfg, what=str(path))


def _says_no_contract(e: ContractMismatchError, path: Path) -> bool:
    # read_tflite_contract says "... no input contract ..." for an absent contract and "malformed
    # ..." / "unknown input-contract schema" for a bad one (the path is cut out: it may contain anything).
    msg = str(e).replace(str(path), "<path>").lower()
    return "no input contract" in msg and "malformed" not in msg


# --------------------------------------------------------------------------------------------------
# onnxruntime sessions
# --------------------------------------------------------------------------------------------------

# ORT graph transformers that must never run on these graphs (Pad_Fusion miscompiles odd-length
# strided convs: see anyppg_edge.deploy.export.onnx).
ORT_DISABLED_OPTIMIZERS = ("Pad_Fusion",)


def ort_session(
    path: str | Path | bytes,
    threads: int = 1,
    int8_allowed: bool = False,
    optimized_model_path: str | Path | None = None,
    profile_file_prefix: str | Path | None = None,
) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU EP with ``Pad_Fusion`` disabled.

    ``threads`` sets intra- and inter-op threads; ``int8_allowed`` sets
    ``session.qdqisint8allowed=1`` (lets x86 fuse S8S8 QDQ convs into QLinearConv; ARM does it by
    default). ``optimized_model_path`` saves the graph ORT actually runs; ``profile_file_prefix``
    turns on ORT's profiler, writing there (``sess.end_profiling()`` returns the file)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = int(threads)
    so.log_severity_level = 3
    if int8_allowed:
        so.add_session_config_entry("session.qdqisint8allowed", "1")
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    if profile_file_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_file_prefix)
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(
        model, so, providers=["CPUExecutionProvider"], disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS)
    )



# --------------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------------


class TorchEncoder(Encoder):
    """An in-memory PyTorch encoder (eval mode, no grad, batches of ``batch_size``).

    ``contract`` defaults to a ``pytorch-float`` contract for ``cfg`` (source checkpoint unknown);
    a given contract is checked against ``cfg`` when ``cfg`` is passed."""

    def __init__(
        self,
        model: Any,
        contract: InputContract | None = None,
        cfg: PreprocessConfig | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        check_normalized: bool = True,
    ):
        self.model = model
        self.batch_size = int(batch_size)
        self.threads = threads
        self.check_normalized = bool(check_normalized)
        if contract is None:
            contract = InputContract.for_model(
                getattr(model, "name", type(model).__name__),
                "pytorch-float",
                int(model.out_dim),
                source_checkpoint_sha256="",
                cfg=cfg or DEFAULT_CONFIG,
            )
        elif cfg is not None:
            contract.check(cfg, what=f"model {getattr(model, 'name', type(model).__name__)}")
        out_dim = getattr(model, "out_dim", contract.embedding_dim)
        if out_dim != contract.embedding_dim:
            raise ContractMismatchError(
                f"contract says embedding_dim={contract.embedding_dim}, the model outputs {out_dim}"
            )
        self.contract = contract

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        from anyppg_edge.models.encode import encode_windows

        old_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            return encode_windows(self.model, x, self.window_samples, self.batch_size, progress=False)
        finally:
            torch.set_num_threads(old_threads)


# --------------------------------------------------------------------------------------------------
# onnxruntime
# --------------------------------------------------------------------------------------------------


class OnnxEncoder(Encoder):
    """An ONNX file (float or int8 QDQ) in onnxruntime on the CPU EP, ``Pad_Fusion`` disabled.

    Runs the whole batch in one call when the model's batch dimension is symbolic, else window by
    window. ``int8_allowed`` sets ``session.qdqisint8allowed=1`` (int8 convs on x86 for S8S8)."""

    def __init__(
        self,
        path: str | Path,
        cfg: PreprocessConfig = DEFAULT_CONFIG,
        threads: int = 1,
        int8_allowed: bool = False,
        allow_missing_contract: bool = False,
        batch_size: int = 64,
        check_normalized: bool = True,
    ):
        self.check_normalized = bool(check_normalized)
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingFileError(f"ONNX model not found: {self.path}")
        self.session = ort_session(self.path, threads=threads, int8_allowed=int8_allowed)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        if inp.type != "tensor(float)":
            raise ContractMismatchError(
                f"{self.path}: input {inp.name!r} is {inp.type}, expected tensor(float)"
            )
        self._batch_fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.batch_size = int(batch_size)
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        graph_kind = _onnx_kind(self.path)  # None: not parsable here (ORT loaded it: should not happen)

        def fallback() -> InputContract:
            length, dim = inp.shape[-1], out.shape[-1]
            if not isinstance(length, int) or not isinstance(dim, int):
                raise ContractMismatchError(
                    f"{self.path} carries no input contract and its input/output shapes "
                    f"{inp.shape}/{out.shape} are not static"
                )
            return _assumed_contract(self.path, graph_kind or "onnx-float", length, dim, cfg)

        self.contract = _checked_contract(
            self.path,
            lambda: contract_from_metadata(props, str(self.path)),
            cfg,
            allow_missing_contract,
            fallback,
            is_missing=lambda e: CONTRACT_KEY not in props,
        )
        if isinstance(inp.shape[-1], int) and inp.shape[-1] != self.contract.window_samples:
            raise ContractMismatchError(
                f"{self.path}: input has {inp.shape[-1]} samples, its contract says {self.contract.window_samples}"
            )
        if graph_kind is not None and graph_kind != self.contract.artifact_kind:
            has = "has QuantizeLinear/QLinearConv nodes" if graph_kind == "onnx-int8" else "has no QuantizeLinear/QLinearConv node"
            raise ContractMismatchError(
                f"{self.path}: its contract says artifact_kind {self.contract.artifact_kind!r}, but the graph "
                f"{has}: it is {graph_kind!r}. The contract describes another artifact; re-export the model, or "
                "rewrite its contract with anyppg_edge.deploy.export.onnx.write_onnx_contract()"
            )

    def _run(self, x: np.ndarray) -> np.ndarray:
        step = self._batch_fixed or self.batch_size
        outs = []
        for i in range(0, len(x), step):
            xb = x[i : i + step]
            if self._batch_fixed is not None and len(xb) != self._batch_fixed:  # ragged tail
                pad = np.zeros((self._batch_fixed - len(xb), *xb.shape[1:]), np.float32)
                y = self.session.run([self.output_name], {self.input_name: np.concatenate([xb, pad])})[0]
                outs.append(y[: len(xb)])
            else:
                outs.append(self.session.run([self.output_name], {self.input_name: xb})[0])
        return np.concatenate(outs).reshape(len(x), -1)


_ONNX_INT8_OPS = frozenset({"QuantizeLinear", "QLinearConv"})


def _onnx_kind(path: Path) -> str | None:
    """``onnx-int8`` when the main graph has a QuantizeLinear/QLinearConv node, else ``onnx-float``;
    None when the file cannot be parsed. Reads the protobuf directly (:func:`_onnx_op_types`): no
    ``onnx`` import, which a device install lacks (and which costs ~0.3 s of every load)."""
    ops = _onnx_op_types(path)
    if ops is None:
        return None
    return "onnx-int8" if ops & _ONNX_INT8_OPS else "onnx-float"


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _pb_fields(buf: bytes, start: int, end: int, want: int) -> list[tuple[int, int]]:
    """``(start, end)`` of every length-delimited field number ``want`` in the message ``buf[start:end]``
    (protobuf wire format: other fields are skipped by their length, never decoded)."""
    out, i = [], start
    while i < end:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            if field == want:
                out.append((i, i + n))
            i += n
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if i != end:
        raise ValueError("truncated protobuf message")
    return out


def _onnx_op_types(path: Path) -> set[str] | None:
    """Op types of the main graph's nodes (ModelProto.graph = field 7, GraphProto.node = 1,
    NodeProto.op_type = 4); None when the file is not a parsable ONNX protobuf."""
    try:
        buf = Path(path).read_bytes()
        ops: set[str] = set()
        for g0, g1 in _pb_fields(buf, 0, len(buf), 7):
            for n0, n1 in _pb_fields(buf, g0, g1, 1):
                for o0, o1 in _pb_fields(buf, n0, n1, 4):
                    ops.add(buf[o0:o1].decode("utf-8"))
        return ops
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


# --------------------------------------------------------------------------------------------------
# LiteRT / TFLite
# --------------------------------------------------------------------------------------------------


def _tensor_quant(detail: dict[str, Any]) -> QuantParams | None:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind not in "iu":
        return None
    scale, zero_point = detail.get("quantization", (0.0, 0))
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []))
    if scales.size > 1:
        raise ContractMismatchError(
            f"tensor {detail['name']!r} is per-channel quantized; expected per-tensor"
        )
    if not scale:
        raise ContractMismatchError(f"tensor {detail['name']!r} is {dtype} without a quantization scale")
    return QuantParams(float(scale), int(zero_point), dtype.name)


def _same_quant(a: QuantParams, b: QuantParams) -> bool:
    return (
        a.dtype == b.dtype
        and a.zero_point == b.zero_point
        and np.isclose(a.scale, b.scale, rtol=1e-5, atol=0)
    )


def check_tflite_contract(
    path: Path,
    kind: str,
    in_shape: tuple[int, ...],
    embedding_dim: int,
    input_quant: QuantParams | None,
    output_quant: QuantParams | None,
    cfg: PreprocessConfig,
    allow_missing_contract: bool,
    reader: Callable[[], InputContract],
) -> InputContract:
    """The contract of a ``.tflite`` file (``reader()``) checked against ``cfg`` and against the graph
    itself (window length, I/O quantization, ``artifact_kind``); shared by the LiteRT and TFLM runtimes."""
    length = int(np.prod(in_shape[1:]))
    contract = _checked_contract(
        path,
        reader,
        cfg,
        allow_missing_contract,
        lambda: _assumed_contract(path, kind, length, embedding_dim, cfg),
        is_missing=lambda e: _says_no_contract(e, path),
    )
    if length != contract.window_samples:
        raise ContractMismatchError(
            f"{path}: input tensor holds {length} samples, its contract says {contract.window_samples}"
        )
    for which, ours, theirs in (("input", input_quant, contract.input_quant), ("output", output_quant, contract.output_quant)):
        if theirs is not None and (ours is None or not _same_quant(ours, theirs)):
            raise ContractMismatchError(
                f"{path}: {which} quantization in the contract ({theirs}) differs from the model's {which} tensor ({ours})"
            )
    if kind != contract.artifact_kind:
        what = "has int8 tensors" if kind == "tflite-int8" else "has no int8 tensor"
        raise ContractMismatchError(
            f"{path}: its contract says artifact_kind {contract.artifact_kind!r}, but the model "
            f"{what}: it is {kind!r}. The contract describes another artifact; re-export the model, or "
            "rewrite its metadata with anyppg_edge.deploy.export.metadata.write_tflite_metadata()"
        )
    return contract


class _TFLiteFileEncoder(Encoder):
    """What the TFLite runtimes share: the contract read from the file's metadata zip (tflite-support
    would import TensorFlow, ~5 s, on every load) and one window per invoke, quantized and dequantized
    with the model's own I/O tensors; a runtime supplies ``_invoke``."""

    _in_shape: tuple[int, ...]
    input_quant: QuantParams | None
    output_quant: QuantParams | None

    def _read_contract(self) -> InputContract:
        return read_tflite_contract_zip(self.path)

    @abstractmethod
    def _invoke(self, xin: np.ndarray) -> np.ndarray:
        """One window in the input tensor's shape and dtype → the output tensor."""

    def _run(self, x: np.ndarray) -> np.ndarray:
        outs = []
        for w in x:
            xin = w.reshape(self._in_shape)
            if self.input_quant is not None:
                xin = self.input_quant.quantize(xin)
            y = self._invoke(np.ascontiguousarray(xin))
            if self.output_quant is not None:
                y = self.output_quant.dequantize(y)
            outs.append(np.asarray(y, np.float32).reshape(-1))
        return np.stack(outs)


class TFLiteEncoder(_TFLiteFileEncoder):
    """A ``.tflite`` file in the LiteRT ``Interpreter`` (``ai_edge_litert``), one window per invoke.

    Float inputs are quantized with the input tensor's own scale/zero point when the model input is
    int8/uint8; an int8 output is dequantized with the output tensor's. The layout of the input
    tensor (NCW ``[1, 1, L]`` or NWC ``[1, L, 1]``) does not matter (one channel). A model with
    another batch size is resized to batch 1. ``use_xnnpack=False`` runs the builtin kernels
    without the default XNNPACK delegate (``OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES``);
    ``reference_kernels=True`` runs TFLite's reference kernels (``BUILTIN_REF``, no delegate), the
    integer arithmetic TensorFlow Lite Micro shares: bit-identical to :class:`TflmEncoder`."""

    def __init__(
        self,
        path: str | Path,
        cfg: PreprocessConfig = DEFAULT_CONFIG,
        threads: int = 1,
        use_xnnpack: bool = True,
        allow_missing_contract: bool = False,
        check_normalized: bool = True,
        reference_kernels: bool = False,
    ):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.check_normalized = bool(check_normalized)
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingFileError(f"TFLite model not found: {self.path}")
        self.reference_kernels = bool(reference_kernels)
        self.use_xnnpack = bool(use_xnnpack) and not self.reference_kernels
        resolver = (
            OpResolverType.BUILTIN_REF
            if self.reference_kernels
            else OpResolverType.AUTO
            if use_xnnpack
            else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        self.interpreter = Interpreter(
            model_path=str(self.path), num_threads=int(threads), experimental_op_resolver_type=resolver
        )
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ContractMismatchError(
                f"{self.path}: expected one input and one output tensor, got {len(inputs)} and {len(outputs)}"
            )
        inp = inputs[0]
        shape = [int(v) for v in inp["shape"]]
        if len(shape) < 2 or np.prod(shape[1:]) != max(shape[1:]):
            raise ContractMismatchError(f"{self.path}: input shape {shape} is not a single-channel window")
        if shape[0] != 1:
            self.interpreter.resize_tensor_input(inp["index"], [1, *shape[1:]])
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        out = self.interpreter.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_shape = tuple(int(v) for v in inp["shape"])
        self.input_quant, self.output_quant = _tensor_quant(inp), _tensor_quant(out)
        dim = int(np.prod(out["shape"][1:]))

        self.contract = check_tflite_contract(
            self.path, self._graph_kind(), self._in_shape, dim, self.input_quant, self.output_quant, cfg,
            allow_missing_contract, self._read_contract,
        )

    def _graph_kind(self) -> str:
        """``tflite-int8`` when the I/O is quantized or any tensor is int8 (full-int8 graphs, float I/O
        included), else ``tflite-float``."""
        if self.input_quant is not None or self.output_quant is not None:
            return "tflite-int8"
        try:
            details = self.interpreter.get_tensor_details()
        except (ValueError, RuntimeError):  # pragma: no cover - depends on the LiteRT version
            return "tflite-float"
        return "tflite-int8" if any(np.dtype(t["dtype"]) == np.int8 for t in details) else "tflite-float"

    def _invoke(self, xin: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self._in_index, xin)
        it.invoke()
        return it.get_tensor(self._out_index)


class TflmEncoder(_TFLiteFileEncoder):
    """A ``.tflite`` file in TensorFlow Lite Micro (the ``tflite-micro`` wheel: TFLM's interpreter and
    reference kernels built for the host), one window per invoke: the reference for what a
    microcontroller computes. It runs in an arena of ``arena_bytes``, by default the smallest that
    allocates (:func:`anyppg_edge.deploy.tflm.measure_arena`, kept in ``self.arena``), so each
    embedding also shows that the measured arena suffices. I/O quantization and the contract are
    read from the flatbuffer and checked as for LiteRT."""

    def __init__(
        self,
        path: str | Path,
        cfg: PreprocessConfig = DEFAULT_CONFIG,
        arena_bytes: int | None = None,
        allow_missing_contract: bool = False,
        check_normalized: bool = True,
    ):
        from anyppg_edge.deploy.export.metadata import model_io, read_model_bytes
        from anyppg_edge.deploy.tflm import tflm_interpreter

        self.check_normalized = bool(check_normalized)
        self.path = Path(path)
        buf = read_model_bytes(self.path)
        io = model_io(buf)
        self._in_shape = tuple(io["input_shape"])
        self.input_quant, self.output_quant = io["input_quant"], io["output_quant"]
        kind = "tflite-int8" if self.input_quant is not None or _has_int8_tensor(buf) else "tflite-float"
        self.contract = check_tflite_contract(
            self.path, kind, self._in_shape, int(np.prod(io["output_shape"][1:])), self.input_quant,
            self.output_quant, cfg, allow_missing_contract, self._read_contract,
        )
        self.interpreter, self.arena, self.arena_bytes = tflm_interpreter(buf, arena_bytes)

    def _invoke(self, xin: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_input(xin, 0)
        it.invoke()
        return it.get_output(0)


def _has_int8_tensor(buf: bytes) -> bool:
    from ai_edge_litert import schema_py_generated as s

    g = s.Model.GetRootAs(buf, 0).Subgraphs(0)
    return any(g.Tensors(i).Type() == s.TensorType.INT8 for i in range(g.TensorsLength()))


# --------------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------------


RUNTIMES = {".onnx": ("onnxruntime",), ".tflite": ("litert", "tflm")}


def open_encoder(
    path_or_model: Any, cfg: PreprocessConfig = DEFAULT_CONFIG, runtime: str | None = None, **kw: Any
) -> Encoder:
    """An :class:`Encoder` for an ``.onnx`` / ``.tflite`` file or an ``nn.Module``.

    ``runtime`` picks the runtime of a file (:data:`RUNTIMES`; default the first): a ``.tflite`` runs in
    LiteRT (``litert``) or TensorFlow Lite Micro (``tflm``).

    ``kw`` goes to the encoder (``threads``, ``int8_allowed``, ``use_xnnpack``,
    ``allow_missing_contract``, ``check_normalized``, ``contract`` for a module, ...).
    ``check_normalized=False`` lets windows that are not z-scored through (see :meth:`Encoder.embed`)."""
    if isinstance(path_or_model, Encoder):
        path_or_model.contract.check(cfg, what=repr(path_or_model))
        return path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        path = Path(path_or_model)
        suffix = path.suffix.lower()
        allowed = RUNTIMES.get(suffix, ())
        if runtime is not None and allowed and runtime not in allowed:
            raise UsageError(f"{path}: a {suffix} file runs in {' or '.join(allowed)}, not {runtime!r}")
        if suffix == ".onnx":
            return OnnxEncoder(path, cfg, **kw)
        if suffix == ".tflite":
            return TflmEncoder(path, cfg, **kw) if runtime == "tflm" else TFLiteEncoder(path, cfg, **kw)
        raise ValueError(
            f"{path}: cannot open {suffix or 'a file without suffix'!r} as an encoder (.onnx, .tflite)"
        )
    try:
        from torch import nn
    except ImportError:
        nn = None
    if nn is not None and isinstance(path_or_model, nn.Module):
        return TorchEncoder(path_or_model, kw.pop("contract", None), cfg=cfg, **kw)
    raise TypeError(
        f"open_encoder takes a .onnx/.tflite path or a torch nn.Module, got {type(path_or_model).__name__}"
    )
