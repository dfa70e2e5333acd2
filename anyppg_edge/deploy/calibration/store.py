"""The calibration set itself: :class:`CalibrationSet`, its files (windows, per-window metadata,
manifest with checksums), saving and verified loading, and the one calibration iterator."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.errors import ContractMismatchError, DataFormatError
from anyppg_edge.io import atomic_write, write_json
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

CALIBRATION_SCHEMA = "anyppg-edge/calibration/v1"
WINDOWS_FILE = "windows.npy"
META_FILE = "meta.json"
MANIFEST_FILE = "manifest.json"

_META_FIELDS = (
    "source",
    "dataset",
    "subject_id",
    "start_s",
    "hr_bpm",
    "hr_source",
    "quality",
    "hr_bin",
    "quality_level",
    "stratum",
)
_FLOAT_FIELDS = ("start_s", "hr_bpm", "quality")




# --------------------------------------------------------------------------------------------------
# the set
# --------------------------------------------------------------------------------------------------


@dataclass
class CalibrationSet:
    """Calibration windows ``[N, window_samples]`` (float32, preprocessed, 125 Hz) with per-window
    metadata (all arrays of length ``N``, in draw order) and the JSON ``manifest``.

    ``hr_bin`` and ``quality_level`` are the HR bin label and the quality tertile name of each
    window; ``stratum`` is ``"<dataset>:<subject_id>|<hr_bin> bpm|q-<quality_level>"``.
    """

    windows: np.ndarray  # [N, L] float32
    source: np.ndarray  # [N] str: "shared", "simulator", "shards:<dir>", "recordings"
    dataset: np.ndarray  # [N] str
    subject_id: np.ndarray  # [N] str
    start_s: np.ndarray  # [N] float64, window start within its recording
    hr_bpm: np.ndarray  # [N] float64
    hr_source: np.ndarray  # [N] str: "ecg-rpeaks" or "ppg-spectral"
    quality: np.ndarray  # [N] float64 in [0, 1], see ppg_quality
    hr_bin: np.ndarray  # [N] str, one of HR_BIN_LABELS
    quality_level: np.ndarray  # [N] str, one of QUALITY_LEVELS
    stratum: np.ndarray  # [N] str
    manifest: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    @property
    def window_samples(self) -> int:
        return int(self.windows.shape[1])

    def meta_columns(self) -> dict[str, list]:
        """Per-window metadata as plain lists (the content of ``meta.json``)."""
        out: dict[str, list] = {}
        for name in _META_FIELDS:
            arr = getattr(self, name)
            out[name] = [float(v) for v in arr] if name in _FLOAT_FIELDS else [str(v) for v in arr]
        return out


def windows_sha256(windows: np.ndarray) -> str:
    """SHA-256 of the C-contiguous float32 bytes of ``windows``."""
    return hashlib.sha256(np.ascontiguousarray(windows, dtype=np.float32).tobytes()).hexdigest()


def _meta_bytes(columns: dict[str, list]) -> bytes:
    return (json.dumps(columns, indent=1, sort_keys=True) + "\n").encode()



# --------------------------------------------------------------------------------------------------
# disk
# --------------------------------------------------------------------------------------------------


def save_calibration_set(cs: CalibrationSet, out_dir: str | os.PathLike) -> Path:
    """Write ``windows.npy``, ``meta.json`` and, last, ``manifest.json`` into ``out_dir`` (each atomically).

    The manifest is written last, so a folder with a manifest holds the files it describes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    windows = np.ascontiguousarray(cs.windows, dtype=np.float32)
    if windows.ndim != 2:
        raise ValueError(f"calibration windows must be [N, L], got shape {windows.shape}")
    sha = windows_sha256(windows)
    meta = _meta_bytes(cs.meta_columns())
    if cs.manifest.get("sha256") not in (None, sha):
        raise ValueError("calibration set windows no longer match their manifest sha256 (modified in place?)")
    manifest = dict(cs.manifest)
    manifest.update(
        sha256=sha,
        meta_sha256=hashlib.sha256(meta).hexdigest(),
        count=len(windows),
        shape=list(windows.shape),
        window_samples=int(windows.shape[1]),
        files=[WINDOWS_FILE, META_FILE, MANIFEST_FILE],
    )
    atomic_write(out / WINDOWS_FILE, lambda f: np.save(f, windows, allow_pickle=False))
    atomic_write(out / META_FILE, lambda f: f.write(meta))
    write_json(out / MANIFEST_FILE, manifest)
    cs.manifest = manifest
    return out


