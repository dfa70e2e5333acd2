"""Pretraining data on disk: one memory-mappable shard of paired PPG/ECG windows per recording.

Layout of a prepared folder ``out_dir``::

    shards/<safe_id>.npy     [N, 2, L] windows of one recording (channel 0 PPG, 1 ECG), float16 default
    shards/<safe_id>.json    sidecar: subject, dataset, view, start_s list, rejected counts, ECG polarity
                             vote, settings, config + hash; written last (atomically), it is the "done"
                             marker of that recording
    shards/<safe_id>.ppg2.*  with ``second_ppg``: the same ECG windows paired with the recording's second
                             PPG sensor (``ppg2``, IEEE SPC 2015), view ``"ppg2"``, same subject and split
    shards/<safe_id>.native<R>hz.npy
                             with ``native_rates_hz``: ``[N, R * window_s]`` the same N windows' PPG as a
                             watch sensor at R Hz samples it, preprocessed at R Hz
                             (:func:`~anyppg_edge.data.native_rate.native_rate_windows`), row for row;
                             the inputs of native-rate students (one per view)
    index.npz                one row per window: shard, row, subject_id, dataset, view, start_s, split;
                             plus every subject's split (``subject_keys``/``subject_splits``)
    summary.json/.md         per-dataset subjects / segments / hours and the train/val/test counts
    preprocess_config.json   the :class:`PreprocessConfig` every shard of this folder was made with, and
                             the folder's settings (hop, dtype, ECG quality, second PPG, polarity rule,
                             split seed and fractions)

Disk cost: a 10 s window at 125 Hz is ``2 x L`` samples (L = ``cfg.window_samples``), i.e. 5,000 bytes in float16 (10,000 in
float32). One hour of recording cut without overlap (360 windows) therefore takes **1.8 MB** in
float16 (3.6 MB in float32), so 100,000 hours take about 180 GB (360 GB in float32). float16 keeps
z-scored windows to a relative precision of 2**-11 (about 5e-4; absolute error <= ~2e-3 at |x| <= 8),
well below the noise of any PPG sensor.

Re-running :func:`prepare_shards` on the same folder skips every recording whose sidecar exists
(resumable); shards and sidecars are written to a temporary name and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file behind a "done" marker.

A folder is tied to one preprocessing configuration and one set of settings (:data:`FOLDER_SETTINGS`):
preparing into it with another config, or finding a sidecar with another config hash, is a
:class:`~anyppg_edge.errors.ContractMismatchError`; with another hop, dtype, ECG-quality, second-PPG,
polarity or split setting a :class:`~anyppg_edge.errors.ConfigError` naming the differing settings.
``force=True`` replaces the folder's shards (sidecars first, so an interrupted replacement never
leaves old windows that look done) and keeps its subjects' split.

Splits: a subject keeps the split the folder's index gives it when recordings are added (only new
subjects are assigned: by :func:`subject_split` in a new folder, by the subject's own hash draw in an
existing one); ``val_subjects``/``test_subjects`` pin subjects by name (every other new subject then
goes to train).

:class:`ShardDataset` reads the shards memory-mapped (``np.load(mmap_mode="r")``), opened lazily in
each DataLoader worker, so the corpus is never loaded into RAM.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.data.readers import read_recording
from anyppg_edge.data.recording import Recording
from anyppg_edge.data.splits import (
    SIMULATED_DATASETS,
    SPLITS,
    _display,
    _fractions,
    _hash_split,
    _pins,
    _subject_key,
    subject_split,
)
from anyppg_edge.errors import (
    ConfigError,
    ContractMismatchError,
    DataFormatError,
)
from anyppg_edge.io import atomic_write, write_json
from anyppg_edge.preprocessing import PreprocessConfig

__all__ = [
    "FORMAT_VERSION",
    "heldout_subjects",
    "index_subject_splits",
    "prepare_shards",
    "safe_id_for",
    "write_index",
]

FORMAT_VERSION = 1
SHARDS_DIR = "shards"
INDEX_FILE = "index.npz"
CONFIG_FILE = "preprocess_config.json"
_DTYPES = ("float16", "float32")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
PRIMARY_VIEW = "ppg"
SECOND_PPG_VIEW = "ppg2"
# Settings a folder's shards share (besides the preprocessing config): mixing any of them is refused.
FOLDER_SETTINGS = ("hop_s", "dtype", "ecg_quality", "second_ppg", "ecg_polarity_agreement", "split_seed",
                   "split_fractions", "native_rates_hz")
_SETTING_FLAGS = {"hop_s": "--hop-s", "dtype": "--dtype", "ecg_quality": "--no-ecg-quality",
                  "second_ppg": "--second-ppg", "split_seed": "--seed", "split_fractions": "split_fractions",
                  "ecg_polarity_agreement": "the ECG polarity rule", "native_rates_hz": "--native-rates"}
LEGACY_POLARITY = "majority (> 1/2, before issue 22)"


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def _atomic_write_json(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1)


def _slug(text: str, max_len: int = 80) -> str:
    return _SLUG.sub("_", text).strip("._-")[:max_len] or "rec"


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def safe_id_for(source: str | os.PathLike | Recording) -> str:
    """File-system-safe, collision-resistant shard name of a source, known *before* reading it.

    A file is named by its last folder and file name (``ieee_spc2015/DATA_01_TYPE01.mat`` ->
    ``DATA_01_TYPE01-<hash>``), so moving the corpus root elsewhere keeps finished shards valid; a
    :class:`Recording` by its dataset and subject id.
    """
    if isinstance(source, Recording):
        key = f"rec:{source.dataset}\x1f{source.subject_id}"
        return f"{_slug(source.dataset)}__{_slug(source.subject_id)}-{_short_hash(key)}"
    p = Path(source).expanduser()
    key = f"file:{p.parent.name}/{p.name}"
    return f"{_slug(p.stem)}-{_short_hash(key)}"


def index_subject_splits(out_dir: str | os.PathLike) -> dict[str, str]:
    """``{dataset\x1fsubject_id: split}`` of a prepared folder's ``index.npz`` (``{}`` when it has
    none): every subject the index knows, also those without windows."""
    ipath = Path(out_dir) / INDEX_FILE
    if not ipath.is_file():
        return {}
    try:
        with np.load(ipath, allow_pickle=False) as z:
            if "subject_keys" in z.files:
                return {str(k): str(v) for k, v in zip(z["subject_keys"], z["subject_splits"], strict=True)}
            keys = np.char.add(np.char.add(z["dataset"].astype(str), "\x1f"), z["subject_id"].astype(str))
            return {str(k): str(v) for k, v in zip(keys, z["split"], strict=True)}
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise DataFormatError(
            f"corrupt index file {ipath} ({exc}): its subject split cannot be kept. Delete it to draw the split "
            "anew (subjects may move between train, val and test), or prepare into a new folder"
        ) from exc


def heldout_subjects(out_dir: str | os.PathLike, splits: Sequence[str] = ("val", "test")) -> dict[str, Any]:
    """Which subjects of a prepared folder no model trained on it has seen: those in ``splits`` of
    its index, told apart into real people and simulated subjects (:data:`SIMULATED_DATASETS`).
    Returns ``{"splits", "real": [subject ids], "simulated": [...], "real_in_train": [...], "text"}``;
    ``text`` says in one sentence which real subjects are held out, and plainly when none is."""
    split_of = index_subject_splits(out_dir)
    if not split_of:
        raise DataFormatError(f"no {INDEX_FILE} in {out_dir}; run prepare-data (prepare_shards) first")
    real = sorted(_display(k) for k, sp in split_of.items() if sp in splits and k.split("\x1f")[0] not in SIMULATED_DATASETS)
    sim = sorted(_display(k) for k, sp in split_of.items() if sp in splits and k.split("\x1f")[0] in SIMULATED_DATASETS)
    real_train = sorted(_display(k) for k, sp in split_of.items()
                        if sp == "train" and k.split("\x1f")[0] not in SIMULATED_DATASETS)
    where = "+".join(splits)
    if real:
        text = f"held-out real subjects ({where} of {out_dir}): {', '.join(real)}"
        if sim:
            text += f"; plus {len(sim)} simulated subject(s)"
    elif sim:
        text = (f"no real subject is held out: the {where} split of {out_dir} holds only {len(sim)} simulated "
                f"subject(s); {len(real_train)} real subject(s) are in train")
    else:
        text = f"no subject is held out: the {where} split of {out_dir} is empty"
    return {"splits": list(splits), "real": real, "simulated": sim, "real_in_train": real_train, "text": text}


# --------------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    source: str | Recording
    safe_id: str


def _process_one(
    job: _Job,
    shards_dir: str,
    cfg_dict: dict,
    hop_s: float,
    ecg_quality: bool,
    dtype: str,
    second_ppg: bool = False,
    native_rates_hz: tuple[int, ...] = (),
) -> dict:
    """Worker: read -> extract_windows -> shard + sidecar (and, with ``second_ppg`` and a ``ppg2``
    channel, the second-PPG view's shard + sidecar, written before the primary sidecar, the "done"
    marker). Returns the primary sidecar dict."""
    from anyppg_edge.data.windows import extract_windows

    cfg = PreprocessConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    if isinstance(job.source, Recording):
        rec, source = job.source, f"recording:{job.source.dataset}/{job.source.subject_id}"
    else:
        rec, source = read_recording(job.source), str(job.source)
    sdir = Path(shards_dir)
    settings = _shard_settings(cfg.config_hash(), hop_s, dtype, ecg_quality, native_rates_hz)

    def write(view: str, safe_id: str, r: Recording) -> dict:
        ws = extract_windows(r, cfg, hop_s=hop_s, ecg_quality=ecg_quality)
        native = _native_windows(r, ws, cfg, native_rates_hz)  # drops the windows a native rate refuses
        n = len(ws)
        shard_name = None
        native_shards: dict[str, str] = {}
        if n:  # companions first: the primary shard and the sidecar mark the recording done
            for rate, x in native.items():
                native_shards[str(rate)] = name = native_shard_name(f"{safe_id}.npy", rate)
                atomic_write(sdir / name, lambda f, x=x: np.save(f, x.astype(dtype), allow_pickle=False))
            arr = np.stack([ws.ppg, ws.ecg], axis=1).astype(dtype)  # [N, 2, L]
            shard_name = f"{safe_id}.npy"
            atomic_write(sdir / shard_name, lambda f: np.save(f, arr, allow_pickle=False))
        return {
            "format_version": FORMAT_VERSION,
            "safe_id": safe_id,
            "source": source,
            "subject_id": rec.subject_id,
            "dataset": rec.dataset,
            "view": view,
            "shard": shard_name,
            "n_windows": n,
            "window_samples": cfg.window_samples,
            "sample_rate_hz": cfg.target_sample_rate_hz,
            "dtype": dtype,
            "hop_s": float(hop_s),
            "ecg_quality": bool(ecg_quality),
            "ecg_polarity": ws.polarity,
            "settings": settings,
            "start_s": [float(s) for s in ws.start_s],
            "native_shards": native_shards,
            "rejected": dict(sorted(ws.rejected.items())),
            "config_hash": cfg.config_hash(),
            "config": cfg.to_dict(),
        }

    views: dict[str, str] = {}
    if second_ppg and rec.has(SECOND_PPG_VIEW):
        sid2 = f"{job.safe_id}.{SECOND_PPG_VIEW}"
        side2 = write(SECOND_PPG_VIEW, sid2, rec.with_ppg(SECOND_PPG_VIEW))
        side2["primary"] = job.safe_id
        side2["seconds"] = round(time.perf_counter() - t0, 3)
        _atomic_write_json(sdir / f"{sid2}.json", side2)
        views[SECOND_PPG_VIEW] = sid2
    side = write(PRIMARY_VIEW, job.safe_id, rec)
    side["second_ppg"] = bool(second_ppg)
    side["views"] = views
    side["seconds"] = round(time.perf_counter() - t0, 3)
    _atomic_write_json(sdir / f"{job.safe_id}.json", side)
    return side


def native_shard_name(shard_file: str, rate_hz: int) -> str:
    """The companion file of a shard holding its windows at a native rate (``x.npy`` ->
    ``x.native25hz.npy``)."""
    return f"{shard_file[:-4] if shard_file.endswith('.npy') else shard_file}.native{int(rate_hz)}hz.npy"


def _native_windows(rec: Recording, ws, cfg: PreprocessConfig, rates: Sequence[int]) -> dict[int, np.ndarray]:
    """Every rate's native windows of ``ws``'s start times; a window that any rate refuses is dropped
    from ``ws`` (counted in ``ws.rejected`` as ``native-<R>hz``), so every array stays row for row."""
    from anyppg_edge.data.native_rate import native_rate_windows

    if not rates or not len(ws):
        return {}
    out = {int(r): native_rate_windows(rec, ws.start_s, r, cfg) for r in rates}
    keep = np.logical_and.reduce([nw.ok for nw in out.values()])
    if not keep.all():
        for r, nw in out.items():
            bad = int((~nw.ok).sum())
            if bad:
                ws.rejected[f"native-{r}hz"] += bad
        for name in ("ppg", "ecg", "subject_id", "dataset", "start_s"):
            setattr(ws, name, getattr(ws, name)[keep])
    return {r: nw.x[keep] for r, nw in out.items()}


# -- folder settings --------------------------------------------------------------------------------


def _polarity_agreement() -> float:
    from anyppg_edge.data.windows import POLARITY_AGREEMENT

    return round(float(POLARITY_AGREEMENT), 4)


def _shard_settings(config_hash: str, hop_s: float, dtype: str, ecg_quality: bool,
                    native_rates_hz: Sequence[int] = ()) -> dict:
    """The settings one shard records (those that change its windows)."""
    return {"config_hash": config_hash, "hop_s": float(hop_s), "dtype": str(dtype),
            "ecg_quality": bool(ecg_quality), "ecg_polarity_agreement": _polarity_agreement(),
            "native_rates_hz": sorted(int(r) for r in native_rates_hz)}


def _side_settings(side: dict) -> dict:
    """A sidecar's settings; a sidecar written before settings were recorded has its fields (and the
    majority polarity rule of that time)."""
    if "settings" in side:
        return {"native_rates_hz": [], **side["settings"]}  # made before native rates existed: none
    return {"config_hash": side.get("config_hash"), "hop_s": float(side.get("hop_s", 10.0)),
            "dtype": str(side.get("dtype", "float16")), "ecg_quality": bool(side.get("ecg_quality", True)),
            "ecg_polarity_agreement": LEGACY_POLARITY, "native_rates_hz": []}


def _folder_settings(cfg: PreprocessConfig, hop_s: float, dtype: str, ecg_quality: bool, second_ppg: bool,
                     seed: int, fractions: Sequence[float], native_rates_hz: Sequence[int] = ()) -> dict:
    return {**_shard_settings(cfg.config_hash(), hop_s, dtype, ecg_quality, native_rates_hz),
            "second_ppg": bool(second_ppg),
            "split_seed": int(seed), "split_fractions": [round(float(f), 6) for f in _fractions(fractions)]}


def _show(name: str, value: Any) -> str:
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def _differences(found: dict, asked: dict) -> list[str]:
    return [k for k in FOLDER_SETTINGS if k in found and k in asked and found[k] != asked[k]]


def _mismatch(out: Path, found: dict, asked: dict, keys: list[str], how: str) -> ConfigError:
    flags = ", ".join(dict.fromkeys(_SETTING_FLAGS[k] for k in keys))
    return ConfigError(
        f"{out} holds shards made with {', '.join(_show(k, found[k]) for k in keys)}{how}; this run asks for "
        f"{', '.join(_show(k, asked[k]) for k in keys)}. Refusing to mix them: prepare into a new folder, repeat "
        f"the folder's settings ({flags}), or pass --force to replace the folder's shards "
        "(their subjects keep their split)"
    )


def _check_folder(out: Path, cfg: PreprocessConfig, asked: dict, sides: list[dict]) -> None:
    """Refuse to add shards made with other settings than the folder's; record the settings of a new
    folder (or of one made before settings were recorded, when its shards agree with this run)."""
    path = out / CONFIG_FILE
    found: dict[str, Any] = {}
    stored: dict[str, Any] = {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(f"unreadable {path}: {exc}; pass --force to replace the folder's shards") from exc
        if stored.get("config_hash") != cfg.config_hash():
            raise ContractMismatchError(
                f"{out} holds shards made with preprocessing config hash {stored.get('config_hash')}, "
                f"not {cfg.config_hash()} (the config asked for); refusing to mix them. Prepare into a "
                f"new folder, pass the config stored in {path}, or pass --force to replace the folder's shards"
            )
        found = dict(stored.get("settings") or {})
    # the shards themselves: one set of settings, and the folder's
    per_side: dict[str, set] = defaultdict(set)
    for side in sides:
        for k, v in _side_settings(side).items():
            per_side[k].add(json.dumps(v))
    mixed = [k for k, vals in per_side.items() if len(vals) > 1]
    if "config_hash" in mixed or (sides and json.loads(next(iter(per_side["config_hash"]))) != cfg.config_hash()):
        raise ContractMismatchError(
            f"shard sidecars in {out / SHARDS_DIR} were made with preprocessing config hash(es) "
            f"{', '.join(sorted(json.loads(v) for v in per_side['config_hash']))}, not only {cfg.config_hash()} "
            "(the config asked for); refusing to mix preprocessing configurations. Prepare into a new folder "
            "or pass --force to replace the folder's shards"
        )
    if mixed:
        raise ConfigError(
            f"{out} already mixes shards made with different settings ("
            + "; ".join(f"{k}: {', '.join(sorted(per_side[k]))}" for k in mixed)
            + "), made before prepare-data checked them; rebuild it with --force"
        )
    from_sides = {k: json.loads(next(iter(v))) for k, v in per_side.items()}
    if any(side.get("view") == SECOND_PPG_VIEW or side.get("second_ppg") for side in sides):
        from_sides["second_ppg"] = True
    elif sides and not found:
        from_sides["second_ppg"] = False  # made before --second-ppg existed
    if not found and sides:  # a folder from before settings were recorded: its summary has the split
        summary = out / "summary.json"
        if summary.is_file():
            try:
                sj = json.loads(summary.read_text())
                from_sides["split_seed"] = int(sj["split_seed"])
                from_sides["split_fractions"] = [round(float(f), 6) for f in _fractions(sj["split_fractions"])]
            except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                pass
    diff = _differences({**from_sides, **found}, asked)
    if diff:
        raise _mismatch(out, {**from_sides, **found}, asked, diff, "")
    diff = _differences(from_sides, asked)  # sidecars that disagree with the folder's recorded settings
    if diff:
        raise _mismatch(out, from_sides, asked, diff, " (its shard sidecars say so)")
    if stored.get("settings") != asked:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, {"config_hash": cfg.config_hash(), "config": cfg.to_dict(), "settings": asked})


def _check_folder_config(out: Path, cfg: PreprocessConfig) -> None:
    """The preprocessing config only (the synthetic benchmark folder)."""
    path = out / CONFIG_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        if found.get("config_hash") != cfg.config_hash():
            raise ContractMismatchError(
                f"{out} holds shards made with preprocessing config hash {found.get('config_hash')}, "
                f"not {cfg.config_hash()} (the config asked for); refusing to mix them"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, {"config_hash": cfg.config_hash(), "config": cfg.to_dict()})


def _clear_folder(out: Path) -> int:
    """``force``: remove what a previous preparation wrote: sidecars first (the "done" markers, so an
    interrupted replacement never leaves old windows that look done), then shards, leftover
    temporaries, the summaries and the config. Other files are never touched; ``index.npz`` stays
    until the new one replaces it, so the subjects keep their split. Returns the files removed."""
    sdir = out / SHARDS_DIR
    removed = 0
    if not ((out / CONFIG_FILE).is_file() or (out / INDEX_FILE).is_file()):
        return 0  # a new folder, or not a shard folder: nothing of ours to replace
    if sdir.is_dir():
        for pattern in ("*.json", "*.npy", ".*.tmp"):
            for p in sorted(sdir.glob(pattern)):
                if p.is_file() and not p.is_symlink():
                    p.unlink()
                    removed += 1
    for name in ("summary.json", "summary.md", CONFIG_FILE):
        p = out / name
        if p.is_file():
            p.unlink()
            removed += 1
    return removed


def _read_sidecars(shards_dir: Path) -> list[dict]:
    out = []
    for p in sorted(shards_dir.glob("*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataFormatError(
                f"unreadable shard sidecar {p}: {exc}; delete it to redo that recording"
            ) from exc
    return out


def _mmap(path: Path, what: str) -> np.ndarray:
    """Memory-map one ``.npy`` of a prepared folder, turning a missing or corrupt file into a
    DataFormatError naming it and the fix."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(
            f"{what} missing: {path}; delete its recording's .json sidecar and re-run prepare-data"
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(
            f"corrupt or truncated {what} {path} ({exc}); delete it and its recording's .json sidecar and re-run "
            "prepare-data"
        ) from exc


