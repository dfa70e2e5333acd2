#!/usr/bin/env python3
"""``python export/device_runner.py ...`` / ``python -m export.device_runner ...``: the device-side
latency runner, :mod:`anyppg_edge.deploy.bench.device` (see its docstring). Needs the base install
(numpy + scipy) and one runtime (ai-edge-litert or onnxruntime); from a checkout that is not
pip-installed, the checkout's ``anyppg_edge`` is used."""

import sys
from pathlib import Path

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))
try:
    from anyppg_edge.deploy.bench.device import main
except ModuleNotFoundError as e:  # numpy / scipy missing on the device
    print(
        f"device_runner: error: {e.name} is not installed; `pip install numpy scipy` and one runtime "
        "(ai-edge-litert or onnxruntime), or `pip install anyppg-edge`",
        file=sys.stderr,
    )
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main(prog="device_runner.py"))
