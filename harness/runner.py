"""Run a suite: plan cells, build each through the cached stages, time it, record everything."""
from __future__ import annotations

import logging
import shutil
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cache import ArtifactCache
from harness.config import Suite, load_suite
from harness.errors import DataError, SkipCell
from harness.pipeline import Built, Cell, Stages, plan
from harness.records import Record, cell_key
from harness.store import RunStore, new_run_id
from harness.tasks import resolve_data_dir

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_dir: Path
    counts: Counter[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.counts.get("failed") else 0


class CellRunner:
    """Turns one cell into its records: one per provider x batch size x sequence length."""

    def __init__(self, suite: Suite, stages: Stages, run_id: str, env: dict[str, Any],
                 machine: str) -> None:
        self.suite, self.stages, self.run_id = suite, stages, run_id
        self.env, self.machine = env, machine

    def shapes(self) -> list[tuple[str, int, int]]:
        t = self.suite.timing
        return [(p, b, s) for p in t.providers for b in t.batch_sizes for s in t.seq_lens]

    def base(self, cell: Cell, provider: str, batch: int, seq: int) -> dict[str, Any]:
        return {"run_id": self.run_id, "model": cell.model, "task": cell.task,
                "method": cell.pipeline.method, "variant": cell.pipeline.label,
                "method_params": cell.pipeline.params(), "provider": provider,
                "batch_size": batch, "seq_len": seq, "env": self.env, "machine": self.machine}

    def key(self, cell: Cell, provider: str, batch: int, seq: int) -> tuple:
        return cell_key(cell.model, cell.task, cell.pipeline.label, provider, batch, seq)

    def run(self, cell: Cell, done: set[tuple]):  # noqa: ANN201 - yields Records
        todo = [s for s in self.shapes() if self.key(cell, *s) not in done]
        if not todo:
            log.info("%s: all records present, skipped", cell.label)
            return
        try:
            built = self.stages.build(cell)
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
            status = "skipped" if isinstance(exc, DataError | SkipCell) else "failed"
            if status == "failed":
                log.error("%s failed:\n%s", cell.label, traceback.format_exc())
            for shape in todo:
                yield self._record(cell, shape, status=status, error=_one_line(exc), stage="build")
            return
        for shape in todo:
            yield self._timed(cell, built, shape)

    def _timed(self, cell: Cell, built: Built, shape: tuple[str, int, int]) -> Record:
        from harness.timing import paired_inputs, time_onnx

        provider, batch, seq = shape
        try:
            dev = self.stages.split(cell.task, "dev")
            feed = paired_inputs(built.tokenizer, dev, batch, seq, self.suite.timing.seed)
            fields = time_onnx(built.onnx_path, provider, self.suite.timing, feed, batch)
        except SkipCell as exc:
            return self._record(cell, shape, built, status="skipped", error=str(exc), stage="time")
        except Exception as exc:  # noqa: BLE001
            log.error("%s %s failed:\n%s", cell.label, shape, traceback.format_exc())
            return self._record(cell, shape, built, status="failed", error=_one_line(exc),
                                stage="time")
        return self._record(cell, shape, built, status="ok", **fields)

    def _record(self, cell: Cell, shape: tuple[str, int, int], built: Built | None = None,
                **fields: Any) -> Record:
        info = {k: v for k, v in (built.info if built else {}).items() if k in Record.model_fields}
        return Record(**(self.base(cell, *shape) | info | fields))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, DataError | SkipCell) else f"{type(exc).__name__}: {text}"


def run_suite(suite_path: Path, results_dir: Path, run_id: str | None = None, *,
              use_cache: bool = True) -> RunSummary:
    """Run or resume a suite; bad input raises before anything is written."""
    from harness.publish import publish
    from harness.timing.env import environment, machine_fingerprint

    suite, pipelines = load_suite(suite_path)
    data_dir = resolve_data_dir(suite.data_dir)
    cells = plan(suite, pipelines)
    store = RunStore.open(results_dir, run_id or new_run_id())
    shutil.copyfile(suite_path, store.dir / "suite.yaml")
    env, machine = environment(), machine_fingerprint()
    store.update_manifest(run_id=store.dir.name, suite=suite.name, suite_file=str(suite_path),
                          git_sha=env.get("git_sha"), machine=machine, env=env,
                          started=_now(), finished=None, cells=len(cells))
    cache = ArtifactCache(results_dir / "cache", enabled=use_cache)
    runner = CellRunner(suite, Stages(suite, cache, data_dir), store.dir.name, env, machine)
    done = store.finished_keys()
    start = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        log.info("[%d/%d] %s", i, len(cells), cell.label)
        for record in runner.run(cell, done):
            store.append(record)
    counts = Counter(r.status for r in store.records())
    store.update_manifest(finished=_now(), wall_seconds=round(time.perf_counter() - start, 1),
                          status_counts=dict(counts))
    publish(store.records(), store.dir, store.manifest())
    return RunSummary(store.dir, counts)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
