"""Display formatting of leaderboard frames: short headers, units, rounding."""
from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from harness.publish.tables import ALWAYS_SHOWN, DISPLAY, FOLDED, NOT_SIGNIFICANT


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: object, col: str) -> str:
    if _missing(value):
        return "–"
    if col in ("unstable", "pareto"):
        return ("yes" if col == "unstable" else "★") if bool(value) else ""
    if col == "metric_delta":
        return f"{value:+.2f}"
    if col in ("speedup", "speedup_ci_low", "speedup_ci_high", "speedup_vs_cpu", "size_ratio"):
        return f"{value:.2f}×"
    if col in ("params", "nonzero_params"):
        return f"{value / 1e6:.2f}M"
    if col in ("onnx_mb", "onnx_zip_mb", "metric", "glue_score", "latency_p50_ms",
               "latency_p90_ms"):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def task_heading(rows: pd.DataFrame) -> str:
    """'sst2 · accuracy' for one task's rows (the metric name leaves the table)."""
    names = rows["metric_name"].dropna().unique()
    return f"{rows['task'].iloc[0]} · {', '.join(map(str, names))}" if len(names) else str(
        rows["task"].iloc[0])


def _has_value(col: pd.Series) -> bool:
    if col.name == "unstable":
        return bool(col.fillna(False).astype(bool).any())
    return bool(col.notna().any())


def display_table(frame: pd.DataFrame, drop: Iterable[str] = (), compact: bool = False
                  ) -> pd.DataFrame:
    """Strings ready to print, with the short headers of DISPLAY; other columns keep names.

    compact leaves out optional columns with no value in any row (e.g. GFLOP/s on CPU-only runs).
    """
    cols = [c for c in frame.columns if c not in {*drop, *FOLDED}]
    if compact:
        cols = [c for c in cols if c in ALWAYS_SHOWN or _has_value(frame[c])]
    values = {c: [_fmt(v, c) for v in frame[c]] for c in cols}
    if "metric" in values and {"metric_ci_low", "metric_ci_high"} <= set(frame.columns):
        values["metric"] = [_with_interval(text, lo, hi) for text, lo, hi in zip(
            values["metric"], frame["metric_ci_low"], frame["metric_ci_high"])]
    if "metric_delta" in values and "delta_significant" in frame.columns:
        values["metric_delta"] = [_mark_delta(text, sig) for text, sig in zip(
            values["metric_delta"], frame["delta_significant"])]
    shown = pd.DataFrame({DISPLAY.get(c, c): values[c] for c in cols})
    return shown.astype(object)


def _with_interval(text: str, low: object, high: object) -> str:
    """'82.60 [78.92, 86.03]': the metric with its 95% bootstrap interval."""
    if _missing(low) or _missing(high) or text == "–":
        return text
    return f"{text} [{low:.2f}, {high:.2f}]"


def _mark_delta(text: str, significant: object) -> str:
    """A delta that Benjamini-Hochberg does not call significant is marked 'n.s.'."""
    if _missing(significant) or text == "–" or bool(significant):
        return text
    return f"{text} {NOT_SIGNIFICANT}"