def _open_shard(path: Path, expect_rows: int | None = None, expect_len: int | None = None) -> np.ndarray:
    """Memory-map one shard ``[N, 2, L]``, turning any corruption into a DataFormatError naming the file."""
    arr = _mmap(path, "shard file")
    if arr.ndim != 3 or arr.shape[1] != 2:
        raise DataFormatError(f"shard {path} has shape {arr.shape}, expected [N, 2, L]")
    if expect_rows is not None and arr.shape[0] != expect_rows:
        raise DataFormatError(f"shard {path} has {arr.shape[0]} windows, its sidecar says {expect_rows}")
    if expect_len is not None and arr.shape[2] != expect_len:
        raise DataFormatError(f"shard {path} has windows of {arr.shape[2]} samples, expected {expect_len}")
    return arr


def open_native_shard(path: Path, expect_rows: int | None = None, expect_len: int | None = None) -> np.ndarray:
    """Memory-map one native-rate companion shard ``[N, L]`` (errors as :func:`_open_shard`)."""
    arr = _mmap(path, "native-rate shard")
    if arr.ndim != 2 or (expect_rows is not None and arr.shape[0] != expect_rows) or (
            expect_len is not None and arr.shape[1] != expect_len):
        raise DataFormatError(f"native-rate shard {path} has shape {arr.shape}, expected "
                              f"[{expect_rows if expect_rows is not None else 'N'}, {expect_len or 'L'}]")
    return arr


