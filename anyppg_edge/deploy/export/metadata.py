"""TFLite metadata: the input contract travels inside the ``.tflite`` file.

:func:`write_tflite_metadata` writes standard TFLite model metadata with the tflite-support writers
(so Android Studio, ``MetadataDisplayer`` and the LiteRT tooling show it), and packs the full
:class:`~anyppg_edge.contract.InputContract` JSON as the associated file
``anyppg_edge.input_contract.json``. :func:`read_tflite_contract` gets it back.

What is written:

* ``ModelMetadata``: name and version from the contract, a description (sample rate, window, filter,
  normalisation, artifact kind, embedding size, source checkpoint sha256), author ``anyppg-edge``,
  license Apache-2.0, and the contract as a model-level associated file of type ``DESCRIPTIONS``
  (the schema's type for free-form documentation files such as a readme; the other types are
  labels, score calibration, vocabularies and ScaNN indexes, which a contract is not);
* input ``TensorMetadata`` ``ppg``: FeatureProperties, the filter and normalisation in the
  description (per-window z-scoring is not a constant ``NormalizationOptions``, so it is not written
  as one) and, for an int8 input, its scale / zero point in the description and the float range it
  can represent as ``Stats``;
* output ``TensorMetadata`` ``embedding``: FeatureProperties, size and (int8 output) quantization.

Installation quirks (see the toolchain study): tflite-support 0.4.4 must be installed with
``pip install --no-deps tflite-support==0.4.4`` next to TF 2.21 (its protobuf pin conflicts),
``import tflite_support`` itself is broken, so the metadata modules are imported directly, and they
need ``libusb-1.0.so.0`` (:func:`ensure_libusb`). Importing them also imports TensorFlow (~5 s),
which tflite-support uses for file I/O when present.

The 2023 TFLite schema inside tflite-support drops weight buffers stored outside the flatbuffer
(``Buffer.offset``, as written by ai-edge-quantizer); such models are re-serialised with the
buffers inlined (``ai_edge_litert.tools.flatbuffer_utils``) before the metadata is populated. Every
written file is reloaded in the LiteRT interpreter before it replaces ``out_path``.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from anyppg_edge.contract import InputContract, QuantParams
from anyppg_edge.deploy.contract_io import CONTRACT_FILE_NAME, packed_files, parse_contract
from anyppg_edge.errors import ContractMismatchError, DataFormatError
from anyppg_edge.io import atomic_write

__all__ = [
    "CONTRACT_FILE_NAME",
    "ensure_libusb",
    "read_tflite_contract",
    "tflite_metadata_json",
    "write_tflite_metadata",
]

AUTHOR = "anyppg-edge"
LICENSE = "Apache-2.0"
INPUT_TENSOR_NAME = "ppg"
OUTPUT_TENSOR_NAME = "embedding"
_TFLITE_IDENTIFIER = b"TFL3"
_LIBUSB_SONAME = "libusb-1.0.so.0"
_LIBUSB_FIX = "`pip install libusb-package` (ships the library) or `apt-get install libusb-1.0-0`"
_TFLITE_SUPPORT_FIX = "`pip install --no-deps tflite-support==0.4.4` (plus libusb, see ensure_libusb)"


# -- optional dependencies ----------------------------------------------------------------------
@functools.cache
def ensure_libusb() -> str | None:
    """Make ``libusb-1.0.so.0`` loadable for tflite-support's native modules; return what was loaded.

    The system library is used when the dynamic loader finds it; otherwise the copy shipped by the
    ``libusb-package`` wheel is preloaded with ``RTLD_GLOBAL`` so that the extension modules'
    ``DT_NEEDED`` entry resolves to it. Returns the library loaded (soname or path), ``None`` off
    Linux (nothing to do). Raises :class:`ImportError` naming both fixes when neither exists."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        ctypes.CDLL(_LIBUSB_SONAME, mode=ctypes.RTLD_GLOBAL)
        return _LIBUSB_SONAME
    except OSError:
        pass
    tried = f"{_LIBUSB_SONAME} is not installed system-wide"
    try:
        import libusb_package
    except ImportError:
        libusb_package = None
        tried += " and the `libusb-package` Python package is not installed"
    if libusb_package is not None:
        path = libusb_package.get_library_path()
        if path is None:
            tried += " and `libusb-package` ships no library for this platform"
        else:
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
                return str(path)
            except OSError as e:
                tried += f" and the copy from `libusb-package` ({path}) failed to load: {e}"
    raise ImportError(
        f"tflite-support's metadata modules need {_LIBUSB_SONAME}, but {tried}. Fix: {_LIBUSB_FIX}."
    )


