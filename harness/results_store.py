"""The results store: every run's records as Parquet beside the run directories, read by DuckDB.

Layout under `<results_dir>/store/`: `records/<run_id>.parquet` (the latest record of each cell
of the run, keyed by run id and record key) and `runs/<run_id>.parquet` (one row of run
metadata). A run's two files are rewritten whole on every ingest, so ingesting a run twice, or
again after a resume, leaves each record once. Run directories stay the source of truth: the
store can always be rebuilt from them.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import types
import typing
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from harness.clock import now
from harness.errors import HarnessError
from harness.records import Record
from harness.store import MANIFEST, RECORDS, list_runs, load_records

log = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "skipped")
# summary field -> manifest keys read for it, first present wins
RUN_FIELDS = {
    "run_id": ("run_id",),
    "suite": ("suite", "suite_name"),
    "started": ("started_at", "started", "start"),
    "finished": ("finished_at", "finished", "end"),
    "git_sha": ("git_sha", "git"),
    "machine": ("machine", "machine_fingerprint"),
}


def run_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's run metadata under fixed names; counts from `counts`/`status_counts`."""
    out = {name: next((manifest[k] for k in keys if manifest.get(k) is not None), None)
           for name, keys in RUN_FIELDS.items()}
    counts = manifest.get("counts") or manifest.get("status_counts") or {}
    for status in STATUSES:
        out[status] = counts.get(status, manifest.get(status))
    return out


STORE = "store"
KEY_FIELDS = ("model", "task", "variant", "provider", "batch_size", "seq_len")
RUN_COLUMNS = ("run_id", "suite", "started", "finished", "git_sha", "machine", *STATUSES,
               "n_records", "wall_seconds", "signature", "ingested_at")
_SCALARS: dict[Any, pa.DataType] = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
                                     str: pa.string()}
_LOCK_SECONDS = 120


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """Arrow type of a Record field, and whether values are stored as JSON text."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string(), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        if item in _SCALARS:
            return pa.list_(_SCALARS[item]), False
    return pa.string(), True  # dicts and anything else: JSON text


def record_schema() -> tuple[pa.Schema, set[str]]:
    """The records table's schema from the Record model, plus the key and the JSON columns."""
    fields, as_json = [pa.field("record_key", pa.string())], set()
    for name, info in Record.model_fields.items():
        kind, is_json = _arrow_type(info.annotation)
        fields.append(pa.field(name, kind))
        if is_json:
            as_json.add(name)
    return pa.schema(fields), as_json


def record_key(row: dict[str, Any]) -> str:
    return "|".join(str(row[k]) for k in KEY_FIELDS)


def _record_rows(records: list[Record], run_id: str) -> pa.Table:
    schema, as_json = record_schema()
    rows = []
    for record in records:
        row = record.model_dump(mode="json")
        row["run_id"] = run_id  # the store's key is the run directory's name
        row["variant"] = row.get("variant") or row["method"]
        row["record_key"] = record_key(row)
        rows.append({k: json.dumps(v, sort_keys=True) if k in as_json else v
                     for k, v in row.items()})
    return pa.Table.from_pylist(rows, schema=schema)


def _signature(run_dir: Path) -> str:
    """Changes whenever a record is appended or the manifest is rewritten."""
    parts = []
    for name in (RECORDS, MANIFEST):
        path = run_dir / name
        stat = path.stat() if path.exists() else None
        parts.append(f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "-")
    return "/".join(parts)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """A run's manifest.json, {} when it has none."""
    path = run_dir / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise HarnessError(f"{path}: not valid JSON") from None


def _run_row(run_dir: Path, records: list[Record]) -> dict[str, Any]:
    manifest = read_manifest(run_dir)
    row = run_summary(manifest)
    counts = Counter(r.status for r in records)
    row.update({s: counts.get(s, 0) for s in STATUSES})
    row.update(run_id=run_dir.name, n_records=len(records),
               wall_seconds=manifest.get("wall_seconds"), signature=_signature(run_dir),
               ingested_at=now())
    if row["started"] is None and records:
        row["started"] = min(r.created_at for r in records)
    return {k: (None if row.get(k) is None else str(row[k]) if k in ("started", "finished")
                else row[k]) for k in RUN_COLUMNS}


def _runs_table(rows: list[dict[str, Any]]) -> pa.Table:
    ints = {*STATUSES, "n_records"}
    schema = pa.schema([pa.field(c, pa.int64() if c in ints else pa.float64()
                                 if c == "wall_seconds" else pa.string()) for c in RUN_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class ResultsStore:
    """The Parquet store of one results directory."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self.dir = results_dir / STORE
        self.records_dir = self.dir / "records"
        self.runs_dir = self.dir / "runs"

    def _lock(self) -> FileLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dir / ".lock", timeout=_LOCK_SECONDS)

    def ingest(self, run_dir: Path) -> int:
        """Write (or rewrite) one run's records and metadata; returns the number of records."""
        records = load_records(run_dir / RECORDS) if (run_dir / RECORDS).exists() else []
        table = _record_rows(records, run_dir.name)
        try:
            with self._lock():
                self.records_dir.mkdir(exist_ok=True)
                self.runs_dir.mkdir(exist_ok=True)
                _write_atomic(table, self.records_dir / f"{run_dir.name}.parquet")
                _write_atomic(_runs_table([_run_row(run_dir, records)]),
                              self.runs_dir / f"{run_dir.name}.parquet")
        except Timeout:
            raise HarnessError(f"{self.dir}: locked by another process for "
                               f"{_LOCK_SECONDS}s") from None
        log.debug("store: %s (%d records)", run_dir.name, len(records))
        return len(records)

    def _stored_signatures(self) -> dict[str, str]:
        files = self.files("runs")
        if not files:
            return {}
        table = pa.concat_tables([pq.read_table(f, columns=["run_id", "signature"])
                                  for f in files])
        return dict(zip(table["run_id"].to_pylist(), table["signature"].to_pylist()))

    def stale(self) -> tuple[list[Path], list[str]]:
        """Run directories missing from or changed since the store; stored runs gone from disk."""
        stored = self._stored_signatures()
        runs = list_runs(self.results_dir)
        changed = [d for d in runs if stored.get(d.name) != _signature(d)]
        gone = sorted(set(stored) - {d.name for d in runs})
        return changed, gone

    def sync(self) -> list[str]:
        """Ingest the runs that are missing or changed, drop runs gone from disk; their ids."""
        changed, gone = self.stale()
        for run_dir in changed:
            self.ingest(run_dir)
        for run_id in gone:
            self._drop(run_id)
        return [d.name for d in changed] + gone

    def _drop(self, run_id: str) -> None:
        with self._lock():
            for folder in (self.records_dir, self.runs_dir):
                (folder / f"{run_id}.parquet").unlink(missing_ok=True)

    def rebuild(self) -> int:
        """Throw the store away and import every run directory again; returns the run count."""
        with self._lock():
            for folder in (self.records_dir, self.runs_dir):
                shutil.rmtree(folder, ignore_errors=True)
        runs = list_runs(self.results_dir)
        for run_dir in runs:
            self.ingest(run_dir)
        return len(runs)

    def files(self, table: str) -> list[Path]:
        folder = self.records_dir if table == "records" else self.runs_dir
        return sorted(folder.glob("[!.]*.parquet")) if folder.is_dir() else []

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for t in ("records", "runs") for f in self.files(t))


def empty_table(table: str) -> pa.Table:
    """The schema of a table with no rows (a store with no runs yet)."""
    return record_schema()[0].empty_table() if table == "records" else _runs_table([])
