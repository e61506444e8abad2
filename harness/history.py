"""Runs over time: one row per run from its manifest, and all runs' records as one frame."""
from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.publish.tables import STATUSES, SUMMARY_KEYS, records_frame, run_summary
from harness.store import MANIFEST, RECORDS, list_runs, load_records

log = logging.getLogger(__name__)

def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise HarnessError(f"{path}: not valid JSON") from None


def history_frame(results_dir: Path) -> pd.DataFrame:
    """One row per run under results_dir/runs: metadata and ok/failed/skipped counts.

    Counts missing from a manifest (a run still going, or one that crashed) are counted from
    its records.
    """
    rows = []
    for run_dir in list_runs(results_dir):
        row = run_summary(_read_manifest(run_dir))
        row["run_id"] = row["run_id"] or run_dir.name
        if any(row[s] is None for s in STATUSES) and (run_dir / RECORDS).exists():
            counts = Counter(r.status for r in load_records(run_dir / RECORDS))
            row.update({s: counts.get(s, 0) for s in STATUSES})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*SUMMARY_KEYS, *STATUSES])
    return frame.sort_values(["started", "run_id"], na_position="first").reset_index(drop=True)


def all_records(results_dir: Path) -> pd.DataFrame:
    """Every run's records (latest per cell) as one flat frame, migrated to the current schema."""
    frames = []
    for run_dir in list_runs(results_dir):
        if not (run_dir / RECORDS).exists():
            continue
        frame = records_frame(load_records(run_dir / RECORDS))
        frame["run_dir"] = run_dir.name
        frames.append(frame)
    if not frames:
        return records_frame([]).assign(run_dir=pd.Series(dtype=object))
    return pd.concat(frames, ignore_index=True)
