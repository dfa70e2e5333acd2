"""Joint PPG–ECG augmentations for contrastive pretraining, applied to a batch on the device.

What makes a PPG window match its ECG window is *timing*: the beats of both signals occur at the
same instants, shifted by the pulse transit time. With few subjects a CLIP model can instead solve
its training batches by recognising the person (waveform morphology), which does not transfer to new
subjects. The augmentations here keep the PPG↔ECG timing relation intact and change everything
else, so that timing is what the embeddings must carry:

* **joint random resized crop** (time-stretch): both signals are cut at the same random offset to a
  random fraction ``crop_scale ∈ [crop_scale_min, 1]`` of the window and stretched back to the full
  length by linear interpolation — a new heart rate (slower by ``1/crop_scale``) and a new beat
  phase for every sample, identical in both signals;
* **joint non-uniform time warp** (``warp_std`` > 0): within that crop the local playback rate
  varies smoothly, ``exp(N(0, warp_std))`` at ``warp_knots`` evenly spaced knots, linearly
  interpolated — the beat-to-beat intervals change from beat to beat (a new heart-rate-variability
  pattern) while every PPG beat stays at the same instant relative to its R peak, up to the
  pulse-transit time stretched by the same local rate;
* **random zero-phase equaliser** (``eq_std`` > 0, independent per signal): the window's spectrum is
  multiplied by a random real, positive gain — log gain ``N(0, eq_std)`` at one knot per octave
  below Nyquist (``eq_octaves``), linear in log frequency in between, flat below the lowest knot.
  A zero-phase filter with positive gains has its impulse response peaked at lag 0, so no beat
  moves; what changes is the waveform *shape* (pulse rise time and dicrotic notch, QRS and T-wave
  proportions), the person-specific morphology a model should not rely on. Reflect padding keeps
  the FFT's circular wrap off the window edges;
* **additive Gaussian noise** (independent per signal), as a fraction of the unit standard
  deviation of a z-scored window;
* **re-standardisation**: each window is z-scored again afterwards, the model's input contract.

Randomness comes from the global torch RNG, which the trainer checkpoints, so resumed runs stay
bit-identical. Validation and embedding never augment (the task applies this in training mode only).
"""

from __future__ import annotations

import torch

from anyppg_edge.errors import ConfigError
from anyppg_edge.train.configs import AugmentConfig

__all__ = ["AugmentConfig", "joint_augment", "random_equalizer", "random_resized_crop"]


def random_resized_crop(
    signals: list[torch.Tensor], scale_min: float, warp_std: float = 0.0, warp_knots: int = 6
) -> list[torch.Tensor]:
    """The same random crop of each ``[B, C, L]`` signal (per sample: length ``scale * L`` at a
    random offset, ``scale ~ U[scale_min, 1]``), resampled back to ``L`` samples by linear
    interpolation — uniformly, or with ``warp_std`` > 0 through a smooth random monotonic time warp
    (log local rate ~ ``N(0, warp_std)`` at ``warp_knots`` knots, linear in between)."""
    x0 = signals[0]
    b, length = x0.shape[0], x0.shape[-1]
    for s in signals:
        if s.shape[0] != b or s.shape[-1] != length:
            raise ConfigError(f"paired signals must share batch and length, got {[tuple(t.shape) for t in signals]}")
    dev = x0.device
    scale = scale_min + (1.0 - scale_min) * torch.rand(b, 1, device=dev)  # [B, 1]
    span = scale * (length - 1)  # source span in samples
    offset = torch.rand(b, 1, device=dev) * (length - 1 - span)
    if warp_std > 0:
        log_rate = warp_std * torch.randn(b, 1, warp_knots, device=dev)
        rate = torch.nn.functional.interpolate(log_rate, size=length, mode="linear", align_corners=True)[:, 0].exp()
        cum = torch.cumsum(rate, dim=-1) - rate[:, :1]  # [B, L], 0 at the first sample, increasing
        u = cum / cum[:, -1:]  # monotonic map of output time onto [0, 1] of the crop
    else:
        u = torch.linspace(0.0, 1.0, length, device=dev).expand(b, -1)
    pos = offset + span * u  # [B, L] source positions
    i0 = pos.floor().long().clamp(0, length - 2)
    frac = (pos - i0).clamp(0.0, 1.0)
    out = []
    for s in signals:
        flat = s.reshape(b, -1, length)
        idx = i0.unsqueeze(1).expand(-1, flat.shape[1], -1)
        f = frac.unsqueeze(1).to(flat.dtype)
        y = flat.gather(-1, idx) * (1 - f) + flat.gather(-1, idx + 1) * f
        out.append(y.reshape(s.shape))
    return out


def random_equalizer(x: torch.Tensor, eq_std: float, octaves: int = 7) -> torch.Tensor:
    """Filter each ``[..., L]`` window with its own random zero-phase equaliser (see the module
    docstring): log gain ``N(0, eq_std)`` at normalised frequencies ``2**-k`` of Nyquist,
    ``k = octaves .. 0``, linear in log frequency between knots and constant below the lowest."""
    length = x.shape[-1]
    pad = min(length // 8, length - 1)
    flat = x.reshape(-1, 1, length)
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect")[:, 0] if pad > 0 else flat[:, 0]
    n = padded.shape[-1]
    spec = torch.fft.rfft(padded, dim=-1)
    freq = torch.fft.rfftfreq(n, device=x.device, dtype=torch.float64) * 2.0  # fraction of Nyquist, [0, 1]
    octave = torch.log2(freq.clamp(min=2.0 ** -octaves)) + octaves  # 0 at the lowest knot ... octaves at Nyquist
    knots = eq_std * torch.randn(flat.shape[0], octaves + 1, device=x.device, dtype=torch.float64)
    lo = octave.floor().long().clamp(max=octaves - 1)
    w = (octave - lo).unsqueeze(0)
    log_gain = knots[:, lo] * (1 - w) + knots[:, lo + 1] * w
    y = torch.fft.irfft(spec * log_gain.exp().to(spec.real.dtype), n=n, dim=-1)
    return y[:, pad : pad + length].reshape(x.shape).to(x.dtype)


def _zscore(x: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, unbiased=False, keepdim=True)
    return (x - mean) / (std + eps)


def joint_augment(ppg: torch.Tensor, ecg: torch.Tensor, cfg: AugmentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``cfg`` to a batch of paired ``[B, 1, L]`` windows (see the module docstring)."""
    if not cfg.enabled:
        return ppg, ecg
    if cfg.crop_scale_min < 1.0 or cfg.warp_std > 0:
        ppg, ecg = random_resized_crop([ppg, ecg], cfg.crop_scale_min, cfg.warp_std, cfg.warp_knots)
    if cfg.eq_std > 0:
        ppg = random_equalizer(ppg, cfg.eq_std, cfg.eq_octaves)
        ecg = random_equalizer(ecg, cfg.eq_std, cfg.eq_octaves)
    if cfg.noise_std > 0:
        ppg = ppg + cfg.noise_std * torch.randn_like(ppg)
        ecg = ecg + cfg.noise_std * torch.randn_like(ecg)
    return _zscore(ppg, cfg.eps), _zscore(ecg, cfg.eps)
