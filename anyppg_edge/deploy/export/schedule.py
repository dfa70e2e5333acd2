"""Memory-aware operator order for a TFLite flatbuffer.

TFLite Micro runs the operators in the order the file lists them, and its greedy memory planner
gives every activation tensor a lifetime from the first op that writes it to the last op that reads
it. The converter's order is a valid topological order, not a frugal one: in a residual block it
may run the whole residual branch while the block input waits for the identity path (max-pool) at
the very end, so one full-size tensor stays live through the block's widest ops.

:func:`schedule_for_memory` rewrites the operator list of subgraph 0 into the topological order with
the smallest peak of live activation bytes. The ops, tensors and weights are untouched, so every
runtime computes bit for bit what it computed before; only lifetimes change. The search is an exact
dynamic programme over the executed-op sets reachable in topological order: the live set depends
only on which ops have run, so ``best(S) = min over ready r of max(live(S) + out(r), best(S + r))``.
On the project's Net1D graphs (a chain of residual blocks, two branches each) it visits a few
hundred states. A graph whose search would exceed ``max_states`` keeps the converter's order.

TFLM's online planner (greedy, largest buffer first) can fragment the arena well above that peak
(the watch students: 40,000 B planned online where 35,008 B are ever live at once). So the file also
carries an offline plan, TFLM's ``OfflineMemoryAllocation`` metadata: an arena offset for every
activation tensor, found here by first-fit placements over the lifetimes of the chosen order and
checked for overlaps (:func:`plan_offsets`). The generated C encoder lays out its arena from the
same plan.

Only ``ai_edge_litert``'s flatbuffer schema is imported (lazily).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ActivationGraph", "ScheduleReport", "activation_peak_bytes", "plan_offsets", "read_model", "schedule_for_memory"]

_DTYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 16: 4}  # TensorType -> bytes


@dataclass(frozen=True)
class ScheduleReport:
    """Peak live activation bytes (a lower bound of TFLM's arena head) in the converter's order and
    in the chosen order, and how many search states that took."""

    peak_before_bytes: int
    peak_after_bytes: int
    states: int
    reordered: bool
    note: str = ""
    planned_head_bytes: int = 0  # the offline arena plan's head (16-byte aligned buffers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "peak_activation_before_bytes": self.peak_before_bytes,
            "peak_activation_after_bytes": self.peak_after_bytes,
            "search_states": self.states,
            "reordered": self.reordered,
            "planned_head_bytes": self.planned_head_bytes,
            "note": self.note,
        }


class ActivationGraph:
    """Activation tensors (sizes), producers and consumers of subgraph 0 of a TFLite model (the object
    API of :func:`read_model`), in index form: what the op order, the arena plan and the generated C
    encoder's static arena are computed on."""

    def __init__(self, model: Any):
        g = model.subgraphs[0]
        self.ops = g.operators
        n = len(self.ops)
        self.graph_outputs = set(int(i) for i in g.outputs)
        const = {
            i
            for i, t in enumerate(g.tensors)
            if t.buffer and model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data) > 0
        }
        self.size: dict[int, int] = {}
        for i, t in enumerate(g.tensors):
            if i in const:
                continue
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            self.size[i] = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(int(t.type), 4)
        self.producer: dict[int, int] = {}
        self.consumers: dict[int, set[int]] = {}
        self.outs: list[list[int]] = []
        self.deps: list[int] = []  # bitmask of ops each op waits for
        for k, op in enumerate(self.ops):
            outs = [int(i) for i in (op.outputs if op.outputs is not None else []) if int(i) in self.size]
            self.outs.append(outs)
            for i in outs:
                self.producer[i] = k
        for k, op in enumerate(self.ops):
            mask = 0
            for i in op.inputs if op.inputs is not None else []:
                i = int(i)
                if i < 0 or i not in self.size:
                    continue
                self.consumers.setdefault(i, set()).add(k)
                if i in self.producer:
                    mask |= 1 << self.producer[i]
            self.deps.append(mask)
        self.inputs_live = sum(self.size[int(i)] for i in g.inputs if int(i) in self.size)
        self.n = n
        # tensors each op's completion may free: its inputs (all consumers done) and its outputs (no consumer)
        self.cons_mask = {i: sum(1 << c for c in cs) for i, cs in self.consumers.items()}
        self.reads = [
            sorted({int(i) for i in (op.inputs if op.inputs is not None else []) if int(i) in self.size})
            for op in self.ops
        ]

    def freed_after(self, done: int, k: int) -> int:
        """Bytes released once op ``k`` has run, ops ``done`` (including k) having run."""
        freed = 0
        for i in self.reads[k]:
            if i not in self.graph_outputs and (self.cons_mask[i] & ~done) == 0:
                freed += self.size[i]
        for i in self.outs[k]:
            if i not in self.graph_outputs and i not in self.consumers:
                freed += self.size[i]
        return freed

    def peak(self, order: list[int]) -> int:
        live, done, peak = self.inputs_live, 0, 0
        for k in order:
            live += sum(self.size[i] for i in self.outs[k])
            peak = max(peak, live)
            done |= 1 << k
            live -= self.freed_after(done, k)
        return peak


def activation_peak_bytes(model_bytes: bytes) -> int:
    """Peak live activation bytes of subgraph 0 in the file's own operator order."""
    g = ActivationGraph(read_model(model_bytes))
    return g.peak(list(range(g.n)))


def read_model(model_bytes: bytes) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    if sys.byteorder == "big":
        fu.byte_swap_tflite_model_obj(model, "big", "little")
    return model


