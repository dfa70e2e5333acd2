"""Shared fixtures. ``../shared`` (or ``$ANYPPG_SHARED``) holds real data and golden references:
tests that need it skip when it is absent on a user's machine, but in CI (``CI=true``) a missing
folder is an error, never a silent skip."""

from __future__ import annotations

from pathlib import Path

import pytest
from prerequisites import require

from anyppg_edge.paths import shared_available, shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    require(shared_available(), f"shared data folder not found at {shared_dir()} (set ANYPPG_SHARED)")
    return shared_dir()


@pytest.fixture(scope="module")
def student():
    """``student-watch`` (seeded init) with non-trivial BatchNorm statistics and affine parameters, so
    folding and export are exercised on something other than identity BNs."""
    import torch

    from anyppg_edge.models import create_model

    torch.manual_seed(0)
    model = create_model("student-watch")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model.eval()


@pytest.fixture(scope="session")
def ieee_windows(shared):
    """48 real 10 s windows (two IEEE SPC subjects of ../shared), shuffled with a fixed seed."""
    import numpy as np

    from anyppg_edge.data import load_shared_recordings
    from anyppg_edge.data.windows import extract_windows

    recs = [r for r in load_shared_recordings(shared / "data") if r.dataset.lower().startswith("ieee")][:2]
    ws = np.concatenate([extract_windows(r, hop_s=5.0, ecg_quality=False).ppg for r in recs])
    return ws[np.random.default_rng(0).permutation(len(ws))[:48]].astype(np.float32)


def _bn_model(name, windows):
    """Seeded ``name`` in eval mode with the BatchNorm statistics of ``windows[:32]``."""
    import torch

    from anyppg_edge.models import create_model

    torch.manual_seed(0)
    m = create_model(name)
    m.train()
    with torch.no_grad():  # real BN statistics
        m(torch.as_tensor(windows[:32, None]))
    return m.eval()


@pytest.fixture(scope="session")
def bn_model():
    """The factory ``(name, windows) -> model`` of seeded models with real-window BN statistics."""
    return _bn_model


def _int8_export(name, windows, path):
    """Seeded ``name`` with BatchNorm statistics of ``windows``, brevitas PTQ, int8 TFLite at ``path``."""
    from anyppg_edge.contract import InputContract
    from anyppg_edge.deploy.export.tflite import export_tflite
    from anyppg_edge.deploy.quantize import quantize_ptq
    from anyppg_edge.models.registry import get_model_spec

    m = _bn_model(name, windows)
    spec = get_model_spec(name)  # the model's own contract (a native-rate model: windows at its rate)
    q = quantize_ptq(m, [windows[:32, None]], spec.input_samples)
    export_tflite(q, path, InputContract.for_model(name, "tflite-int8", m.out_dim, "0" * 64, spec.preprocess_config()))
    return m, path


@pytest.fixture(scope="session")
def int8_export():
    """The factory ``(name, windows, path) -> (model, path)`` of int8 TFLite test artifacts."""
    return _int8_export


@pytest.fixture(scope="session")
def slim_int8(ieee_windows, tmp_path_factory):
    """``student-watch-slim`` (the watch student) as an int8 TFLite: ``(float model, path)``."""
    return _int8_export("student-watch-slim", ieee_windows, tmp_path_factory.mktemp("slim") / "slim.int8.tflite")
