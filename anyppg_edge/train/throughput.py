"""Pretraining throughput on whatever device is present: samples/s and peak accelerator memory of
full CLIP training steps (forward, backward, gradient clipping, AdamW) on synthetic windows.

Precision modes (``precision``): ``"bf16"`` (bf16 autocast; the trainer's default on CUDA), ``"fp32"``
(TF32 off for matmuls and cuDNN convolutions: true float32) and ``"tf32"`` (TF32 on for both); ``None``
keeps the historical default (bf16 autocast on CUDA, fp32 on CPU) and the TF32 flags as they are.
``compile_backend`` wraps the task in ``torch.compile`` (``"inductor"``; ``"eager"`` traces with
dynamo but runs eagerly: the cheap path the CPU tests use). Net1D is a 1-D CNN on ``[N, C, L]``
tensors: ``torch.channels_last`` (a 4-D NCHW layout) does not apply to it.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Iterator
from typing import Any

import torch

from anyppg_edge.models.clip import ClipConfig, ClipModel
from anyppg_edge.preprocessing import DEFAULT_CONFIG
from anyppg_edge.train.clip import ClipLoss, ClipTask
from anyppg_edge.train.configs import TrainConfig
from anyppg_edge.train.trainer import build_optimizer

PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def _tf32(enabled: bool | None) -> Iterator[None]:
    """TF32 for matmuls and cuDNN convolutions on (``True``), off (``False``) or as it is (``None``)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        if enabled is not None:
            torch.backends.cuda.matmul.allow_tf32 = enabled
            torch.backends.cudnn.allow_tf32 = enabled
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def measure_throughput(
    model: str = "anyppg-paper",
    batch_size: int = 256,
    steps: int = 20,
    warmup_steps: int = 5,
    device: str | None = None,
    window_samples: int = DEFAULT_CONFIG.window_samples,
    precision: str | None = None,
    compile_backend: str | None = None,
) -> dict[str, Any]:
    """Time ``steps`` full CLIP training steps of the ``model`` towers at ``batch_size`` after
    ``warmup_steps`` (which include the compilation with ``compile_backend``). Returns samples/s,
    step time, peak accelerator memory and the flags in force."""
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} or None, got {precision!r}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    bf16 = precision == "bf16" or (precision is None and cuda)
    tf32 = {"fp32": False, "tf32": True}.get(precision or "", None)
    task = ClipTask(ClipModel(ClipConfig(ppg_model=model, ecg_model=model)), ClipLoss()).to(dev).train()
    opt = build_optimizer(task, TrainConfig(max_steps=max(steps, 1)))
    forward = torch.compile(task, backend=compile_backend) if compile_backend else task
    g = torch.Generator(device="cpu").manual_seed(0)
    batch = {k: torch.randn(batch_size, 1, window_samples, generator=g).to(dev) for k in ("ppg", "ecg")}
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            losses = forward(batch)
        sum(v for k, v in losses.items() if k.endswith("_loss")).backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        opt.step()

    with _tf32(tf32):
        t0 = time.perf_counter()
        first_s = None
        for i in range(warmup_steps):
            step()
            if i == 0:
                sync()
                first_s = time.perf_counter() - t0
        sync()
        warmup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        dt = time.perf_counter() - t0
        flags = {"tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                 "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
                 "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}
    return {
        "model": model,
        "device": torch.cuda.get_device_name(dev) if cuda else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "precision": "bf16 autocast" if bf16 else ("fp32" if precision is None else precision),
        "compile": compile_backend,
        "batch_size": batch_size,
        "steps": steps,
        "warmup_steps": warmup_steps,
        "samples_per_s": batch_size * steps / dt if steps else None,
        "step_ms": 1000 * dt / steps if steps else None,
        "first_step_s": first_s,  # with compile_backend: the compilation
        "warmup_s": warmup_s,
        "peak_gpu_mem_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
        "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved(dev) / 2**30 if cuda else None,
        "torch": torch.__version__,
        **flags,
    }
