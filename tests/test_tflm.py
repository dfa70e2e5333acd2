"""TensorFlow Lite Micro as a runtime (issue 17): bit-exact to LiteRT's reference kernels, its measured
arena, the memory-aware op order, the depthwise pre-activation BN, and the watch tier on measured
memory. The int8 files are the watch students (real-window BN statistics, PTQ on real windows of
../shared): their arena depends on the graph, not on the weights."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("brevitas")
pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")

from anyppg_edge.deploy.export.schedule import activation_peak_bytes, schedule_for_memory  # noqa: E402
from anyppg_edge.deploy.parity.suite import integer_reference_parity  # noqa: E402
from anyppg_edge.deploy.parity.tolerances import TOLERANCES, embedding_parity, tolerance_failures  # noqa: E402
from anyppg_edge.deploy.quantize import float_embeddings  # noqa: E402
from anyppg_edge.deploy.runtime import TflmEncoder, open_encoder  # noqa: E402
from anyppg_edge.deploy.tflm import measure_arena, op_requirements  # noqa: E402
from anyppg_edge.errors import ContractMismatchError, UsageError  # noqa: E402
from anyppg_edge.models.budget import TIERS, budget  # noqa: E402

WATCH_ARENA = TIERS["watch"].max_arena_bytes


@pytest.fixture(scope="module")
def k9(ieee_windows, int8_export, tmp_path_factory):
    return int8_export("student-watch-k9", ieee_windows, tmp_path_factory.mktemp("k9") / "k9.int8.tflite")


def test_tflm_is_bit_identical_to_litert_reference_kernels(slim_int8, ieee_windows):
    model, path = slim_int8
    x = ieee_windows[:12]
    ir = integer_reference_parity(path, x)
    assert ir["bit_identical"] and ir["tflm_vs_litert_ref_max_abs"] == 0.0 and not ir["failures"]
    assert TOLERANCES[ir["tolerance"]] == {"max_abs_max": 0.0}
    # TFLM vs the float model: the int8 row
    z = open_encoder(path, runtime="tflm").embed(x)
    assert not tolerance_failures("tflite-int8", embedding_parity(float_embeddings(model, x[:, None]), z))


def test_measured_arena_is_the_smallest_that_allocates(slim_int8):
    from anyppg_edge.deploy.tflm import _allocates  # probes in a child: a too-small arena can crash TFLM

    _, path = slim_int8
    a = measure_arena(path)
    assert a.head_bytes + a.tail_bytes == a.total_bytes <= a.min_arena_bytes
    assert a.items["NodeAndRegistration struct"]["count"] == sum(op_requirements(path).counts.values())
    assert a.mcu32_bytes < a.min_arena_bytes
    assert _allocates(str(path), a.min_arena_bytes) and not _allocates(str(path), a.min_arena_bytes - 16)
    # the encoder runs in exactly that arena; a smaller one is refused with TFLM's reason
    assert TflmEncoder(path).arena_bytes == a.min_arena_bytes
    with pytest.raises(ContractMismatchError, match="cannot allocate"):
        TflmEncoder(path, arena_bytes=a.min_arena_bytes // 2)


def test_watch_tier_holds_on_the_measured_arena(slim_int8, k9, int8_export, tmp_path):
    """The main job's watch student fits 64 KiB as TFLM measures it; the k9 student it replaced
    does not. The budget's estimate (layer-by-layer activations or, for a small graph, the planner's
    allocation-time records + TFLM's persistent data) is an upper bound within 7 % of both and of the
    25 Hz native-rate student (it holds each block input whole; the exported order pools it first)."""
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.native_rate import native_rate_windows

    rec = next(r for r in load_shared_recordings() if r.dataset.startswith("ieee"))
    nw = native_rate_windows(rec, np.arange(0, 200, 5.0), 25)
    w25 = nw.x[nw.ok]
    a25 = measure_arena(int8_export("student-watch-25hz", w25, tmp_path / "s25.int8.tflite")[1])
    a_slim, a_k9 = measure_arena(slim_int8[1]), measure_arena(k9[1])
    assert a_slim.min_arena_bytes <= WATCH_ARENA < a_k9.min_arena_bytes
    for name, a in (("student-watch-slim", a_slim), ("student-watch-k9", a_k9), ("student-watch-25hz", a25)):
        est = budget(name).tflm_arena_estimate_bytes
        assert 0 <= est - a.min_arena_bytes <= 0.07 * a.min_arena_bytes, (name, est, a.min_arena_bytes)


def test_preactivation_bn_is_depthwise_and_grouped_convs_are_named(slim_int8):
    ops = op_requirements(slim_int8[1])
    blocks = sum(len(s.block_list) for s in slim_int8[0].stage_list)
    assert ops.counts["DEPTHWISE_CONV_2D"] == blocks - 1  # every block but the first has a bn1
    assert ops.grouped_conv2d > 0 and "grouped CONV_2D" in ops.note and ops.min_runtime_version


def test_memory_aware_order_keeps_results_and_lowers_the_peak(slim_int8, ieee_windows, tmp_path):
    """Undo the schedule (a converter-like order that runs every identity path last, no offline
    plan), then schedule again: same embeddings, lower peak, and the offline plan is TFLM's head."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    _, path = slim_int8
    buf = path.read_bytes()
    sched_peak = activation_peak_bytes(buf)
    model = fu.read_model_from_bytearray(bytearray(buf))
    ops = model.subgraphs[0].operators
    # a valid order that defers PAD / MAX_POOL_2D (the identity paths) as long as possible
    codes = [fu.get_builtin_code_from_operator_code(oc) for oc in model.operatorCodes]
    from ai_edge_litert import schema_py_generated as s

    deferrable = {s.BuiltinOperator.PAD, s.BuiltinOperator.MAX_POOL_2D}
    produced = {int(t): k for k, op in enumerate(ops) for t in op.outputs}
    deps = [{produced[int(t)] for t in op.inputs if int(t) in produced} for op in ops]
    done: list[int] = []
    left = list(range(len(ops)))
    while left:
        ready = [k for k in left if deps[k] <= set(done)]
        eager = [k for k in ready if codes[ops[k].opcodeIndex] not in deferrable]
        k = (eager or ready)[0]
        done.append(k)
        left.remove(k)
    model.subgraphs[0].operators = [ops[k] for k in done]
    model.metadata = [m for m in model.metadata if m.name != b"OfflineMemoryAllocation"]  # as converted
    late = bytes(fu.convert_object_to_bytearray(model))
    assert activation_peak_bytes(late) > sched_peak
    again, rep = schedule_for_memory(late)
    assert rep.reordered and rep.peak_after_bytes == sched_peak < rep.peak_before_bytes
    a, b = tmp_path / "late.tflite", tmp_path / "again.tflite"
    a.write_bytes(late)
    b.write_bytes(again)
    x = ieee_windows[:4]
    za = open_encoder(a, runtime="tflm", allow_missing_contract=True).embed(x)
    zb = open_encoder(b, runtime="tflm", allow_missing_contract=True).embed(x)
    assert np.array_equal(za, zb)
    # with the offline plan TFLM's head is the plan, not the online planner's fragmented one
    assert measure_arena(b).head_bytes == rep.planned_head_bytes < measure_arena(a).head_bytes


