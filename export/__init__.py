"""Exporters (issue 5): ONNX float/int8 and TFLite float/full-int8 encoders carrying their input
contract (the :class:`anyppg_edge.preprocessing.PreprocessConfig` and its hash) as metadata, with a
thin ``python -m export`` CLI. Depends on ``anyppg_edge``; never imported by it. Not built yet."""
