"""Golden embedding sets: what the float PyTorch model computes on a fixed set of real windows.

A golden set is one ``.npz`` file holding

* ``windows`` ``[N, L]`` float32: preprocessed model-input windows (exactly what was fed);
* ``embeddings`` ``[N, D]`` float32: the float model's output for them;
* ``window_ids`` ``[N]`` str: where each window comes from (``dataset/subject@start_s``);
* ``provenance`` (0-d str): JSON with the checkpoint sha256, model name, device (name, torch and
  CUDA/cuDNN versions, TF32 flags, deterministic-algorithms flag), preprocessing config and its
  hash, the window source, ``created_by`` / ``created_at`` and ``checksum_sha256``.

The checksum covers the three arrays and the provenance (without the checksum itself):
:func:`load_golden_set` recomputes it and raises :class:`~anyppg_edge.errors.DataFormatError` on any
difference (a corrupted, truncated or hand-edited file never passes as a golden set). A copy of
the provenance is written beside the file (``<name>.provenance.json``) for humans; the one inside
the ``.npz`` is authoritative.

The model runs on CUDA when available (``device=None``), with TF32 disabled for matmuls and cuDNN
convolutions, ``torch.use_deterministic_algorithms(True)``, cuDNN deterministic and benchmark off
(``CUBLAS_WORKSPACE_CONFIG=:4096:8`` as deterministic cuBLAS requires); every flag is restored
afterwards and recorded in the provenance. On CPU the same deterministic flag is set.

:func:`golden_windows_from_shared` picks the windows: the held-out subjects (val + test of
:func:`~anyppg_edge.data.shards.subject_split`, the same seed-0 split and selection as the parity
windows of :func:`~anyppg_edge.deploy.export.build.shared_export_data`), so that neither calibration nor
QAT ever saw them. :func:`save_golden_windows` / :func:`load_golden_windows` carry exactly those
windows to a machine without ``../shared`` (the GPU check, ``anyppg-edge gpu-check``), and
:func:`golden_as_artifact` lets the parity suite compare two golden sets of the same model and
windows (a CPU one against a GPU one: row ``gpu-vs-cpu-float``).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge import __version__
from anyppg_edge.errors import DataFormatError
from anyppg_edge.io import atomic_write, write_json
from anyppg_edge.preprocessing import DEFAULT_CONFIG, PreprocessConfig

__all__ = [
    "GOLDEN_SCHEMA",
    "GOLDEN_WINDOWS_SCHEMA",
    "GoldenSet",
    "deterministic_torch",
    "golden_as_artifact",
    "golden_checksum",
    "golden_embeddings",
    "golden_windows_from_recordings",
    "golden_windows_from_shared",
    "load_golden_set",
    "load_golden_windows",
    "make_golden_set",
    "provenance_path",
    "save_golden_windows",
]

GOLDEN_SCHEMA = "anyppg-edge/golden-set/v1"
GOLDEN_WINDOWS_SCHEMA = "anyppg-edge/golden-windows/v1"
_ARRAYS = ("windows", "embeddings", "window_ids")


@dataclass
class GoldenSet:
    """A loaded golden set (see the module docstring)."""

    windows: np.ndarray  # [N, L] float32
    embeddings: np.ndarray  # [N, D] float32
    window_ids: np.ndarray  # [N] str
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def model_name(self) -> str:
        return str(self.provenance.get("model_name", ""))

    @property
    def checkpoint_sha256(self) -> str:
        return str(self.provenance.get("checkpoint_sha256", ""))

    @property
    def device_type(self) -> str:
        """``"cuda"`` or ``"cpu"``: which tolerance row float artifacts are held to."""
        return str(self.provenance.get("device", {}).get("type", "cpu"))

    @property
    def preprocess_config_hash(self) -> str:
        return str(self.provenance.get("preprocess_config_hash", ""))

    def describe(self) -> str:
        d = self.provenance.get("device", {})
        return (
            f"{len(self)} windows of {self.model_name} (checkpoint {self.checkpoint_sha256[:12]}), "
            f"made on {d.get('type', '?')} ({d.get('name', '?')}, torch {d.get('torch', '?')}"
            + (f", CUDA {d['cuda']}" if d.get("cuda") else "")
            + f"), {self.provenance.get('window_source', '')}"
        )


def provenance_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name.removesuffix(".npz") + ".provenance.json")


# --------------------------------------------------------------------------------------------------
# checksum
# --------------------------------------------------------------------------------------------------


def golden_checksum(windows: np.ndarray, embeddings: np.ndarray, window_ids: Sequence[str], provenance: dict) -> str:
    """sha256 over the arrays (dtype, shape, bytes), the ids and the canonical provenance JSON
    (``checksum_sha256`` itself left out)."""
    h = hashlib.sha256()
    for a in (np.ascontiguousarray(windows, np.float32), np.ascontiguousarray(embeddings, np.float32)):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update("\x1f".join(str(i) for i in window_ids).encode())
    prov = {k: v for k, v in provenance.items() if k != "checksum_sha256"}
    h.update(json.dumps(prov, sort_keys=True, separators=(",", ":"), default=str).encode())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# deterministic torch
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def deterministic_torch(device: str) -> Iterator[dict[str, Any]]:
    """TF32 off, deterministic algorithms on (and cuDNN deterministic, benchmark off) for the block;
    yields the flags in force, restores the previous ones afterwards."""
    import torch

    cuda = str(device).startswith("cuda")
    old = {
        "det": torch.are_deterministic_algorithms_enabled(),
        "det_warn": torch.is_deterministic_algorithms_warn_only_enabled(),
        "mm_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_det": torch.backends.cudnn.deterministic,
        "cudnn_bench": torch.backends.cudnn.benchmark,
        "cublas_ws": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "fp32_prec": torch.get_float32_matmul_precision(),
    }
    try:
        if cuda and not old["cublas_ws"]:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # deterministic cuBLAS needs it
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        torch.use_deterministic_algorithms(True)
        yield {
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        }
    finally:
        torch.use_deterministic_algorithms(old["det"], warn_only=old["det_warn"])
        torch.backends.cuda.matmul.allow_tf32 = old["mm_tf32"]
        torch.backends.cudnn.allow_tf32 = old["cudnn_tf32"]
        torch.backends.cudnn.deterministic = old["cudnn_det"]
        torch.backends.cudnn.benchmark = old["cudnn_bench"]
        torch.set_float32_matmul_precision(old["fp32_prec"])
        if cuda and not old["cublas_ws"]:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def cpu_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo``; else what ``platform`` knows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _device_info(device: str, flags: dict[str, Any]) -> dict[str, Any]:
    import torch

    cuda = device.startswith("cuda")
    info: dict[str, Any] = {
        "type": "cuda" if cuda else "cpu",
        "device": device,
        "name": torch.cuda.get_device_name(torch.device(device)) if cuda else cpu_name(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **flags,
    }
    if cuda:
        cap = torch.cuda.get_device_capability(torch.device(device))
        info["compute_capability"] = f"{cap[0]}.{cap[1]}"
    return info


# --------------------------------------------------------------------------------------------------
# make / load
# --------------------------------------------------------------------------------------------------


def golden_embeddings(
    model: Any,
    windows: np.ndarray,
    device: str | None = None,
    batch_size: int = 32,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
) -> tuple[np.ndarray, dict[str, Any]]:
    """What a golden set holds, without writing it: the float ``model``'s embeddings ``[N, D]``
    float32 of ``windows`` ``[N, L]`` on ``device`` (``None``: CUDA when available, else CPU) under
    :func:`deterministic_torch`, and the device record (name, versions, flags in force). The
    caller's model is not moved (a copy goes to the device)."""
    import torch

    from anyppg_edge.deploy.runtime import validate_windows

    x = validate_windows(np.asarray(windows), cfg.window_samples)[:, 0]
    if len(x) == 0:
        raise ValueError("a golden set needs at least one window")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch.cuda.is_available() is False")
    net = copy.deepcopy(model).eval().to(device)
    outs = []
    with deterministic_torch(device) as flags, torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size, None])).to(device)
            outs.append(net(xb).float().cpu().numpy())
        info = _device_info(device, flags)
    return np.concatenate(outs).astype(np.float32), info


