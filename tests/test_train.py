"""Training: CLIP model/loss, schedule, sampler, DDP equivalence (2 gloo ranks on CPU) and exact
kill-and-resume. Everything uses the 25.8k-parameter ``tiny`` Net1D and a few steps."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from anyppg_edge.errors import CheckpointError
from anyppg_edge.models import ModelSpec, get_model_spec, list_models, register_model
from anyppg_edge.train import (
    ClipConfig,
    ClipLoss,
    ClipModel,
    ClipTask,
    PairedArrayDataset,
    ShardedBatchSampler,
    TrainConfig,
    Trainer,
    WarmupCosine,
    atomic_torch_save,
    load_checkpoint,
    seed_everything,
    train_clip,
)
from anyppg_edge.train.augment import AugmentConfig

TOLERANCES = {
    # 2-rank DDP (gloo, all-gathered embeddings, BN statistics all-reduced) vs one process on the
    # concatenated batch, after one AdamW step, both in float64 (see _one_step).
    "ddp_loss_abs": 1e-5,
    "ddp_weights_max_abs": 1e-5,
    "ddp_grads_max_abs": 1e-5,
    # exact resume: bit-identical (torch.equal), no tolerance.
    "schedule_abs": 1e-12,
    "temperature_rel": 1e-6,
}

L = 1250  # samples per window (10 s at 125 Hz)

# Dropout masks come from each rank's own RNG stream, which cannot reproduce the single-process
# masks on the concatenated batch; the DDP-equivalence test therefore uses tiny without dropout
# (BatchNorm stays on, in training mode, synchronised across ranks).
if "tiny-nodrop" not in list_models():
    _tiny = get_model_spec("tiny").to_dict()
    _tiny["name"] = "tiny-nodrop"
    _tiny["net1d"]["use_do"] = False
    register_model(ModelSpec.from_dict(_tiny))


@pytest.fixture(scope="module")
def windows() -> tuple[np.ndarray, np.ndarray]:
    """21 paired simulated windows (3 subjects x 40 s, 5 s hop), preprocessed by the reference chain."""
    from anyppg_edge.data import simulate_cohort
    from anyppg_edge.data.windows import WindowSet, extract_windows

    recs = simulate_cohort(3, duration_s=40, seed=1)
    ws = WindowSet.concat([extract_windows(r, ecg_quality=False, hop_s=5) for r in recs])
    assert ws.ppg.shape == (21, L)
    return ws.ppg, ws.ecg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cfg(out_dir: Path, **kw) -> TrainConfig:
    base = dict(
        max_steps=1, warmup_steps=0, batch_size=4, eval_every_steps=0, checkpoint_every_steps=0,
        log_every_steps=1, out_dir=str(out_dir), progress=False, tensorboard=False, seed=3,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------------- loss, model


def test_projector_dims_and_temperature_init():
    model = ClipModel(ClipConfig("tiny", "tiny"))
    assert (model.ppg_proj.fc1.in_features, model.ppg_proj.fc1.out_features) == (64, 32)
    assert model.ppg_proj.fc2.out_features == 16 == model.embed_dim
    assert math.isclose(float(model.logit_scale.detach().exp()), 1 / 0.07, rel_tol=TOLERANCES["temperature_rel"])
    out = model(torch.randn(3, 1, L), torch.randn(3, 1, L))
    assert out["ppg"].shape == out["ecg"].shape == (3, 16)
    torch.testing.assert_close(out["ppg"].norm(dim=-1), torch.ones(3))
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert math.isclose(float(model.scale()), 100.0, rel_tol=1e-6)  # clamped at log(100)
    cfg = ClipConfig("tiny", "tiny", proj_hidden_dim=8, proj_out_dim=4, ecg_frozen=True)
    assert ClipConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_loss_aligned_lower_than_shuffled_and_symmetric():
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    scale = torch.tensor(1 / 0.07)
    loss = ClipLoss()
    aligned = loss(emb, emb.clone(), scale)["contrastive_loss"]
    shuffled = loss(emb, emb[torch.randperm(16, generator=g)], scale)["contrastive_loss"]
    assert aligned < shuffled
    other = torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=-1)
    torch.testing.assert_close(loss(emb, other, scale)["contrastive_loss"], loss(other, emb, scale)["contrastive_loss"])
    # explicit reference: mean of both directions' cross-entropy
    logits = scale * emb @ other.T
    ref = (torch.nn.functional.cross_entropy(logits, torch.arange(16))
           + torch.nn.functional.cross_entropy(logits.T, torch.arange(16))) / 2  # fmt: skip
    torch.testing.assert_close(loss(emb, other, scale)["contrastive_loss"], ref)


def test_frozen_ecg_encoder_gets_no_grads_and_stays_eval():
    model = ClipModel(ClipConfig("tiny", "tiny", ecg_frozen=True))
    model.train()
    assert model.ppg_encoder.training and not model.ecg_encoder.training
    assert all(not m.training for m in model.ecg_encoder.modules())
    before = {k: v.clone() for k, v in model.ecg_encoder.state_dict().items()}
    task = ClipTask(model)
    out = task({"ppg": torch.randn(4, 1, L), "ecg": torch.randn(4, 1, L)})
    out["contrastive_loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in model.ecg_encoder.parameters())
    assert model.ecg_proj.fc1.weight.grad is not None  # the projection head still trains
    assert model.ppg_encoder.first_conv.conv.weight.grad is not None
    for k, v in model.ecg_encoder.state_dict().items():  # BN running stats untouched
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------------------- schedule, sampler


def test_warmup_cosine_schedule():
    sched = WarmupCosine(warmup_steps=10, max_steps=50)
    vals = [sched(s) for s in range(51)]
    assert vals[0] == pytest.approx(0.1, abs=TOLERANCES["schedule_abs"])
    assert np.all(np.diff(vals[:10]) > 0)
    assert vals[9] == pytest.approx(1.0) and vals[10] == pytest.approx(1.0)
    assert np.all(np.diff(vals[10:]) < 0)
    assert vals[30] == pytest.approx(0.5, abs=TOLERANCES["schedule_abs"])
    assert vals[50] == pytest.approx(0.0, abs=TOLERANCES["schedule_abs"])
    assert TrainConfig(max_steps=200_000).resolved_warmup_steps == 40_000  # paper: 20 %
    # the optimizer sees it through LambdaLR
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-4)
    lrs = []
    sch = torch.optim.lr_scheduler.LambdaLR(opt, sched)
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert lrs[9] == pytest.approx(5e-4) and lrs[-1] < 5e-4 * 0.01


def test_sharded_sampler_deterministic_and_partitions_global_batch():
    single = ShardedBatchSampler(40, 8, seed=5)
    r0 = ShardedBatchSampler(40, 4, seed=5, rank=0, world_size=2)
    r1 = ShardedBatchSampler(40, 4, seed=5, rank=1, world_size=2)
    for epoch in (0, 1):
        for s in (single, r0, r1):
            s.set_position(epoch)
        for b, b0, b1 in zip(single, r0, r1, strict=True):
            assert b == b0 + b1
    single.set_position(0)
    e0 = list(single)
    single.set_position(1)
    assert list(single) != e0  # reshuffled per epoch
    single.set_position(0, 3)
    assert list(single) == e0[3:]  # mid-epoch start
    assert list(ShardedBatchSampler(40, 8, seed=5)) == e0  # depends only on (seed, epoch)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatchSampler(7, 4, world_size=2)


# ------------------------------------------------------------------------------- checkpoints


def test_truncated_checkpoint_raises_and_names_file(windows, tmp_path):
    ds = PairedArrayDataset(*windows)
    train_clip(ds, None, ClipConfig("tiny", "tiny"), _cfg(tmp_path, max_steps=2))
    last = tmp_path / "last.pt"
    data = last.read_bytes()
    assert load_checkpoint(last)["step"] == 2
    last.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt"):
        train_clip(ds, None, ClipConfig("tiny", "tiny"), _cfg(tmp_path, max_steps=4, resume=True))
    assert last.read_bytes() == data[: len(data) // 2]  # a failed resume writes nothing


def test_atomic_save_failure_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"a": torch.ones(3)}, path)
    good = path.read_bytes()

    def boom(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"a": torch.zeros(3)}, path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_train_writes_metrics_best_and_embeddings(windows, tmp_path):
    ds = PairedArrayDataset(*windows)
    val = PairedArrayDataset(windows[0][:6], windows[1][:6])
    res = train_clip(
        ds, val, ClipConfig("tiny", "tiny"), _cfg(tmp_path, max_steps=4, eval_every_steps=2, log_every_steps=2)
    )
    assert res["step"] == 4 and math.isfinite(res["val_loss"]) and res["best_checkpoint"]
    assert res["val_ppg_emb"].shape == res["val_ecg_emb"].shape == (6, 16)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",")[:6] == ["step", "epoch", "lr", "loss", "val_loss", "samples_per_s"]
    assert [ln.split(",")[0] for ln in lines[1:]] == ["2", "4"]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["best_val_loss"] == pytest.approx(res["best_val_loss"])
    # the saved model section loads strictly into a fresh ClipModel, and its PPG tower into Net1D
    fresh = ClipModel(ClipConfig("tiny", "tiny"))
    fresh.load_state_dict(best["model"], strict=True)


# ------------------------------------------------------------------------- kill and resume


def _resume_worker(out_dir: str, ppg: np.ndarray, ecg: np.ndarray, resume: bool, kill_at: int | None) -> None:
    torch.set_num_threads(1)
    cfg = _cfg(
        Path(out_dir), max_steps=7, warmup_steps=2, batch_size=4, eval_every_steps=2,
        checkpoint_every_steps=3, log_every_steps=1, resume=resume,
    )  # fmt: skip
    ds = PairedArrayDataset(ppg, ecg)  # 21 windows -> 5 batches of 4 per epoch: step 7 is in epoch 1
    val = PairedArrayDataset(ppg[:5], ecg[:5])

    def after_checkpoint(step: int, path) -> None:
        if kill_at is not None and step == kill_at:
            os._exit(17)  # hard kill: no cleanup, no further writes

    # with the joint augmentation on: its random crops/noise come from the checkpointed torch RNG
    res = train_clip(ds, val, ClipConfig("tiny", "tiny"), cfg, embed_val=False, after_checkpoint=after_checkpoint,
                     augment=AugmentConfig(crop_scale_min=0.7, noise_std=0.05))
    Path(out_dir, "result.json").write_text(json.dumps({"resumed_from": res["resumed_from"], "step": res["step"]}))


def _run_process(*args) -> int:
    ctx = torch.multiprocessing.get_context("spawn")
    p = ctx.Process(target=_resume_worker, args=args)
    p.start()
    p.join(timeout=120)
    assert not p.is_alive(), "worker hung"
    return p.exitcode


def test_kill_and_resume_is_bit_identical(windows, tmp_path):
    ppg, ecg = windows
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert _run_process(str(full), ppg, ecg, False, None) == 0
    assert _run_process(str(killed), ppg, ecg, False, 3) == 17  # killed right after last.pt at step 3
    assert load_checkpoint(killed / "last.pt")["step"] == 3
    assert load_checkpoint(killed / "last.pt")["sampler"] == {"epoch": 0, "batch_in_epoch": 3}
    assert _run_process(str(killed), ppg, ecg, True, None) == 0
    assert json.loads((killed / "result.json").read_text())["resumed_from"].endswith("last.pt")

    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["step"] == b["step"] == 7
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for pid in sa:
        for k in sa[pid]:
            assert torch.equal(torch.as_tensor(sa[pid][k]), torch.as_tensor(sb[pid][k])), (pid, k)
    assert a["scheduler"] == b["scheduler"]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    # the metrics log has each step once, val losses included
    rows = (killed / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [str(s) for s in range(1, 8)]
    assert (full / "metrics.csv").read_text().splitlines()[1:][-1].split(",")[4] == rows[-1].split(",")[4]


# ----------------------------------------------------------------------- DDP vs single process


def _ddp_worker(rank: int, world: int, port: int, ppg: np.ndarray, ecg: np.ndarray, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from anyppg_edge.train import distributed as D

    D.init_distributed()
    try:
        _one_step(PairedArrayDataset(ppg, ecg), 8 // world, Path(out_dir) / f"ddp{rank}", Path(out_dir) / "ddp.pt")
    finally:
        D.cleanup_distributed()


class _Float64(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return {k: v.double() for k, v in self.ds[i].items()}


def _one_step(ds, batch_size: int, run_dir: Path, result: Path) -> None:
    """One optimisation step (lr 5e-4, no warm-up, AdamW, clipping) of CLIP on tiny without dropout.

    In float64: the comparison checks the algorithm (all-gather with gradients, label offsets,
    all-reduced BN statistics, DDP averaging), not float32 summation order. In float32 the gradients
    agree to ~1e-6, but AdamW's first step maps a gradient g to ~lr * g / (|g| + eps), which turns
    noise on near-zero gradients (e.g. conv biases feeding a BatchNorm, analytically zero) into
    differences up to lr; float64 noise (~1e-16) stays far below eps."""
    from anyppg_edge.train import distributed as D

    seed_everything(0)
    task = ClipTask(ClipModel(ClipConfig("tiny-nodrop", "tiny-nodrop"))).double()
    trainer = Trainer(task, _Float64(ds), None, _cfg(run_dir, batch_size=batch_size), device="cpu")
    trainer.fit()
    if D.is_main():
        torch.save(
            {
                "loss": trainer.state.history[-1]["loss"],  # mean over ranks of the local losses
                "state": {k: v.clone() for k, v in trainer.task.state_dict().items()},
                "grads": {n: p.grad.clone() for n, p in trainer.task.named_parameters() if p.grad is not None},
            },
            result,
        )


def test_ddp_two_ranks_equals_single_process_on_concatenated_batch(windows, tmp_path):
    ppg, ecg = windows[0][:16], windows[1][:16]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), ppg, ecg, str(tmp_path)), nprocs=2, join=True)
    _one_step(PairedArrayDataset(ppg, ecg), 8, tmp_path / "single", tmp_path / "single.pt")
    ddp, single = torch.load(tmp_path / "ddp.pt"), torch.load(tmp_path / "single.pt")

    assert abs(ddp["loss"] - single["loss"]) <= TOLERANCES["ddp_loss_abs"]
    assert ddp["grads"].keys() == single["grads"].keys()
    g_diff = max(float((ddp["grads"][k] - single["grads"][k]).abs().max()) for k in single["grads"])
    assert g_diff <= TOLERANCES["ddp_grads_max_abs"], g_diff
    assert ddp["state"].keys() == single["state"].keys()  # SyncBN conversion keeps the key layout
    w_diff = {k: float((ddp["state"][k].double() - single["state"][k].double()).abs().max())
              for k in single["state"]}  # fmt: skip
    worst = max(w_diff, key=w_diff.get)
    print(f"DDP vs single: loss diff {abs(ddp['loss'] - single['loss']):.3g}, grads {g_diff:.3g}, "
          f"weights/buffers {w_diff[worst]:.3g} ({worst})")  # fmt: skip
    assert w_diff[worst] <= TOLERANCES["ddp_weights_max_abs"], (worst, w_diff[worst])
    assert any("running_mean" in k for k in w_diff)  # BN running stats are compared too
    # the step really changed the weights (so the comparison is not vacuous)
    init = ClipTask(ClipModel(ClipConfig("tiny-nodrop", "tiny-nodrop")))
    moved = max(float((v.double() - single["state"][k].double()).abs().max()) for k, v in init.state_dict().items()
                if v.is_floating_point())  # fmt: skip
    assert moved > 100 * TOLERANCES["ddp_weights_max_abs"]
