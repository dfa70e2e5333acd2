"""The one reader of an artifact's input contract, for ONNX and TFLite alike, and the ONNX
``metadata_props`` layout the writer uses.

* ONNX: the contract JSON under ``metadata_props[CONTRACT_KEY]`` plus flat, human-readable copies of
  the main fields (:data:`FLAT_CONTRACT_KEYS`; Netron shows them as a table).
* TFLite: the contract JSON packed as the associated file :data:`CONTRACT_FILE_NAME` in the zip
  archive that tflite-support appends to the flatbuffer (written by
  :func:`anyppg_edge.deploy.export.metadata.write_tflite_metadata`). It is read here as a zip, with
  no tflite-support or TensorFlow import, so a device pays only for its runtime. A file with more
  than one appended archive is refused: a second archive could carry a second, spoofed contract.

Only the standard library and numpy-free modules are imported at module level; ``onnx`` (or, on a
device, ``onnxruntime``) is imported when an ONNX contract is read. This module is part of the base
install that the device-side runner uses.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

from anyppg_edge.contract import CONTRACT_KEY, InputContract
from anyppg_edge.errors import ContractMismatchError, DataFormatError, MissingFileError

__all__ = [
    "CONTRACT_FILE_NAME",
    "FLAT_CONTRACT_KEYS",
    "check_contract_fields",
    "contract_from_metadata",
    "contract_props",
    "count_zip_archives",
    "packed_files",
    "parse_contract",
    "read_contract",
    "read_onnx_contract",
    "read_tflite_contract_zip",
]

CONTRACT_FILE_NAME = f"{CONTRACT_KEY}.json"  # the associated file inside the .tflite zip appendix
# Flat, human-readable metadata keys written next to the JSON contract in ONNX metadata_props.
FLAT_CONTRACT_KEYS = (
    "model_name",
    "artifact_kind",
    "embedding_dim",
    "sample_rate_hz",
    "window_s",
    "window_samples",
    "preprocess_config_hash",
    "source_checkpoint_sha256",
)
_ZIP_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
_ZIP_CENTRAL_DIRECTORY = b"PK\x01\x02"


def parse_contract(text: bytes | str, what: str) -> InputContract:
    """An :class:`InputContract` from its JSON, its fields type-checked (:func:`check_contract_fields`);
    every failure is a :class:`ContractMismatchError` naming ``what``."""
    try:
        contract = InputContract.from_json(text)
    except ContractMismatchError as e:
        msg = str(e)
        prefix = "" if msg.startswith("malformed input contract") else "malformed input contract: "
        raise ContractMismatchError(f"{what}: {prefix}{msg}") from e
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # e.g. a bad artifact_kind, a list
        raise ContractMismatchError(f"{what}: malformed input contract: {type(e).__name__}: {e}") from e
    check_contract_fields(contract, what)
    return contract


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_contract_fields(contract: InputContract, what: str) -> InputContract:
    """Refuse a contract whose fields have the wrong JSON types (``"preprocess": null``, a string
    ``embedding_dim``, ...) with a :class:`ContractMismatchError` naming them, before anything
    compares or indexes them (``"preprocess": null`` used to surface as a ``TypeError`` from
    :meth:`InputContract.check`)."""
    bad = []
    if not isinstance(contract.preprocess, Mapping) or not all(isinstance(k, str) for k in contract.preprocess):
        bad.append(f"preprocess must be an object of preprocessing settings, got {contract.preprocess!r}")
    if not _is_int(contract.embedding_dim) or contract.embedding_dim < 1:
        bad.append(f"embedding_dim must be a positive integer, got {contract.embedding_dim!r}")
    if not contract.input_shape or any(v < 1 for v in contract.input_shape):
        bad.append(f"input_shape must be positive sizes, got {list(contract.input_shape)}")
    for name in ("model_name", "preprocess_config_hash", "source_checkpoint_sha256", "input_name", "output_name"):
        if not isinstance(getattr(contract, name), str):
            bad.append(f"{name} must be a string, got {getattr(contract, name)!r}")
    if not isinstance(contract.extra, Mapping):
        bad.append(f"extra must be an object, got {contract.extra!r}")
    for name in ("input_quant", "output_quant"):
        q = getattr(contract, name)
        if q is not None and not (
            isinstance(q.scale, (int, float)) and not isinstance(q.scale, bool) and q.scale > 0
            and _is_int(q.zero_point) and isinstance(q.dtype, str) and q.dtype.lstrip("u").startswith("int")
        ):
            bad.append(f"{name} must have a positive scale, an integer zero_point and an integer dtype, got {q!r}")
    if bad:
        raise ContractMismatchError(
            f"{what}: malformed input contract: " + "; ".join(bad) + ". Re-export the artifact (its contract "
            "was hand-edited or written by another tool)"
        )
    return contract


# -- ONNX -------------------------------------------------------------------------------------------
def contract_props(contract: InputContract) -> dict[str, str]:
    """The ``metadata_props`` entries that carry ``contract`` in an ONNX file."""
    d = contract.to_dict()
    props = {CONTRACT_KEY: contract.to_json()}
    props.update({k: str(d[k]) for k in FLAT_CONTRACT_KEYS})
    return props


def contract_from_metadata(props: dict[str, str], where: str) -> InputContract:
    """Parse the contract out of an ONNX ``metadata_props`` mapping (also ORT's custom metadata)."""
    text = props.get(CONTRACT_KEY)
    if text is None:
        raise ContractMismatchError(
            f"{where} carries no input contract (no metadata_props key {CONTRACT_KEY!r}); it was not "
            "exported by anyppg-edge or its metadata was stripped. Re-export it, or attach one with "
            "anyppg_edge.deploy.export.onnx.write_onnx_contract()."
        )
    return parse_contract(text, f"{where} (metadata_props)")


def read_onnx_contract(path: str | Path) -> InputContract:
    """The input contract stored in an ONNX file (:class:`ContractMismatchError` if absent/malformed).

    Uses ``onnx`` when installed; otherwise onnxruntime's model metadata (device installs)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"ONNX model not found: {path}")
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise DataFormatError(f"{path} is not a loadable ONNX model: {e}") from e
        props = dict(sess.get_modelmeta().custom_metadata_map)
    else:
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception as e:  # DecodeError and friends of a truncated or foreign file
            raise DataFormatError(f"{path} is not a readable ONNX model (truncated or corrupt?): {e}") from e
        props = {p.key: p.value for p in model.metadata_props}
    return contract_from_metadata(props, str(path))


# -- TFLite -----------------------------------------------------------------------------------------
def packed_files(buf: bytes) -> list[str]:
    """Names of the files packed in a TFLite model's metadata zip (empty when there is none)."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(buf)) as zf:
            return zf.namelist()
    except zipfile.BadZipFile:
        return []


def count_zip_archives(buf: bytes) -> int:
    """Zip archives with files in ``buf``: end-of-central-directory records whose central directory
    (its ``size`` bytes, right before the record) starts with a central-directory header. The 4-byte
    signature alone can occur by chance in a model's weights (one in 2**32 positions: about one in
    400 files of 10 MB); a stray one fails this test."""
    n, i = 0, buf.find(_ZIP_END_OF_CENTRAL_DIRECTORY)
    while i >= 0:
        if i + 22 <= len(buf):
            (cd_size,) = struct.unpack_from("<I", buf, i + 12)
            start = i - cd_size
            if cd_size > 0 and start >= 0 and buf[start : start + 4] == _ZIP_CENTRAL_DIRECTORY:
                n += 1
        i = buf.find(_ZIP_END_OF_CENTRAL_DIRECTORY, i + 1)
    return n


def read_tflite_contract_zip(path: str | Path) -> InputContract:
    """The contract packed in a ``.tflite`` file's metadata zip (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"TFLite model not found: {path}")
    buf = path.read_bytes()
    n_archives = count_zip_archives(buf)
    if n_archives > 1:
        raise ContractMismatchError(
            f"{path} carries {n_archives} appended zip archives: the contract is ambiguous (one may be "
            "spoofed). Re-export the model, or rewrite its metadata with write_tflite_metadata"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read(CONTRACT_FILE_NAME)
    except (zipfile.BadZipFile, KeyError) as e:
        raise ContractMismatchError(f"{path} has no input contract ({CONTRACT_FILE_NAME}): {e}") from e
    return parse_contract(text, str(path))


def read_contract(path: str | Path) -> InputContract:
    """The input contract of an ``.onnx`` or ``.tflite`` artifact (ContractMismatchError if none)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model artifact not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return read_onnx_contract(path)
    if suffix == ".tflite":
        return read_tflite_contract_zip(path)
    raise DataFormatError(f"{path}: unknown artifact type {suffix!r} (expected .onnx or .tflite)")
