"""Run a suite's stages as Ray tasks; the driver stores records as timing stages finish.

Stages: fine-tune (one per model x task, shared with distillation students) -> one task per
distinct prefix of torch steps -> export (one per distinct torch pipeline) -> build (ONNX
steps, evaluation; one per cell) -> time (one per cell, alone on its node). Shared stages are
submitted once, so no two workers build one artifact. Artifacts move through the artifact
cache directory, which every worker must reach (a shared filesystem). A stage that raises
hands its failure (or skip) to every cell that needs it, as the local executor would.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.cell import BuildResult, CellRunner
    from harness.plan import Cell
    from harness.records import Record

log = logging.getLogger(__name__)


def _failure(exc: Exception) -> BuildResult:
    """A shared stage's exception, classified as `CellRunner.build` does."""
    from harness.cell import BuildResult

    return BuildResult.failure(exc)


def _first_failure(deps: tuple[BuildResult | None, ...]) -> BuildResult | None:
    return next((d for d in deps if d is not None), None)


def _finetune(runner: CellRunner, model: str, task: str) -> BuildResult | None:
    try:
        runner.stages.finetuned(model, task)
    except Exception as exc:  # noqa: BLE001 - recorded by every cell that needs it
        log.error("fine-tune %s %s failed: %s", model, task, exc)
        return _failure(exc)
    return None


def _torch(runner: CellRunner, cell: Cell, *deps: BuildResult | None) -> BuildResult | None:
    """The torch steps of `cell` (a pipeline prefix); the ones before it are cached."""
    if failed := _first_failure(deps):
        return failed
    try:
        runner.stages.torch_steps(cell, [])
    except Exception as exc:  # noqa: BLE001 - recorded by every cell that needs it
        log.error("%s: torch step failed: %s", cell.label, exc)
        return _failure(exc)
    return None


def _export(runner: CellRunner, cell: Cell, *deps: BuildResult | None) -> BuildResult | None:
    if failed := _first_failure(deps):
        return failed
    try:
        runner.stages.exported(cell, *runner.stages.torch_steps(cell, []))
    except Exception as exc:  # noqa: BLE001 - recorded by every cell that needs it
        log.error("%s: export failed: %s", cell.label, exc)
        return _failure(exc)
    return None


def _build(runner: CellRunner, cell: Cell, *deps: BuildResult | None) -> BuildResult:
    """ONNX steps and evaluation (the stages before them are cached by now)."""
    return _first_failure(deps) or runner.build(cell)


def _time(runner: CellRunner, cell: Cell, result: Any, todo: list) -> list[Record]:
    import ray

    from harness.timing.env import environment, machine_fingerprint

    runner.env, runner.machine = environment(), machine_fingerprint()
    runner.node = ray.get_runtime_context().get_node_id()
    return runner.time(cell, result, todo)


