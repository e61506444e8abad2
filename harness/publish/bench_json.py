"""Timed records as a pytest-benchmark JSON file, for `pytest-benchmark compare` and CI boards.

The layout and the statistics (quartiles by pytest-benchmark's own method, Tukey fences,
outlier counts) follow pytest_benchmark 5.x (`stats.py`, `plugin.py`); times are in seconds.
"""
from __future__ import annotations

import platform
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.clock import now
from harness.records import Record
from harness.store import write_json_atomic
from harness.timing.env import cpu_info, git_state, machine_fingerprint

FORMAT_VERSION = "5.1.0"  # the pytest-benchmark JSON layout written when it is not installed


def _quartiles(data: list[float]) -> tuple[float, float]:
    """Q1 and Q3 as pytest-benchmark computes them (Wikipedia methods 2 and 3)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2 == 0:
        return statistics.median(data[: n // 2]), statistics.median(data[n // 2:])
    k, r = n // 4, n % 4
    if r == 1:
        q1 = 0.25 * data[k - 1] + 0.75 * data[k]
        q3 = 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
    else:
        q1 = 0.75 * data[k] + 0.25 * data[k + 1]
        q3 = 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return q1, q3


def benchmark_stats(data: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's `stats` block for one benchmark from samples in seconds."""
    data = list(data)
    ordered = sorted(data)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if len(data) > 1 else 0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    if len(data) == 1:
        low = high = data[0]
    else:
        low = ordered[bisect_left(ordered, q1 - 1.5 * iqr)]
        high = ordered[bisect_right(ordered, q3 + 1.5 * iqr) - 1]
    stddev_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    iqr_out = sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    total = sum(data)
    return {
        "min": ordered[0], "max": ordered[-1], "mean": mean, "stddev": stddev,
        "rounds": len(data), "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_out, "stddev_outliers": stddev_out,
        "outliers": f"{stddev_out};{iqr_out}", "ld15iqr": low, "hd15iqr": high,
        "ops": len(data) / total if total else 0, "total": total, "data": data, "iterations": 1,
    }


def _benchmark(record: Record) -> dict[str, Any]:
    variant = record.variant or record.method
    param = f"{record.model}-{record.task}-{record.provider}-b{record.batch_size}-s{record.seq_len}"
    name = f"{variant}[{param}]"
    measurement = record.session.get("measurement", {})
    return {
        "group": f"{record.task} {record.provider} batch={record.batch_size} "
                 f"seq={record.seq_len}",
        "name": name,
        "fullname": f"harness/{record.run_id}::{name}",
        "params": {"model": record.model, "task": record.task, "method": variant,
                   "provider": record.provider, "batch_size": record.batch_size,
                   "seq_len": record.seq_len},
        "param": param,
        "extra_info": {k: v for k, v in {
            "metric_name": record.metric_name, "metric_value": record.metric_value,
            "throughput_per_s": record.throughput_per_s, "unstable": record.unstable,
            "unstable_reason": record.unstable_reason, "onnx_bytes": record.onnx_bytes,
            "machine": record.machine, "efficiency": record.efficiency}.items()
            if v is not None},
        "options": {"disable_gc": True, "timer": "perf_counter_ns", "min_rounds": None,
                    "max_time": None, "min_time": None, "precision": None,
                    "warmup": measurement.get("warmup")},
        "stats": benchmark_stats([ms / 1e3 for ms in record.samples_ms]),
    }


def default_machine_info() -> dict[str, Any]:
    """pytest-benchmark's machine_info keys, plus the harness machine fingerprint."""
    return {
        "node": platform.node(), "processor": platform.processor(),
        "machine": platform.machine(), "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": platform.python_version(),
        "python_version": platform.python_version(), "python_build": list(platform.python_build()),
        "release": platform.release(), "system": platform.system(),
        "cpu": cpu_info(), "harness_machine": machine_fingerprint(),
    }


def _commit_info(records: list[Record]) -> dict[str, Any]:
    sha = next((r.env.get("git_sha") for r in records if r.env.get("git_sha")), None)
    dirty = next((r.env.get("git_dirty") for r in records if r.env.get("git_sha")), None)
    if sha is None:
        state = git_state()
        sha, dirty = state["git_sha"], state["git_dirty"]
    return {"id": sha or "unknown", "time": None, "author_time": None, "dirty": bool(dirty),
            "project": "harness", "branch": "(unknown)"}


def write_pytest_benchmark_json(records: list[Record], path: str | Path,
                                machine_info: dict[str, Any] | None = None) -> int:
    """Write the ok records that carry raw samples; returns how many benchmarks were written."""
    timed = [r for r in records if r.status == "ok" and r.samples_ms]
    try:
        version = metadata.version("pytest-benchmark")
    except metadata.PackageNotFoundError:
        version = FORMAT_VERSION
    data = {
        "machine_info": machine_info if machine_info is not None else default_machine_info(),
        "commit_info": _commit_info(timed),
        "benchmarks": [_benchmark(r) for r in timed],
        "datetime": now(timespec="microseconds"),
        "version": version,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)
    return len(timed)