def _best_order(g: ActivationGraph, max_states: int) -> tuple[list[int] | None, int]:
    full = (1 << g.n) - 1
    memo: dict[int, tuple[int, int]] = {}  # done-mask -> (best peak from here, next op)
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old_limit, 4 * g.n + 100))

    class _TooBig(Exception):
        pass

    def best(done: int, live: int) -> int:
        if done == full:
            return 0
        hit = memo.get(done)
        if hit is not None:
            return hit[0]
        if len(memo) >= max_states:
            raise _TooBig
        choice = (1 << 62, -1)
        for k in range(g.n):
            if (done >> k) & 1 or (g.deps[k] & ~done):
                continue
            during = live + sum(g.size[i] for i in g.outs[k])
            if during >= choice[0]:
                continue
            nd = done | (1 << k)
            rest = best(nd, during - g.freed_after(nd, k))
            cand = max(during, rest)
            if cand < choice[0]:
                choice = (cand, k)
        memo[done] = choice
        return choice[0]

    try:
        best(0, g.inputs_live)
    except _TooBig:
        return None, len(memo)
    finally:
        sys.setrecursionlimit(old_limit)
    order, done = [], 0
    while done != full:
        k = memo[done][1]
        order.append(k)
        done |= 1 << k
    return order, len(memo)


_ALIGN = 16  # TFLM aligns every arena buffer to 16 bytes
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"  # TFLM's name for an offline arena plan


def _lifetimes(g: ActivationGraph, order: list[int]) -> dict[int, tuple[int, int]]:
    """``tensor -> (first op position, last op position)``, inclusive, as TFLM marks them: a subgraph
    input lives from the first op, a graph output to the last."""
    pos = {k: i for i, k in enumerate(order)}
    life: dict[int, tuple[int, int]] = {}
    last_pos = len(order) - 1
    for t in g.size:
        if t in g.producer:
            first = pos[g.producer[t]]
        elif g.consumers.get(t):
            first = 0  # a subgraph input
        else:
            continue  # a tensor no op touches
        users = [pos[c] for c in g.consumers.get(t, ())]
        last = last_pos if t in g.graph_outputs else max(users, default=first)
        life[t] = (first, last)
    return life


def plan_offsets(g: ActivationGraph, order: list[int]) -> tuple[dict[int, int], int]:
    """Arena offsets of every activation tensor for ``order`` (no two tensors whose lifetimes overlap
    share a byte) and the head size. Several first-fit placements (by size, by first use, by
    lifetime length) are tried and the smallest kept; each is checked."""
    life = _lifetimes(g, order)
    size = {t: -(-g.size[t] // _ALIGN) * _ALIGN for t in life}
    keys = {
        "size": lambda t: (-size[t], life[t][0]),
        "first_use": lambda t: (life[t][0], -size[t]),
        "lifetime": lambda t: (-(life[t][1] - life[t][0]), -size[t]),
    }
    best: tuple[int, dict[int, int]] | None = None
    for key in keys.values():
        placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
        offsets: dict[int, int] = {}
        for t in sorted(life, key=key):
            a, b = life[t]
            busy = sorted((o, o + n) for o, n, x, y in placed if not (y < a or x > b))
            off = 0
            for lo, hi in busy:
                if off + size[t] <= lo:
                    break
                off = max(off, hi)
            placed.append((off, size[t], a, b))
            offsets[t] = off
        head = max((o + n for o, n, _, _ in placed), default=0)
        if best is None or head < best[0]:
            best = (head, offsets)
    assert best is not None
    head, offsets = best
    for t, u in ((t, u) for t in offsets for u in offsets if t < u):  # no live overlap, checked
        (a, b), (c, d) = life[t], life[u]
        if not (b < c or d < a):
            assert offsets[t] + size[t] <= offsets[u] or offsets[u] + size[u] <= offsets[t], (t, u)
    return offsets, head


def _add_offline_plan(model: Any, offsets: dict[int, int]) -> None:
    """Write TFLM's ``OfflineMemoryAllocation`` metadata: int32 [version 0, subgraph 0, n, offset of
    each tensor or -1]; replaces an existing plan."""
    from ai_edge_litert import schema_py_generated as s

    n = len(model.subgraphs[0].tensors)
    data = np.array([0, 0, n] + [offsets.get(i, -1) for i in range(n)], dtype="<i4").tobytes()
    buf = s.BufferT()
    buf.data = np.frombuffer(data, np.uint8).copy()
    model.buffers.append(buf)
    md = s.MetadataT()
    md.name = OFFLINE_PLAN_METADATA
    md.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != OFFLINE_PLAN_METADATA] + [md]


def _name(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def schedule_for_memory(
    model_bytes: bytes, max_states: int = 200_000, offline_plan: bool = True
) -> tuple[bytes, ScheduleReport]:
    """``model_bytes`` with subgraph 0's operators in the order of least peak activation memory and an
    offline arena plan for that order (TFLM's ``OfflineMemoryAllocation`` metadata: the head then
    equals the plan instead of what TFLM's greedy planner finds online), and what it measured."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = read_model(model_bytes)
    g = ActivationGraph(model)
    before = g.peak(list(range(g.n)))
    order, states = _best_order(g, max_states)
    note = ""
    if order is None:
        order, note = list(range(g.n)), f"order search stopped at {max_states} states; converter order kept"
    after = g.peak(order)
    if after >= before:
        order, after = list(range(g.n)), before
    model.subgraphs[0].operators = [g.ops[k] for k in order]
    offsets, head = plan_offsets(g, order)
    if offline_plan:
        _add_offline_plan(model, offsets)
    rep = ScheduleReport(before, after, states, order != list(range(g.n)), note, head)
    return bytes(fu.convert_object_to_bytearray(model)), rep