def root_cause(exc: BaseException) -> BaseException:
    """The error under Ray's wrappers (a dead worker, or the stage's own exception)."""
    from ray.exceptions import RayTaskError

    while isinstance(exc, RayTaskError) and exc.cause is not None and exc.cause is not exc:
        exc = exc.cause
    return exc


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
            # no CPU asked: a timing node started with `--num-cpus 0` runs only timing stages
            return {"resources": {spec.timing_resource: 1}, "num_cpus": 0,
                    "num_gpus": spec.timing_gpus}
        cpus = max(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"])
        return {"num_cpus": cpus, "num_gpus": spec.timing_gpus}

    def run(self, cells: list[Cell], runner: CellRunner, done: set[tuple]) -> Iterator[Record]:
        self._init(runner)
        graph = StageGraph(runner, self._timing_options(runner))
        pending: dict[Any, tuple[Cell, list, Any]] = {}
        for cell in cells:
            todo = runner.todo(cell, done)
            if todo:
                timed, built = graph.timed(cell, todo)
                pending[timed] = (cell, todo, built)
        log.info("ray: %d cells, %d shared stages submitted", len(pending), len(graph.refs))
        yield from self._collect(pending, runner)

    def _collect(self, pending: dict[Any, tuple[Cell, list, Any]], runner: CellRunner
                 ) -> Iterator[Record]:
        import ray

        total, start, counts = len(pending), time.perf_counter(), Counter[str]()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            cell, todo, built = pending.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a lost stage fails only its cell
                records = lost(runner, cell, todo, built, exc)
            counts.update(r.status for r in records)
            finished = total - len(pending)
            elapsed = time.perf_counter() - start
            log.info("ray: %d/%d cells done, %d running or queued, records %s, ETA %.0fs",
                     finished, total, len(pending), dict(counts),
                     elapsed / finished * len(pending))
            yield from records


def lost(runner: CellRunner, cell: Cell, todo: list, built: Any, exc: Exception
         ) -> list[Record]:
    """Failed records for a cell whose stage was lost after its retries (its worker died)."""
    import ray

    from harness.cell import BuildResult
    from harness.errors import one_line

    try:
        result, stage = ray.get(built), "time"
    except Exception as build_exc:  # noqa: BLE001 - the build (or a stage before it) was lost
        result, stage, exc = BuildResult(None), "build", build_exc
    if result.built is None and result.status != "ok":
        return runner.time(cell, result, todo)
    error = one_line(root_cause(exc))
    log.error("%s: %s stage lost after retries: %s", cell.label, stage, error)
    return [runner.record(cell, s, result.built, status="failed", error=error, stage=stage)
            for s in todo]


class StageGraph:
    """Submits every shared stage once (fine-tunes, torch-step prefixes, exports), so no two
    workers build the same artifact at the same time."""

    def __init__(self, runner: CellRunner, timing: dict[str, Any]) -> None:
        import ray

        spec = runner.suite.ray
        train = {"num_cpus": spec.train_cpus, "num_gpus": spec.train_gpus,
                 "max_retries": spec.max_retries}
        self.runner = ray.put(runner)  # shipped once, not with every task
        self.finetune = ray.remote(_finetune).options(**train)
        self.torch = ray.remote(_torch).options(**train)
        self.export = ray.remote(_export).options(**train)
        self.build = ray.remote(_build).options(**train)
        self.timer = ray.remote(_time).options(**timing, max_retries=spec.max_retries)
        self.refs: dict[tuple, Any] = {}

    def timed(self, cell: Cell, todo: list) -> tuple[Any, Any]:
        """Refs of the cell's timing stage (its records) and of its build."""
        built = self.build.remote(self.runner, cell, self.exported(cell))
        return self.timer.remote(self.runner, cell, built, todo), built

    def _once(self, key: tuple, submit: Callable[[], Any]) -> Any:
        if key not in self.refs:
            self.refs[key] = submit()
        return self.refs[key]

    def tuned(self, model: str, task: str) -> Any:
        return self._once(("finetune", model, task),
                          lambda: self.finetune.remote(self.runner, model, task))

    def torch_prefix(self, cell: Cell, k: int) -> Any:
        """The first k torch steps of the cell's pipeline (k = 0: its fine-tune)."""
        from harness.plan import Cell, Pipeline

        if k == 0:
            return self.tuned(cell.model, cell.task)
        part = Cell(cell.model, cell.task, Pipeline(cell.pipeline.torch_steps[:k]))
        deps = [self.tuned(m, cell.task) for m in students(part)]
        return self._once(("torch", *_prefix(part)), lambda: self.torch.remote(
            self.runner, part, self.torch_prefix(cell, k - 1), *deps))

    def exported(self, cell: Cell) -> Any:
        n = len(cell.pipeline.torch_steps)
        return self._once(("export", *_prefix(cell)), lambda: self.export.remote(
            self.runner, cell, self.torch_prefix(cell, n)))


def _prefix(cell: Cell) -> tuple[str, ...]:
    return (cell.model, cell.task, *(s.label for s in cell.pipeline.torch_steps))
