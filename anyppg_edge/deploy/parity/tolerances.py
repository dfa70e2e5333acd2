"""The one tolerance table of the toolkit, and the metrics its rows bound.

``TOLERANCES`` is the single named table every parity bar reads: the parity suite
(:mod:`anyppg_edge.deploy.parity.suite`, ``python -m export parity``), the export report, the
streaming harness (:data:`anyppg_edge.stream.replay.BARS` is a view of its ``stream-*`` rows) and the
tests. No other module writes a tolerance number (``tests/test_tolerances.py`` checks it).

A row's keys are ``<metric>_<min|max>``: the row passes when ``metric >= bound`` (``min``) or
``metric <= bound`` (``max``) for every key (:func:`row_failures`). The metrics are those of
:func:`embedding_parity` for the artifact rows, :func:`sqnr_db` of the weights for the
``*-weights-vs-source`` rows, and, for the ``stream-*-vs-offline`` rows, the per-mode metrics of
:func:`anyppg_edge.stream.harness.parity_report` (``max_abs``: streamed vs offline *preprocessed
window*; ``cos_min``: the float model's embeddings of the two windows).

``TOLERANCE_FOR_KIND`` says which row applies to which artifact kind, and :func:`tolerance_row`
switches float artifacts to the ``gpu-vs-cpu-float`` row when the reference (golden set) was computed
on a GPU.
"""

from __future__ import annotations

import numpy as np

# What each row compares (the numbers are the issues' bars; none was loosened when the table became
# the only one):
#
# * float-vs-float: a float artifact (ONNX / TFLite / PyTorch checkpoint) vs the float model's golden
#   embeddings, same host class: must reproduce the float model.
# * int8-vs-float: an int8 artifact (ONNX QDQ / TFLite / brevitas) vs the float golden embeddings:
#   must keep its geometry (cosine over real windows).
# * gpu-vs-cpu-float: the same float32 model on two devices (TF32 off, deterministic algorithms)
#   differs by accumulation order only, so the bound is relative to the embedding scale.
# * streaming-vs-offline: artifact kind ``streaming`` of the parity suite: a ``.npy`` of embeddings
#   of the golden windows written by the streaming path with the deployed (typically int8) encoder,
#   vs the float golden embeddings. Provisional int8-like geometry bound, until the streaming
#   harness's own error budget is measured on that path.
# * stream-reference-vs-offline: the streaming preprocessor in ``reference`` mode (float64, the
#   offline chain itself) vs the offline window of the same sensor samples: measured bit-identical
#   (max abs 0); bound 1e-5 on the window, and the float model's embedding cosine of the two
#   windows >= 0.9999. Also the bound of the clean (fault-free) windows of the fault replays.
# * stream-device-vs-offline: the same in ``device`` mode (the chain as a float32 device computes
#   it): max abs 1e-3 on the window (measured 5e-6 ... 1.4e-4), float-model cosine >= 0.9999.
# * ``causal`` mode (stateful low-latency filter, a different filter by design) has no row: its
#   correlation and lag against the offline windows are reported, not bounded.
# * float-weights-vs-source / int8-weights-vs-source: per-layer weights of an artifact vs its
#   source's BN-folded weights (parity --check-weights and localisation): intact float artifacts are
#   bit-exact or > 140 dB; per-channel int8 weights 35-53 dB on the intact exports (QAT moves them a
#   little).
# * train-gpu-vs-cpu-fp32: the GPU check's first CLIP training steps (``anyppg-edge gpu-check``,
#   section ``train_match``): the trainer on CUDA in float32 (TF32 off, deterministic algorithms,
#   dropout off) vs the same trainer on the CPU, same seed, same shards, relative difference of each
#   step's loss. Step 1 sees the same weights, so only accumulation order differs (bf16 left on by
#   mistake gives ~1e-3); later steps add AdamW's sign-like first updates of near-zero gradients.
#   Provisional: set before any GPU was lent; CPU vs CPU is bit-identical (0).
# * int8-tflm-vs-litert-ref: the same int8 TFLite in TensorFlow Lite Micro (host build, reference
#   kernels) and in LiteRT with its reference kernels (BUILTIN_REF): both are integer arithmetic with
#   the same rounding rules, so parity means bit-identical embeddings (max abs 0). LiteRT's optimised
#   builtin kernels and XNNPACK round differently and are reported beside it, not bounded by it.
# * int8-c-vs-tflm: the C encoder generated from an int8 TFLite (``python -m export c``) vs TFLM on the
#   same windows, and the same C on an emulated Cortex-M vs on the host: integer arithmetic with
#   TFLM's rules, so bit-identical (max abs 0).
# * stream-c-vs-device: the generated C99 streaming preprocessor (the firmware bundle, issue 19) vs the
#   Python streamer's float32 ``device`` path on the same bursts: the window (z-scored units) within
#   1e-4, and its int8 model input identical in >= 99.9 % of samples, never more than 1 step apart
#   (issue 19's bars; flags and window indices must be identical, not toleranced).
TOLERANCES: dict[str, dict[str, float]] = {
    "int8-tflm-vs-litert-ref": {"max_abs_max": 0.0},
    "int8-c-vs-tflm": {"max_abs_max": 0.0},
    "stream-c-vs-device": {"max_abs_max": 1e-4, "int8_same_frac_min": 0.999, "int8_max_step_max": 1.0},
    "float-vs-float": {"max_abs_max": 1e-4},
    "int8-vs-float": {"cos_mean_min": 0.99, "cos_p1_min": 0.97},
    "gpu-vs-cpu-float": {"rel_max_abs_max": 1e-4, "cos_min_min": 0.99999},
    "train-gpu-vs-cpu-fp32": {"first_loss_rel_err_max": 1e-4, "loss_rel_err_max": 1e-3},
    "streaming-vs-offline": {"cos_mean_min": 0.99, "cos_p1_min": 0.97},
    "stream-reference-vs-offline": {"max_abs_max": 1e-5, "cos_min_min": 0.9999},
    "stream-device-vs-offline": {"max_abs_max": 1e-3, "cos_min_min": 0.9999},
    "float-weights-vs-source": {"weight_sqnr_db_min": 60.0},
    "int8-weights-vs-source": {"weight_sqnr_db_min": 25.0},
}
TOLERANCE_FOR_KIND: dict[str, str] = {
    "pytorch-float": "float-vs-float",
    "golden-float": "float-vs-float",  # another golden set of the same model and windows (e.g. CPU vs GPU)
    "onnx-float": "float-vs-float",
    "tflite-float": "float-vs-float",
    "onnx-int8": "int8-vs-float",
    "tflite-int8": "int8-vs-float",
    "brevitas-int8": "int8-vs-float",
    "streaming": "streaming-vs-offline",
}
# Streaming preprocessor mode (anyppg_edge.stream.streamer.MODES) -> its row vs the offline windows.
STREAM_MODE_ROWS: dict[str, str] = {
    "reference": "stream-reference-vs-offline",
    "device": "stream-device-vs-offline",
}
# A float artifact measured against a golden set made on a GPU is held to this row instead.
GPU_REFERENCE_ROW = "gpu-vs-cpu-float"


