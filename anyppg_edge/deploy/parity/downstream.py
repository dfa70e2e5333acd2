"""Downstream parity: does an artifact keep what the float model is *for*? (:func:`downstream_parity`)

The HR linear probe (ridge, subject-grouped nested CV, reference HR from the ECG: the IEEE SPC
``BPM0`` trace where a recording has one, the window's ECG R peaks otherwise) and retrieval R@1,
computed with the float model and with each artifact on the same ``../shared`` windows, side by side.

Retrieval (:func:`_retrieval_side`): PPG→ECG when the source checkpoint brings an ECG tower (a CLIP
pretraining checkpoint: its ``ppg_proj`` on the encoder's output as query, its ECG embeddings as
gallery; a distillation checkpoint with a CLIP head: the student's ``clip_head`` as query, its CLIP
teacher's ECG embeddings as gallery; the heads run in float PyTorch on the artifact's embeddings, only
the encoder is deployed). For a PPG-only encoder (e.g. the released weights, no ECG tower):
**PPG→PPG-of-the-float-model** retrieval: query = the artifact's embedding of a window, gallery = the
float model's embeddings of the windows of the pool; the float model scores R@1 = 1 by construction,
the artifact's R@1 is the share of windows whose own float embedding is the nearest in a pool of
``pool_size``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DOWNSTREAM_COLUMNS", "downstream_parity"]

DOWNSTREAM_COLUMNS = ["model", "HR MAE bpm", "ΔMAE bpm", "HR r", "R@1", "ΔR@1", "R@5"]


def _retrieval_side(checkpoint: str | Path | None) -> tuple[Any, Any, str]:
    """(query head: features -> embeddings, ECG embedder: ecg windows -> embeddings, description) from
    the source checkpoint; (None, None, why) for a PPG-only encoder."""
    import torch
    import torch.nn.functional as F

    if checkpoint is None:
        return None, None, "no source checkpoint given"
    path = Path(checkpoint)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    extra = (raw.get("extra_config") or {}) if isinstance(raw, dict) else {}

    def ecg_fn(clip):
        def run(ecg: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return np.concatenate([
                    clip.encode_ecg(torch.from_numpy(np.ascontiguousarray(ecg[i : i + 64, None]))).numpy()
                    for i in range(0, len(ecg), 64)
                ])
        return run

    if "clip" in extra:
        from anyppg_edge.train.distill import load_teacher

        t = load_teacher(path)

        def q(feat: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return F.normalize(t.clip.ppg_proj(torch.from_numpy(feat)), dim=-1).numpy()

        return q, ecg_fn(t.clip), f"PPG→ECG: CLIP checkpoint {path.name} (ppg_proj on the encoder output; its ECG tower)"
    if "distill" in extra:
        from anyppg_edge.contract import sha256_file
        from anyppg_edge.paths import REPO_ROOT
        from anyppg_edge.train.distill import load_student, load_teacher

        student = load_student(path)
        tinfo = extra.get("teacher") or {}
        src = tinfo.get("source")
        cands = [Path(src), REPO_ROOT / src] if src else []
        tpath = next((c for c in cands if c.is_file()), None)
        if student.clip_head is None or tpath is None or tinfo.get("kind") != "clip":
            return None, None, f"distillation checkpoint without a reachable CLIP teacher ({src})"
        if tinfo.get("sha256") and sha256_file(tpath) != tinfo["sha256"]:
            return None, None, f"CLIP teacher {tpath} does not match the sha256 the student recorded"
        t = load_teacher(tpath)

        def q(feat: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return F.normalize(student.clip_head(torch.from_numpy(feat)), dim=-1).numpy()

        return q, ecg_fn(t.clip), (
            f"PPG→ECG: student clip_head on the encoder output; gallery = ECG embeddings of its CLIP teacher {tpath}"
        )
    return None, None, "PPG-only encoder (no ECG tower in the checkpoint)"


def downstream_parity(
    artifacts: Mapping[str, str | Path],
    model: Any,
    checkpoint: str | Path | None = None,
    hop_s: float = 5.0,
    max_windows: int | None = None,
    pool_size: int = 64,
    seed: int = 0,
    threads: int = 1,
    cfg: Any = None,
) -> dict[str, Any]:
    """HR linear probe and retrieval R@1 of the float ``model`` and of each artifact, side by side, on
    every ``../shared`` recording (windows every ``hop_s`` s; ``max_windows`` drawn at random when
    given). See the module docstring for the HR reference and the retrieval protocol. ``cfg``: the
    artifacts' contract (default the official chain); the PPG windows are the ones a model of that
    contract reads (:func:`~anyppg_edge.deploy.model_windows.model_windows`: a native-rate contract's
    sampled like its sensor), the ECG (HR reference, ECG tower) stays at the reference 125 Hz."""
    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.native_rate import reference_config
    from anyppg_edge.data.windows import WindowSet
    from anyppg_edge.deploy.model_windows import model_windows
    from anyppg_edge.deploy.runtime import open_encoder
    from anyppg_edge.eval.heart_rate import window_reference_hr_bpm
    from anyppg_edge.eval.probe import linear_probe
    from anyppg_edge.eval.retrieval import pooled_retrieval
    from anyppg_edge.paths import shared_dir
    from anyppg_edge.preprocessing import DEFAULT_CONFIG

    cfg = cfg or DEFAULT_CONFIG
    t0 = time.time()
    recs = load_shared_recordings(shared_dir() / "data")
    ws = WindowSet.concat([model_windows(r, cfg, hop_s=hop_s) for r in recs])
    if max_windows is not None and len(ws) > max_windows:
        idx = np.sort(np.random.default_rng(seed).choice(len(ws), max_windows, replace=False))
        ws = WindowSet(ws.ppg[idx], ws.ecg[idx], ws.subject_id[idx], ws.dataset[idx], ws.start_s[idx])
    hr, hr_source = window_reference_hr_bpm(ws, recs, window_s=cfg.window_s,
                                            sample_rate_hz=reference_config(cfg).target_sample_rate_hz)
    keep = np.isfinite(hr)
    groups = np.asarray(ws.subject_id).astype(str)
    query_head, ecg_embed, retrieval_desc = _retrieval_side(checkpoint)
    ecg_gallery = ecg_embed(ws.ecg.astype(np.float32)) if ecg_embed is not None else None

    feats = {"float (PyTorch)": open_encoder(model, cfg, threads=threads).embed(ws.ppg)}
    for label, p in artifacts.items():
        feats[label] = open_encoder(p, cfg, threads=threads).embed(ws.ppg)
    float_feat = feats["float (PyTorch)"]
    n_pool = min(pool_size, len(ws))
    rows = []
    for label, f in feats.items():
        probe = linear_probe(f[keep], hr[keep], groups[keep]).metrics
        if query_head is not None:
            ret = pooled_retrieval(query_head(f), ecg_gallery, pool_size=n_pool, seed=seed)
        else:
            ret = pooled_retrieval(f, float_feat, pool_size=n_pool, seed=seed)
        rows.append({
            "model": label,
            "HR MAE bpm": probe["MAE"],
            "HR r": probe["pearson_r"],
            "R@1": ret["R@1"],
            "R@5": ret["R@5"],
        })
    base = rows[0]
    for r in rows:
        r["ΔMAE bpm"] = r["HR MAE bpm"] - base["HR MAE bpm"]
        r["ΔR@1"] = r["R@1"] - base["R@1"]
    subjects = np.unique(groups[keep])
    return {
        "rows": rows,
        "n_windows": len(ws),
        "n_hr_windows": int(keep.sum()),
        "n_subjects": int(subjects.size),
        "hr_reference": {k: int((hr_source[keep] == k).sum()) for k in ("trace", "ecg")},
        "hr_reference_note": "IEEE SPC BPM0 trace (ECG-derived) where a recording has one, else the window's ECG R peaks",
        "retrieval": retrieval_desc if query_head is not None else (
            f"PPG→PPG-of-the-float-model ({retrieval_desc}): query = the model's embedding, gallery = the float "
            "model's embeddings of the pool's windows; the float row is 1 by construction"
        ),
        "pool_size": n_pool,
        "chance_R@1": 1.0 / n_pool,
        "hop_s": hop_s,
        "seconds": round(time.time() - t0, 1),
    }
