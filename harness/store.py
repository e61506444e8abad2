"""Run directories: records.jsonl appended atomically, manifest, resume, history."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.clock import run_id_now
from harness.errors import HarnessError, SchemaError
from harness.records import Record, parse_record

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"


def new_run_id() -> str:
    return run_id_now()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write to a temporary file and rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class RunStore:
    """One run directory; records are appended one line at a time, never rewritten."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.records_path = run_dir / RECORDS

    @classmethod
    def open(cls, results_dir: Path, run_id: str) -> RunStore:
        run_dir = results_dir / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        return cls(run_dir)

    def append(self, record: Record) -> None:
        """One write of one whole line with O_APPEND, then fsync: a crash loses no record."""
        line = (record.model_dump_json() + "\n").encode()
        if _torn(self.records_path):
            line = b"\n" + line  # a crash mid-write left a partial line: end it first
        fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self, latest_only: bool = True) -> list[Record]:
        """All records; with latest_only, the last record of each cell key."""
        if not self.records_path.exists():
            return []
        return load_records(self.records_path, latest_only)

    def finished_keys(self) -> set[tuple]:
        return {r.key for r in self.records() if r.status in ("ok", "skipped")}

    def manifest(self) -> dict[str, Any]:
        path = self.dir / MANIFEST
        return json.loads(path.read_text()) if path.exists() else {}

    def update_manifest(self, **fields: Any) -> None:
        data = self.manifest() | fields
        write_json_atomic(self.dir / MANIFEST, data)


def _is_torn_prefix(line: str) -> bool:
    """A record cut short by a crash: an object that never closed."""
    return line.startswith("{") and not line.rstrip().endswith("}")


def _torn(path: Path) -> bool:
    """True when the file's last line has no newline (a write cut short)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) != b"\n"


def load_records(path: Path, latest_only: bool = True) -> list[Record]:
    """Read records.jsonl; a truncated last line (crash mid-write) is ignored."""
    if not path.exists():
        raise HarnessError(f"{path}: no records file")
    records: dict[tuple, Record] = {}
    ordered: list[Record] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) or _is_torn_prefix(line):
                log.warning("%s: partial record from an interrupted write, ignored", where)
                continue
            raise HarnessError(f"{where}: not valid JSON") from None
        try:
            record = parse_record(data, where)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SchemaError(f"{where}: {loc}: {first['msg']}") from None
        ordered.append(record)
        records[record.key] = record
    return list(records.values()) if latest_only else ordered


def list_runs(results_dir: Path) -> list[Path]:
    runs = results_dir / "runs"
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if (p / RECORDS).exists() or (p / MANIFEST).exists())