def tolerance(row: str, key: str) -> float:
    """One bound of the table: ``TOLERANCES[row][key]`` with an error naming the known rows/keys."""
    if row not in TOLERANCES:
        raise KeyError(f"no tolerance row {row!r}; rows: {sorted(TOLERANCES)}")
    if key not in TOLERANCES[row]:
        raise KeyError(f"tolerance row {row!r} has no {key!r}; keys: {sorted(TOLERANCES[row])}")
    return TOLERANCES[row][key]


def row_failures(row: str, metrics: dict[str, float]) -> list[str]:
    """Which bounds of the :data:`TOLERANCES` row ``row`` ``metrics`` violates (empty: pass). A
    missing or NaN metric fails its bound."""
    fails = []
    for key, bound in TOLERANCES[row].items():
        metric, side = key.rsplit("_", 1)
        v = metrics[metric]
        if (side == "max" and not v <= bound) or (side == "min" and not v >= bound):
            fails.append(f"{metric} = {v:.6g} (tolerance: {side} {bound:g})")
    return fails


def tolerance_row(kind: str, reference_device: str = "cpu") -> str:
    """Name of the :data:`TOLERANCES` row for an artifact of ``kind`` compared with a reference
    computed on ``reference_device`` (``"cpu"`` or ``"cuda"``)."""
    if kind not in TOLERANCE_FOR_KIND:
        raise KeyError(f"no tolerance row for artifact kind {kind!r}; known kinds: {sorted(TOLERANCE_FOR_KIND)}")
    row = TOLERANCE_FOR_KIND[kind]
    if str(reference_device).startswith("cuda") and row == "float-vs-float":
        return GPU_REFERENCE_ROW
    return row


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-30)


def embedding_parity(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Max/mean abs error and cosine mean / 1st percentile / min over windows."""
    ref, tst = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"embedding shapes differ: reference {ref.shape}, test {tst.shape}")
    cos = cosine_rows(ref, tst)
    err = np.abs(ref - tst)
    return {
        "n_windows": len(ref),
        "max_abs": float(err.max()),
        "mean_abs": float(err.mean()),
        "ref_max_abs_value": float(np.abs(ref).max()),
        "rel_max_abs": float(err.max() / max(float(np.abs(ref).max()), 1e-30)),
        "cos_mean": float(cos.mean()),
        "cos_p1": float(np.percentile(cos, 1)),
        "cos_min": float(cos.min()),
    }


def weight_tolerance_row(kind: str) -> str:
    """Row of :data:`TOLERANCES` for the per-layer weights of an artifact of ``kind``."""
    return "int8-weights-vs-source" if "int8" in kind else "float-weights-vs-source"


def tolerance_failures(kind: str, metrics: dict[str, float], reference_device: str = "cpu") -> list[str]:
    """Which bounds of the :data:`TOLERANCES` row of ``kind`` (see :func:`tolerance_row`) ``metrics``
    violates (empty: pass)."""
    return row_failures(tolerance_row(kind, reference_device), metrics)


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum ref^2 / sum (ref - test)^2)`` in dB."""
    r = np.asarray(reference, np.float64).ravel()
    e = r - np.asarray(test, np.float64).ravel()
    noise = float((e * e).sum())
    sig = float((r * r).sum())
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(max(sig, 1e-300) / noise)
