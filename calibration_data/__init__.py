"""Calibration-set builder and manifests for int8 quantization (issue 5): stratified preprocessed
windows drawn from real shards and the simulator; real windows are built, never committed. Not built
yet."""
