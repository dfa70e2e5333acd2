"""Prerequisites of tests that need something outside Python (real data, compilers, the Cortex-M
toolchain): skipped on a user's machine without it, a failure in CI (``CI=true``), where it must be
there."""

from __future__ import annotations

import os

import pytest


def require(ok: object, msg: str) -> None:
    """Skip the test (fail it under CI=true) unless ``ok``."""
    if ok:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " -- required in CI")
    pytest.skip(msg)
