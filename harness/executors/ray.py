"""Run a suite's stages as Ray tasks; the driver stores records as timing stages finish.

Stages per cell: fine-tune (shared by every cell of a model x task, and by distillation
students) -> build (torch methods, export, ONNX methods, evaluate) -> time. Artifacts move
through the artifact cache directory, which every worker must reach (a shared filesystem).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.pipeline import Cell
    from harness.records import Record
    from harness.runner import CellRunner

log = logging.getLogger(__name__)


def _finetune(runner: CellRunner, model: str, task: str) -> str:
    runner.stages.finetuned(model, task)
    return f"{model}/{task}"


def _build(runner: CellRunner, cell: Cell, *_deps: str) -> Any:
    return runner.build(cell)


def _time(runner: CellRunner, cell: Cell, result: Any, todo: list) -> list[Record]:
    import ray

    from harness.timing.env import environment, machine_fingerprint

    runner.env, runner.machine = environment(), machine_fingerprint()
    runner.node = ray.get_runtime_context().get_node_id()
    return runner.time(cell, result, todo)


def students(cell: Cell) -> list[str]:
    """Other suite models a cell's pipeline needs fine-tuned first (distillation students)."""
    return [s.params.student for s in cell.pipeline.steps  # type: ignore[attr-defined]
            if getattr(s.params, "student", None)]


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise HarnessError("executor ray: Ray is not installed (pip install 'harness[ray]')"
                               ) from None
        self.address = address

    def _init(self, runner: CellRunner) -> None:
        import ray

        if not ray.is_initialized():
            address = self.address or runner.suite.ray.address
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False)

    def _timing_options(self, runner: CellRunner) -> dict[str, Any]:
        import ray

        spec = runner.suite.ray
        if ray.cluster_resources().get(spec.timing_resource):
            return {"resources": {spec.timing_resource: 1}, "num_gpus": spec.timing_gpus}
        cpus = max(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"])
        return {"num_cpus": cpus, "num_gpus": spec.timing_gpus}

    def run(self, cells: list[Cell], runner: CellRunner, done: set[tuple]) -> Iterator[Record]:
        import ray

        self._init(runner)
        spec = runner.suite.ray
        train = {"num_cpus": spec.train_cpus, "num_gpus": spec.train_gpus,
                 "max_retries": spec.max_retries}
        finetune = ray.remote(_finetune).options(**train)
        build = ray.remote(_build).options(**train)
        timer = ray.remote(_time).options(**self._timing_options(runner),
                                          max_retries=spec.max_retries)
        tuned: dict[tuple[str, str], Any] = {}
        pending: dict[Any, tuple[Cell, list]] = {}
        for cell in cells:
            todo = runner.todo(cell, done)
            if not todo:
                continue
            deps = []
            for model in [cell.model, *students(cell)]:
                if (model, cell.task) not in tuned:
                    tuned[model, cell.task] = finetune.remote(runner, model, cell.task)
                deps.append(tuned[model, cell.task])
            built = build.remote(runner, cell, *deps)
            pending[timer.remote(runner, cell, built, todo)] = (cell, todo)
        yield from self._collect(pending, runner)

    def _collect(self, pending: dict[Any, tuple[Cell, list]], runner: CellRunner
                 ) -> Iterator[Record]:
        import ray

        from harness.runner import BuildResult, one_line

        total, start, counts = len(pending), time.perf_counter(), Counter[str]()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell, todo = pending.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a lost stage fails only its cell
                log.error("%s: stage lost after retries: %s", cell.label, exc)
                records = runner.time(cell, BuildResult(None, "failed", one_line(exc)), todo)
            counts.update(r.status for r in records)
            finished = total - len(pending)
            elapsed = time.perf_counter() - start
            log.info("ray: %d/%d cells done, %d running or queued, records %s, ETA %.0fs",
                     finished, total, len(pending), dict(counts),
                     elapsed / finished * len(pending))
            yield from records