def folder_native_rates(out_dir: str | os.PathLike) -> tuple[int, list[int]]:
    """A prepared folder's own window rate and the native rates it also holds (its
    ``preprocess_config.json``; 125 Hz and none when it has no such file)."""
    path = Path(out_dir) / CONFIG_FILE
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return PreprocessConfig().target_sample_rate_hz, []
    rate = int((stored.get("config") or {}).get("target_sample_rate_hz", PreprocessConfig().target_sample_rate_hz))
    return rate, [int(r) for r in (stored.get("settings") or {}).get("native_rates_hz", [])]


def _assign_splits(
    keys: Iterable[str], kept: dict[str, str], pins: dict[str, str] | None, fractions: Sequence[float], seed: int
) -> dict[str, str]:
    """Every subject's split: the pinned ones where pinned, the others where ``kept`` (the existing
    index) has them; new subjects to train when pins are given, else by :func:`subject_split` in a new
    folder and by their own hash draw (:func:`_hash_split`) in an existing one."""
    keys = sorted(set(keys))
    split_of = {k: kept[k] for k in keys if k in kept}
    split_of.update({k: v for k, v in (pins or {}).items() if k in set(keys)})
    new = [k for k in keys if k not in split_of]
    if new:
        if pins:
            split_of.update({k: "train" for k in new})
        elif not split_of:
            split_of = subject_split(new, fractions, seed)
        else:
            split_of.update({k: _hash_split(k, fractions, seed) for k in new})
    return split_of


