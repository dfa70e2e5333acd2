"""Calibration sets for int8 quantization (issue 5): the command line over
:mod:`anyppg_edge.deploy.calibration` (``python -m calibration_data build|default|show``) ; the
committed default set is package data in ``anyppg_edge/deploy/calibration/default/`` (simulator only). Sets built from real data go to ``built/``
(git-ignored): real windows are built, never committed."""
