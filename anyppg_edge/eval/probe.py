"""Linear-probe protocol on frozen features, with heart rate (HR) as the first downstream task.

**Protocol** (:func:`linear_probe`). Features of every window are frozen; a linear model (ridge
regression, or L2 logistic regression for classification) on standardised features is fitted and
scored by nested cross-validation grouped by subject:

* outer loop: :class:`~sklearn.model_selection.GroupKFold` over subjects; each window is predicted
  exactly once, by the model of the fold that holds its subject out (every prediction is
  out-of-fold, and no subject is ever in both the training and the test part of a fold);
* inner loop (training subjects only): ``GridSearchCV`` over ``alphas`` with ``GroupKFold`` over the
  training subjects picks the regularisation (ridge ``alpha``; logistic ``C = 1 / alpha``), then
  refits on all training subjects. The scaler lives inside the pipeline, so it is fitted on training
  folds only.

Metrics are computed on the pooled out-of-fold predictions: MAE, RMSE and Pearson r (regression);
accuracy and AUROC (classification, one-vs-rest macro AUROC for more than two classes).

**Heart-rate reference**: :mod:`anyppg_edge.eval.heart_rate` (the one reference-HR policy: the
dataset's HR trace where a recording has one, else the window's ECG R peaks);
:func:`~anyppg_edge.eval.heart_rate.window_reference_hr_bpm` (in :mod:`anyppg_edge.eval.heart_rate`).

**Baselines** (:func:`spectral_hr_baselines`): the spectral-peak HR of the PPG window (no learning)
and a ridge probe on the PPG log power spectrum, both against the same reference HR.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ALPHAS",
    "ProbeResult",
    "linear_probe",
    "regression_metrics",
    "spectral_hr_baselines",
]

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 8))  # 0.01 ... 1e5


# ----------------------------------------------------------------------------- the probe


@dataclass
class ProbeResult:
    """Out-of-fold predictions and metrics of :func:`linear_probe`."""

    task: str
    predictions: np.ndarray  # [n] out-of-fold prediction (regression: value; classification: label)
    fold: np.ndarray  # [n] outer fold whose test part holds the window
    metrics: dict[str, float]
    n_subjects: int
    n_folds: int
    n_inner_folds: int
    chosen_alpha: list[float] = field(default_factory=list)  # per outer fold (logistic: C = 1 / alpha)
    scores: np.ndarray | None = None  # classification: out-of-fold class probabilities [n, n_classes]
    classes: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            **self.metrics,
            "n_subjects": self.n_subjects,
            "n_folds": self.n_folds,
            "n_inner_folds": self.n_inner_folds,
            "chosen_alpha": list(self.chosen_alpha),
        }


def regression_metrics(pred: Any, target: Any) -> dict[str, float]:
    """MAE, RMSE, Pearson r (NaN when either side is constant) and n."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    t = np.asarray(target, dtype=np.float64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"pred and target differ in length: {p.size} vs {t.size}")
    err = p - t
    r = float(np.corrcoef(p, t)[0, 1]) if p.size > 1 and np.std(p) > 0 and np.std(t) > 0 else float("nan")
    return {
        "MAE": float(np.mean(np.abs(err))),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "pearson_r": r,
        "n": int(p.size),
    }