def write_index(
    out_dir: str | os.PathLike,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    *,
    config_hash: str | None = None,
    verify_shards: bool = True,
    pins: dict[str, str] | None = None,
) -> dict:
    """(Re)build ``index.npz``, ``summary.json`` and ``summary.md`` from the sidecars of ``out_dir``.

    Every sidecar must carry ``config_hash`` (default: the folder's ``preprocess_config.json``);
    with ``verify_shards`` each shard's header is memory-mapped and checked against its sidecar.
    Subjects already in the folder's index keep their split; ``pins`` (``{subject key: split}``,
    see :func:`resolve_subjects`) override it; new subjects are assigned as :func:`_assign_splits`
    says. Returns the summary dict, with ``"moved"``: the subjects whose split changed (pinned).
    """
    out = Path(out_dir)
    sdir = out / SHARDS_DIR
    if config_hash is None:
        cfile = out / CONFIG_FILE
        if not cfile.is_file():
            raise DataFormatError(f"{out} is not a prepared shard folder (no {CONFIG_FILE})")
        config_hash = json.loads(cfile.read_text())["config_hash"]
    sides = _read_sidecars(sdir)
    bad = [s["safe_id"] for s in sides if s.get("config_hash") != config_hash]
    if bad:
        raise ContractMismatchError(
            f"{len(bad)} shard(s) in {sdir} were made with another preprocessing config than {config_hash} "
            f"(e.g. {bad[:3]}); refusing to mix preprocessing configurations"
        )
    kept = index_subject_splits(out)
    split_of = _assign_splits(
        (_subject_key(s["dataset"], s["subject_id"]) for s in sides), kept, pins, split_fractions, seed
    )
    moved = {k: (kept[k], v) for k, v in split_of.items() if k in kept and kept[k] != v}
    shard_files: list[str] = []
    cols: dict[str, list] = defaultdict(list)
    for s in sides:
        if not s["n_windows"]:
            continue
        if verify_shards:
            _open_shard(sdir / s["shard"], s["n_windows"], s["window_samples"])
            for rate, name in (s.get("native_shards") or {}).items():
                open_native_shard(sdir / name, s["n_windows"], round(int(rate) * s["window_samples"] / s["sample_rate_hz"]))
        k = len(shard_files)
        shard_files.append(s["shard"])
        n = s["n_windows"]
        cols["shard"].append(np.full(n, k, np.int32))
        cols["row"].append(np.arange(n, dtype=np.int32))
        cols["subject_id"].append(np.full(n, s["subject_id"]))
        cols["dataset"].append(np.full(n, s["dataset"]))
        cols["view"].append(np.full(n, s.get("view", PRIMARY_VIEW)))
        cols["start_s"].append(np.asarray(s["start_s"], np.float64))
        cols["split"].append(np.full(n, split_of[_subject_key(s["dataset"], s["subject_id"])]))

    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate(cols[name]) if cols[name] else np.zeros(0, dtype)

    subject_keys = sorted(split_of)
    index = {
        "shard_files": np.asarray(shard_files, dtype=str),
        "shard": cat("shard", np.int32),
        "row": cat("row", np.int32),
        "subject_id": cat("subject_id", str),
        "dataset": cat("dataset", str),
        "view": cat("view", str),
        "start_s": cat("start_s", np.float64),
        "split": cat("split", str),
        "subject_keys": np.asarray(subject_keys, dtype=str),
        "subject_splits": np.asarray([split_of[k] for k in subject_keys], dtype=str),
        "config_hash": np.asarray(config_hash),
        "format_version": np.asarray(FORMAT_VERSION),
    }
    atomic_write(out / INDEX_FILE, lambda f: np.savez(f, **index))
    summary = _summarise(sides, split_of, config_hash, seed, split_fractions)
    summary["moved"] = {_display(k): f"{a} -> {b}" for k, (a, b) in sorted(moved.items())}
    _atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_markdown(summary))
    return summary