@functools.cache
def _tflite_support() -> SimpleNamespace:
    """The tflite-support metadata modules, imported directly (``import tflite_support`` is broken)."""
    ensure_libusb()
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as schema
        from tensorflow_lite_support.metadata.python import metadata
        from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info, metadata_writer
    except ImportError as e:
        raise ImportError(f"TFLite metadata needs tflite-support: {e}. Fix: {_TFLITE_SUPPORT_FIX}.") from e
    return SimpleNamespace(schema=schema, metadata=metadata, info=metadata_info, writer=metadata_writer)


# -- writing ------------------------------------------------------------------------------------
def write_tflite_metadata(
    model: bytes | bytearray | str | Path, contract: InputContract, out_path: str | Path
) -> Path:
    """Write ``model`` (a ``.tflite`` path or its bytes) to ``out_path`` with metadata and the contract.

    Existing metadata and packed associated files are replaced. The contract must describe the
    model: one input of shape ``contract.input_shape``, one output with ``contract.embedding_dim``
    values, and I/O quantization equal to the model's (``input_quant`` / ``output_quant`` set exactly
    when that tensor is int8); otherwise :class:`ContractMismatchError`. The result is written
    atomically after it has been loaded and allocated in the LiteRT interpreter."""
    buf = read_model_bytes(model)
    if not contract.artifact_kind.startswith("tflite"):
        raise ContractMismatchError(
            f"contract artifact_kind is {contract.artifact_kind!r}; a .tflite file needs 'tflite-float' or 'tflite-int8'"
        )
    io_info = _check_model_against_contract(buf, contract)
    if _needs_reserialise(buf):
        buf = _reserialise(buf)

    tfs = _tflite_support()
    info, fb = tfs.info, tfs.schema
    model_md = info.GeneralMd(
        name=contract.model_name,
        version=contract.model_version,
        description=_model_description(contract),
        author=AUTHOR,
        licenses=LICENSE,
    ).create_metadata()
    with tempfile.TemporaryDirectory(prefix="anyppg_md_") as tmp:
        contract_file = Path(tmp) / CONTRACT_FILE_NAME
        contract_file.write_text(contract.to_json())
        model_md.associatedFiles = [
            info.AssociatedFileMd(
                file_path=str(contract_file),
                description=f"anyppg-edge input contract ({contract.schema}): preprocessing config, its hash, "
                "I/O shapes and quantization, source checkpoint. Read with anyppg_edge.deploy.export.metadata."
                "read_tflite_contract.",
                file_type=fb.AssociatedFileType.DESCRIPTIONS,
            ).create_metadata()
        ]
        input_md = _tensor_md(
            info, INPUT_TENSOR_NAME, _input_description(contract), contract.input_quant, True
        )
        output_md = _tensor_md(
            info,
            OUTPUT_TENSOR_NAME,
            f"{contract.embedding_dim}-dimensional PPG embedding, shape {list(io_info['output_shape'])}.",
            contract.output_quant,
            False,
        )
        writer = tfs.writer.MetadataWriter.create_from_metadata(
            bytearray(buf),
            model_metadata=model_md,
            input_metadata=[input_md],
            output_metadata=[output_md],
            associated_files=[str(contract_file)],
        )
        out = bytes(writer.populate())

    _verify_written(out, buf, contract)
    return atomic_write(out_path, lambda f: f.write(out))


def _tensor_md(info: Any, name: str, description: str, quant: QuantParams | None, is_input: bool) -> Any:
    lo = hi = None
    if quant is not None:  # the float range an int8 tensor can represent
        q = _int_range(quant.dtype)
        lo, hi = [quant.scale * (q[0] - quant.zero_point)], [quant.scale * (q[1] - quant.zero_point)]
        description += (
            f" {quant.dtype} tensor: real = scale * (q - zero_point), scale={quant.scale!r}, "
            f"zero_point={quant.zero_point}"
        )
        description += (
            f"; quantize the normalised window with q = clip(round(x / scale) + zero_point, {q[0]}, {q[1]})."
            if is_input
            else "; dequantize the output with that formula."
        )
    return info.TensorMd(name=name, description=description, min_values=lo, max_values=hi).create_metadata()


def _int_range(dtype: str) -> tuple[int, int]:
    import numpy as np

    i = np.iinfo(np.dtype(dtype))
    return int(i.min), int(i.max)