def make_golden_set(
    model: Any,
    model_name: str,
    source_sha256: str,
    windows: np.ndarray,
    window_ids: Sequence[str],
    out_path: str | Path,
    device: str | None = None,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    window_source: str = "",
    batch_size: int = 32,
    created_by: str = "",
    extra_provenance: dict[str, Any] | None = None,
) -> GoldenSet:
    """Run the float ``model`` over ``windows`` ``[N, L]`` on ``device`` (``None``: CUDA when
    available, else CPU; deterministic settings, see the module docstring) and write the golden set
    to ``out_path`` (``.npz``) plus ``<name>.provenance.json`` beside it. The caller's model is not
    moved (a copy goes to the device). ``extra_provenance`` is recorded under the provenance key
    ``context`` (e.g. the GPU check's run). Returns the set as :func:`load_golden_set` would."""
    from anyppg_edge.deploy.runtime import validate_windows

    L = cfg.window_samples
    x = validate_windows(np.asarray(windows), L)[:, 0]
    ids = np.asarray([str(i) for i in window_ids])
    if ids.shape != (len(x),):
        raise ValueError(f"window_ids must have one id per window ({len(x)}), got {ids.shape}")
    emb, info = golden_embeddings(model, x, device, batch_size, cfg)
    if not np.isfinite(emb).all():
        raise ValueError("the model produced NaN/Inf embeddings; refusing to write a golden set")
    prov: dict[str, Any] = {
        "schema": GOLDEN_SCHEMA,
        "model_name": model_name,
        "checkpoint_sha256": source_sha256,
        "n_windows": len(x),
        "window_samples": L,
        "embedding_dim": int(emb.shape[1]),
        "device": info,
        "preprocess_config_hash": cfg.config_hash(),
        "preprocess": cfg.to_dict(),
        "window_source": window_source,
        "created_by": created_by or f"anyppg-edge {__version__} anyppg_edge.deploy.parity.golden.make_golden_set",
        "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "anyppg_edge_version": __version__,
    }
    if extra_provenance:
        prov["context"] = extra_provenance
    prov["checksum_sha256"] = golden_checksum(x, emb, ids, prov)
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"golden set path must end in .npz, got {out_path}")

    def write(f) -> None:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            windows=x.astype(np.float32),
            embeddings=emb,
            window_ids=ids,
            provenance=np.asarray(json.dumps(prov, sort_keys=True)),
        )
        f.write(buf.getvalue())

    atomic_write(out_path, write)
    write_json(provenance_path(out_path), prov)
    return GoldenSet(x.astype(np.float32), emb, ids, prov, out_path)


