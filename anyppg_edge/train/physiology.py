"""Does pretraining learn real physiology? CLIP PPG↔ECG on the real recordings of ``../shared``,
evaluated on held-out subjects against a hand-crafted spectral baseline.

Protocol (``python -m anyppg_edge physiology``):

* windows: every real recording (IEEE SPC 2015 ×8, BIDMC, NeuroKit), 10 s windows with a 2 s hop,
  the reference preprocessing, ECG polarity corrected, bad windows dropped;
* subject-wise K-fold cross-validation: each fold trains from scratch on the other subjects and
  evaluates on its held-out subjects only — no window of a test subject is ever seen in training,
  and no model selection uses them (the last step's weights are evaluated);
* metric: PPG→ECG retrieval in random pools of 64 windows of the held-out set (chance R@1 1/64):
  R@1/5/10, mAP@10, MRR — the same pools for the model and for the spectral baseline (Welch log
  power 0.5–4 Hz, mean-centred, cosine), which mostly identifies windows by heart rate, and for a
  heart-rate oracle (both sides coded by the ECG's R-peak heart rate,
  :func:`~anyppg_edge.eval.baselines.heart_rate_codes`): the ceiling of any method that knows only
  each window's mean heart rate. Beating the oracle needs the rhythm *within* the window.
* fit check: the same retrieval, model and baseline, on the *training* subjects' windows (2 s hop,
  pools of 64 drawn across them) with the fold's final weights — whether a model below the
  baseline on held-out subjects has at least beaten it on the subjects it trained on (a
  generalisation gap) or not even there (under-fitting: more steps or compute).

Levers measured in the README: joint augmentation of the training pairs
(:mod:`anyppg_edge.train.augment`), the second wrist PPG sensor of IEEE SPC 2015 (``second_ppg``),
the Net1D block dropout (``dropout_p``) and ``sim_subjects`` simulated subjects
(:func:`~anyppg_edge.data.simulate_cohort`: their own rhythm, HRV, AF, pulse transit time and wave
shapes) added to every fold's *training* set only — held-out and fit-check windows are always real.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.errors import ConfigError
from anyppg_edge.report import atomic_write_text, markdown_table, write_json
from anyppg_edge.train.configs import AugmentConfig, TrainConfig

log = logging.getLogger("anyppg_edge.physiology")
METRICS = ("R@1", "R@5", "R@10", "mAP@10", "MRR")


def _fold_train_config() -> TrainConfig:
    return TrainConfig(max_steps=600, batch_size=64, lr=1e-3, log_every_steps=50, tensorboard=False)


@dataclass
class PhysiologyConfig:
    """The benchmark's protocol, with the training (``train``, one run per fold: ``max_steps`` per
    fold, ``seed`` replaced by ``seed + fold``, evaluation and checkpoint at the last step) and
    augmentation (``augment``) nested as the configs they are. Recipes: ``anyppg_edge/recipes``."""

    out_dir: Path = Path("runs/physiology")
    model: str = "small-k15"
    kernel_size: int | None = None  # override the model's Net1D kernel size (a derived config "<model>-k<N>")
    dropout_p: float | None = None  # override the Net1D blocks' dropout (a derived config "<model>-do<p>")
    folds: int = 5
    run_folds: int | None = None  # evaluate only the first N folds (None: all) to fit a time budget
    only_folds: tuple[int, ...] | None = None  # evaluate exactly these fold indices (overrides run_folds)
    hop_s: float = 2.0
    train_hop_s: float = 1.0  # denser windows for training (more, overlapping pairs)
    pool_size: int = 64
    sim_subjects: int = 0  # simulator subjects added to every fold's training set
    second_ppg: bool = False  # training also pairs the ECG with a recording's 2nd PPG sensor (`ppg2`)
    progress: bool = False
    seed: int = 0  # subject folds, simulated subjects, pools; fold k trains with seed + k
    train: TrainConfig = field(default_factory=_fold_train_config)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _subject_folds(subjects: list[str], k: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    order = [subjects[i] for i in rng.permutation(len(subjects))]
    return [order[i::k] for i in range(k)]


def run_physiology(cfg: PhysiologyConfig) -> dict[str, Any]:
    import torch

    from anyppg_edge.data import load_shared_recordings, simulate_cohort
    from anyppg_edge.data.windows import WindowSet, extract_windows
    from anyppg_edge.eval.baselines import heart_rate_codes, spectral_features
    from anyppg_edge.eval.heart_rate import ecg_heart_rate_bpm
    from anyppg_edge.eval.retrieval import paired_pool_bootstrap, pooled_ranks, pooled_retrieval
    from anyppg_edge.models import derived_model_name
    from anyppg_edge.train import ClipConfig, PairedArrayDataset, train_clip
    from anyppg_edge.train.distill import load_teacher, teacher_targets

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    model = derived_model_name(cfg.model, cfg.kernel_size, cfg.dropout_p)
    recs = load_shared_recordings()
    eval_ws = {r.subject_id: extract_windows(r, hop_s=cfg.hop_s, ecg_quality=False) for r in recs}
    train_ws = {r.subject_id: extract_windows(r, hop_s=cfg.train_hop_s, ecg_quality=False) for r in recs}
    if cfg.second_ppg:  # a second wrist sensor 2 cm away: the same beats through another optical path
        for r in recs:
            if r.has("ppg2"):
                view = replace(r, channels={**r.channels, "ppg": r.channel("ppg2")})
                train_ws[r.subject_id] = WindowSet.concat(
                    [train_ws[r.subject_id], extract_windows(view, hop_s=cfg.train_hop_s, ecg_quality=False)]
                )
    sim = [
        extract_windows(r, hop_s=cfg.train_hop_s, ecg_quality=False)
        for r in simulate_cohort(cfg.sim_subjects, duration_s=300.0, seed=cfg.seed + 1)
    ] if cfg.sim_subjects else []
    subjects = sorted(eval_ws)
    folds = _subject_folds(subjects, cfg.folds, cfg.seed)
    rows, all_model, all_base, all_oracle = [], [], [], []
    ranks_model: list[np.ndarray] = []
    ranks_base: list[np.ndarray] = []
    if cfg.only_folds is not None:
        bad = [k for k in cfg.only_folds if not 0 <= k < len(folds)]
        if bad:
            raise ConfigError(f"fold indices {bad} out of range for {len(folds)} folds")
        chosen = sorted(set(cfg.only_folds))
    else:
        chosen = list(range(min(cfg.run_folds or len(folds), len(folds))))
    for k in chosen:
        test_subjects = folds[k]
        train = WindowSet.concat([train_ws[s] for s in subjects if s not in test_subjects] + sim)
        test = WindowSet.concat([eval_ws[s] for s in test_subjects])
        log.info("fold %d: test %s (%d windows), train %d windows", k, test_subjects, len(test), len(train))
        clip_cfg = ClipConfig(ppg_model=model, ecg_model=model)
        steps = cfg.train.max_steps
        train_cfg = replace(cfg.train, seed=cfg.seed + k, eval_every_steps=steps, checkpoint_every_steps=steps,
                            out_dir=str(out / f"fold{k}"), progress=cfg.progress)
        res = train_clip(PairedArrayDataset(train.ppg, train.ecg, groups=train.subject_id),
                         PairedArrayDataset(test.ppg, test.ecg),
                         clip_cfg, train_cfg, device=torch.device("cpu"),
                         augment=cfg.augment)
        m = pooled_retrieval(res["val_ppg_emb"], res["val_ecg_emb"], pool_size=cfg.pool_size, seed=cfg.seed)
        spec_ppg, spec_ecg = spectral_features(test.ppg, test.ecg)
        b = pooled_retrieval(spec_ppg, spec_ecg, pool_size=cfg.pool_size, seed=cfg.seed)
        ranks_model += pooled_ranks(res["val_ppg_emb"], res["val_ecg_emb"], pool_size=cfg.pool_size, seed=cfg.seed)
        ranks_base += pooled_ranks(spec_ppg, spec_ecg, pool_size=cfg.pool_size, seed=cfg.seed)
        hr_codes = heart_rate_codes(ecg_heart_rate_bpm(test.ecg))
        o = pooled_retrieval(hr_codes, hr_codes, pool_size=cfg.pool_size, seed=cfg.seed)
        fit = WindowSet.concat([eval_ws[s] for s in subjects if s not in test_subjects])
        fit_emb = teacher_targets(load_teacher(Path(train_cfg.out_dir) / "last.pt"), fit.ppg, fit.ecg)
        fm = pooled_retrieval(fit_emb["t_ppg"], fit_emb["t_ecg"], pool_size=cfg.pool_size, seed=cfg.seed)
        fb = pooled_retrieval(*spectral_features(fit.ppg, fit.ecg), pool_size=cfg.pool_size, seed=cfg.seed)
        all_model.append((m, m["n_queries"]))
        all_base.append((b, b["n_queries"]))
        all_oracle.append((o, o["n_queries"]))
        rows.append({"fold": k, "test subjects": ", ".join(s.split("/")[-1] for s in test_subjects),
                     "windows": len(test), "model R@1": m["R@1"], "baseline R@1": b["R@1"], "HR oracle R@1": o["R@1"],
                     "model MRR": m["MRR"], "baseline MRR": b["MRR"],
                     "train-subjects model R@1": fm["R@1"], "train-subjects baseline R@1": fb["R@1"],
                     "train samples/s": round(res["samples_per_s"], 1)})
        log.info("fold %d: model R@1 %.3f, baseline R@1 %.3f", k, m["R@1"], b["R@1"])

    def weighted(parts):
        n = sum(w for _, w in parts)
        return {key: sum(p[key] * w for p, w in parts) / n for key in METRICS} | {"n_queries": n}

    summary = {
        "config": {k: (v if isinstance(v, dict) else str(v)) for k, v in asdict(cfg).items()},
        "folds": rows,
        "model": weighted(all_model),
        "baseline": weighted(all_base),
        "hr_oracle": weighted(all_oracle),
        "chance_R@1": 1.0 / cfg.pool_size,
        # paired on the same pools; 95 % bootstrap interval over the pools of all folds run
        "model_minus_baseline": paired_pool_bootstrap(ranks_model, ranks_base, seed=cfg.seed),
        "wall_s": time.perf_counter() - t_start,
        "torch_threads": torch.get_num_threads(),
    }
    write_json(out / "summary.json", summary)
    labels = {"model": f"CLIP `{model}`", "baseline": "spectral baseline (Welch log power 0.5–4 Hz, cosine)",
              "hr_oracle": "heart-rate oracle (ECG R-peak HR on both sides; ceiling of HR-only matching)"}
    table = [{"method": label, **{key: round(summary[name][key], 3) for key in METRICS}}
             for name, label in labels.items()]
    atomic_write_text(out / "report.md", "\n".join([
        "# Pretraining on real data: PPG→ECG retrieval on held-out subjects",
        "",
        f"{cfg.folds}-fold subject-wise CV ({len(rows)} folds run), model `{model}` trained from scratch for "
        f"{cfg.train.max_steps} steps × batch {cfg.train.batch_size} per fold; pools of {cfg.pool_size} "
        f"(chance R@1 {1 / cfg.pool_size:.3f}); wall {summary['wall_s'] / 60:.1f} min.",
        "",
        markdown_table(table),
        f"Model − baseline, paired on the same {len(ranks_model)} pools (95 % bootstrap interval, pools "
        "resampled; p: fraction of resamples where the model is not better):",
        "",
        markdown_table([{"metric": key, "difference": round(d["diff"], 3),
                         "95 % interval": f"[{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]",
                         "p": round(d["p_a_not_better"], 4)}
                        for key, d in summary["model_minus_baseline"].items()]),
        markdown_table(rows),
    ]))
    return summary
