"""Exporters: a thin ``python -m export`` CLI over :mod:`anyppg_edge.deploy` (QAT with brevitas, ONNX
float/int8 and TFLite float/full-int8 encoders carrying their input contract as metadata, graph and
parity reports). Depends on ``anyppg_edge``; never imported by it."""
