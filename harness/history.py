"""Runs over time: one row per run from the results store, and all runs' records as one frame."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from harness.publish.tables import records_frame
from harness.query import stored_runs
from harness.results_store import RUN_FIELDS, STATUSES, ResultsStore
from harness.store import RECORDS, list_runs, load_records

log = logging.getLogger(__name__)


def history_frame(results_dir: Path, rebuild: bool = False) -> pd.DataFrame:
    """One row per run (metadata, ok/failed/skipped counts) from the results store.

    Run directories new or changed since the last import are imported first; with rebuild,
    the store is thrown away and every run directory imported again.
    """
    store = ResultsStore(results_dir)
    if rebuild:
        log.info("store: rebuilt from %d runs", store.rebuild())
    elif synced := store.sync():
        log.info("store: imported %s", ", ".join(synced))
    return stored_runs(store)[[*RUN_FIELDS, *STATUSES]]


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
