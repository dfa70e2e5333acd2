"""Reading prepared shards: :class:`ShardDataset`, memory-mapped windows of one or more splits (and views), opened lazily per worker."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anyppg_edge.data.shards import (
    INDEX_FILE,
    PRIMARY_VIEW,
    SECOND_PPG_VIEW,
    SHARDS_DIR,
    _open_shard,
    folder_native_rates,
    native_shard_name,
    open_native_shard,
)
from anyppg_edge.data.splits import (
    SPLITS,
)
from anyppg_edge.errors import (
    ConfigError,
    ContractMismatchError,
    DataFormatError,
)

try:  # torch is an optional extra: without it ShardDataset still works (get_batch, numpy items)
    from torch.utils.data import Dataset as _DatasetBase
except ImportError:  # pragma: no cover - depends on the install
    _DatasetBase = object  # type: ignore[assignment,misc]


class ShardDataset(_DatasetBase):
    """Map-style dataset over the windows of one split of a prepared folder.

    ``ds[i]`` -> ``{"ppg": float32 tensor [1, L], "ecg": float32 tensor [1, L]}``; ``ds.meta(i)`` and
    the arrays ``subject_ids``, ``datasets``, ``start_s`` give the provenance (for grouping by subject
    or dataset in evaluation). Shards are memory-mapped lazily, at most ``max_open`` at a time (LRU),
    and re-opened after a fork/pickle into a DataLoader worker. :meth:`get_batch` is the fast path:
    numpy float32 ``(ppg [B,1,L], ecg [B,1,L])`` gathered shard by shard.

    ``split``: ``"train"``, ``"val"``, ``"test"`` or ``"all"``. ``expected_config_hash``: if given,
    the folder must have been prepared with that preprocessing config (else ContractMismatchError).

    ``views``: which PPG views to serve (``"ppg"``, and ``"ppg2"`` where the folder was prepared with
    ``second_ppg``). :meth:`get_ppg` serves the PPG at a native rate the folder was prepared with
    (``--native-rates``; :attr:`native_rates`), row for row with the 125 Hz windows. Default: every view for ``"train"`` and ``"all"``, the primary PPG only for
    ``"val"``/``"test"``, where each ECG window must appear once (retrieval pools). ``groups`` (for
    ``group_batches``) are per subject and view, so a batch never holds one ECG window twice.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        split: str = "train",
        *,
        expected_config_hash: str | None = None,
        max_open: int = 256,
        views: Sequence[str] | None = None,
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
        view = idx["view"] if "view" in idx else np.full(len(idx["shard"]), PRIMARY_VIEW)
        if views is None:
            views = None if split in ("train", "all") else (PRIMARY_VIEW,)
        if views is not None:
            unknown = sorted(set(views) - {PRIMARY_VIEW, SECOND_PPG_VIEW})
            if unknown:
                raise ConfigError(f"unknown shard view(s) {unknown}; known: {PRIMARY_VIEW!r}, {SECOND_PPG_VIEW!r}")
            sel &= np.isin(view, list(views))
        self.split = split
        self.shard_files = idx["shard_files"]
        self._shard = np.ascontiguousarray(idx["shard"][sel])
        self._row = np.ascontiguousarray(idx["row"][sel])
        self.subject_ids = idx["subject_id"][sel]
        self.views = view[sel]
        # for Trainer(group_batches=True): batches within one subject (and one view: no ECG window twice)
        self.groups = (self.subject_ids if (self.views == PRIMARY_VIEW).all()
                       else np.char.add(np.char.add(self.subject_ids.astype(str), "|"), self.views.astype(str)))
        self.datasets = idx["dataset"][sel]
        self.start_s = idx["start_s"][sel]
        self.max_open = max(1, int(max_open))
        self._open: OrderedDict[int | tuple[int, int], np.ndarray] = OrderedDict()
        self.sample_rate_hz, self.native_rates = folder_native_rates(self.root)
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

    def _mm(self, k: int, rate_hz: int | None = None) -> np.ndarray:
        if os.getpid() != self._pid:  # forked worker: do not share the parent's maps
            self._open = OrderedDict()
            self._pid = os.getpid()
        key = k if rate_hz is None else (k, rate_hz)
        arr = self._open.get(key)
        if arr is None:
            name = str(self.shard_files[k])
            arr = (_open_shard(self.root / SHARDS_DIR / name) if rate_hz is None
                   else open_native_shard(self.root / SHARDS_DIR / native_shard_name(name, rate_hz)))
            self._open[key] = arr
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(key)
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
            "view": str(self.views[i]),
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

    def get_ppg(self, indices: Sequence[int] | np.ndarray, sample_rate_hz: int | None = None) -> np.ndarray:
        """The PPG of windows ``indices`` as float32 ``[B, 1, L]``: the folder's own windows
        (``sample_rate_hz`` None or the folder's rate), or the companion windows at a native rate
        the folder was prepared with (``L = rate * window_s``, the same rows)."""
        if sample_rate_hz is None or int(sample_rate_hz) == self.sample_rate_hz:
            return self.get_batch(indices)[0]
        rate = int(sample_rate_hz)
        if rate not in self.native_rates:
            have = ", ".join(f"{r} Hz" for r in self.native_rates) or "none"
            raise ConfigError(
                f"{self.root} holds no {rate} Hz windows (native rates prepared: {have}); prepare it with "
                f"`prepare-data ... --native-rates {rate}` (a new folder, or --force to rebuild this one)"
            )
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} windows ({self.split})")
        idx = idx % n if n else idx
        shards, rows = self._shard[idx], self._row[idx]
        parts: dict[int, np.ndarray] = {}
        for k in np.unique(shards):
            arr = self._mm(int(k), rate)
            r = rows[shards == k]
            if r.size and r.max() >= arr.shape[0]:
                raise DataFormatError(f"native-rate shard of {self.shard_files[k]} is shorter than the index says")
            parts[int(k)] = np.asarray(arr[r], np.float32)
        length = next(iter(parts.values())).shape[1] if parts else 0
        out = np.empty((idx.size, 1, length), np.float32)
        for k, x in parts.items():
            out[shards == k, 0] = x
        return out
