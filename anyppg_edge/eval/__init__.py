"""Evaluation: the AnyPPG paper's PPG<->ECG retrieval metrics and hand-crafted baselines.

Names are imported lazily so that ``python -m anyppg_edge.eval.baselines`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "pooled_retrieval": "retrieval",
    "retrieval_metrics": "retrieval",
    "retrieval_ranks": "retrieval",
    "metrics_from_ranks": "retrieval",
    "spectral_features": "baselines",
    "spectral_peak_hr_bpm": "baselines",
    "log_spectrum": "baselines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"anyppg_edge.eval.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'anyppg_edge.eval' has no attribute {name!r}")
