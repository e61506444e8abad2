"""Run orchestration: plan a suite, ship its cells to an executor, store records, publish."""
from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.cell import CellRunner
from harness.clock import now
from harness.executors import make_executor
from harness.plan import load_suite, plan
from harness.publish import publish
from harness.store import RunStore, new_run_id
from harness.tasks import resolve_data_dir
from harness.timing.env import environment, machine_fingerprint

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_dir: Path
    counts: Counter[str]
    wall_seconds: float

    @property
    def exit_code(self) -> int:
        return 1 if self.counts.get("failed") else 0


def run_suite(suite_path: Path, results_dir: Path, run_id: str | None = None, *,
              use_cache: bool = True, executor: str | None = None,
              address: str | None = None) -> RunSummary:
    """Run or resume a suite; bad input raises before anything is written."""
    suite, pipelines = load_suite(suite_path)
    data_dir = resolve_data_dir(suite.data_dir)
    chosen = make_executor(executor or suite.executor, address)
    cells = plan(suite, pipelines)
    store = RunStore.open(results_dir, run_id or new_run_id())
    shutil.copyfile(suite_path, store.dir / "suite.yaml")
    env, machine = environment(), machine_fingerprint()
    store.update_manifest(run_id=store.dir.name, suite=suite.name, suite_file=str(suite_path),
                          git_sha=env.get("git_sha"), machine=machine, env=env,
                          executor=chosen.name, started=now(), finished=None, cells=len(cells))
    runner = CellRunner(suite, results_dir.resolve() / "cache", use_cache, data_dir,
                        store.dir.name, env, machine)
    start = time.perf_counter()
    for record in chosen.run(cells, runner, store.finished_keys()):
        store.append(record)
    wall = round(time.perf_counter() - start, 1)
    counts = Counter(r.status for r in store.records())
    store.update_manifest(finished=now(), wall_seconds=wall, status_counts=dict(counts))
    publish(store.records(), store.dir, store.manifest())
    return RunSummary(store.dir, counts, wall)
