"""Where the shared real data and reference files live (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """``$ANYPPG_SHARED`` if set, else ``../shared`` beside the repository root."""
    env = os.environ.get("ANYPPG_SHARED")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def shared_available() -> bool:
    root = shared_dir()
    return (root / "data").is_dir() and (root / "reference").is_dir()
