"""Latency benchmarks, host and device alike, one idea per module.

* :mod:`~anyppg_edge.deploy.bench.core`: the measurement core (latency statistics, environment,
  RSS probe, timing loop, runtime preloading, strict JSON); numpy + stdlib, used on devices too;
* :mod:`~anyppg_edge.deploy.bench.floor`: one core's fp32 GEMM peak and the fp32 floor of a model;
* :mod:`~anyppg_edge.deploy.bench.latency`: :func:`bench_artifacts`, each artifact in an isolated
  worker process (``python -m anyppg_edge.deploy.bench.latency --worker``);
* :mod:`~anyppg_edge.deploy.bench.report`: speed-ups, markdown tables, plot, ``bench.*`` files;
* :mod:`~anyppg_edge.deploy.bench.device`: the device-side runner (``python -m
  anyppg_edge.deploy.bench.device``; ``export/device_runner.py`` is its entry point);
* :mod:`~anyppg_edge.deploy.bench.benchmark_log`: ``benchmark_model`` / ``litert-benchmark`` logs
  in the same result schema;
* :mod:`~anyppg_edge.deploy.bench.mcu`: MCU cost estimates (labelled as such).

Importing the package imports nothing.
"""
