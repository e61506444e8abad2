"""Run directories: records.jsonl appended atomically, manifest, resume, history."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import ValidationError

from harness.clock import now, run_id_now
from harness.errors import ConfigError, HarnessError, SchemaError
from harness.manifest import Manifest, parse_manifest
from harness.records import Record, parse_record

log = logging.getLogger(__name__)

RECORDS = "records.jsonl"
MANIFEST = "manifest.json"
RUN_LOG = "run.log"
LOCK, HOLDER = ".lock", ".lock.holder"
TRACE_LOGGER = "harness.trace"  # tracebacks of failed cells: run.log only, never stderr
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def new_run_id() -> str:
    return run_id_now()


def check_run_id(run_id: str) -> str:
    """A run id names one folder under runs/: no separators, no dot-only names, bounded."""
    if not RUN_ID.fullmatch(run_id):
        shown = run_id if len(run_id) <= 40 else run_id[:40] + "..."
        raise ConfigError(f"--run-id {shown!r}: use 1 to 100 ASCII letters, digits, '-', '_' "
                          "or '.', starting with a letter or digit")
    return run_id


def write_json_atomic(path: Path, data: Any) -> None:
    """Write a temporary file, fsync it and rename it into place; on error remove it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_text(path: Path) -> str:
    """A UTF-8 text file, or one HarnessError naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror})") from None


class RunStore:
    """One run directory; records are appended one line at a time, never rewritten."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.records_path = run_dir / RECORDS

    @classmethod
    def open(cls, results_dir: Path, run_id: str) -> RunStore:
        run_dir = results_dir / "runs" / check_run_id(run_id)
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
        """Cells a resumed run does not redo: only `ok` ones (skipped and failed are retried)."""
        return {r.key for r in self.records() if r.status == "ok"}

    def manifest(self) -> dict[str, Any]:
        """The validated manifest ({} before the first write); one error if damaged."""
        return read_manifest(self.dir / MANIFEST).model_dump(exclude_none=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run directory; a second run of the same id is told who holds it.

        The lock is an OS file lock: a killed run releases it; the holder file only names it.
        """
        lock = FileLock(self.dir / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise ConfigError(f"run {self.dir.name} is in use by {self._holder()}; wait for it "
                              "to finish or use another --run-id") from None
        try:
            write_json_atomic(self.dir / HOLDER, {"pid": os.getpid(), "host": socket.gethostname(),
                                                  "since": now()})
            yield
        finally:
            (self.dir / HOLDER).unlink(missing_ok=True)
            lock.release()

    def _holder(self) -> str:
        try:
            holder = json.loads((self.dir / HOLDER).read_text(encoding="utf-8"))
            return f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    @contextmanager
    def logging_to_file(self) -> Iterator[None]:
        """Everything harness logs while the run goes on (INFO and up) also goes to run.log,
        with the full traceback of every failed cell (`log_trace`)."""
        handler = logging.FileHandler(self.dir / RUN_LOG, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        root, trace = logging.getLogger("harness"), logging.getLogger(TRACE_LOGGER)
        level = root.level
        if root.getEffectiveLevel() > logging.INFO:
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        trace.addHandler(handler)
        trace.propagate = False
        try:
            yield
        finally:
            root.removeHandler(handler)
            trace.removeHandler(handler)
            root.setLevel(level)
            handler.close()

    @staticmethod
    def log_trace(what: str, trace: str) -> None:
        logging.getLogger(TRACE_LOGGER).error("%s\n%s", what, trace.rstrip())

    def update_manifest(self, **fields: Any) -> None:
        data = read_manifest(self.dir / MANIFEST).model_dump(exclude_none=True) | fields
        manifest = parse_manifest(data, str(self.dir / MANIFEST))
        write_json_atomic(self.dir / MANIFEST, manifest.model_dump(mode="json",
                                                                   exclude_none=True))


def read_manifest(path: Path) -> Manifest:
    """manifest.json validated and migrated; an empty Manifest when there is none yet."""
    if not path.exists():
        return Manifest()
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError:
        raise HarnessError(f"{path}: not valid JSON") from None
    return parse_manifest(data, str(path))


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
    lines = read_text(path).splitlines()
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
