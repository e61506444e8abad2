"""The cell runner: one cell -> its records (build through the cached stages, then time)."""
from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import ArtifactCache
from harness.errors import DataMissing, SkipCell, one_line
from harness.plan import Cell
from harness.records import BASELINE, Record, cell_key
from harness.schema import Suite
from harness.stages import Built, Stages

log = logging.getLogger(__name__)
Shape = tuple[str, int, int]  # provider, batch size, sequence length


@dataclass
class BuildResult:
    """A cell's build: either the artifacts to time, or why there are none."""

    built: Built | None
    status: str = "ok"
    error: str | None = None
    trace: str | None = None  # traceback of a failure, for run.log

    @classmethod
    def failure(cls, exc: BaseException) -> BuildResult:
        """Missing data or an explicit skip is `skipped`; anything else (broken data included)
        `failed`."""
        if isinstance(exc, DataMissing | SkipCell):
            return cls(None, "skipped", one_line(exc))
        return cls(None, "failed", one_line(exc), "".join(traceback.format_exception(exc)))


@dataclass
class CellRunner:
    """Turns one cell into its records: one per provider x batch size x sequence length.

    Picklable, so an executor can ship it to a worker; the stages are made on first use.
    """

    suite: Suite
    cache_root: Path
    use_cache: bool
    data_dir: Path | None
    run_id: str
    env: dict[str, Any] = field(default_factory=dict)
    machine: str | None = None
    node: str | None = None
    _stages: Stages | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_stages": None}

    @property
    def stages(self) -> Stages:
        if self._stages is None:
            cache = ArtifactCache(self.cache_root, enabled=self.use_cache)
            self._stages = Stages(self.suite, cache, self.data_dir)
        return self._stages

    @property
    def peak_store(self) -> Path | None:
        """Where GEMM peaks are kept between runs on one machine (none with the cache off)."""
        return self.cache_root / "peaks" if self.use_cache else None

    def shapes(self) -> list[Shape]:
        t = self.suite.timing
        return [(p, b, s) for p in t.providers for b in t.batch_sizes for s in t.seq_lens]

    def key(self, cell: Cell, shape: Shape) -> tuple:
        return cell_key(cell.model, cell.task, cell.pipeline.label, *shape)

    def todo(self, cell: Cell, done: set[tuple]) -> list[Shape]:
        return [s for s in self.shapes() if self.key(cell, s) not in done]

    def run(self, cells: list[Cell], done: set[tuple]) -> Iterator[Record]:
        """Build then time a group (the cells of one model and task), skipping shapes already
        recorded as finished; the baseline is built and re-timed as the others' reference."""
        todo = {cell: self.todo(cell, done) for cell in cells}
        if not any(todo.values()):
            log.info("%s: all records present, not redone", group_label(cells))
            return
        results = {c: self.build(c) for c in cells if todo[c] or c.pipeline.label == BASELINE}
        yield from self.time(results, todo)

    def build(self, cell: Cell) -> BuildResult:
        try:
            return BuildResult(self.stages.build(cell))
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
            result = BuildResult.failure(exc)
            if result.status == "skipped":
                log.warning("%s skipped: %s", cell.label, exc)
            else:
                log.error("%s failed: %s (traceback in run.log)", cell.label, result.error)
            return result

    def time(self, results: dict[Cell, BuildResult], todo: dict[Cell, list[Shape]]
             ) -> list[Record]:
        """Records of a group's todo shapes: the built cells are timed together, provider by
        provider, every shape in interleaved rounds that alternate between the shapes
        (harness.timing.rounds)."""
        records = [self.record(c, s, status=r.status, error=r.error, stage="build", trace=r.trace)
                   for c, r in results.items() if r.built is None for s in todo.get(c, [])]
        built = {c: r.built for c, r in results.items() if r.built is not None}
        for provider in self.suite.timing.providers:
            need = {c: [s for s in todo.get(c, []) if s[0] == provider] for c in built}
            if any(need.values()):
                records += GroupTimer(self, built, provider).run(need)
        return records

    def _flops(self, built: Built, batch: int, seq: int) -> Any:
        try:
            return self.stages.flops(built, batch, seq)
        except Exception as exc:  # noqa: BLE001 - the timing does not depend on it
            log.warning("FLOP count for %s failed: %s", built.onnx_path, exc)
            return None

    def record(self, cell: Cell, shape: Shape, built: Built | None = None,
               trace: str | None = None, **fields: Any) -> Record:
        provider, batch, seq = shape
        known = built.fields(provider) if built else {}
        info = {k: v for k, v in known.items() if k in Record.model_fields}
        base = {"run_id": self.run_id, "model": cell.model, "task": cell.task,
                "method": cell.pipeline.method, "variant": cell.pipeline.label,
                "method_params": cell.pipeline.params(), "provider": provider,
                "batch_size": batch, "seq_len": seq, "env": self.env, "machine": self.machine,
                "node": self.node}
        record = Record(**(base | info | fields))
        record._trace = trace
        return record



