"""Cross-modal retrieval metrics of the AnyPPG paper (Table 2): PPG query -> ECG gallery.

Row ``i`` of ``query`` and row ``i`` of ``gallery`` are a synchronized pair; every other gallery row is
a distractor. Similarity is cosine. The rank of the true match is ``1 +`` the number of *other*
gallery rows whose similarity is ``>=`` the true one (ties count against the query, so degenerate
embeddings - e.g. all equal - score at chance or below, never above). From the ranks:

* ``R@k``: fraction of queries with rank <= k;
* ``mAP@K`` (K = the largest k): with one relevant item, AP@K = 1/rank if rank <= K else 0;
* ``MRR``: mean of 1/rank (no cut-off).

:func:`pooled_retrieval` evaluates in random pools of ``pool_size`` pairs (the paper uses batches of
2,560) so that figures are comparable across test sets of different sizes; chance R@1 is 1/pool_size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from anyppg_edge.errors import ConfigError

__all__ = [
    "METRIC_KEYS",
    "metrics_from_ranks",
    "paired_pool_bootstrap",
    "pooled_ranks",
    "pooled_retrieval",
    "retrieval_metrics",
    "retrieval_ranks",
]

METRIC_KEYS = ("R@1", "R@5", "R@10", "mAP@10", "MRR")
_CHUNK = 2048


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ConfigError(f"{name} must be 2-D [n, dim], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name} contains NaN or Inf")
    return arr


def _paired(query: Any, gallery: Any) -> tuple[np.ndarray, np.ndarray]:
    q, g = _as_2d(query, "query"), _as_2d(gallery, "gallery")
    if q.shape != g.shape:
        raise ConfigError(
            f"query and gallery must have the same shape (paired rows), got {q.shape} and {g.shape}"
        )
    return q, g


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def retrieval_ranks(query: Any, gallery: Any) -> np.ndarray:
    """1-based rank of gallery row ``i`` among all gallery rows for query row ``i`` (cosine)."""
    q, g = (_normalise(x) for x in _paired(query, gallery))
    n = q.shape[0]
    ranks = np.empty(n, np.int64)
    for a in range(0, n, _CHUNK):
        sim = q[a : a + _CHUNK] @ g.T
        rows = np.arange(sim.shape[0])
        true = sim[rows, a + rows]
        # other rows at >= the true similarity; the true one itself is always counted once
        ranks[a : a + _CHUNK] = (sim >= true[:, None]).sum(axis=1)
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k for each k, mAP@max(k) and MRR from 1-based ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.size == 0:
        raise ConfigError("no queries to evaluate")
    out = {f"R@{k}": float(np.mean(r <= k)) for k in ks}
    kmax = max(ks)
    out[f"mAP@{kmax}"] = float(np.mean(np.where(r <= kmax, 1.0 / r, 0.0)))
    out["MRR"] = float(np.mean(1.0 / r))
    return out


def retrieval_metrics(query: Any, gallery: Any, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@k, mAP@max(k) and MRR for paired embeddings ``[n, dim]`` (all rows form one gallery).

    Adds ``"n"`` (number of queries) and ``"median_rank"``.
    """
    ranks = retrieval_ranks(query, gallery)
    out: dict[str, float] = metrics_from_ranks(ranks, ks)
    out["median_rank"] = float(np.median(ranks))
    out["n"] = int(ranks.size)
    return out