def _summarise(sides: list[dict], split_of: dict, config_hash: str, seed: int, fractions) -> dict:
    per: dict[str, dict] = {}
    flipped: list[str] = []
    near_even: list[str] = []
    for s in sides:
        d = per.setdefault(
            s["dataset"],
            {
                "subjects": set(),
                "recordings": 0,
                "segments": 0,
                "hours": 0.0,
                "rejected": Counter(),
                **{f"{sp}_subjects": set() for sp in SPLITS},
                **{f"{sp}_segments": 0 for sp in SPLITS},
            },
        )
        key = _subject_key(s["dataset"], s["subject_id"])
        sp = split_of[key]
        d["subjects"].add(key)
        d[f"{sp}_subjects"].add(key)
        d["segments"] += s["n_windows"]
        d[f"{sp}_segments"] += s["n_windows"]
        if s.get("view", PRIMARY_VIEW) != PRIMARY_VIEW:  # another PPG of the same ECG windows
            d["second_ppg_segments"] = d.get("second_ppg_segments", 0) + s["n_windows"]
            continue
        d["recordings"] += 1
        window_s = s["window_samples"] / s["sample_rate_hz"]
        d["hours"] += s["n_windows"] * window_s / 3600.0
        d["rejected"].update(s["rejected"])
        pol = s.get("ecg_polarity") or {}
        if pol.get("flipped"):
            flipped.append(s["subject_id"])
        if pol.get("ambiguous"):
            near_even.append(f"{s['subject_id']} ({pol['inverted_windows']}/{pol['voting_windows']} inverted)")
    datasets = {}
    for name in sorted(per):
        d = per[name]
        datasets[name] = {
            k: (len(v) if isinstance(v, set) else dict(v) if isinstance(v, Counter) else v)
            for k, v in d.items()
        }
        datasets[name]["hours"] = round(datasets[name]["hours"], 4)
    total: dict[str, Any] = {"rejected": Counter()}
    for d in datasets.values():
        for k, v in d.items():
            if k == "rejected":
                total["rejected"].update(v)
            else:
                total[k] = total.get(k, 0) + v
    total["rejected"] = dict(total["rejected"])
    if "hours" in total:
        total["hours"] = round(total["hours"], 4)
    return {
        "format_version": FORMAT_VERSION,
        "config_hash": config_hash,
        "split_seed": seed,
        "split_fractions": [float(f) for f in fractions],
        "hours_note": "hours of kept 10 s segments (overlapping segments count in full); segments count every "
                      "view, hours and rejections the primary PPG only",
        "datasets": datasets,
        "total": total,
        "ecg_polarity": {"agreement": _polarity_agreement(), "flipped": sorted(flipped),
                         "near_even_not_flipped": sorted(near_even)},
    }