def group_label(cells: list[Cell]) -> str:
    return f"{cells[0].model} {cells[0].task}" if cells else "empty group"


def groups(cells: list[Cell]) -> list[list[Cell]]:
    """The cells of each (model, task), in plan order: each group is timed together."""
    out: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        out.setdefault((cell.model, cell.task), []).append(cell)
    return list(out.values())


class GroupTimer:
    """One provider's sessions for every built cell of a group, open while its shapes are
    timed, all shapes at once with their rounds alternating (a batch-1 round, then a
    batch-32 round, ...); a cell whose session cannot be made or run is recorded alone, and
    so is one with no dev metric on this provider's runtime (a timing alone would mislead).

    A session is the provider's runner (harness.timing.make_runner): onnxruntime for cpu and
    cuda, OpenVINO for openvino; each provider's variants are timed against its own baseline.
    """

    def __init__(self, runner: CellRunner, built: dict[Cell, Built], provider: str) -> None:
        self.runner, self.built, self.provider = runner, built, provider
        self.spec = runner.suite.timing
        self.sessions: dict[Cell, Any] = {}
        self.tokenizers: dict[Cell, Any] = {}
        self.checked: dict[Cell, dict[str, Any]] = {}  # device_check, once per session
        # cell -> (status, error, trace, stage)
        self.failed: dict[Cell, tuple[str, str, str | None, str]] = {}

    def run(self, need: dict[Cell, list[Shape]]) -> list[Record]:
        from harness.timing import make_runner

        for cell in self.built:
            if not need.get(cell) and cell.pipeline.label != BASELINE:
                continue
            missing = self.built[cell].unavailable(self.provider)
            if missing:  # no metric on this runtime: recorded at the evaluate stage
                self.failed[cell] = (*missing, "evaluate")
                continue
            try:
                self.sessions[cell] = make_runner(self.built[cell].onnx_path, self.provider,
                                                  self.spec)
            except Exception as exc:  # noqa: BLE001 - this cell only
                self.failed[cell] = self._failure(cell, exc)
        shapes = dict.fromkeys(s for shapes in need.values() for s in shapes)
        plans = [self.prepare(shape, [c for c, s in need.items() if shape in s])
                 for shape in shapes]
        records = self.time(plans)
        self.sessions.clear()  # their thread pools must not compete with later work
        return records

    def _failure(self, cell: Cell, exc: BaseException) -> tuple[str, str, str | None, str]:
        if isinstance(exc, SkipCell):
            return "skipped", str(exc), None, "time"
        log.error("%s %s failed: %s (traceback in run.log)", cell.label, self.provider,
                  one_line(exc))
        return "failed", one_line(exc), traceback.format_exc(), "time"

    def prepare(self, shape: Shape, wanted: list[Cell]) -> ShapePlan:
        """The wanted cells of one shape with the baseline beside them: each one's inputs,
        smoke-run and checked on the device, or its failure."""
        from harness.timing import device_check, feed_for, make_inputs

        _, batch, seq = shape
        plan = ShapePlan(shape, wanted, failed=dict(self.failed))  # session failures hold
        plan.timed = {c: s for c, s in self.sessions.items()  # for every shape, run ones not
                      if c not in self.failed and (c in wanted or c.pipeline.label == BASELINE)}
        dev = self.runner.stages.split(wanted[0].task, "dev")
        for cell in list(plan.timed):
            try:
                if cell not in self.tokenizers:
                    self.tokenizers[cell] = self.built[cell].tokenizer()
                plan.feeds[cell] = make_inputs(self.tokenizers[cell], dev.text_a, dev.text_b,
                                               batch, seq, self.spec.seed)
                _smoke(plan.timed[cell], plan.feeds[cell])
                if cell not in self.checked:  # placement and agreement with the CPU
                    self.checked[cell] = device_check(
                        self.built[cell].onnx_path, self.provider, self.spec,
                        feed_for(plan.timed[cell], plan.feeds[cell]), plan.timed[cell])
            except Exception as exc:  # noqa: BLE001 - this cell only
                plan.failed[cell] = self._failure(cell, exc)
                del plan.timed[cell]
        return plan

    def time(self, plans: list[ShapePlan]) -> list[Record]:
        """Time every shape's cells at once, their rounds alternating between the shapes
        (harness.timing.time_groups); the records of every shape."""
        from harness.timing import Group, time_groups

        live = [p for p in plans if p.timed]
        groups = [Group({c.pipeline.label: s for c, s in p.timed.items()},
                        {c.pipeline.label: f for c, f in p.feeds.items()}, p.shape[1],
                        next((c.pipeline.label for c in p.timed
                              if c.pipeline.label == BASELINE), None), p.shape[2])
                  for p in live]
        try:
            timed: list[Any] = time_groups(groups, self.provider, self.spec) if live else []
        except Exception as exc:  # noqa: BLE001 - the timing of every shape broke
            timed = [exc] * len(live)
        got = dict(zip([p.shape for p in live], timed, strict=True))
        return [r for p in plans for r in self.records(p, got.get(p.shape, {}))]

    def records(self, plan: ShapePlan, fields: dict[str, dict[str, Any]] | Exception
                ) -> list[Record]:
        """One shape's records: timed, or failed with their own or the group's error."""
        from harness.timing import roofline_of

        _, batch, seq = plan.shape
        if isinstance(fields, Exception):  # the whole group's timing broke
            log.error("%s %s failed: %s (traceback in run.log)", group_label(plan.wanted),
                      plan.shape, one_line(fields))
            trace = "".join(traceback.format_exception(fields))
            return [self.runner.record(c, plan.shape, self.built[c], status="failed",
                                       error=one_line(fields), stage="time", trace=trace)
                    for c in plan.wanted]
        records = []
        for cell in plan.wanted:
            if cell in plan.failed:
                status, error, trace, stage = plan.failed[cell]
                records.append(self.runner.record(cell, plan.shape, self.built[cell],
                                                  status=status, error=error, stage=stage,
                                                  trace=trace))
                continue
            got = fields[cell.pipeline.label]
            got["session"] = {**got.get("session", {}), **self.checked.get(cell, {})}
            got |= roofline_of(self.built[cell].onnx_path, self.provider, self.spec, batch, seq,
                               got, self.runner._flops(self.built[cell], batch, seq),
                               self.runner.peak_store)
            records.append(self.runner.record(cell, plan.shape, self.built[cell], status="ok",
                                              **got))
        return records


@dataclass
class ShapePlan:
    """One shape's cells before timing: the sessions to time, their inputs, the failures."""

    shape: Shape
    wanted: list[Cell]
    timed: dict[Cell, Any] = field(default_factory=dict)
    feeds: dict[Cell, Any] = field(default_factory=dict)
    # cell -> (status, error, trace, stage)
    failed: dict[Cell, tuple[str, str, str | None, str]] = field(default_factory=dict)


def _smoke(runner: Any, feed: Any) -> None:
    """One untimed run, so a variant that cannot run fails alone, not its whole group."""
    from harness.timing import feed_for

    runner.run(feed_for(runner, feed))
