"""Pretraining throughput on whatever device is present: samples/s and peak accelerator memory of
full CLIP training steps (forward, backward, AdamW) on synthetic windows, bf16 autocast on CUDA."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from anyppg_edge.models.clip import ClipConfig, ClipModel
from anyppg_edge.preprocessing import DEFAULT_CONFIG
from anyppg_edge.train.clip import ClipLoss, ClipTask
from anyppg_edge.train.configs import TrainConfig
from anyppg_edge.train.trainer import build_optimizer


def measure_throughput(
    model: str = "anyppg-paper",
    batch_size: int = 256,
    steps: int = 20,
    warmup_steps: int = 5,
    device: str | None = None,
    window_samples: int = DEFAULT_CONFIG.window_samples,
) -> dict[str, Any]:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    task = ClipTask(ClipModel(ClipConfig(ppg_model=model, ecg_model=model)), ClipLoss()).to(dev).train()
    opt = build_optimizer(task, TrainConfig(max_steps=steps))
    bf16 = dev.type == "cuda"
    g = torch.Generator(device="cpu").manual_seed(0)
    batch = {k: torch.randn(batch_size, 1, window_samples, generator=g).to(dev) for k in ("ppg", "ecg")}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            losses = task(batch)
        sum(v for k, v in losses.items() if k.endswith("_loss")).backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        opt.step()

    for _ in range(warmup_steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = time.perf_counter() - t0
    return {
        "model": model,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "precision": "bf16 autocast" if bf16 else "fp32",
        "batch_size": batch_size,
        "steps": steps,
        "samples_per_s": batch_size * steps / dt,
        "step_ms": 1000 * dt / steps,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
        "torch": torch.__version__,
    }
