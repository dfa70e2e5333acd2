"""Pretraining data on disk: one memory-mappable shard of paired PPG/ECG windows per recording.

Layout of a prepared folder ``out_dir``::

    shards/<safe_id>.npy     [N, 2, L] windows of one recording (channel 0 PPG, 1 ECG), float16 default
    shards/<safe_id>.json    sidecar: subject, dataset, start_s list, rejected counts, config + hash;
                             written last (atomically), it is the "done" marker of that recording
    index.npz                one row per window: shard, row, subject_id, dataset, start_s, split
    summary.json/.md         per-dataset subjects / segments / hours and the train/val/test counts
    preprocess_config.json   the :class:`PreprocessConfig` every shard of this folder was made with

Disk cost: a 10 s window at 125 Hz is ``2 x L`` samples (L = ``cfg.window_samples``), i.e. 5,000 bytes in float16 (10,000 in
float32). One hour of recording cut without overlap (360 windows) therefore takes **1.8 MB** in
float16 (3.6 MB in float32), so 100,000 hours take about 180 GB (360 GB in float32). float16 keeps
z-scored windows to a relative precision of 2**-11 (about 5e-4; absolute error <= ~2e-3 at |x| <= 8),
well below the noise of any PPG sensor.

Re-running :func:`prepare_shards` on the same folder skips every recording whose sidecar exists
(resumable); shards and sidecars are written to a temporary name and moved into place with
``os.replace``, so an interrupted run never leaves a half-written file behind a "done" marker. A folder
is tied to one preprocessing configuration: preparing into it with another config, or finding a
sidecar with another config hash, is a :class:`~anyppg_edge.errors.ContractMismatchError`.

:class:`ShardDataset` reads the shards memory-mapped (``np.load(mmap_mode="r")``), opened lazily in
each DataLoader worker, so the corpus is never loaded into RAM.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.data.readers import read_recording
from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import ContractMismatchError, DataFormatError
from anyppg_edge.io import atomic_write, write_json
from anyppg_edge.preprocessing import PreprocessConfig

try:  # torch is an optional extra: without it ShardDataset still works (get_batch, numpy items)
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # pragma: no cover - depends on the install
    _DatasetBase = object  # type: ignore[assignment,misc]

__all__ = [
    "FORMAT_VERSION",
    "SPLITS",
    "ShardDataset",
    "benchmark_shards",
    "prepare_shards",
    "recording_splits",
    "safe_id_for",
    "subject_split",
    "write_index",
]

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SHARDS_DIR = "shards"
INDEX_FILE = "index.npz"
CONFIG_FILE = "preprocess_config.json"
_DTYPES = ("float16", "float32")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


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


def _subject_key(dataset: str, subject_id: str) -> str:
    return f"{dataset}\x1f{subject_id}"


def recording_splits(
    recordings: Iterable[Recording], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """``{"dataset/subject_id": split}`` for recordings, with the subject keys and seed of
    :func:`write_index`: the split a shard folder made from the same recordings assigns, so that the
    export, golden and parity "held-out" subjects are the pretraining val/test subjects."""
    recs = list(recordings)
    split = subject_split((_subject_key(r.dataset, r.subject_id) for r in recs), fractions, seed)
    return {f"{r.dataset}/{r.subject_id}": split[_subject_key(r.dataset, r.subject_id)] for r in recs}


def _subject_u(key: str, seed: int) -> float:
    """Deterministic uniform number in [0, 1) from a subject key and the seed (sha256, not hash())."""
    h = hashlib.sha256(f"{seed}\x1e{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def subject_split(
    subject_keys: Iterable[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """Subject -> ``"train"``/``"val"``/``"test"``.

    Each subject draws ``u = sha256(seed, subject) in [0, 1)`` and falls in the split whose cumulative
    fraction covers ``u``: a subject keeps its split when others are added to the corpus. When that
    leaves a split empty although there are at least 3 subjects (small corpora), the subjects are
    instead dealt by rank of ``u`` with at least one per split (largest-remainder counts).
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise ValueError(f"split_fractions must be 3 non-negative numbers, got {fractions!r}")
    fr = fr / fr.sum()
    keys = sorted(set(subject_keys))
    us = {k: _subject_u(k, seed) for k in keys}
    edges = np.cumsum(fr)
    out = {k: SPLITS[min(int(np.searchsorted(edges, u, side="right")), 2)] for k, u in us.items()}
    n = len(keys)
    if n >= 3 and len(set(out.values())) < 3 and (fr > 0).all():
        counts = np.maximum(np.floor(fr * n).astype(int), 1)
        while counts.sum() > n:  # take from the largest
            counts[int(np.argmax(counts))] -= 1
        rem = fr * n - np.floor(fr * n)
        while counts.sum() < n:
            i = int(np.argmax(rem))
            counts[i] += 1
            rem[i] = -1
        ranked = sorted(keys, key=lambda k: us[k])
        out = {}
        start = 0
        for split, c in zip(SPLITS, counts, strict=True):
            for k in ranked[start : start + c]:
                out[k] = split
            start += c
    return out


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
) -> dict:
    """Worker: read -> extract_windows -> shard + sidecar. Returns the sidecar dict."""
    from anyppg_edge.data.windows import extract_windows

    cfg = PreprocessConfig.from_dict(cfg_dict)
    t0 = time.perf_counter()
    if isinstance(job.source, Recording):
        rec, source = job.source, f"recording:{job.source.dataset}/{job.source.subject_id}"
    else:
        rec, source = read_recording(job.source), str(job.source)
    ws = extract_windows(rec, cfg, hop_s=hop_s, ecg_quality=ecg_quality)
    n = len(ws)
    sdir = Path(shards_dir)
    shard_name = None
    if n:
        arr = np.stack([ws.ppg, ws.ecg], axis=1).astype(dtype)  # [N, 2, L]
        shard_name = f"{job.safe_id}.npy"
        atomic_write(sdir / shard_name, lambda f: np.save(f, arr, allow_pickle=False))
    side = {
        "format_version": FORMAT_VERSION,
        "safe_id": job.safe_id,
        "source": source,
        "subject_id": rec.subject_id,
        "dataset": rec.dataset,
        "shard": shard_name,
        "n_windows": n,
        "window_samples": cfg.window_samples,
        "sample_rate_hz": cfg.target_sample_rate_hz,
        "dtype": dtype,
        "hop_s": float(hop_s),
        "ecg_quality": bool(ecg_quality),
        "start_s": [float(s) for s in ws.start_s],
        "rejected": dict(sorted(ws.rejected.items())),
        "config_hash": cfg.config_hash(),
        "config": cfg.to_dict(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    _atomic_write_json(sdir / f"{job.safe_id}.json", side)
    return side


def _check_folder_config(out: Path, cfg: PreprocessConfig) -> None:
    path = out / CONFIG_FILE
    if path.is_file():
        found = json.loads(path.read_text())
        if found.get("config_hash") != cfg.config_hash():
            raise ContractMismatchError(
                f"{out} holds shards made with preprocessing config hash {found.get('config_hash')}, "
                f"not {cfg.config_hash()} (the config asked for); refusing to mix them. Prepare into a "
                f"new folder, or pass the config stored in {path}"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_json(path, {"config_hash": cfg.config_hash(), "config": cfg.to_dict()})


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


def _open_shard(path: Path, expect_rows: int | None = None, expect_len: int | None = None) -> np.ndarray:
    """Memory-map one shard, turning any corruption into a DataFormatError naming the file."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(
            f"shard file missing: {path}; delete its .json sidecar and re-run prepare_shards"
        ) from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(
            f"corrupt or truncated shard file {path} ({exc}); delete it and its .json sidecar and re-run "
            "prepare_shards"
        ) from exc
    if arr.ndim != 3 or arr.shape[1] != 2:
        raise DataFormatError(f"shard {path} has shape {arr.shape}, expected [N, 2, L]")
    if expect_rows is not None and arr.shape[0] != expect_rows:
        raise DataFormatError(f"shard {path} has {arr.shape[0]} windows, its sidecar says {expect_rows}")
    if expect_len is not None and arr.shape[2] != expect_len:
        raise DataFormatError(f"shard {path} has windows of {arr.shape[2]} samples, expected {expect_len}")
    return arr


def write_index(
    out_dir: str | os.PathLike,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    *,
    config_hash: str | None = None,
    verify_shards: bool = True,
) -> dict:
    """(Re)build ``index.npz``, ``summary.json`` and ``summary.md`` from the sidecars of ``out_dir``.

    Every sidecar must carry ``config_hash`` (default: the folder's ``preprocess_config.json``);
    with ``verify_shards`` each shard's header is memory-mapped and checked against its sidecar.
    Returns the summary dict.
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
    split_of = subject_split(
        (_subject_key(s["dataset"], s["subject_id"]) for s in sides), split_fractions, seed
    )
    shard_files: list[str] = []
    cols: dict[str, list] = defaultdict(list)
    for s in sides:
        if not s["n_windows"]:
            continue
        if verify_shards:
            _open_shard(sdir / s["shard"], s["n_windows"], s["window_samples"])
        k = len(shard_files)
        shard_files.append(s["shard"])
        n = s["n_windows"]
        cols["shard"].append(np.full(n, k, np.int32))
        cols["row"].append(np.arange(n, dtype=np.int32))
        cols["subject_id"].append(np.full(n, s["subject_id"]))
        cols["dataset"].append(np.full(n, s["dataset"]))
        cols["start_s"].append(np.asarray(s["start_s"], np.float64))
        cols["split"].append(np.full(n, split_of[_subject_key(s["dataset"], s["subject_id"])]))

    def cat(name: str, dtype) -> np.ndarray:
        return np.concatenate(cols[name]) if cols[name] else np.zeros(0, dtype)

    index = {
        "shard_files": np.asarray(shard_files, dtype=str),
        "shard": cat("shard", np.int32),
        "row": cat("row", np.int32),
        "subject_id": cat("subject_id", str),
        "dataset": cat("dataset", str),
        "start_s": cat("start_s", np.float64),
        "split": cat("split", str),
        "config_hash": np.asarray(config_hash),
        "format_version": np.asarray(FORMAT_VERSION),
    }
    atomic_write(out / INDEX_FILE, lambda f: np.savez(f, **index))
    summary = _summarise(sides, split_of, config_hash, seed, split_fractions)
    _atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(_summary_markdown(summary))
    return summary


def _summarise(sides: list[dict], split_of: dict, config_hash: str, seed: int, fractions) -> dict:
    per: dict[str, dict] = {}
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
        d["recordings"] += 1
        d["segments"] += s["n_windows"]
        d[f"{sp}_segments"] += s["n_windows"]
        window_s = s["window_samples"] / s["sample_rate_hz"]
        d["hours"] += s["n_windows"] * window_s / 3600.0
        d["rejected"].update(s["rejected"])
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
        "hours_note": "hours of kept 10 s segments (overlapping segments count in full)",
        "datasets": datasets,
        "total": total,
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
) -> dict:
    """Preprocess recordings into per-recording shards, then build the index and summary.

    ``sources``: file paths (any format :func:`~anyppg_edge.data.read_recording` reads) and/or
    :class:`Recording` objects. Each becomes ``shards/<safe_id>.npy`` ``[N, 2, L]`` (PPG, ECG) in
    ``dtype`` (float16: 1.8 MB per hour of recording at hop 10 s, i.e. ~180 GB for 100,000 h) plus a
    JSON sidecar, the "done" marker: recordings with a sidecar are skipped on a re-run. With
    ``workers > 1`` recordings are processed in a ``ProcessPoolExecutor`` (results are identical to
    ``workers=1``). The index (``index.npz``) assigns every subject to one split (see
    :func:`subject_split`).

    Returns the summary (also ``summary.json``/``summary.md``) with, in addition, ``"run"``:
    ``{"processed": [...safe ids], "skipped": [...], "seconds": ...}``.
    """
    cfg = cfg or PreprocessConfig()
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out_dir)
    _check_folder_config(out, cfg)
    sdir = out / SHARDS_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

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
        side_path = sdir / f"{sid}.json"
        if side_path.is_file():
            found = json.loads(side_path.read_text()).get("config_hash")
            if found != cfg.config_hash():
                raise ContractMismatchError(
                    f"{side_path} was made with preprocessing config hash {found}, not {cfg.config_hash()}"
                )
            skipped.append(sid)
            continue
        jobs.append(_Job(src, sid))

    args = (str(sdir), cfg.to_dict(), float(hop_s), bool(ecg_quality), dtype)
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
    summary = write_index(out, split_fractions, seed, config_hash=cfg.config_hash())
    summary["run"] = {
        "processed": sorted(processed),
        "skipped": sorted(skipped),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return summary


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


class ShardDataset(_DatasetBase):
    """Map-style dataset over the windows of one split of a prepared folder.

    ``ds[i]`` -> ``{"ppg": float32 tensor [1, L], "ecg": float32 tensor [1, L]}``; ``ds.meta(i)`` and
    the arrays ``subject_ids``, ``datasets``, ``start_s`` give the provenance (for grouping by subject
    or dataset in evaluation). Shards are memory-mapped lazily, at most ``max_open`` at a time (LRU),
    and re-opened after a fork/pickle into a DataLoader worker. :meth:`get_batch` is the fast path:
    numpy float32 ``(ppg [B,1,L], ecg [B,1,L])`` gathered shard by shard.

    ``split``: ``"train"``, ``"val"``, ``"test"`` or ``"all"``. ``expected_config_hash``: if given,
    the folder must have been prepared with that preprocessing config (else ContractMismatchError).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        split: str = "train",
        *,
        expected_config_hash: str | None = None,
        max_open: int = 256,
    ) -> None:
        self.root = Path(out_dir)
        if split not in (*SPLITS, "all"):
            raise ValueError(f"split must be one of {(*SPLITS, 'all')}, got {split!r}")
        ipath = self.root / INDEX_FILE
        if not ipath.is_file():
            raise DataFormatError(
                f"no {INDEX_FILE} in {self.root}; run prepare_shards (or write_index) first"
            )
        try:
            with np.load(ipath, allow_pickle=False) as z:
                idx = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as exc:
            raise DataFormatError(f"corrupt index file {ipath}: {exc}") from exc
        self.config_hash = str(idx["config_hash"])
        if expected_config_hash is not None and expected_config_hash != self.config_hash:
            raise ContractMismatchError(
                f"{self.root} was prepared with preprocessing config hash {self.config_hash}, "
                f"expected {expected_config_hash}"
            )
        sel = np.ones(len(idx["shard"]), bool) if split == "all" else idx["split"] == split
        self.split = split
        self.shard_files = idx["shard_files"]
        self._shard = np.ascontiguousarray(idx["shard"][sel])
        self._row = np.ascontiguousarray(idx["row"][sel])
        self.subject_ids = idx["subject_id"][sel]
        self.groups = self.subject_ids  # for Trainer(group_batches=True): batches within one subject
        self.datasets = idx["dataset"][sel]
        self.start_s = idx["start_s"][sel]
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pid = os.getpid()
        self._window_samples: int | None = None

    # pickling (spawned DataLoader workers) drops the open maps; they are reopened lazily
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return int(self._shard.shape[0])

    @property
    def window_samples(self) -> int:
        if self._window_samples is None:
            if len(self) == 0:
                raise DataFormatError(f"split {self.split!r} of {self.root} is empty")
            self._window_samples = int(self._mm(int(self._shard[0])).shape[2])
        return self._window_samples

    def _mm(self, k: int) -> np.ndarray:
        if os.getpid() != self._pid:  # forked worker: do not share the parent's maps
            self._open = OrderedDict()
            self._pid = os.getpid()
        arr = self._open.get(k)
        if arr is None:
            arr = _open_shard(self.root / SHARDS_DIR / str(self.shard_files[k]))
            self._open[k] = arr
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(k)
        return arr

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} windows ({self.split})")
        return i % n

    def meta(self, i: int) -> dict:
        """Provenance of window ``i``: subject, dataset, start time, shard file and row."""
        i = self._check_index(int(i))
        return {
            "subject_id": str(self.subject_ids[i]),
            "dataset": str(self.datasets[i]),
            "start_s": float(self.start_s[i]),
            "shard": str(self.shard_files[self._shard[i]]),
            "row": int(self._row[i]),
        }

    def window(self, i: int) -> np.ndarray:
        """Window ``i`` as float32 ``[2, L]`` (PPG, ECG)."""
        i = self._check_index(int(i))
        arr = self._mm(int(self._shard[i]))
        r = int(self._row[i])
        if r >= arr.shape[0]:
            raise DataFormatError(f"shard {self.shard_files[self._shard[i]]} has no row {r}: index is stale")
        return np.asarray(arr[r], dtype=np.float32)

    def __getitem__(self, i: int) -> dict:
        import torch

        w = self.window(i)
        return {"ppg": torch.from_numpy(w[0:1].copy()), "ecg": torch.from_numpy(w[1:2].copy())}

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``indices`` (any order, repeats allowed) as float32 ``(ppg [B,1,L], ecg [B,1,L])``.

        Indices are grouped by shard so each shard is read with one fancy-indexing gather.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} windows ({self.split})")
        idx = idx % n if n else idx
        L = self.window_samples if idx.size else 0
        out = np.empty((idx.size, 2, L), np.float32)
        shards = self._shard[idx]
        rows = self._row[idx]
        order = np.argsort(shards, kind="stable")
        s_sorted = shards[order]
        bounds = np.flatnonzero(np.diff(s_sorted)) + 1
        for grp in np.split(order, bounds) if idx.size else []:
            k = int(shards[grp[0]])
            arr = self._mm(k)
            r = rows[grp]
            if r.max() >= arr.shape[0]:
                raise DataFormatError(f"shard {self.shard_files[k]} is shorter than the index says")
            out[grp] = arr[r]
        return out[:, 0:1], out[:, 1:2]


# --------------------------------------------------------------------------------------------------
# I/O benchmark
# --------------------------------------------------------------------------------------------------


def _write_synthetic(out: Path, n_windows: int, windows_per_shard: int, L: int, seed: int) -> dict:
    """Random float16 windows written straight in the shard format (sidecars + index), no preprocessing."""
    cfg = PreprocessConfig()
    _check_folder_config(out, cfg)
    sdir = out / SHARDS_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # one random pool reused with per-shard offsets: fast to make, still incompressible-looking data
    pool = rng.standard_normal((windows_per_shard + 64, 2, L), dtype=np.float32).astype(np.float16)
    written = 0
    k = 0
    while written < n_windows:
        n = min(windows_per_shard, n_windows - written)
        off = int(rng.integers(0, 64))
        arr = pool[off : off + n]
        sid = f"bench_{k:05d}"
        atomic_write(sdir / f"{sid}.npy", lambda f, a=arr: np.save(f, a, allow_pickle=False))
        _atomic_write_json(
            sdir / f"{sid}.json",
            {
                "format_version": FORMAT_VERSION,
                "safe_id": sid,
                "source": "synthetic",
                "subject_id": f"bench/S{k:05d}",
                "dataset": "synthetic",
                "shard": f"{sid}.npy",
                "n_windows": n,
                "window_samples": L,
                "sample_rate_hz": cfg.target_sample_rate_hz,
                "dtype": "float16",
                "hop_s": cfg.window_s,
                "ecg_quality": False,
                "start_s": (np.arange(n) * cfg.window_s).tolist(),
                "rejected": {},
                "config_hash": cfg.config_hash(),
                "config": cfg.to_dict(),
            },
        )
        written += n
        k += 1
    return {"n_shards": k}


def _evict(paths: Iterable[Path]) -> bool:
    """Ask the kernel to drop these (clean, fsynced) files from the page cache, for a cold read."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def _iterate(ds: ShardDataset, order: np.ndarray, batch_size: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    checksum = 0.0
    for a in range(0, order.size, batch_size):
        ppg, ecg = ds.get_batch(order[a : a + batch_size])
        checksum += float(ppg[0, 0, 0]) + float(ecg[-1, 0, -1])
    dt = time.perf_counter() - t0
    return order.size / dt, dt


def benchmark_shards(
    n_windows: int = 100_000,
    out_dir: str | os.PathLike | None = None,
    windows_per_shard: int = 2880,
    batch_size: int = 256,
    seed: int = 0,
    keep: bool = False,
    json_path: str | os.PathLike | None = None,
) -> dict:
    """Write ``n_windows`` synthetic float16 windows as shards (default 2,880 windows = one 8 h
    night per shard), then read them all through :meth:`ShardDataset.get_batch` in batches of
    ``batch_size``: random order and sequential, each first cold (files dropped from the page cache
    with ``posix_fadvise(DONTNEED)`` where available) and then warm. Returns (and with ``json_path``
    writes) windows/s figures and the size on disk. The folder is deleted unless ``keep``.
    """
    import shutil

    L = PreprocessConfig().window_samples
    if out_dir is None:
        out = Path(tempfile.mkdtemp(prefix="anyppg_shard_bench_"))
    else:
        out = Path(out_dir)
        if out.exists() and any(out.iterdir()):
            raise FileExistsError(f"benchmark folder {out} is not empty; give a new or empty folder")
        out.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        info = _write_synthetic(out, n_windows, windows_per_shard, L, seed)
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_index(out, seed=seed, verify_shards=False)
        t_index = time.perf_counter() - t0
        shard_paths = sorted((out / SHARDS_DIR).glob("*.npy"))
        disk = sum(p.stat().st_size for p in shard_paths)
        ds = ShardDataset(out, split="all")
        rng = np.random.default_rng(seed)
        res: dict[str, Any] = {
            "n_windows": n_windows,
            "n_shards": info["n_shards"],
            "windows_per_shard": windows_per_shard,
            "batch_size": batch_size,
            "dtype": "float16",
            "window_shape": [2, L],
            "shard_bytes_on_disk": disk,
            "bytes_per_window": disk / n_windows,
            "mb_per_hour_of_recording": disk / n_windows * 360 / 1e6,
            "write_windows_per_s": n_windows / t_write,
            "write_seconds": t_write,
            "index_seconds": t_index,
            "cpu_count": os.cpu_count(),
        }
        perm = rng.permutation(n_windows)
        seq = np.arange(n_windows)
        cold = _evict(shard_paths)
        res["cold_cache_available"] = cold
        if cold:
            res["random_cold_windows_per_s"], _ = _iterate(ds, perm, batch_size)
            ds = ShardDataset(out, split="all")
            _evict(shard_paths)
            res["sequential_cold_windows_per_s"], _ = _iterate(ds, seq, batch_size)
        res["random_windows_per_s"], _ = _iterate(ds, perm, batch_size)
        res["sequential_windows_per_s"], _ = _iterate(ds, seq, batch_size)
        t0 = time.perf_counter()
        n_items = min(20_000, n_windows)
        for i in perm[:n_items]:
            ds[int(i)]
        res["getitem_windows_per_s"] = n_items / (time.perf_counter() - t0)
        res["bar_windows_per_s"] = 20_000
        res["meets_bar"] = bool(min(res["random_windows_per_s"], res["sequential_windows_per_s"]) >= 20_000)
        if json_path is not None:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            Path(json_path).write_text(json.dumps(res, indent=1))
        return res
    finally:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