def _classification_metrics(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    pred = classes[np.argmax(proba, axis=1)]
    out: dict[str, float] = {"accuracy": float(np.mean(pred == labels)), "n": int(labels.size)}
    try:
        if classes.size == 2:
            out["AUROC"] = float(roc_auc_score(labels == classes[1], proba[:, 1]))
        else:
            out["AUROC"] = float(roc_auc_score(labels, proba, multi_class="ovr", labels=classes))
    except ValueError:  # e.g. a class missing from the pooled labels
        out["AUROC"] = float("nan")
    return out


def _check_inputs(
    features: Any, targets: Any, groups: Any, task: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty 2-D array [n_windows, dim], got shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(
            f"features contain NaN or Inf in {bad.size} of {x.shape[0]} rows (first: {bad[:5].tolist()}); "
            "drop those windows before probing"
        )
    y = np.asarray(targets)
    g = np.asarray(groups).astype(str)
    if y.ndim != 1 or y.shape[0] != x.shape[0] or g.shape != (x.shape[0],):
        raise ValueError(
            f"features ({x.shape[0]} rows), targets (shape {y.shape}) and groups (shape {g.shape}) must "
            "have one entry per window"
        )
    if task == "regression":
        y = y.astype(np.float64)
        nan = np.flatnonzero(~np.isfinite(y))
        if nan.size:
            raise ValueError(
                f"targets contain NaN or Inf in {nan.size} rows (first: {nan[:5].tolist()}); drop them first"
            )
    elif np.unique(y).size < 2:
        raise ValueError(f"classification needs at least 2 classes, got {np.unique(y).tolist()}")
    return x, y, g


def _n_folds(requested: int, n_subjects: int, what: str) -> int:
    if int(requested) < 2:
        raise ValueError(f"{what} must be >= 2, got {requested}")
    if n_subjects < int(requested):
        warnings.warn(
            f"{what}={requested} but only {n_subjects} subjects: using {n_subjects} folds",
            stacklevel=3,
        )
        return n_subjects
    return int(requested)


def linear_probe(
    features: Any,
    targets: Any,
    groups: Any,
    task: str = "regression",
    outer_folds: int = 5,
    inner_folds: int = 3,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> ProbeResult:
    """Nested, subject-grouped cross-validated linear probe on frozen ``features`` ``[n, dim]``.

    ``targets``: ``[n]`` values (regression) or labels (classification); ``groups``: ``[n]`` subject
    ids. Ridge regression (``task="regression"``) or L2 logistic regression (``"classification"``,
    ``C = 1 / alpha``) after a ``StandardScaler``, ``alpha`` chosen per outer fold by an inner
    ``GroupKFold`` over the training subjects (regression: lowest MAE; classification: accuracy).
    Every prediction is out-of-fold. With fewer subjects than ``outer_folds`` the folds are reduced
    (down to 2) with a warning; fewer than 2 subjects is an error. A training part with fewer than
    2 subjects cannot be cross-validated by subject: the middle of ``alphas`` is used, with a
    warning."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, g = _check_inputs(features, targets, groups, task)
    alphas = [float(a) for a in alphas]
    if not alphas or any(not np.isfinite(a) or a <= 0 for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of finite values > 0, got {alphas}")
    subjects = np.unique(g)
    if subjects.size < 2:
        raise ValueError(f"a subject-grouped probe needs at least 2 subjects, got {subjects.size}")
    n_outer = _n_folds(outer_folds, subjects.size, "outer_folds")
    if int(inner_folds) < 2:
        raise ValueError(f"inner_folds must be >= 2, got {inner_folds}")

    regression = task == "regression"
    classes = None if regression else np.unique(y)

    def make(alpha: float):
        if regression:
            return make_pipeline(StandardScaler(), Ridge(alpha=alpha))
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0 / alpha, max_iter=5000))

    param = "ridge__alpha" if regression else "logisticregression__C"
    grid = {param: alphas if regression else [1.0 / a for a in alphas]}
    scoring = "neg_mean_absolute_error" if regression else "accuracy"

    pred = np.empty(len(y), dtype=np.float64 if regression else y.dtype)
    proba = None if regression else np.zeros((len(y), classes.size))
    fold = np.full(len(y), -1, dtype=np.int64)
    chosen: list[float] = []
    inner_used = 0
    for k, (tr, te) in enumerate(GroupKFold(n_splits=n_outer).split(x, y, g)):
        n_tr_subj = np.unique(g[tr]).size
        single_class = not regression and np.unique(y[tr]).size < 2
        if single_class:
            raise ValueError(f"outer fold {k}: the training subjects hold a single class; use fewer folds")
        if n_tr_subj < 2:
            alpha = alphas[len(alphas) // 2]
            warnings.warn(
                f"outer fold {k}: 1 training subject, no inner CV possible; alpha={alpha:g}", stacklevel=2
            )
            model = make(alpha).fit(x[tr], y[tr])
        else:
            n_inner = min(int(inner_folds), n_tr_subj)
            inner_used = max(inner_used, n_inner)
            search = GridSearchCV(make(alphas[0]), grid, cv=GroupKFold(n_splits=n_inner), scoring=scoring)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)  # single-class inner test folds
                search.fit(x[tr], y[tr], groups=g[tr])
            best = search.best_params_[param]
            alpha = float(best) if regression else 1.0 / float(best)
            model = search.best_estimator_
        chosen.append(alpha)
        fold[te] = k
        if regression:
            pred[te] = model.predict(x[te])
        else:
            p = model.predict_proba(x[te])
            cols = np.searchsorted(classes, model.classes_)
            proba[np.ix_(te, cols)] = p
            pred[te] = classes[np.argmax(proba[te], axis=1)]
    if (fold < 0).any():  # GroupKFold covers every row; guard against a future change
        raise RuntimeError("some windows received no out-of-fold prediction")
    metrics = regression_metrics(pred, y) if regression else _classification_metrics(y, proba, classes)
    return ProbeResult(
        task=task,
        predictions=pred,
        fold=fold,
        metrics=metrics,
        n_subjects=int(subjects.size),
        n_folds=n_outer,
        n_inner_folds=inner_used,
        chosen_alpha=chosen,
        scores=proba,
        classes=classes,
    )


# ----------------------------------------------------------------------------- HR baselines


def spectral_hr_baselines(
    ppg_windows: Any,
    hr_ref: Any,
    groups: Any,
    sample_rate_hz: float = 125.0,
    peak_band_hz: tuple[float, float] = (0.7, 3.5),
    outer_folds: int = 5,
    inner_folds: int = 3,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
) -> dict[str, Any]:
    """Two hand-crafted HR baselines against ``hr_ref`` (bpm, one per PPG window):

    * ``spectral_peak``: :func:`~anyppg_edge.eval.baselines.spectral_peak_hr_bpm` of each PPG window
      in ``peak_band_hz`` (default 0.7-3.5 Hz, 42-210 bpm), no learning;
    * ``ridge_log_spectrum``: :func:`linear_probe` (ridge, subject-grouped nested CV) on the PPG log
      power spectrum of :func:`~anyppg_edge.eval.baselines.log_spectrum` (0.5-4 Hz).

    Windows whose reference is NaN are left out of both (their count is ``n_dropped_no_reference``).
    Returns ``{"spectral_peak": metrics, "ridge_log_spectrum": probe summary, "n_windows": ...,
    "n_dropped_no_reference": ..., "spectral_peak_hr_bpm": per-window estimates [n_kept],
    "ridge_hr_bpm": per-window out-of-fold predictions [n_kept], "hr_ref_bpm": [n_kept]}``."""
    from anyppg_edge.eval.baselines import log_spectrum, spectral_peak_hr_bpm

    ppg = np.asarray(ppg_windows, dtype=np.float64)
    if ppg.ndim == 3 and ppg.shape[1] == 1:
        ppg = ppg[:, 0]
    ref = np.asarray(hr_ref, dtype=np.float64).ravel()
    g = np.asarray(groups).astype(str)
    if ppg.ndim != 2 or ppg.shape[0] != ref.size or g.shape != ref.shape:
        raise ValueError(
            f"ppg_windows (shape {ppg.shape}), hr_ref ({ref.size}) and groups ({g.size}) must have one "
            "entry per window"
        )
    keep = np.isfinite(ref)
    if not keep.any():
        raise ValueError("hr_ref is NaN for every window")
    ppg, ref, g = ppg[keep], ref[keep], g[keep]
    peak_hr = np.asarray(spectral_peak_hr_bpm(ppg, fs=sample_rate_hz, band_hz=peak_band_hz), dtype=np.float64)
    _, spec = log_spectrum(ppg, fs=sample_rate_hz)
    probe = linear_probe(spec, ref, g, "regression", outer_folds, inner_folds, alphas)
    return {
        "spectral_peak": regression_metrics(peak_hr, ref),
        "ridge_log_spectrum": probe.summary(),
        "n_windows": int(keep.sum()),
        "n_subjects": int(np.unique(g).size),
        "n_dropped_no_reference": int((~keep).sum()),
        "spectral_peak_hr_bpm": peak_hr,
        "ridge_hr_bpm": probe.predictions,
        "hr_ref_bpm": ref,
    }
