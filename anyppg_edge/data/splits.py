"""Subject-level splits: deterministic train/val/test assignment by subject (never by window), names pinned by the user, and how names resolve to the dataset\x1fsubject keys of a shard index."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from anyppg_edge.data.recording import Recording
from anyppg_edge.errors import (
    ConfigError,
    UnknownNameError,
    UsageError,
)

SPLITS = ("train", "val", "test")


SIMULATED_DATASETS = ("simulator", "synthetic")  # datasets whose subjects are not real people


def _subject_key(dataset: str, subject_id: str) -> str:
    return f"{dataset}\x1f{subject_id}"


def recording_splits(
    recordings: Iterable[Recording], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """``{"dataset/subject_id": split}`` for recordings, with the subject keys and seed of
    :func:`write_index`: the split a *new* shard folder prepared from exactly these recordings in one
    run (no pinned subjects) assigns. A folder that grew over several runs, or had subjects pinned,
    may differ: read its own split with :func:`index_subject_splits` / :func:`heldout_subjects`."""
    recs = list(recordings)
    split = subject_split((_subject_key(r.dataset, r.subject_id) for r in recs), fractions, seed)
    return {f"{r.dataset}/{r.subject_id}": split[_subject_key(r.dataset, r.subject_id)] for r in recs}


def _subject_u(key: str, seed: int) -> float:
    """Deterministic uniform number in [0, 1) from a subject key and the seed (sha256, not hash())."""
    h = hashlib.sha256(f"{seed}\x1e{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _fractions(fractions: Sequence[float]) -> np.ndarray:
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or not np.isfinite(fr).all() or (fr < 0).any() or fr.sum() <= 0:
        raise ConfigError(f"split_fractions must be 3 non-negative numbers (train, val, test), got {fractions!r}")
    return fr / fr.sum()


def _hash_split(key: str, fractions: Sequence[float], seed: int) -> str:
    """The split of one subject by its own draw ``u``: independent of every other subject."""
    edges = np.cumsum(_fractions(fractions))
    return SPLITS[min(int(np.searchsorted(edges, _subject_u(key, seed), side="right")), 2)]


def subject_split(
    subject_keys: Iterable[str], fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, str]:
    """Subject -> ``"train"``/``"val"``/``"test"``.

    Each subject draws ``u = sha256(seed, subject) in [0, 1)`` and falls in the split whose cumulative
    fraction covers ``u``: a subject keeps its split when others are added to the corpus. When that
    leaves a split empty although there are at least 3 subjects (small corpora), the subjects are
    instead dealt by rank of ``u`` with at least one per split (largest-remainder counts).
    """
    fr = _fractions(fractions)
    keys = sorted(set(subject_keys))
    us = {k: _subject_u(k, seed) for k in keys}
    out = {k: _hash_split(k, fr, seed) for k in keys}
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


def _subject_names(key: str) -> tuple[str, ...]:
    """The names a user may give for a subject key: ``dataset/subject_id``, the subject id, and its
    last path part (``DATA_07`` for ``ieee_spc2015/DATA_07``)."""
    dataset, subject = key.split("\x1f", 1)
    return tuple(dict.fromkeys((f"{dataset}/{subject}", subject, subject.rsplit("/", 1)[-1])))


def _display(key: str) -> str:
    return key.split("\x1f", 1)[1]


def resolve_subjects(names: Iterable[str], known_keys: Iterable[str], what: str = "subject") -> list[str]:
    """Subject keys (``dataset\x1fsubject_id``, as the index keys them) of user-given names: each
    name is ``dataset/subject_id`` (as :func:`recording_splits` writes it), the subject id
    (``ieee_spc2015/DATA_07``) or, when only one subject has it, the id's last part (``DATA_07``).
    An unknown name is an :class:`~anyppg_edge.errors.UnknownNameError` listing the known subjects;
    a name that fits several is a :class:`~anyppg_edge.errors.UsageError` listing them."""
    known = sorted(set(known_keys))
    by_name: dict[str, set[str]] = defaultdict(set)
    for k in known:
        for n in _subject_names(k):
            by_name[n].add(k)
    out: list[str] = []
    for name in names:
        name = name.strip()
        if not name:
            continue
        hits = by_name.get(name, set())
        if not hits:
            shown = [_display(k) for k in known]
            listing = ", ".join(shown[:40]) + (f", ... ({len(shown) - 40} more)" if len(shown) > 40 else "")
            raise UnknownNameError(
                f"unknown {what} {name!r}: the folder's subjects are {listing or '(none)'}; give a subject id "
                "(e.g. ieee_spc2015/DATA_07) or its last part when unambiguous (DATA_07)"
            )
        if len(hits) > 1:
            raise UsageError(
                f"{what} {name!r} is ambiguous: it names {', '.join(sorted(_display(k) for k in hits))}; "
                "give the full subject id or dataset/subject_id"
            )
        out.append(next(iter(hits)))
    return list(dict.fromkeys(out))


def _pins(val: Iterable[str], test: Iterable[str], known: Iterable[str]) -> dict[str, str]:
    known = list(known)
    v = resolve_subjects(val, known, "--val-subjects name")
    t = resolve_subjects(test, known, "--test-subjects name")
    both = sorted(set(v) & set(t))
    if both:
        raise UsageError(
            f"subject(s) {', '.join(_display(k) for k in both)} pinned to both val and test; name each in one"
        )
    return {**{k: "val" for k in v}, **{k: "test" for k in t}}