def _model_description(c: InputContract) -> str:
    io_kind = "int8" if c.input_quant is not None else "float32"
    return (
        f"AnyPPG PPG encoder ({c.artifact_kind}). Input '{c.input_name}': one {c.window_s:g} s PPG window at "
        f"{c.sample_rate_hz} Hz = {c.window_samples} samples, shape {list(c.input_shape)}, {io_kind}. "
        f"Filter: {c.filter or 'see contract'}. Normalisation: {c.normalization or 'see contract'}. "
        f"Output '{c.output_name}': {c.embedding_dim}-dimensional embedding. "
        f"Source checkpoint sha256: {c.source_checkpoint_sha256}. Preprocess config hash: "
        f"{c.preprocess_config_hash}. The full input contract is the associated file {CONTRACT_FILE_NAME}."
    )


def _input_description(c: InputContract) -> str:
    return (
        f"One PPG window, {c.window_samples} samples at {c.sample_rate_hz} Hz, shape {list(c.input_shape)} "
        f"[batch, channels, samples]. Filter: {c.filter or 'see contract'}. "
        f"Normalisation: {c.normalization or 'see contract'}."
    )


def read_model_bytes(model: bytes | bytearray | str | Path) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        buf = bytes(model)
        what = "model buffer"
    else:
        p = Path(model)
        if not p.is_file():
            raise FileNotFoundError(f"TFLite model not found: {p}")
        buf = p.read_bytes()
        what = str(p)
    if len(buf) < 8 or buf[4:8] != _TFLITE_IDENTIFIER:
        raise DataFormatError(
            f"{what} is not a TFLite flatbuffer (file identifier {bytes(buf[4:8])!r}, expected {_TFLITE_IDENTIFIER!r})"
        )
    return buf


def model_io(buf: bytes) -> dict[str, Any]:
    """Shapes, dtypes and quantization of the (single) input and output of subgraph 0."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(buf, 0)
    if m.SubgraphsLength() < 1:
        raise DataFormatError("TFLite model has no subgraph")
    g = m.Subgraphs(0)
    ins = [g.Inputs(i) for i in range(g.InputsLength())]
    outs = [g.Outputs(i) for i in range(g.OutputsLength())]
    if len(ins) != 1 or len(outs) != 1:
        raise ContractMismatchError(
            f"an encoder has one input and one output; this model has {len(ins)} inputs and {len(outs)} outputs"
        )
    names = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}

    def describe(idx: int) -> tuple[tuple[int, ...], str, QuantParams | None]:
        t = g.Tensors(idx)
        dtype = names.get(t.Type(), str(t.Type()))
        q = t.Quantization()
        qp = None
        if q is not None and q.ScaleLength() >= 1 and dtype in ("int8", "uint8", "int16"):
            qp = QuantParams(scale=float(q.Scale(0)), zero_point=int(q.ZeroPoint(0)), dtype=dtype)
        return tuple(int(v) for v in t.ShapeAsNumpy()), dtype, qp

    in_shape, in_dtype, in_q = describe(ins[0])
    out_shape, out_dtype, out_q = describe(outs[0])
    return {
        "input_shape": in_shape,
        "input_dtype": in_dtype,
        "input_quant": in_q,
        "output_shape": out_shape,
        "output_dtype": out_dtype,
        "output_quant": out_q,
    }


def _check_model_against_contract(buf: bytes, c: InputContract) -> dict[str, Any]:
    io_info = model_io(buf)
    bad = []
    if tuple(io_info["input_shape"]) != tuple(c.input_shape):
        bad.append(f"input shape: model {list(io_info['input_shape'])}, contract {list(c.input_shape)}")
    out_shape = io_info["output_shape"]
    if not out_shape or out_shape[-1] != c.embedding_dim:
        bad.append(f"output shape: model {list(out_shape)}, contract embedding_dim {c.embedding_dim}")
    for side in ("input", "output"):
        mq: QuantParams | None = io_info[f"{side}_quant"]
        cq: QuantParams | None = getattr(c, f"{side}_quant")
        if mq is None and io_info[f"{side}_dtype"] != "float32":
            bad.append(f"{side} dtype {io_info[f'{side}_dtype']} is neither float32 nor quantized int8")
        elif (mq is None) != (cq is None):
            bad.append(
                f"{side}_quant: model {side} is {io_info[f'{side}_dtype']}"
                + (f" (scale={mq.scale!r}, zero_point={mq.zero_point})" if mq else "")
                + f", contract says {'float' if cq is None else f'{cq.dtype} scale={cq.scale!r}'}"
            )
        elif mq is not None and cq is not None and not _same_quant(mq, cq):
            bad.append(f"{side}_quant: model {mq}, contract {cq}")
    if bad:
        raise ContractMismatchError(
            f"the input contract does not describe this TFLite model ({c.model_name}):\n  " + "\n  ".join(bad)
        )
    return io_info


def _same_quant(a: QuantParams, b: QuantParams) -> bool:
    return (
        a.dtype == b.dtype and a.zero_point == b.zero_point and math.isclose(a.scale, b.scale, rel_tol=1e-6)
    )


def _needs_reserialise(buf: bytes) -> bool:
    """True when tflite-support's schema would lose data (out-of-flatbuffer buffers or custom
    options) or refuse to populate (associated files already packed after the flatbuffer)."""
    from ai_edge_litert import schema_py_generated as s

    m = s.Model.GetRootAs(buf, 0)
    for i in range(m.BuffersLength()):
        if m.Buffers(i).Offset() > 1:
            return True
    for gi in range(m.SubgraphsLength()):
        g = m.Subgraphs(gi)
        for oi in range(g.OperatorsLength()):
            if g.Operators(oi).LargeCustomOptionsOffset() > 1:
                return True
    return packed_files(buf) != []


def _reserialise(buf: bytes) -> bytes:
    """Plain flatbuffer with every buffer inlined; drops anything appended after it (packed files)."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(buf))
    if sys.byteorder == "big":  # read_model_from_bytearray swapped to host order; write_model swaps back
        fu.byte_swap_tflite_model_obj(model, "big", "little")
    return bytes(fu.convert_object_to_bytearray(model))