def _read_manifest(path: Path) -> dict[str, Any]:
    mpath = path / MANIFEST_FILE
    if not mpath.is_file():
        raise DataFormatError(f"no {MANIFEST_FILE} in {path}: not a calibration set folder")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"unreadable calibration manifest {mpath}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != CALIBRATION_SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataFormatError(f"{mpath}: schema {found!r}, expected {CALIBRATION_SCHEMA!r}")
    return manifest


def load_calibration_set(
    path: str | os.PathLike, cfg: PreprocessConfig | None = DEFAULT_CONFIG
) -> CalibrationSet:
    """Load a folder written by :func:`save_calibration_set` and verify it.

    Raises :class:`DataFormatError` when a file is missing, truncated or unreadable, or when the
    windows or metadata do not match the manifest's sha256; :class:`ContractMismatchError` when the
    set was built with another preprocessing configuration than ``cfg`` (``cfg=None``: no check)."""
    root = Path(path)
    manifest = _read_manifest(root)
    wpath, mpath = root / WINDOWS_FILE, root / META_FILE
    for p in (wpath, mpath):
        if not p.is_file():
            raise DataFormatError(f"calibration set {root} is missing {p.name} (its manifest lists it)")
    try:
        windows = np.load(wpath, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"corrupt or truncated {wpath}: {exc}") from exc
    expect_shape = tuple(manifest.get("shape", ()))
    if windows.dtype != np.float32 or windows.shape != expect_shape:
        raise DataFormatError(
            f"{wpath}: {windows.dtype} {windows.shape}, manifest says float32 {expect_shape}"
        )
    sha = windows_sha256(windows)
    if sha != manifest.get("sha256"):
        raise DataFormatError(
            f"{wpath}: sha256 {sha} does not match the manifest's {manifest.get('sha256')}; the windows "
            "were modified or corrupted: rebuild the set (python -m calibration_data build ...)"
        )
    raw = mpath.read_bytes()
    msha = hashlib.sha256(raw).hexdigest()
    if msha != manifest.get("meta_sha256"):
        raise DataFormatError(
            f"{mpath}: sha256 {msha} does not match the manifest's {manifest.get('meta_sha256')}"
        )
    try:
        cols = json.loads(raw)
    except json.JSONDecodeError as exc:  # pragma: no cover - caught by the checksum first
        raise DataFormatError(f"unreadable {mpath}: {exc}") from exc
    missing = [k for k in _META_FIELDS if k not in cols or len(cols[k]) != len(windows)]
    if missing:
        raise DataFormatError(f"{mpath}: fields {missing} missing or not of length {len(windows)}")
    if cfg is not None and manifest.get("preprocess_config_hash") != cfg.config_hash():
        raise ContractMismatchError(
            f"calibration set {root} was built with preprocessing config hash "
            f"{manifest.get('preprocess_config_hash')}, not {cfg.config_hash()} (the config in use); "
            "its windows are not valid model inputs for this config: build one with that config"
        )
    meta = {
        k: np.asarray(cols[k], dtype=np.float64) if k in _FLOAT_FIELDS else np.asarray(cols[k], dtype=str)
        for k in _META_FIELDS
    }
    return CalibrationSet(windows=windows, manifest=manifest, **meta)


def default_calibration_dir() -> Path:
    """The committed default set: package data of :mod:`anyppg_edge.deploy.calibration` (installed with the wheel)."""
    return Path(__file__).resolve().parent / "default"



# --------------------------------------------------------------------------------------------------
# the calibration iterator
# --------------------------------------------------------------------------------------------------


def iter_batches(cs: CalibrationSet, batch_size: int) -> Iterator[np.ndarray]:
    """Yield the windows in stored (draw) order as float32 ``[B, 1, L]`` arrays (the last batch may be
    smaller). Every quantizer (PTQ, QAT, ONNX ``quantize_static``, TFLite ``representative_dataset``)
    calibrates through this iterator. Each batch is a fresh copy."""
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    w = cs.windows
    for a in range(0, len(w), int(batch_size)):
        yield np.array(w[a : a + int(batch_size), None, :], dtype=np.float32, order="C")

