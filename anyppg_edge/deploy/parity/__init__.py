"""Parity of exported artifacts with the float PyTorch model they come from.

* :mod:`~anyppg_edge.deploy.parity.tolerances`: the one tolerance table (``TOLERANCES``: artifact,
  weight and streaming rows) and the metrics its rows bound (embedding parity, SQNR).
* :mod:`~anyppg_edge.deploy.parity.golden`: golden sets (windows + float embeddings + provenance).
* :mod:`~anyppg_edge.deploy.parity.suite`: artifact parity against a golden set, ``run_parity``
  (``python -m export parity``), ``parity_table_for``.
* :mod:`~anyppg_edge.deploy.parity.localize`: per-layer localisation of an ONNX / TFLite artifact
  against its source model (first layer where the error jumps, weights that differ).
* :mod:`~anyppg_edge.deploy.parity.layers`: per-activation-point SQNR of brevitas int8 models and
  their int8 TFLite (the export report's layer table).
* :mod:`~anyppg_edge.deploy.parity.downstream`: HR probe and retrieval R@1, float model vs artifacts.
* :mod:`~anyppg_edge.deploy.parity.report`: markdown / HTML / JSON / plot of a parity run.

Importing this package imports nothing heavy; each module imports torch, onnx or TFLite where used.
"""