def _verify_written(out: bytes, src: bytes, contract: InputContract) -> None:
    """The written model loads and allocates in LiteRT, with the same I/O, and the contract reads back."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_content=out, num_threads=1)
        interp.allocate_tensors()
    except Exception as e:  # the interpreter raises RuntimeError/ValueError with its own message
        raise DataFormatError(
            f"the model with metadata no longer loads in the LiteRT interpreter: {e}"
        ) from e
    (inp,), (outp,) = interp.get_input_details(), interp.get_output_details()
    if tuple(inp["shape"]) != tuple(contract.input_shape) or int(outp["shape"][-1]) != contract.embedding_dim:
        raise DataFormatError(
            f"the model with metadata has input {list(inp['shape'])} / output {list(outp['shape'])}, "
            f"expected {list(contract.input_shape)} / [..., {contract.embedding_dim}]"
        )
    back = _contract_from_buffer(out, "written model")
    if back != contract:
        raise DataFormatError(
            "the input contract read back from the written model differs from the one written"
        )


# -- reading ------------------------------------------------------------------------------------
def _displayer(buf: bytes, what: str) -> Any:
    tfs = _tflite_support()
    try:
        return tfs.metadata.MetadataDisplayer.with_model_buffer(buf)
    except ValueError as e:
        raise ContractMismatchError(
            f"{what} has no TFLite metadata ({e}), so no input contract; write one with "
            "anyppg_edge.deploy.export.metadata.write_tflite_metadata"
        ) from e


def _contract_from_buffer(buf: bytes, what: str) -> InputContract:
    displayer = _displayer(buf, what)
    files = displayer.get_packed_associated_file_list()
    if CONTRACT_FILE_NAME not in files:
        raise ContractMismatchError(
            f"{what} has TFLite metadata but no input contract: associated file {CONTRACT_FILE_NAME!r} "
            f"is missing (packed files: {files or 'none'})"
        )
    return parse_contract(displayer.get_associated_file_buffer(CONTRACT_FILE_NAME), what)


def read_tflite_contract(path: str | Path, cfg: Any = None) -> InputContract:
    """The :class:`InputContract` packed in a ``.tflite`` file by :func:`write_tflite_metadata`.

    Raises :class:`ContractMismatchError` when the file has no metadata, no contract, or a malformed
    one; when ``cfg`` (a :class:`~anyppg_edge.preprocessing.PreprocessConfig`) is given, also when
    the contract does not match it."""
    path = Path(path)
    contract = _contract_from_buffer(read_model_bytes(path), str(path))
    if cfg is not None:
        contract.check(cfg, what=str(path))
    return contract


def tflite_metadata_json(path: str | Path) -> dict[str, Any]:
    """The model metadata as a dict (``MetadataDisplayer.get_metadata_json``); raises
    :class:`ContractMismatchError` when the file has none."""
    path = Path(path)
    return json.loads(_displayer(read_model_bytes(path), str(path)).get_metadata_json())
