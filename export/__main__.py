"""``python -m export``: the checkout's entry point for ``anyppg-edge export`` (:mod:`anyppg_edge.cli.export`)."""

from anyppg_edge.cli.export import main

raise SystemExit(main())
