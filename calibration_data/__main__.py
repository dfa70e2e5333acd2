"""``python -m calibration_data``: the checkout's entry point for ``anyppg-edge calibration``
(:mod:`anyppg_edge.cli.calibration`)."""

from anyppg_edge.cli.calibration import main

raise SystemExit(main())