def _summary_markdown(summary: dict) -> str:
    cols = ["subjects", "recordings", "segments", "hours"] + [
        f"{sp}_{w}" for sp in SPLITS for w in ("subjects", "segments")
    ]
    head = "| dataset | " + " | ".join(c.replace("_", " ") for c in cols) + " | rejected |"
    lines = [
        "# Pretraining shards",
        "",
        f"Preprocessing config hash `{summary['config_hash']}`; subject-level split "
        f"{'/'.join(f'{f:g}' for f in summary['split_fractions'])} (seed {summary['split_seed']}). "
        "Hours = kept 10 s segments x 10 s.",
        "",
        head,
        "|" + "---|" * (len(cols) + 2),
    ]

    def row(name: str, d: dict) -> str:
        vals = [f"{d.get(c, 0):.2f}" if c == "hours" else str(d.get(c, 0)) for c in cols]
        rej = ", ".join(f"{k} {v}" for k, v in sorted(d.get("rejected", {}).items())) or "-"
        return f"| {name} | " + " | ".join(vals) + f" | {rej} |"

    for name, d in summary["datasets"].items():
        lines.append(row(name, d))
    lines.append(row("**total**", summary["total"]))
    extra = []
    if summary["total"].get("second_ppg_segments"):
        extra.append(f"Second wrist PPG (view `ppg2`): {summary['total']['second_ppg_segments']} of the segments pair "
                     "the same ECG windows with the recording's second PPG sensor (same subject, same split).")
    pol = summary.get("ecg_polarity") or {}
    if pol:
        extra.append(
            f"ECG polarity: {len(pol['flipped'])} record(s) negated (>= {pol['agreement']:.0%} of windows voted "
            "inverted)" + (f"; left as recorded on a near-even vote: {', '.join(pol['near_even_not_flipped'])}"
                           if pol["near_even_not_flipped"] else "") + "."
        )
    if summary.get("moved"):
        extra.append("Moved by a pinned split: " + ", ".join(f"{k} ({v})" for k, v in summary["moved"].items()) + ".")
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


