"""Wall-clock time stamps (UTC, ISO 8601) and run ids: the one home of `datetime.now`."""
from __future__ import annotations

from datetime import UTC, datetime


def now(timespec: str = "seconds") -> str:
    """The current UTC time, e.g. '2026-11-26T03:30:14+00:00'."""
    return datetime.now(UTC).isoformat(timespec=timespec)


def run_id_now() -> str:
    """A run id from the current UTC time, e.g. '20261126T033014Z'."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
