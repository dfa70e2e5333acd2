"""The main job: every stage of the toolkit, end to end, on the embedded default data.

Stages so far: data (embedded simulator cohort + the real recordings of ``../shared`` when present)
→ reference preprocessing into paired 10 s windows with quality flags → Net1D encoding → report
(markdown + JSON + plot). Each later capability (pretraining, distillation, QAT/export, harness,
benchmarks, parity) joins here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyppg_edge.paths import shared_available, shared_dir
from anyppg_edge.report import atomic_write_text, markdown_table, write_json

log = logging.getLogger("anyppg_edge.demo")


@dataclass
class DemoConfig:
    out_dir: Path = Path("runs/demo")
    model: str = "anyppg-released"
    use_shared: bool = True  # add the real recordings of ../shared when present
    sim_subjects: int = 8
    sim_duration_s: float = 120.0
    hop_s: float = 10.0
    seed: int = 0
    batch_size: int = 64
    plot: bool = True


def load_demo_recordings(cfg: DemoConfig) -> list:
    from anyppg_edge.data import load_shared_recordings, simulate_cohort

    recs = simulate_cohort(cfg.sim_subjects, duration_s=cfg.sim_duration_s, seed=cfg.seed)
    if cfg.use_shared and shared_available():
        recs += load_shared_recordings(shared_dir() / "data")
    elif cfg.use_shared:
        log.warning("no shared data at %s: using the embedded simulator only", shared_dir())
    return recs


def golden_checkpoint(model_name: str) -> Path | None:
    """The reference state_dict of ``../shared`` for a registered teacher config, when present."""
    p = shared_dir() / "reference" / f"net1d_{model_name.replace('-', '_')}.state_dict.pt"
    return p if p.is_file() else None


def dataset_table(ws, recordings) -> list[dict[str, Any]]:
    rows = []
    for ds in sorted({r.dataset for r in recordings}):
        recs = [r for r in recordings if r.dataset == ds]
        kept = int((ws.dataset == ds).sum())
        rows.append(
            {
                "dataset": ds,
                "subjects": len({r.subject_id for r in recs}),
                "recorded h": round(sum(r.duration_s for r in recs) / 3600, 3),
                "windows kept": kept,
            }
        )
    return rows


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run the whole chain as far as it exists; write ``report.md``, ``summary.json`` and plots."""
    import torch

    from anyppg_edge.models import create_model, list_models, model_stats
    from anyppg_edge.models.encode import encode_windows
    from anyppg_edge.preprocessing import PreprocessConfig
    from anyppg_edge.windows import WindowSet, extract_windows

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float] = {}
    pcfg = PreprocessConfig()

    t = time.perf_counter()
    recordings = load_demo_recordings(cfg)
    timings["load data s"] = time.perf_counter() - t
    log.info("loaded %d recordings", len(recordings))

    t = time.perf_counter()
    from tqdm.auto import tqdm

    parts = [extract_windows(r, pcfg, hop_s=cfg.hop_s) for r in tqdm(recordings, desc="preprocess", unit="rec")]
    ws = WindowSet.concat(parts)
    timings["preprocess s"] = time.perf_counter() - t
    rejected = Counter(ws.rejected)
    log.info("%d windows kept, rejected: %s", len(ws), dict(rejected))
    np.savez_compressed(
        out / "windows.npz", ppg=ws.ppg, ecg=ws.ecg, subject_id=ws.subject_id, dataset=ws.dataset, start_s=ws.start_s
    )

    t = time.perf_counter()
    ckpt = golden_checkpoint(cfg.model)
    model = create_model(cfg.model, checkpoint=ckpt)
    emb = encode_windows(model, ws.ppg, pcfg.window_samples, batch_size=cfg.batch_size)
    timings["encode s"] = time.perf_counter() - t
    np.save(out / "embeddings.npy", emb)

    stats_rows = [model_stats(create_model(n), pcfg.window_samples).as_row() for n in list_models()]
    ds_rows = dataset_table(ws, recordings)
    summary = {
        "config": {k: str(v) for k, v in asdict(cfg).items()},
        "preprocess_config": pcfg.to_dict(),
        "preprocess_config_hash": pcfg.config_hash(),
        "model": cfg.model,
        "weights": str(ckpt) if ckpt else "random init (seeded)",
        "n_recordings": len(recordings),
        "n_windows": len(ws),
        "rejected": dict(rejected),
        "embedding_shape": list(emb.shape),
        "embedding_norm_mean": float(np.linalg.norm(emb, axis=1).mean()) if len(emb) else None,
        "datasets": ds_rows,
        "model_stats": stats_rows,
        "timings_s": timings,
    }
    write_json(out / "summary.json", summary)
    plot_path = None
    if cfg.plot:
        plot_path = plot_demo(ws, emb, recordings, out / "demo.png")
    atomic_write_text(out / "report.md", render_report(summary, plot_path))
    return summary


def render_report(summary: dict[str, Any], plot_path: Path | None) -> str:
    lines = [
        "# anyppg-edge main job report",
        "",
        f"Model `{summary['model']}` ({summary['weights']}); preprocessing config hash "
        f"`{summary['preprocess_config_hash'][:12]}`.",
        "",
        "## Data",
        "",
        markdown_table(summary["datasets"]),
        f"Rejected windows by reason: {summary['rejected'] or 'none'}",
        "",
        "## Model budgets (per 10 s window at 125 Hz)",
        "",
        markdown_table(summary["model_stats"]),
        "## Encoding",
        "",
        f"{summary['n_windows']} windows → embeddings {summary['embedding_shape']}.",
        "",
        "## Timings (this machine)",
        "",
        markdown_table([{k: round(v, 2) for k, v in summary["timings_s"].items()}]),
    ]
    if plot_path:
        lines += ["", f"![demo]({plot_path.name})", ""]
    return "\n".join(lines)


def plot_demo(ws, emb: np.ndarray, recordings, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional ([plot] extra)
        log.warning("matplotlib not installed: no plot")
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    t = np.arange(ws.ppg.shape[1]) / 125.0
    if len(ws):
        i = len(ws) - 1
        axes[0].plot(t, ws.ecg[i] + 4, lw=0.8, label="ECG (preprocessed)")
        axes[0].plot(t, ws.ppg[i], lw=0.8, label="PPG (preprocessed)")
        axes[0].set_title(f"{ws.subject_id[i]} @ {ws.start_s[i]:.0f} s")
        axes[0].set_xlabel("time [s]")
        axes[0].legend(loc="upper right", fontsize=8)
    if len(emb) >= 3:
        z = emb - emb.mean(0)
        vt = np.linalg.svd(z, full_matrices=False)[2]
        pc = z @ vt[:2].T
        for ds in sorted(set(ws.dataset)):
            m = ws.dataset == ds
            axes[1].scatter(pc[m, 0], pc[m, 1], s=8, label=ds)
        axes[1].set_title("PPG embeddings, first two principal components")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