def prepare_shards(
    sources: Sequence[str | os.PathLike | Recording],
    out_dir: str | os.PathLike,
    cfg: PreprocessConfig | None = None,
    hop_s: float = 10.0,
    workers: int = 1,
    ecg_quality: bool = True,
    dtype: str = "float16",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    progress: bool = True,
    *,
    force: bool = False,
    second_ppg: bool = False,
    val_subjects: Sequence[str] = (),
    test_subjects: Sequence[str] = (),
    native_rates_hz: Sequence[int] = (),
) -> dict:
    """Preprocess recordings into per-recording shards, then build the index and summary.

    ``sources``: file paths (any format :func:`~anyppg_edge.data.read_recording` reads) and/or
    :class:`Recording` objects. Each becomes ``shards/<safe_id>.npy`` ``[N, 2, L]`` (PPG, ECG) in
    ``dtype`` (float16: 1.8 MB per hour of recording at hop 10 s, i.e. ~180 GB for 100,000 h) plus a
    JSON sidecar, the "done" marker: recordings with a sidecar are skipped on a re-run. With
    ``workers > 1`` recordings are processed in a ``ProcessPoolExecutor`` (results are identical to
    ``workers=1``). With ``second_ppg``, a recording with a ``ppg2`` channel (IEEE SPC 2015's second
    wrist sensor) also gets a shard of view ``"ppg2"``: the same ECG windows paired with that sensor.
    With ``native_rates_hz`` (e.g. ``(25, 50)``) every shard gets, per rate, a companion array of the
    same windows' PPG as a watch sensor at that rate samples it (:func:`native_shard_name`): the
    inputs of native-rate students, whose teacher reads the 125 Hz window of the same row.

    The folder's settings (hop, dtype, ECG quality, second PPG, polarity rule, split seed and fractions)
    must be this run's (else :class:`~anyppg_edge.errors.ConfigError` naming the differences) unless
    ``force``, which first removes the folder's shards (see :func:`_clear_folder`). The index
    (``index.npz``) keeps every subject the folder already has in its split; ``val_subjects`` /
    ``test_subjects`` pin subjects by name (:func:`resolve_subjects`), every other new subject then
    goes to train; without pins new subjects are assigned by :func:`subject_split`.

    Returns the summary (also ``summary.json``/``summary.md``) with, in addition, ``"run"``:
    ``{"processed": [...safe ids], "skipped": [...], "replaced": files removed by force, "seconds": ...}``.
    """
    cfg = cfg or PreprocessConfig()
    if dtype not in _DTYPES:
        raise ConfigError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    try:
        hop_ok = math.isfinite(float(hop_s)) and float(hop_s) > 0
    except (TypeError, ValueError):
        hop_ok = False
    if not hop_ok:
        raise ConfigError(f"hop_s must be a positive number of seconds, got {hop_s!r}")
    out = Path(out_dir)
    native_rates_hz = _check_native_rates(native_rates_hz, cfg)
    asked = _folder_settings(cfg, hop_s, dtype, ecg_quality, second_ppg, seed, split_fractions, native_rates_hz)
    t0 = time.perf_counter()
    replaced = _clear_folder(out) if force else 0
    sdir = out / SHARDS_DIR
    existing = _read_sidecars(sdir) if sdir.is_dir() else []
    _check_folder(out, cfg, asked, existing)
    sdir.mkdir(parents=True, exist_ok=True)

    jobs: list[_Job] = []
    seen: dict[str, Any] = {}
    skipped: list[str] = []
    for src in sources:
        if not isinstance(src, Recording):
            src = str(Path(src).expanduser())
        sid = safe_id_for(src)
        if sid in seen:
            raise DataFormatError(f"two sources map to the same shard {sid!r}: {seen[sid]!r} and {src!r}")
        seen[sid] = src if isinstance(src, str) else f"{src.dataset}/{src.subject_id}"
        if (sdir / f"{sid}.json").is_file():  # its settings were checked with the folder's
            skipped.append(sid)
            continue
        jobs.append(_Job(src, sid))

    pinning = bool([n for n in (*val_subjects, *test_subjects) if n.strip()])
    if pinning and not any(isinstance(j.source, str) for j in jobs):  # every subject known: check names now
        known = {_subject_key(x["dataset"], x["subject_id"]) for x in existing}
        known |= {_subject_key(j.source.dataset, j.source.subject_id) for j in jobs if isinstance(j.source, Recording)}
        _pins(val_subjects, test_subjects, known)

    args = (str(sdir), cfg.to_dict(), float(hop_s), bool(ecg_quality), dtype, bool(second_ppg), native_rates_hz)
    processed: list[str] = []
    bar = _progress(len(jobs), progress)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                side = _process_one(job, *args)
                processed.append(side["safe_id"])
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as ex:
                futs = {ex.submit(_process_one, job, *args): job for job in jobs}
                for fut in as_completed(futs):
                    job = futs[fut]
                    try:
                        side = fut.result()
                    except Exception as exc:
                        name = job.source if isinstance(job.source, str) else job.safe_id
                        if hasattr(exc, "add_note"):
                            exc.add_note(f"while preparing {name}")
                        raise
                    processed.append(side["safe_id"])
                    bar.update(1)
    finally:
        bar.close()
    pins = None
    if pinning:
        known = {_subject_key(x["dataset"], x["subject_id"]) for x in _read_sidecars(sdir)}
        pins = _pins(val_subjects, test_subjects, known)  # the index is not rewritten on a bad name
    summary = write_index(out, split_fractions, seed, config_hash=cfg.config_hash(), pins=pins)
    with_ppg2 = sorted({x["subject_id"] for x in _read_sidecars(sdir) if x.get("view") == SECOND_PPG_VIEW}
                       if second_ppg else [])
    summary["run"] = {
        "processed": sorted(processed),
        "skipped": sorted(skipped),
        "replaced": replaced,
        "pinned": {_display(k): v for k, v in sorted((pins or {}).items())},
        "second_ppg_subjects": with_ppg2,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return summary


def _check_native_rates(rates: Sequence[int], cfg: PreprocessConfig) -> tuple[int, ...]:
    from anyppg_edge.preprocessing import native_config

    out = []
    for r in rates:
        native_config(cfg, r)  # a ConfigError naming the rate when it cannot carry the PPG band
        if int(r) == cfg.target_sample_rate_hz:
            raise ConfigError(f"native rate {r} Hz is the shards' own rate ({cfg.target_sample_rate_hz} Hz): "
                              "their windows are those already; drop it from --native-rates")
        out.append(int(r))
    if len(set(out)) != len(out):
        raise ConfigError(f"native rates listed twice: {sorted(out)}")
    return tuple(sorted(out))


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return _NoBar()
    return tqdm(total=total, desc="shards", unit="rec")


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# I/O benchmark
# --------------------------------------------------------------------------------------------------


