"""95% intervals of a record's p50 latency and main metric, for trends and exports.

A record's own interval wins when it has one (fields other parts of the harness may add:
`latency_ms_p50_ci_low/high`, `metric_ci_low/high`); otherwise the p50 interval comes from the
order statistics of the run's raw samples, and an accuracy's from a Wilson interval over its
dev examples. Rows are records as dicts or frame rows; missing fields are read as None.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_SAMPLES_FOR_CI = 6  # fewer samples cannot bound a median at 95%


def _get(row: Any, name: str) -> Any:
    """A field that older stores or records may lack: None when absent or missing."""
    value = row.get(name) if hasattr(row, "get") else None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def median_ci(samples: Any) -> tuple[float | None, float | None]:
    """95% interval of the median from the order statistics of one run's raw samples."""
    from scipy import stats

    x = np.asarray(samples if samples is not None else [], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < MIN_SAMPLES_FOR_CI:
        return None, None
    ci = stats.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(0.95)
    return float(ci.low), float(ci.high)


def wilson_ci(accuracy: float, n: int) -> tuple[float, float]:
    """95% Wilson interval of an accuracy measured on n examples."""
    from scipy import stats

    ci = stats.binomtest(int(round(accuracy * n)), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def latency_interval(row: Any) -> tuple[float | None, float | None]:
    """The record's own p50 interval when it has one, else one from its samples."""
    low, high = _get(row, "latency_ms_p50_ci_low"), _get(row, "latency_ms_p50_ci_high")
    if low is not None and high is not None:
        return float(low), float(high)
    return median_ci(_get(row, "samples_ms"))


def metric_interval(row: Any) -> tuple[float | None, float | None, str]:
    """The metric's 95% interval in points and how it was made ('' when there is none)."""
    low, high = _get(row, "metric_ci_low"), _get(row, "metric_ci_high")
    if low is not None and high is not None:
        return float(low) * 100, float(high) * 100, "bootstrap"
    value, n = _get(row, "metric_value"), _get(row, "n_eval")
    if value is not None and n and _get(row, "metric_name") == "accuracy":
        lo, hi = wilson_ci(float(value), int(n))
        return lo * 100, hi * 100, "Wilson"
    return None, None, ""