def load_golden_set(path: str | Path) -> GoldenSet:
    """Read and verify a golden set: :class:`DataFormatError` when the file is missing, not a golden
    set, truncated, or its checksum does not match its content."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"golden set not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (*_ARRAYS, "provenance") if k not in z.files]
            if missing:
                raise DataFormatError(f"{path} is not a golden set (missing {missing})")
            windows, emb, ids = z["windows"], z["embeddings"], z["window_ids"]
            prov_text = str(z["provenance"])
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(f"golden set {path} cannot be read (corrupted or truncated): {type(e).__name__}: {e}") from e
    try:
        prov = json.loads(prov_text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"golden set {path}: provenance is not valid JSON: {e}") from e
    if prov.get("schema") != GOLDEN_SCHEMA:
        raise DataFormatError(f"golden set {path}: unknown schema {prov.get('schema')!r} (expected {GOLDEN_SCHEMA!r})")
    if windows.dtype != np.float32 or emb.dtype != np.float32 or windows.ndim != 2 or emb.ndim != 2:
        raise DataFormatError(
            f"golden set {path}: expected float32 windows [N, L] and embeddings [N, D], got "
            f"{windows.dtype}{windows.shape} and {emb.dtype}{emb.shape}"
        )
    if not (len(windows) == len(emb) == len(ids)):
        raise DataFormatError(
            f"golden set {path}: {len(windows)} windows, {len(emb)} embeddings, {len(ids)} ids (must agree)"
        )
    want = prov.get("checksum_sha256")
    got = golden_checksum(windows, emb, ids.tolist(), prov)
    if want != got:
        raise DataFormatError(
            f"golden set {path}: checksum mismatch (stored {str(want)[:16]}…, content {got[:16]}…): the "
            "file was corrupted or edited; regenerate it with `python -m export golden`"
        )
    return GoldenSet(windows, emb, ids.astype(str), prov, path)


# --------------------------------------------------------------------------------------------------
# windows from ../shared
# --------------------------------------------------------------------------------------------------


def golden_windows_from_shared(
    n: int = 256,
    seed: int = 0,
    hop_s: float = 5.0,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    splits: Sequence[str] = ("val", "test"),
) -> tuple[np.ndarray, list[str], str]:
    """Windows of the held-out subjects of ``../shared`` (``splits`` of the seed-``seed``
    :func:`subject_split`), every ``hop_s`` s, ``n`` drawn at random (all when fewer) in recording
    order: the same selection as the parity windows of
    :func:`~anyppg_edge.deploy.export.build.shared_export_data` with the same ``seed``/``hop_s``/``n``.
    Returns ``(windows [n, L] float32, ids ["dataset/subject@start_s"], description)``."""
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.paths import shared_dir

    recs = load_shared_recordings(shared_dir() / "data")
    return golden_windows_from_recordings(recs, n, seed, hop_s, cfg, splits, source="../shared")


def golden_windows_for_model(model: str, n: int = 256, seed: int = 0, hop_s: float = 5.0,
                             config: Any = None) -> tuple[np.ndarray, list[str], str, PreprocessConfig]:
    """The golden windows of registry model ``model`` (:func:`golden_windows_from_shared` in the
    model's own contract, :func:`~anyppg_edge.config.model_preprocess_config`; ``config``: the base
    chain, default the reference one): what ``export golden --model`` embeds and what the GPU check
    carries, so that their golden sets are of the same windows. Returns ``(windows, ids,
    description, cfg)``."""
    from anyppg_edge.config import model_preprocess_config
    from anyppg_edge.models.registry import get_model_spec

    cfg = model_preprocess_config(get_model_spec(model), config)
    return (*golden_windows_from_shared(n, seed=seed, hop_s=hop_s, cfg=cfg), cfg)


def golden_windows_from_recordings(
    recs: Sequence[Any],
    n: int = 256,
    seed: int = 0,
    hop_s: float = 5.0,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    splits: Sequence[str] = ("val", "test"),
    source: str = "recordings",
) -> tuple[np.ndarray, list[str], str]:
    """:func:`golden_windows_from_shared` over any recordings (``source`` names them in the
    description): the held-out subjects of their seed-``seed`` split, every ``hop_s`` s, ``n`` drawn.
    The windows of contract ``cfg``: :func:`~anyppg_edge.data.native_rate.model_input_recording`
    (a native-rate contract's PPG sampled like its sensor)."""
    from anyppg_edge.data.native_rate import is_native_rate
    from anyppg_edge.data.splits import recording_splits
    from anyppg_edge.data.windows import WindowSet
    from anyppg_edge.deploy.model_windows import model_ppg_windows

    split = recording_splits(recs, seed=seed)
    held = [r for r in recs if split[f"{r.dataset}/{r.subject_id}"] in splits]
    if not held:
        raise ValueError(f"no subjects in splits {list(splits)} of {source}")
    ws = WindowSet.concat([model_ppg_windows(r, cfg, hop_s=hop_s) for r in held])
    idx = np.arange(len(ws))
    if len(ws) > n:
        idx = np.sort(np.random.default_rng(seed).choice(len(ws), n, replace=False))
    ids = [f"{_subject_label(ws.dataset[i], ws.subject_id[i])}@{ws.start_s[i]:.1f}s" for i in idx]
    desc = (
        f"{source} held-out subjects ({'+'.join(splits)} of subject_split seed {seed}): "
        f"{', '.join(sorted({_subject_label(r.dataset, r.subject_id) for r in held}))}; hop {hop_s:g} s; "
        f"{len(idx)} of {len(ws)} windows"
        + (f"; PPG sampled like a {cfg.target_sample_rate_hz} Hz sensor (native-rate contract)" if is_native_rate(cfg) else "")
    )
    return ws.ppg[idx].astype(np.float32), ids, desc


def _subject_label(dataset: str, subject_id: str) -> str:
    dataset, subject_id = str(dataset), str(subject_id)
    return subject_id if subject_id.startswith(f"{dataset}/") else f"{dataset}/{subject_id}"


# --------------------------------------------------------------------------------------------------
# golden windows as a file (they travel to a machine without ../shared), a golden set as an artifact
# --------------------------------------------------------------------------------------------------


def _windows_checksum(windows: np.ndarray, window_ids: Sequence[str], meta: dict) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(windows, np.float32)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    h.update("\x1f".join(str(i) for i in window_ids).encode())
    h.update(json.dumps({k: v for k, v in meta.items() if k != "checksum_sha256"}, sort_keys=True,
                        separators=(",", ":"), default=str).encode())
    return h.hexdigest()


def save_golden_windows(
    path: str | Path,
    windows: np.ndarray,
    window_ids: Sequence[str],
    description: str,
    cfg: PreprocessConfig = DEFAULT_CONFIG,
    **selection: Any,
) -> Path:
    """Write the golden windows (``[N, L]`` float32, ids, description, preprocessing config, the
    ``selection`` that drew them) with a checksum, so that a golden set can be made where
    ``../shared`` is absent (the GPU check's carry folder) on exactly the windows a CPU
    ``export golden`` would pick."""
    x = np.ascontiguousarray(windows, np.float32)
    ids = [str(i) for i in window_ids]
    if x.ndim != 2 or x.shape[1] != cfg.window_samples or len(ids) != len(x):
        raise ValueError(f"golden windows must be [N, {cfg.window_samples}] with one id each, got {x.shape}, {len(ids)} ids")
    meta: dict[str, Any] = {
        "schema": GOLDEN_WINDOWS_SCHEMA,
        "description": description,
        "n_windows": len(x),
        "preprocess_config_hash": cfg.config_hash(),
        "preprocess": cfg.to_dict(),
        "selection": selection,
    }
    meta["checksum_sha256"] = _windows_checksum(x, ids, meta)

    def write(f) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, windows=x, window_ids=np.asarray(ids), meta=np.asarray(json.dumps(meta, sort_keys=True)))
        f.write(buf.getvalue())

    return atomic_write(path, write)