def _pools(
    idx: np.ndarray, pool_size: int, n_pools: int | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """Pools of ``pool_size`` distinct indices. Within one permutation pools are disjoint; when more
    pools are asked for than one permutation gives, further permutations follow."""
    per_perm = idx.size // pool_size
    if per_perm == 0:
        return []
    want = per_perm if n_pools is None else int(n_pools)
    pools: list[np.ndarray] = []
    while len(pools) < want:
        perm = rng.permutation(idx)
        for j in range(per_perm):
            if len(pools) == want:
                break
            pools.append(perm[j * pool_size : (j + 1) * pool_size])
    return pools


def _eval_pools(q: np.ndarray, g: np.ndarray, pools: list[np.ndarray], ks: Sequence[int]) -> dict[str, Any]:
    per_pool = [metrics_from_ranks(retrieval_ranks(q[p], g[p]), ks) for p in pools]
    keys = list(per_pool[0])
    out: dict[str, Any] = {k: float(np.mean([m[k] for m in per_pool])) for k in keys}
    out["std_over_pools"] = {k: float(np.std([m[k] for m in per_pool])) for k in keys}
    out["n_pools"] = len(pools)
    out["n_queries"] = int(sum(p.size for p in pools))
    return out


def pooled_retrieval(
    query: Any,
    gallery: Any,
    pool_size: int = 64,
    n_pools: int | None = None,
    seed: int = 0,
    groups: Any = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, Any]:
    """Retrieval metrics averaged over random pools of ``pool_size`` pairs (deterministic in ``seed``).

    ``n_pools=None``: one random permutation cut into ``n // pool_size`` disjoint pools (the remainder
    is left out); a larger ``n_pools`` draws further permutations (pools may then overlap each other,
    never within themselves). Each pool is one gallery: a query competes with the ``pool_size - 1``
    other ECGs of its pool.

    ``groups`` (e.g. dataset labels, one per row): pools are drawn *within* each group (as in the
    paper's per-dataset evaluation) and the result has ``per_group`` metrics, the aggregate over
    groups weighted by their number of evaluated queries (``weighted``, also at the top level) and
    the unweighted mean over groups (``macro``). A group with fewer than ``pool_size`` pairs is
    listed under ``skipped_groups`` and left out. Top-level keys: the metrics, ``pool_size``,
    ``n_pools``, ``n_queries``, ``chance_R@1``.
    """
    q, g = _paired(query, gallery)
    if int(pool_size) < 2:
        raise ConfigError(f"pool_size must be >= 2, got {pool_size}")
    pool_size = int(pool_size)
    n = q.shape[0]
    rng = np.random.default_rng(seed)
    base = {"pool_size": pool_size, "chance_R@1": 1.0 / pool_size}
    if groups is None:
        if n < pool_size:
            raise ConfigError(f"{n} pairs are fewer than pool_size {pool_size}")
        res = _eval_pools(q, g, _pools(np.arange(n), pool_size, n_pools, rng), ks)
        return {**res, **base}
    labels = np.asarray(groups).astype(str)
    if labels.shape != (n,):
        raise ConfigError(f"groups must have one label per row ({n}), got shape {labels.shape}")
    per_group: dict[str, dict[str, Any]] = {}
    skipped: dict[str, int] = {}
    for name in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == name)
        if idx.size < pool_size:
            skipped[name] = int(idx.size)
            continue
        per_group[name] = _eval_pools(q, g, _pools(idx, pool_size, n_pools, rng), ks)
    if not per_group:
        raise ConfigError(f"no group has pool_size={pool_size} pairs (sizes: {skipped})")
    keys = [k for k in next(iter(per_group.values())) if k not in ("std_over_pools", "n_pools", "n_queries")]
    w = np.array([r["n_queries"] for r in per_group.values()], dtype=np.float64)
    weighted = {k: float(np.average([r[k] for r in per_group.values()], weights=w)) for k in keys}
    macro = {k: float(np.mean([r[k] for r in per_group.values()])) for k in keys}
    return {
        **weighted,
        **base,
        "n_pools": int(sum(r["n_pools"] for r in per_group.values())),
        "n_queries": int(w.sum()),
        "weighted": weighted,
        "macro": macro,
        "per_group": per_group,
        "skipped_groups": skipped,
    }


def pooled_ranks(
    query: Any, gallery: Any, pool_size: int = 64, n_pools: int | None = None, seed: int = 0
) -> list[np.ndarray]:
    """1-based ranks of every query, one array per pool, on exactly the pools that
    :func:`pooled_retrieval` draws with the same arguments (no ``groups``): two methods scored with
    the same ``seed`` on the same rows meet the same distractors, query by query."""
    q, g = _paired(query, gallery)
    if q.shape[0] < int(pool_size) or int(pool_size) < 2:
        raise ConfigError(f"{q.shape[0]} pairs cannot fill pools of {pool_size}")
    pools = _pools(np.arange(q.shape[0]), int(pool_size), n_pools, np.random.default_rng(seed))
    return [retrieval_ranks(q[p], g[p]) for p in pools]


def paired_pool_bootstrap(
    ranks_a: Sequence[np.ndarray],
    ranks_b: Sequence[np.ndarray],
    n_boot: int = 10_000,
    seed: int = 0,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """Difference ``a - b`` of every metric between two methods ranked on the same pools (e.g.
    :func:`pooled_ranks` of a model and of a baseline), with a 95 % percentile bootstrap interval
    that resamples whole *pools* with replacement — the queries of one pool share their distractors,
    so the pool, not the query, is the independent unit. Returns ``{metric: {"diff", "ci95_low",
    "ci95_high", "p_a_not_better"}}``; the last is the bootstrap fraction of resamples with ``a - b <= 0``."""
    if len(ranks_a) != len(ranks_b) or not ranks_a:
        raise ConfigError(f"need the same non-zero number of pools, got {len(ranks_a)} and {len(ranks_b)}")
    if any(np.shape(a) != np.shape(b) for a, b in zip(ranks_a, ranks_b, strict=True)):
        raise ConfigError("pools of the two methods differ in size: not ranked on the same pools")
    kmax = max(ks)

    def per_query(r: np.ndarray) -> dict[str, np.ndarray]:
        r = np.asarray(r, dtype=np.float64)
        out = {f"R@{k}": (r <= k).astype(np.float64) for k in ks}
        out[f"mAP@{kmax}"] = np.where(r <= kmax, 1.0 / r, 0.0)
        out["MRR"] = 1.0 / r
        return out

    pa, pb = [per_query(r) for r in ranks_a], [per_query(r) for r in ranks_b]
    sizes = np.array([len(r) for r in ranks_a], dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sizes), size=(int(n_boot), len(sizes)))
    result: dict[str, dict[str, float]] = {}
    for key in pa[0]:
        sums = np.array([a[key].sum() - b[key].sum() for a, b in zip(pa, pb, strict=True)])  # per pool
        boot = sums[draws].sum(axis=1) / sizes[draws].sum(axis=1)
        result[key] = {
            "diff": float(sums.sum() / sizes.sum()),
            "ci95_low": float(np.percentile(boot, 2.5)),
            "ci95_high": float(np.percentile(boot, 97.5)),
            "p_a_not_better": float(np.mean(boot <= 0)),
        }
    return result