def test_runtime_choice_is_checked(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"x")
    with pytest.raises(UsageError, match="onnxruntime"):
        open_encoder(p, runtime="tflm")


def test_harness_replay_runs_the_artifact_in_tflm(slim_int8, tmp_path):
    import json

    from anyppg_edge.cli.harness import main

    out = tmp_path / "replay"
    rc = main(["replay", "--artifact", str(slim_int8[1]), "--runtime", "tflm", "--recording", "sim:2", "--duration-s", "40",
               "--odr-hz", "25", "--faults", "--no-float", "--no-hr", "--no-plot", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "replay.json").read_text())["summary"]
    assert s["encoder"].startswith("TflmEncoder(") and s["n_ok"] > 0 and s["all_affected_flagged"]


def test_arena_levers_command_writes_the_table(tmp_path, capsys):
    """``python -m export arena``: one export per lever, each measured; no lever adds memory."""
    import json

    from anyppg_edge.cli.export import main

    assert main(["arena", "tiny", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "arena_levers.json").read_text())
    assert [r["lever"] for r in rows][-1].startswith("+ offline arena plan") and len(rows) == 4
    arenas = [r["arena B"] for r in rows]
    assert all(b <= a for a, b in itertools.pairwise(arenas)) and rows[0]["grouped CONV_2D"] > rows[1]["grouped CONV_2D"]
    assert "| tiny |" in (tmp_path / "arena_levers.md").read_text() and "TFLite Micro arena" in capsys.readouterr().out
