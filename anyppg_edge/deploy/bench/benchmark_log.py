"""Logs of LiteRT's own benchmark tools, turned into the bench-result schema (``anyppg-edge/bench-result/v1``).

Two tools, recognised by their output (:func:`parse_benchmark_log` dispatches):

* the C++ ``benchmark_model`` binary (TFLite / LiteRT; Android ``adb shell``, logcat lines, or a
  desktop build): parameter lines (``Graph: [..]``, ``Num threads: [..]``, ``Use xnnpack: [..]``),
  ``count=.. first=.. curr=.. min=.. max=.. avg=.. std=.. [p5=.. median=.. p95=..]`` statistics in µs
  per ``Running benchmark for at least ...`` block (the first is the warm-up, the last the timed
  runs), the ``Inference timings in us: ...`` line, the memory lines of every version
  (``Memory footprint delta from the start of the tool (MB): init=.. overall=..``,
  ``Overall peak memory footprint (MB) via periodic monitoring: ..``, and the older
  ``Peak memory footprint (MB): init=.. overall=..``, which is also a peak-RSS increase since the
  tool started), and with ``--enable_op_profiling=true`` its per-operator tables (``Profiling Info
  for Benchmark Initialization`` / ``Operator-wise Profiling Info for Regular Benchmark Runs``: Run
  Order, Top by Computation Time, Summary by node type; kept as rows under ``op_profile``);
  :func:`parse_benchmark_model`;
* ``litert-benchmark``, the Python tool in the ``ai-edge-litert`` wheel
  (``ai_edge_litert.tools.benchmark_litert_model``): its logger lines (model, threads, runs,
  accelerators; on stderr) and the ``BENCHMARK RESULTS`` block (ms, on stdout), or the file its
  ``--result_json`` writes; :func:`parse_litert_benchmark`.

Neither tool reports p90/p99 or per-run samples (None / empty); their median, when printed, is the
p50. ``error`` is set when the run failed or the output is truncated; text that is neither tool's
output is a :class:`~anyppg_edge.errors.DataFormatError`. Standard library only.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath
from typing import Any

from anyppg_edge.deploy.bench.core import BENCH_SCHEMA, LATENCY_KEYS
from anyppg_edge.errors import DataFormatError

__all__ = [
    "detect_log_format",
    "parse_benchmark_log",
    "parse_benchmark_model",
    "parse_litert_benchmark",
    "parse_op_profile",
]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LOGCAT_PREFIX = re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+(?:\d+\s+\d+\s+)?\w[/ ][^:]*?:\s?")
_INFO_PREFIX = re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE):\s?")


def _strip(line: str) -> str:
    """A log line without its logcat / ``INFO:`` prefix."""
    return _INFO_PREFIX.sub("", _LOGCAT_PREFIX.sub("", line))


def _env_placeholder(tool: str) -> dict[str, Any]:
    env: dict[str, Any] = dict.fromkeys(
        ("cpu_model", "cpu_mhz", "machine", "cores", "cores_available", "os", "python", "loadavg")
    )
    env.update(
        {
            "cpu_flags": [],
            "packages": {},
            "thread_env": {},
            "note": f"device environment not reported by {tool}",
        }
    )
    return env


def _result(tool: str, **fields: Any) -> dict[str, Any]:
    """A bench result with every key of the schema (None where the tool reports nothing)."""
    res: dict[str, Any] = {
        "schema": BENCH_SCHEMA,
        "name": tool,
        "artifact": None,
        "file_bytes": None,
        "settings": {"batch": 1},
        "warmup": None,
        "runs": None,
        "n_windows": None,
        "input": f"{tool}'s own random input",
        "runtime": None,
        "runtime_version": None,
        "model_name": None,
        "artifact_kind": None,
        "embedding_dim": None,
        "window_samples": None,
        "load_ms": None,
        "first_inference_ms": None,
        "warmup_mean_ms": None,
        "latency_ms": dict.fromkeys(LATENCY_KEYS),
        "samples_ms": [],
        "peak_rss_mb": None,
        "rss_delta_mb": None,
        "rss_method": "unavailable",
        "isolated": True,
        "error": None,
        "warnings": [],
        "macs": None,
        "params": None,
        "peak_flops_one_core": None,
        "fp32_floor_ms": None,
        "p50_over_fp32_floor": None,
        "op_profile": None,
        "environment": _env_placeholder(tool),
        "source_format": tool,
    }
    res.update(fields)
    return res


# --------------------------------------------------------------------------------------------------
# format detection
# --------------------------------------------------------------------------------------------------

_LITERT_MARKERS = re.compile(
    r"^\s*BENCHMARK RESULTS\s*$|\b(?:DEBUG|INFO|WARNING|ERROR) benchmark_litert_model:", re.M
)
_BENCHMARK_MODEL_MARKERS = (
    "Inference timings in us",
    "Average inference timings in us",
    "Running benchmark for at least",
    "STARTING!",
    "Benchmarking failed",
    "Graph: [",
    "Operator-wise Profiling Info",
)


def _litert_json(text: str) -> dict[str, Any] | None:
    s = text.lstrip()
    if not s.startswith("{"):
        return None
    try:
        d = json.loads(s)
    except ValueError:
        return None
    if isinstance(d, dict) and isinstance(d.get("latency"), dict) and "avg_ms" in d["latency"]:
        return d
    return None


def detect_log_format(text: str) -> str | None:
    """``"litert-benchmark-json"``, ``"litert-benchmark"``, ``"benchmark_model"`` or None."""
    if _litert_json(text) is not None:
        return "litert-benchmark-json"
    if _LITERT_MARKERS.search(text) or re.search(r"^Inference \(avg\):\s+" + _NUM + " ms", text, re.M):
        return "litert-benchmark"
    if any(m in text for m in _BENCHMARK_MODEL_MARKERS):
        return "benchmark_model"
    return None


def parse_benchmark_log(text: str, source: str = "the log") -> dict[str, Any]:
    """Parse the output of ``benchmark_model`` or ``litert-benchmark`` (text or ``--result_json``),
    whichever it is; :class:`DataFormatError` when it is neither (``source`` names it)."""
    fmt = detect_log_format(text)
    if fmt == "benchmark_model":
        return parse_benchmark_model(text)
    if fmt in ("litert-benchmark", "litert-benchmark-json"):
        return parse_litert_benchmark(text)
    raise DataFormatError(
        f"{source} is not the output of LiteRT's benchmark_model or litert-benchmark (empty, or another "
        "tool's log); pass the tool's stdout+stderr (`... > bm.log 2>&1`) or litert-benchmark's --result_json file"
    )


# --------------------------------------------------------------------------------------------------
# benchmark_model (C++)
# --------------------------------------------------------------------------------------------------

_STAT_RE = re.compile(r"count=(\d+)((?:\s+\w+=" + _NUM + r")*)")
_KV_RE = re.compile(r"(\w+)=(" + _NUM + r")")
_TIMINGS_RE = re.compile(
    r"Inference timings in us:\s*Init:\s*(" + _NUM + r"),\s*First inference:\s*(" + _NUM + r"),\s*"
    r"Warmup \(avg\):\s*(" + _NUM + r"),\s*Inference \(avg\):\s*(" + _NUM + r")"
)
_OLD_TIMINGS_RE = re.compile(  # before first-inference reporting (TF <= 2.1)
    r"Average inference timings in us:\s*Warmup:\s*(" + _NUM + r"),\s*Init:\s*(" + _NUM + r"),\s*"
    r"(?:no stats:\s*)?Inference:\s*(" + _NUM + r")"
)
_PARAM_RES = {
    "graph": re.compile(r"\bGraph:\s*\[([^\]]*)\]"),
    "threads": re.compile(r"(?:Num threads|#threads used for CPU inference):\s*\[(-?\d+)\]"),
    "xnnpack": re.compile(r"Use xnnpack:\s*\[(\w+)\]", re.I),
    "gpu": re.compile(r"Use gpu:\s*\[(\w+)\]", re.I),
    "nnapi": re.compile(r"Use NNAPI:\s*\[(\w+)\]", re.I),
    "num_runs": re.compile(r"Min num runs:\s*\[(\d+)\]"),
    "warmup_runs": re.compile(r"Min warmup runs:\s*\[(\d+)\]"),
    "op_profiling": re.compile(r"Enable op profiling:\s*\[(\w+)\]", re.I),
}
_PROFILE_HEADERS = {
    "Profiling Info for Benchmark Initialization": "initialization",
    "Operator-wise Profiling Info for Regular Benchmark Runs": "regular_runs",
}


def _flag(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes")


def parse_benchmark_model(text: str) -> dict[str, Any]:
    """Parse the output of LiteRT's C++ ``benchmark_model`` (plain stdout or logcat lines, any prefix)
    into the bench-result schema (see the module docstring)."""
    params: dict[str, Any] = {}
    for k, rx in _PARAM_RES.items():
        m = rx.search(text)
        if m:
            params[k] = m.group(1)
    lines = text.splitlines()
    cut = next((i for i, ln in enumerate(lines) if any(h in ln for h in _PROFILE_HEADERS)), len(lines))
    head = lines[:cut]  # everything before the per-op tables
    blocks: list[dict[str, float]] = []
    in_block = False
    for line in head:
        if "Running benchmark for at least" in line:
            in_block = True
            continue
        m = _STAT_RE.search(line)
        if m and in_block:
            st = {"count": float(m.group(1))}
            st.update({k: float(v) for k, v in _KV_RE.findall(m.group(2))})
            if "avg" not in st and "curr" in st:  # "count=1 curr=X" / "(all same)"
                st.update(
                    {"first": st["curr"], "min": st["curr"], "max": st["curr"], "avg": st["curr"], "std": 0.0}
                )
            blocks.append(st)
            in_block = False
    head_text = "\n".join(head)
    timings = _TIMINGS_RE.search(head_text)
    old_timings = _OLD_TIMINGS_RE.search(head_text) if timings is None else None
    size = re.search(r"The input model file size \(MB\):\s*(" + _NUM + ")", head_text)
    init_ms = re.search(r"Initialized session in\s*(" + _NUM + r")\s*ms", head_text)
    delta = re.search(
        r"Memory footprint delta from the start of the tool \(MB\):\s*init=("
        + _NUM
        + r")\s+overall=("
        + _NUM
        + ")",
        head_text,
    )
    old_peak = re.search(
        r"(?<!Overall )Peak memory footprint \(MB\):\s*init=(" + _NUM + r")\s+overall=(" + _NUM + ")",
        head_text,
    )
    peak = re.search(
        r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUM + ")", head_text
    )

    error_lines = [ln.strip() for ln in head if "ERROR" in ln or "failed" in ln.lower()]
    error = None
    if "Benchmarking failed" in head_text or (timings is None and old_timings is None):
        error = (
            "benchmark_model failed: " + " | ".join(error_lines[:5])
            if error_lines
            else "no 'Inference timings in us' line: benchmark_model did not finish or the output is truncated"
        )
    timed = blocks[-1] if blocks else None
    warm = blocks[0] if len(blocks) > 1 else None
    latency: dict[str, Any] = dict.fromkeys(LATENCY_KEYS)
    if timed is not None:
        latency.update(
            {
                "p50": timed["median"] / 1e3 if "median" in timed else None,
                "mean": timed["avg"] / 1e3,
                "min": timed["min"] / 1e3,
                "max": timed["max"] / 1e3,
                "std": timed["std"] / 1e3 if "std" in timed else None,
            }
        )
        for p in ("p5", "p95"):
            if p in timed:
                latency[p] = timed[p] / 1e3
    elif timings is not None:
        latency["mean"] = float(timings.group(4)) / 1e3
    elif old_timings is not None:
        latency["mean"] = float(old_timings.group(3)) / 1e3
    graph = params.get("graph")
    settings: dict[str, Any] = {"batch": 1}
    if "threads" in params:
        settings["threads"] = int(params["threads"])
    for k in ("xnnpack", "gpu", "nnapi"):
        if k in params:
            settings[k] = _flag(params[k])
    if delta:
        rss_delta, rss_method = (
            float(delta.group(2)),
            "benchmark_model memory footprint delta from the tool's start (MB, approximate)",
        )
    elif old_peak:
        rss_delta, rss_method = (
            float(old_peak.group(2)),
            "benchmark_model peak-RSS increase since the tool's start (MB, approximate)",
        )
    else:
        rss_delta, rss_method = (
            None,
            "benchmark_model memory footprint (MB, approximate)" if peak else "unavailable",
        )
    if timings:
        load_ms, first_ms, warm_ms = (float(timings.group(i)) / 1e3 for i in (1, 2, 3))
    elif old_timings:
        load_ms, first_ms, warm_ms = (
            float(old_timings.group(2)) / 1e3,
            None,
            float(old_timings.group(1)) / 1e3,
        )
    else:
        load_ms, first_ms, warm_ms = (float(init_ms.group(1)) if init_ms else None), None, None
    mem_init = delta or old_peak
    profile = parse_op_profile(text)
    return _result(
        "benchmark_model",
        name=PurePath(graph).name if graph else "benchmark_model",
        artifact=graph,
        file_bytes=round(float(size.group(1)) * 1e6) if size else None,  # MB = 1e6 bytes here
        settings=settings,
        warmup=int(warm["count"]) if warm else None,
        runs=int(timed["count"]) if timed else None,
        runtime="litert-benchmark_model",
        load_ms=load_ms,
        first_inference_ms=first_ms,
        warmup_mean_ms=warm_ms,
        latency_ms=latency,
        peak_rss_mb=float(peak.group(1)) if peak else None,
        rss_delta_mb=rss_delta,
        init_rss_delta_mb=float(mem_init.group(1)) if mem_init else None,
        rss_method=rss_method,
        error=error,
        warnings=error_lines if error is None else [],
        op_profile=profile or None,
    )


# -- per-operator tables ----------------------------------------------------------------------------

# bracketed header column -> (row key, value pattern, type)
_COLUMNS = {
    "node type": ("node_type", r"(.+?)", str),
    "start": ("start_ms", f"({_NUM})", float),
    "first": ("first_ms", f"({_NUM})", float),
    "avg ms": ("avg_ms", f"({_NUM})", float),
    "%": ("pct", f"({_NUM})%", float),
    "avg %": ("pct", f"({_NUM})%", float),
    "cdf%": ("cdf_pct", f"({_NUM})%", float),
    "cdf %": ("cdf_pct", f"({_NUM})%", float),
    "mem kb": ("mem_kb", f"({_NUM})", float),
    "times called": ("times_called", r"(\d+)", int),
    "count": ("count", r"(\d+)", int),
    "name": ("name", r"(.*?)", str),
}
_TITLE_RE = re.compile(r"^=+\s*(.+?)\s*=+\s*$")
_DELEGATE_ROW_RE = re.compile(rf"^(.+?)\s+(\d+)\s+({_NUM})\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _row_parser(header: str) -> tuple[re.Pattern[str], list[tuple[str, type]]] | None:
    cols = [c.strip().lower() for c in re.findall(r"\[([^\]]+)\]", header)]
    if not cols or any(c not in _COLUMNS for c in cols):
        return None
    spec = [_COLUMNS[c] for c in cols]
    rx = re.compile(r"^\s*" + r"\s+".join(p for _, p, _ in spec) + r"\s*$")
    return rx, [(k, t) for k, _, t in spec]


def parse_op_profile(text: str) -> dict[str, Any]:
    """The per-operator tables of ``benchmark_model --enable_op_profiling=true``:
    ``{"initialization" | "regular_runs": {"run_order": [rows], "top_by_computation_time": [rows],
    "summary_by_node_type": [rows], "nodes_executed": n, "nodes_observed": n, "timings_us": {...},
    "delegate_statistics": [rows]}}`` (the tables present; empty dict when there are none). Rows are
    dicts: ``node_type``, ``start_ms`` (older builds), ``first_ms``, ``avg_ms``, ``pct``, ``cdf_pct``,
    ``mem_kb``, ``times_called``, ``name``; by node type ``node_type``, ``count``, ``avg_ms``,
    ``pct``, ``cdf_pct``, ``mem_kb``, ``times_called``. Tab- or space-aligned, prefixed or not."""
    out: dict[str, Any] = {}
    section: dict[str, Any] | None = None
    table: list[dict[str, Any]] | None = None
    parser = None
    pending_title: str | None = None
    in_delegates = False
    for raw in text.splitlines():
        line = _strip(raw).rstrip()
        header = next((v for k, v in _PROFILE_HEADERS.items() if k in line), None)
        if header is not None:
            section = out.setdefault(header, {})
            table, parser, pending_title, in_delegates = None, None, None, False
            continue
        if section is None:
            continue
        m = _TITLE_RE.match(line)
        if m:
            pending_title, table, parser, in_delegates = _slug(m.group(1)), None, None, False
            continue
        if pending_title is not None:  # the column header line after a title
            parsed = _row_parser(line)
            if parsed is not None:
                parser = parsed
                table = section.setdefault(pending_title, [])
            pending_title = None
            continue
        m = re.match(r"^Number of nodes executed:\s*(\d+)", line.strip())
        if m:
            section["nodes_executed"] = int(m.group(1))
            table = None
            continue
        m = re.match(r"^Timings \(microseconds\):\s*(.*)$", line.strip())
        if m:
            st = _STAT_RE.search(m.group(1))
            if st:
                section["timings_us"] = {
                    "count": int(st.group(1)),
                    **{k: float(v) for k, v in _KV_RE.findall(st.group(2))},
                }
            table = None
            continue
        m = re.match(r"^(\d+) nodes observed", line.strip())
        if m:
            section["nodes_observed"] = int(m.group(1))
            continue
        if line.strip().startswith("Delegate Statistics"):
            in_delegates, table = True, None
            section.setdefault("delegate_statistics", [])
            continue
        if in_delegates:
            d = _DELEGATE_ROW_RE.match(line.strip())
            if d and not line.strip().startswith("Op Name"):
                section["delegate_statistics"].append(
                    {"name": d.group(1), "count": int(d.group(2)), "avg_us": float(d.group(3)),
                     "min_us": int(d.group(4)), "max_us": int(d.group(5)), "total_us": int(d.group(6))}
                )  # fmt: skip
            continue
        if table is not None and parser is not None:
            if not line.strip():
                table = None
                continue
            r = parser[0].match(line)
            if r:
                table.append({k: t(v) for (k, t), v in zip(parser[1], r.groups(), strict=True)})
    return out


# --------------------------------------------------------------------------------------------------
# litert-benchmark (Python tool in the ai-edge-litert wheel)
# --------------------------------------------------------------------------------------------------

_LB_RESULT_RE = re.compile(
    r"^(Model initialization|Warmup \(first\)|Warmup \(avg\)|Inference \((?:avg|min|max|median|std|p5|p95)\)):\s*("
    + _NUM
    + r")\s*ms(?:\s*\((\d+) runs\))?",
    re.M,
)
_LB_LOG = {
    "model": re.compile(r"benchmark_litert_model:\s*Model:\s*(\S.*?)\s*$", re.M),
    "size_mb": re.compile(r"benchmark_litert_model:\s*Model size:\s*(" + _NUM + r")\s*MB", re.M),
    "accelerators": re.compile(r"benchmark_litert_model:\s*Accelerators:\s*(\S.*?)\s*$", re.M),
    "threads": re.compile(r"benchmark_litert_model:\s*Num threads:\s*(\d+)", re.M),
    "signature": re.compile(r"benchmark_litert_model:\s*Using signature:\s*(\S.*?)\s*$", re.M),
}
_LB_KEYS = {
    "Model initialization": "init_ms",
    "Warmup (first)": "warmup_first_ms",
    "Warmup (avg)": "warmup_avg_ms",
    "Inference (avg)": "avg_ms",
    "Inference (min)": "min_ms",
    "Inference (max)": "max_ms",
    "Inference (median)": "median_ms",
    "Inference (std)": "std_ms",
    "Inference (p5)": "p5_ms",
    "Inference (p95)": "p95_ms",
}


def _litert_text_to_json(text: str) -> tuple[dict[str, Any], list[str]]:
    """The fields of ``--result_json`` recovered from the text output, plus its error lines."""
    lat: dict[str, Any] = {}
    for m in _LB_RESULT_RE.finditer(text):
        key = _LB_KEYS[m.group(1)]
        lat[key] = float(m.group(2))
        if m.group(3) is not None:
            lat["num_warmup_runs" if key == "warmup_avg_ms" else "num_runs"] = int(m.group(3))
    d: dict[str, Any] = {"latency": lat} if "avg_ms" in lat else {}
    for k, rx in _LB_LOG.items():
        m = rx.search(text)
        if m:
            d[k] = m.group(1)
    fa = re.search(r"^Fully accelerated:\s*(True|False)", text, re.M)
    if fa:
        d["fully_accelerated"] = fa.group(1) == "True"
    tp = re.search(r"^Throughput:\s*(" + _NUM + r")\s*MB/s", text, re.M)
    if tp:
        d["throughput_mb_s"] = float(tp.group(1))
    errors = [
        ln.strip()
        for ln in text.splitlines()
        if re.search(r"\bERROR benchmark_litert_model:|^Traceback|^\w*Error:", ln.strip())
    ]
    return d, errors


def parse_litert_benchmark(text: str) -> dict[str, Any]:
    """Parse the output of ``litert-benchmark`` (its stdout, with or without its stderr log lines, or
    the JSON of ``--result_json``) into the bench-result schema."""
    j = _litert_json(text)
    if j is not None:
        d, errors, from_json = j, [], True
        d = {**d, "model": d.get("model"), "threads": d.get("num_threads")}
    else:
        d, errors = _litert_text_to_json(text)
        from_json = False
    lat = d.get("latency") or {}
    ok = "avg_ms" in lat and not errors
    error = None
    if not ok:
        error = (
            "litert-benchmark failed: " + " | ".join(errors[:5])
            if errors
            else "no 'BENCHMARK RESULTS' block: litert-benchmark did not finish or the output is truncated"
        )
    warnings = (
        [
            ln.strip()
            for ln in text.splitlines()
            if re.match(r"^\s*(WARNING|ERROR)\b", ln) or " WARNING " in ln
        ]
        if ok and not from_json
        else []
    )

    def f(key: str) -> float | None:
        v = lat.get(key)
        return float(v) if v is not None else None

    latency: dict[str, Any] = dict.fromkeys(LATENCY_KEYS)
    latency.update({"p50": f("median_ms"), "mean": f("avg_ms"), "min": f("min_ms"), "max": f("max_ms"),
                    "std": f("std_ms"), "p5": f("p5_ms"), "p95": f("p95_ms")})  # fmt: skip
    settings: dict[str, Any] = {"batch": 1}
    if d.get("threads") is not None:
        settings["threads"] = int(d["threads"])
    acc = d.get("accelerators")
    if acc is not None:
        settings["accelerators"] = (
            list(acc) if isinstance(acc, list) else [a.strip() for a in str(acc).split("|")]
        )
    if "fully_accelerated" in d:
        settings["fully_accelerated"] = bool(d["fully_accelerated"])
    if "XNNPACK delegate for CPU" in text:  # LiteRT's CPU accelerator runs through XNNPACK
        settings["xnnpack"] = True
    model = d.get("model")
    size_mib = d.get("model_size_mb", d.get("size_mb"))
    return _result(
        "litert-benchmark",
        name=PurePath(model).name if model else "litert-benchmark",
        artifact=model,
        model_size_mib=float(size_mib) if size_mib is not None else None,  # MiB, rounded by the tool
        settings=settings,
        warmup=lat.get("num_warmup_runs"),
        runs=lat.get("num_runs"),
        runtime="litert-benchmark",
        load_ms=f("init_ms"),
        first_inference_ms=f("warmup_first_ms"),
        warmup_mean_ms=f("warmup_avg_ms"),
        latency_ms=latency,
        throughput_mb_s=d.get("throughput_mb_s"),
        signature=d.get("signature"),
        error=error,
        warnings=warnings,
        source_format="litert-benchmark --result_json" if from_json else "litert-benchmark",
    )
