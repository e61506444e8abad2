"""Write every output of a run from its records: tables, HTML report, pytest-benchmark JSON."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.publish.bench_json import write_pytest_benchmark_json
from harness.publish.html import write_report
from harness.publish.markdown import write_tables
from harness.records import Record

log = logging.getLogger(__name__)


def publish(records: list[Record], run_dir: Path, manifest: dict[str, Any]) -> list[Path]:
    """Rebuild leaderboard.md/.csv, report.html and benchmark.json in `run_dir`."""
    written = list(write_tables(records, run_dir) or [])
    written.append(write_report(records, run_dir, manifest))
    bench = run_dir / "benchmark.json"
    write_pytest_benchmark_json([r for r in records if r.status == "ok"], bench,
                                machine_info=manifest.get("env"))
    written.append(bench)
    return written
