"""Write the site: sync the store, read it once, render every page, copy the runs' reports."""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.compare import to_markdown
from harness.query import run_query, stored_runs
from harness.results_store import ResultsStore
from harness.site.html import slug
from harness.site.pages import compare_file, compare_page, index_page, task_file, task_page
from harness.site.trends import cell_series
from harness.site.weekly import since_last_week

log = logging.getLogger(__name__)

# raw samples stay for the intervals; the environment and session dicts are left in the store
_RECORDS_SQL = "SELECT * EXCLUDE (env, session) FROM records"
_COPIED = ("report.html", "leaderboard.md", "leaderboard.csv")


@dataclass
class SiteResult:
    out: Path
    n_runs: int
    seconds: float
    pages: list[Path] = field(default_factory=list)


def _write(path: Path, html: str, written: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    written.append(path)


def _copy_reports(results_dir: Path, run_ids: list[str], out: Path) -> set[str]:
    """Each run's report and leaderboard under out/runs/<id>/; the ids that have a report."""
    for run_id in run_ids:
        src, dest = results_dir / "runs" / run_id, out / "runs" / slug(run_id)
        for name in (n for n in _COPIED if (src / n).exists()):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dest / name)
    return {r for r in run_ids if (results_dir / "runs" / r / "report.html").exists()}


def build_site(results_dir: Path, out: Path, thresholds: list[str] | None = None) -> SiteResult:
    """Write index.html, trend/<task>.html and compare/ pages under `out`."""
    start = time.perf_counter()
    store = ResultsStore(results_dir)
    if synced := store.sync():
        log.info("store: imported %s", ", ".join(synced))
    runs = stored_runs(store)
    runs["run_index"] = range(len(runs))
    records = run_query(store, _RECORDS_SQL)
    weekly = since_last_week(results_dir, runs, records, thresholds)
    series = cell_series(records, runs)
    pages = {task: task_file(task) for task in sorted({s.key[1] for s in series})}
    written: list[Path] = []
    for task, name in pages.items():
        _write(out / name, task_page(task, [s for s in series if s.key[1] == task], runs),
               written)
    if weekly is not None and weekly.comparison is not None:
        target = compare_file(weekly)
        _write(out / f"{target}.html", compare_page(weekly), written)
        _write(out / f"{target}.md", to_markdown(weekly.comparison), written)
    reports = _copy_reports(results_dir, [str(r) for r in runs["run_id"]], out)
    latest = records[records["run_id"] == runs["run_id"].iloc[-1]] if len(runs) else records
    note = f"results store: {store.size_bytes() / 1e6:.2f} MB of Parquet"
    _write(out / "index.html", index_page(runs, latest, weekly, series, pages, reports, note),
           written)
    seconds = time.perf_counter() - start
    log.info("site: %d pages in %.1fs", len(written), seconds)
    return SiteResult(out, len(runs), seconds, written)
