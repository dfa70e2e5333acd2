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
