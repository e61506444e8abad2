"""'Since last week': the latest run compared with the run a week before it, both directions."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pandas as pd

from harness.compare import (
    DEFAULT_THRESHOLDS,
    CellComparison,
    Comparison,
    Threshold,
    compare_run_dirs,
    metric_detail,
    parse_threshold,
)
from harness.errors import HarnessError
from harness.publish.tables import CELL

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Change:
    """One cell beyond one threshold, either way; untested when it had no samples/predictions."""

    key: tuple
    what: str  # the threshold's field: latency_ms_p50 ... or metric
    change: str
    direction: str  # slower, faster, worse, better
    tested: bool


@dataclass
class Weekly:
    """The comparison behind the table, or why there is none."""

    latest: str
    baseline: str | None
    note: str = ""
    comparison: Comparison | None = None
    changes: list[Change] = field(default_factory=list)
    unstable: set[tuple] = field(default_factory=set)  # cells timed unstable in either run


def pick_baseline(runs: pd.DataFrame, latest: str) -> tuple[str | None, str]:
    """The newest run started at least a week before `latest`, else the oldest run (noted)."""
    started = pd.to_datetime(runs["started"], utc=True, errors="coerce", format="ISO8601")
    when = dict(zip(runs["run_id"], started))
    others = runs[runs["run_id"] != latest].assign(_t=started)
    if others.empty or pd.isna(when[latest]):
        return None, "No earlier run to compare with."
    week_old = others[others["_t"] <= when[latest] - WEEK]
    if len(week_old):
        return str(week_old.sort_values("_t")["run_id"].iloc[-1]), ""
    oldest = str(others.sort_values("_t")["run_id"].iloc[0])
    return oldest, "No run is a week older than the latest; compared with the oldest run."


def _latency_change(cell: CellComparison, t: Threshold) -> Change | None:
    iv = cell.latency.get(t.field)
    if iv is None or abs(iv.estimate - 1) * 100 <= t.limit:
        return None
    tested = not math.isnan(iv.low)
    if tested and not iv.significant:
        return None
    ci = f" (95% CI {iv.low:.3f}–{iv.high:.3f}×)" if tested else " (no samples: untested)"
    return Change(cell.key, t.field, f"{(iv.estimate - 1) * 100:+.1f}%{ci}",
                  "slower" if iv.estimate > 1 else "faster", tested)


def _metric_change(cell: CellComparison, t: Threshold) -> Change | None:
    delta = cell.metric_delta
    if delta is None or abs(delta) <= t.limit:
        return None
    tested = cell.metric_test != "unpaired"
    if tested and not cell.metric_significant:
        return None
    how = metric_detail(cell) if tested else "unpaired: untested"
    return Change(cell.key, "metric", f"{delta:+.2f} points ({how})",
                  "better" if delta > 0 else "worse", tested)


def changes(cmp: Comparison) -> list[Change]:
    """Cells whose change passes a threshold either way (significant where it can be tested)."""
    out = []
    for cell in cmp.cells:
        for t in cmp.thresholds:
            found = _metric_change(cell, t) if t.field == "metric" else _latency_change(cell, t)
            if found:
                out.append(found)
    return out


def unstable_cells(records: pd.DataFrame, run_ids: list[str]) -> set[tuple]:
    """Cells whose timing was flagged unstable in any of the runs."""
    if "unstable" not in records:
        return set()
    flagged = records[records["run_id"].isin(run_ids) & records["unstable"].eq(True)]
    return {tuple(row) for row in flagged[CELL].itertuples(index=False)}


def since_last_week(results_dir: Path, runs: pd.DataFrame, records: pd.DataFrame,
                    thresholds: list[str] | None = None) -> Weekly | None:
    """Compare the latest run with the one a week earlier through `harness compare`."""
    if runs.empty:
        return None
    texts = thresholds or DEFAULT_THRESHOLDS
    for text in texts:
        parse_threshold(text)  # a bad threshold is the user's error, before any work
    latest = str(runs["run_id"].iloc[-1])
    baseline, note = pick_baseline(runs, latest)
    weekly = Weekly(latest, baseline, note)
    if baseline is None:
        return weekly
    root = results_dir / "runs"
    try:
        weekly.comparison = compare_run_dirs(root / latest, root / baseline, thresholds=texts)
    except HarnessError as exc:  # e.g. different machines: latencies are not comparable
        weekly.note = " ".join(filter(None, [note, f"Not compared: {exc}."]))
        return weekly
    weekly.changes = changes(weekly.comparison)
    weekly.unstable = unstable_cells(records, [latest, baseline])
    return weekly
