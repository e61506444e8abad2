"""Display formatting of leaderboard frames: short headers, units, rounding."""
from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from harness.publish.tables import ALWAYS_SHOWN, DISPLAY


def _fmt(value: object, col: str) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if col in ("unstable", "pareto"):
        return ("yes" if col == "unstable" else "★") if bool(value) else ""
    if col == "metric_delta":
        return f"{value:+.2f}"
    if col in ("speedup", "speedup_vs_cpu", "size_ratio"):
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
    cols = [c for c in frame.columns if c not in set(drop)]
    if compact:
        cols = [c for c in cols if c in ALWAYS_SHOWN or _has_value(frame[c])]
    shown = pd.DataFrame({DISPLAY.get(c, c): [_fmt(v, c) for v in frame[c]] for c in cols})
    return shown.astype(object)