def load_golden_windows(path: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """``(windows [N, L] float32, ids, meta)`` of :func:`save_golden_windows`; a missing, foreign or
    corrupted file is a :class:`DataFormatError`."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"golden windows not found: {path} (make them with `anyppg-edge gpu-check prepare`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            x, ids, meta = z["windows"], [str(i) for i in z["window_ids"]], json.loads(str(z["meta"]))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise DataFormatError(f"golden windows {path} cannot be read: {type(e).__name__}: {e}") from e
    if meta.get("schema") != GOLDEN_WINDOWS_SCHEMA:
        raise DataFormatError(f"{path}: unknown schema {meta.get('schema')!r} (expected {GOLDEN_WINDOWS_SCHEMA!r})")
    if meta.get("checksum_sha256") != _windows_checksum(x, ids, meta):
        raise DataFormatError(f"golden windows {path}: checksum mismatch (corrupted or edited); prepare them again")
    return x.astype(np.float32), ids, meta


def golden_as_artifact(path: str | Path, reference: GoldenSet) -> GoldenSet:
    """Another golden set used as an artifact of the parity suite (kind ``golden-float``): e.g. the
    CPU golden set of the model whose GPU golden set is the reference, so that the
    ``gpu-vs-cpu-float`` row compares GPU float with CPU float. It must hold exactly the
    reference's windows (same ids, bit-identical inputs) under the same preprocessing config, else
    :class:`~anyppg_edge.errors.ContractMismatchError`; the caller checks its source checkpoint."""
    from anyppg_edge.errors import ContractMismatchError

    other = load_golden_set(path)
    if other.windows.shape != reference.windows.shape or list(other.window_ids) != list(reference.window_ids):
        raise ContractMismatchError(
            f"golden set {path} holds {len(other)} windows, the reference {len(reference)}, or other window ids: "
            "make both golden sets from the same windows (the GPU check's golden_windows.npz, or `export golden` "
            "with the same --n/--hop-s/--seed)"
        )
    if not np.array_equal(other.windows, reference.windows):
        raise ContractMismatchError(f"golden set {path}: same window ids as the reference but other input values")
    if other.preprocess_config_hash != reference.preprocess_config_hash:
        raise ContractMismatchError(
            f"golden set {path} was made under preprocessing config {other.preprocess_config_hash[:12]}, the "
            f"reference under {reference.preprocess_config_hash[:12]}"
        )
    return other
