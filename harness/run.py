"""Run orchestration: plan a suite, ship its cells to an executor, store records, publish."""
from __future__ import annotations

import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.cache import ArtifactCache
from harness.cell import CellRunner
from harness.clock import now, run_id_now
from harness.errors import ConfigError
from harness.executors import Executor, make_executor
from harness.plan import Cell, load_suite, plan, read_yaml
from harness.publish import publish
from harness.results_store import ResultsStore
from harness.schema import Suite
from harness.significance import fdr_updates
from harness.stages.data import SuiteData
from harness.store import RunStore, check_run_id, new_run_id
from harness.tasks import resolve_data_dir
from harness.timing.env import environment, machine_fingerprint

log = logging.getLogger(__name__)
SUITE_COPY = "suite.yaml"


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
              address: str | None = None, force: bool = False,
              isolate: bool = False) -> RunSummary:
    """Run or resume a suite; bad input raises before anything is written.

    The run directory is locked while the run goes on; resuming with a suite whose content
    changed is refused unless `force`. `isolate` (the CLI's default): the local executor
    builds and times in a worker process, so a crash in native code fails one group's cells
    and the run goes on (harness.executors.local).
    """
    run_id = new_run_id() if run_id is None else check_run_id(run_id)
    suite, pipelines = load_suite(suite_path)
    data_dir = resolve_data_dir(suite.data_dir)
    SuiteData(suite, data_dir).check()  # broken data: exit 2 before anything is written
    chosen = make_executor(executor or suite.executor, address, isolate)
    cells = plan(suite, pipelines)
    store = RunStore.open(results_dir, run_id)
    with store.locked():
        _keep_suite(store, suite_path, force)
        with store.logging_to_file():
            return _run(store, suite, suite_path, cells, chosen, results_dir, use_cache, data_dir)


def _run(store: RunStore, suite: Suite, suite_path: Path, cells: list[Cell], chosen: Executor,
         results_dir: Path, use_cache: bool, data_dir: Path | None) -> RunSummary:
    env, machine = environment(), machine_fingerprint()
    previous = store.manifest()
    resumed = [*previous.get("resumed", []), now()] if previous.get("started") else None
    store.update_manifest(run_id=store.dir.name, suite=suite.name, suite_file=str(suite_path),
                          git_sha=env.get("git_sha"), machine=machine, env=env,
                          executor=chosen.name, started=previous.get("started") or now(),
                          finished=None, resumed=resumed, cells=len(cells))
    _note_fp32_training(suite, env)
    cache_root = results_dir.resolve() / "cache"
    for path in ArtifactCache(cache_root).remove_interrupted():
        log.info("cache: removed %s, left by an interrupted build", path.name)
    runner = CellRunner(suite, cache_root, use_cache, data_dir, store.dir.name, env, machine)
    start, traced = time.perf_counter(), set()
    try:
        for record in chosen.run(cells, runner, store.finished_keys()):
            store.append(record)
            if record._trace and record._trace not in traced:  # once per failed build
                traced.add(record._trace)
                store.log_trace(f"{record.model} {record.task} {record.variant}: {record.stage} "
                                f"failed", record._trace)
    except BaseException as exc:  # an interrupt or a crash: the records so far are kept
        log.error("run %s aborted (%s); resume it with --run-id %s", store.dir.name,
                  type(exc).__name__, store.dir.name)
        raise
    for record in fdr_updates(store.records()):  # BH needs every delta of the run
        store.append(record)
    wall = round(time.perf_counter() - start, 1)
    counts = Counter(r.status for r in store.records())
    store.update_manifest(finished=now(), wall_seconds=wall, status_counts=dict(counts))
    publish(store.records(), store.dir, store.manifest())
    ResultsStore(results_dir).ingest(store.dir)
    return RunSummary(store.dir, counts, wall)


def _note_fp32_training(suite: Suite, env: dict) -> None:
    """Say up front when `precision: auto` will train in fp32 on this CPU: over four times
    the time a step (docs/baselines.md), which a cold quick-suite run feels as hours. The
    precision comes from the fine-tune's own detection, so the notice cannot disagree with
    what trains."""
    from harness.train import resolve_precision  # torch: only when a run starts

    if (suite.finetune.precision == "auto" and not env.get("gpus")
            and resolve_precision("auto", "cpu") == "fp32"):
        log.info("fine-tunes that are not cached train in fp32: this CPU has no native bf16 "
                 "(AVX512-BF16 or AMX), where a step takes over four times as long as with it")


def _keep_suite(store: RunStore, suite_path: Path, force: bool) -> None:
    """Copy the suite into the run; on resume, only if its content is what the run began with."""
    kept = store.dir / SUITE_COPY
    if kept.exists() and not _same_content(kept, suite_path):
        if not force:
            raise ConfigError(f"{suite_path}: run {store.dir.name} was started with another "
                              f"suite ({kept}); resume it with that suite, pass --force to go on "
                              "with this one (the records made so far are kept), or use a new "
                              "--run-id")
        kept.rename(kept.with_name(f"suite.{run_id_now()}.yaml"))
        log.warning("run %s: suite changed; resuming with %s (--force)", store.dir.name, suite_path)
    shutil.copyfile(suite_path, kept)


def _same_content(a: Path, b: Path) -> bool:
    """Same YAML data (comments and layout aside)."""
    try:
        return read_yaml(a) == read_yaml(b)
    except ConfigError:
        return False
