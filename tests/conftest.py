"""Shared fixtures. ``../shared`` (or ``$ANYPPG_SHARED``) holds real data and golden references:
tests that need it skip when it is absent on a user's machine, but in CI (``CI=true``) a missing
folder is an error, never a silent skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anyppg_edge.paths import shared_available, shared_dir


@pytest.fixture(scope="session")
def shared() -> Path:
    if not shared_available():
        msg = f"shared data folder not found at {shared_dir()} (set ANYPPG_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " -- required in CI")
        pytest.skip(msg)
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
