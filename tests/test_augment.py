"""Joint PPG/ECG augmentation: the same crop and stretch in both signals, z-scored output, a real
change of tempo, off by default and never applied outside training mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyppg_edge.train import ClipConfig, ClipModel, ClipTask
from anyppg_edge.train.augment import AugmentConfig, joint_augment, random_equalizer, random_resized_crop

L = 1250
FS = 125.0


def _sine(freq_hz: float, b: int = 8) -> torch.Tensor:
    t = torch.arange(L) / FS
    return torch.sin(2 * torch.pi * freq_hz * t).repeat(b, 1, 1)


def _peak_hz(x: torch.Tensor) -> np.ndarray:
    spec = np.abs(np.fft.rfft(x[:, 0].numpy(), n=8 * L, axis=-1))
    return np.fft.rfftfreq(8 * L, 1 / FS)[spec.argmax(-1)]


def test_crop_is_identical_in_both_signals_and_stretches_tempo():
    torch.manual_seed(0)
    x = _sine(2.0) + 0.1 * torch.randn(8, 1, L)
    a, b = random_resized_crop([x, x.clone()], scale_min=0.5)
    assert a.shape == b.shape == x.shape
    assert torch.equal(a, b)  # same offsets and scales in both signals: timing is kept
    f = _peak_hz(random_resized_crop([_sine(2.0)], scale_min=0.5)[0])
    # a kept fraction s of the window stretched to the full length: 2 Hz becomes 2 s Hz, s in [0.5, 1]
    assert np.all(f <= 2.0 + 0.02) and np.all(f >= 1.0 - 0.02)
    assert f.std() > 0.05  # per-sample scales differ


def _periods_s(x: torch.Tensor) -> list[np.ndarray]:
    """Beat periods (s) of each window: intervals between upward zero crossings."""
    out = []
    for w in x[:, 0].numpy():
        zc = np.where((w[:-1] < 0) & (w[1:] >= 0))[0]
        out.append(np.diff(zc) / FS)
    return out


def test_time_warp_varies_the_beat_intervals_identically_in_both_signals():
    x = _sine(1.5)  # a metronome: every period 0.667 s
    torch.manual_seed(3)
    crop_only = random_resized_crop([x], scale_min=0.85)[0]
    torch.manual_seed(3)
    a, b = random_resized_crop([x, x.clone()], scale_min=0.85, warp_std=0.15, warp_knots=6)
    assert torch.equal(a, b)  # one warp for both signals: PPG beats stay locked to the R peaks
    # the uniform stretch keeps the rhythm regular; the warp makes the intervals vary within a window
    assert max(p.std() for p in _periods_s(crop_only)) < 0.01
    assert min(p.std() for p in _periods_s(a)) > 0.01
    ramp = torch.arange(L, dtype=torch.float32).repeat(8, 1, 1)
    warped = random_resized_crop([ramp], scale_min=0.85, warp_std=0.3)[0]
    assert (warped.diff(dim=-1) > 0).all()  # monotonic: time never runs backwards
    assert (warped[..., 0] >= 0).all() and (warped[..., -1] <= L - 1).all()  # inside the window


def test_joint_augment_zscores_and_keeps_timing_relation():
    torch.manual_seed(1)
    ppg = _sine(1.5) * 3 + 2
    ecg = torch.roll(_sine(1.5), 25, dims=-1)  # ECG "leads" by 0.2 s
    p, e = joint_augment(ppg, ecg, AugmentConfig(crop_scale_min=0.7, noise_std=0.0))
    assert torch.allclose(p.mean(-1), torch.zeros(8, 1), atol=1e-5)
    assert torch.allclose(p.std(-1, unbiased=False), torch.ones(8, 1), atol=1e-4)
    # both keep the same tempo after the (shared) stretch
    assert np.allclose(_peak_hz(p), _peak_hz(e), atol=0.02)


def test_noise_is_independent_per_signal():
    torch.manual_seed(2)
    x = _sine(1.0)
    p, e = joint_augment(x, x.clone(), AugmentConfig(noise_std=0.1))
    assert not torch.equal(p, e)
    assert 0.05 < (p - e).std() < 0.3


def test_equalizer_changes_shape_but_moves_no_beat():
    torch.manual_seed(3)
    beats = torch.zeros(6, 1, L)
    beats[..., 60::110] = 1.0  # an impulse per beat (0.88 s period)
    pulses = torch.nn.functional.conv1d(beats, torch.hann_window(31, periodic=False).view(1, 1, -1), padding=15)  # smooth pulses
    y = random_equalizer(pulses, eq_std=0.7)
    assert y.shape == pulses.shape and y.dtype == pulses.dtype
    for i in range(6):  # zero phase, positive gain: every pulse peak stays at its sample
        for k in range(170, L - 110, 110):
            seg = y[i, 0, k - 40 : k + 41]
            assert int(seg.argmax()) == 40, (i, k)
    rel = (y - pulses).norm(dim=-1) / pulses.norm(dim=-1)
    assert (rel > 0.05).all()  # the waveform did change ...
    assert rel.std() > 0.01  # ... differently for every window
    assert torch.allclose(random_equalizer(pulses, eq_std=0.0), pulses, atol=1e-5)  # unit gain: identity


def test_equalizer_is_independent_per_signal_and_keeps_the_tempo():
    torch.manual_seed(4)
    x = _sine(1.3) + 0.3 * _sine(2.6) + 0.2 * _sine(3.9)
    p, e = joint_augment(x, x.clone(), AugmentConfig(eq_std=0.5))
    assert not torch.allclose(p, e, atol=1e-3)  # a different equaliser for PPG and ECG
    assert np.allclose(_peak_hz(p), 1.3, atol=0.02) and np.allclose(_peak_hz(e), 1.3, atol=0.02)


def test_off_by_default_and_validated():
    x = torch.randn(2, 1, L)
    assert not AugmentConfig().enabled
    p, e = joint_augment(x, x, AugmentConfig())
    assert p is x and e is x
    with pytest.raises(ValueError, match="crop_scale_min"):
        AugmentConfig(crop_scale_min=0.0)
    with pytest.raises(ValueError, match="noise_std"):
        AugmentConfig(noise_std=-1)
    with pytest.raises(ValueError, match="warp_std"):
        AugmentConfig(warp_std=-0.1)
    with pytest.raises(ValueError, match="warp_knots"):
        AugmentConfig(warp_std=0.1, warp_knots=1)
    assert AugmentConfig(warp_std=0.1).enabled and AugmentConfig(eq_std=0.3).enabled
    with pytest.raises(ValueError, match="eq_std"):
        AugmentConfig(eq_std=-0.1)
    with pytest.raises(ValueError, match="eq_octaves"):
        AugmentConfig(eq_std=0.3, eq_octaves=0)
    with pytest.raises(ValueError, match="share batch and length"):
        random_resized_crop([x, x[:, :, :100]], 0.5)
    assert AugmentConfig.from_dict(AugmentConfig(crop_scale_min=0.6).to_dict()).crop_scale_min == 0.6


def test_task_augments_in_training_mode_only(monkeypatch):
    import anyppg_edge.train.clip as clip_mod

    calls = []

    def spy(ppg, ecg, cfg):
        calls.append(ppg.shape)
        return joint_augment(ppg, ecg, cfg)

    monkeypatch.setattr(clip_mod, "joint_augment", spy)
    task = ClipTask(ClipModel(ClipConfig("tiny", "tiny")), augment=AugmentConfig(crop_scale_min=0.5, noise_std=0.1))
    batch = {"ppg": torch.randn(4, 1, L), "ecg": torch.randn(4, 1, L)}
    task.eval()
    task(batch)
    task.embed(batch)
    assert calls == []  # validation and embeddings see the real windows
    task.train()
    task(batch)
    assert calls == [(4, 1, L)]
    plain = ClipTask(ClipModel(ClipConfig("tiny", "tiny"))).train()
    plain(batch)
    assert len(calls) == 1  # the default (paper recipe) does not augment
