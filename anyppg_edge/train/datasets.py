"""Training data: paired windows in memory, dict-of-arrays datasets, and the sampler that shards batches by rank and draws them within groups (subjects) for hard negatives."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from anyppg_edge.errors import ConfigError


class PairedArrayDataset(Dataset):
    """In-memory paired windows ``[N, L]`` (e.g. a :class:`~anyppg_edge.data.windows.WindowSet`'s arrays)
    → items ``{"ppg": float32 [1, L], "ecg": float32 [1, L]}``, the format the trainer consumes."""

    def __init__(
        self, ppg: np.ndarray | torch.Tensor, ecg: np.ndarray | torch.Tensor, groups: np.ndarray | None = None
    ):
        self.ppg = torch.as_tensor(np.asarray(ppg, dtype=np.float32))
        self.ecg = torch.as_tensor(np.asarray(ecg, dtype=np.float32))
        self.groups = None if groups is None else np.asarray(groups)  # e.g. subject ids, for group_batches
        if self.ppg.dim() != 2 or self.ppg.shape != self.ecg.shape:
            raise ConfigError(
                f"ppg and ecg must both be [N, L] with the same shape, got {tuple(self.ppg.shape)} "
                f"and {tuple(self.ecg.shape)}"
            )

    def __len__(self) -> int:
        return len(self.ppg)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"ppg": self.ppg[i].unsqueeze(0), "ecg": self.ecg[i].unsqueeze(0)}


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches that depend only on ``(seed, epoch)``, sharded over ranks.

    Global batch ``g`` of an epoch is the slice ``perm[g*B*W : (g+1)*B*W]`` of a permutation seeded by
    ``(seed, epoch)``; rank ``r`` takes its ``r``-th block of ``B``. Hence a W-rank run sees, per
    step, exactly the batch a single process with batch ``B*W`` sees. ``set_position(epoch, batch)``
    starts mid-epoch (resume). With ``drop_last=False`` (validation, single rank) the last batch may
    be short.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
        groups: np.ndarray | None = None,
        groups_per_batch: int = 1,
    ):
        if groups is not None and len(groups) != n:
            raise ConfigError(f"groups has {len(groups)} labels for {n} items")
        # with groups: the epoch permutation visits groups in random order, each group's items shuffled,
        # so most batches hold one group (e.g. one subject: hard negatives of the same person); with
        # groups_per_batch = k > 1 each global batch is k runs of batch/k items, each run within one
        # group (k subjects per batch: hard negatives, and BatchNorm statistics that are not one person's)
        self.group_codes = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
        gb = batch_size * world_size
        if groups_per_batch < 1 or gb % groups_per_batch:
            raise ConfigError(f"groups_per_batch {groups_per_batch} must divide the global batch {gb}")
        self.groups_per_batch = int(groups_per_batch)
        if drop_last:
            check_batch_fits(n, batch_size, world_size)
        if not drop_last and world_size != 1:
            raise ConfigError("drop_last=False is only supported for a single rank")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.shuffle, self.drop_last = rank, world_size, shuffle, drop_last
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        gb = self.batch_size * self.world_size
        return self.n // gb if self.drop_last else math.ceil(self.n / gb)

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        ss = np.random.SeedSequence([int(self.seed) & 0xFFFFFFFF, int(epoch)])
        rng = np.random.default_rng(ss)
        perm = rng.permutation(self.n)
        if self.group_codes is None:
            return perm
        group_rank = rng.permutation(int(self.group_codes.max()) + 1)[self.group_codes[perm]]
        grouped = perm[np.argsort(group_rank, kind="stable")]
        if self.groups_per_batch == 1:
            return grouped
        # cut every group's run into chunks of batch/k items, deal the chunks in random order so that k
        # consecutive chunks (one global batch) come from k different groups while possible; each group's
        # leftover (< one chunk) goes, shuffled, to the end of the epoch
        c = self.batch_size * self.world_size // self.groups_per_batch
        codes = self.group_codes[grouped]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        chunks, rest = [], []
        for run in np.split(grouped, bounds):
            full = len(run) // c * c
            chunks += np.split(run[:full], full // c) if full else []
            rest.append(run[full:])
        order = rng.permutation(len(chunks)).tolist()
        chunk_group = [int(self.group_codes[ch[0]]) for ch in chunks]
        k = self.groups_per_batch
        for i in range(len(order)):  # a chunk whose group is already in its batch swaps with a later one
            used = {chunk_group[order[j]] for j in range(i - i % k, i)}
            if chunk_group[order[i]] in used:
                j = next((j for j in range(i + 1, len(order)) if chunk_group[order[j]] not in used), None)
                if j is not None:
                    order[i], order[j] = order[j], order[i]
        tail = np.concatenate(rest) if rest else np.zeros(0, np.int64)
        return np.concatenate([chunks[i] for i in order] + [rng.permutation(tail)]).astype(perm.dtype)

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation(self.epoch)
        gb, b = self.batch_size * self.world_size, self.batch_size
        for g in range(self.start_batch, self.batches_per_epoch):
            chunk = perm[g * gb : (g + 1) * gb]
            yield chunk[self.rank * b : (self.rank + 1) * b].tolist()

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start_batch, 0)


def check_batch_fits(n: int, batch_size: int, world_size: int = 1, what: str = "the training set") -> None:
    """Refuse a batch the data cannot fill: with ``drop_last`` an epoch would hold no batch at all."""
    if n < batch_size * world_size:
        ranks = f" ({batch_size} per rank x {world_size} ranks)" if world_size > 1 else ""
        fit = f"--batch-size <= {n // world_size}, or " if n >= world_size else ""
        raise ConfigError(
            f"{what} has {n} windows, fewer than one global batch of {batch_size * world_size}{ranks}: use "
            f"{fit}prepare more training windows"
        )


class TensorDictDataset(Dataset):
    """Aligned numpy arrays → dict items; ``ppg`` ``[N, L]`` becomes ``[1, L]`` per item."""

    def __init__(self, arrays: dict[str, np.ndarray], groups: np.ndarray | None = None):
        lengths = {k: len(v) for k, v in arrays.items()}
        if "ppg" not in arrays or len(set(lengths.values())) != 1:
            raise ConfigError(f"need a 'ppg' array and equal lengths, got {lengths}")
        self.arrays = {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in arrays.items()}
        self.groups = None if groups is None else np.asarray(groups)

    def __len__(self) -> int:
        return len(self.arrays["ppg"])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {k: v[i] for k, v in self.arrays.items()}
        item["ppg"] = item["ppg"].unsqueeze(0)
        return item
