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
        provider and shape by shape, in interleaved rounds (harness.timing.rounds)."""
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
    timed; a cell whose session cannot be made or run is recorded alone, and so is one with
    no dev metric on this provider's runtime (a timing alone would mislead).

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
        records = []
        for _, batch, seq in dict.fromkeys(s for shapes in need.values() for s in shapes):
            shape = (self.provider, batch, seq)
            records += self.shape(shape, [c for c, s in need.items() if shape in s])
        self.sessions.clear()  # their thread pools must not compete with later work
        return records

    def _failure(self, cell: Cell, exc: BaseException) -> tuple[str, str, str | None, str]:
        if isinstance(exc, SkipCell):
            return "skipped", str(exc), None, "time"
        log.error("%s %s failed: %s (traceback in run.log)", cell.label, self.provider,
                  one_line(exc))
        return "failed", one_line(exc), traceback.format_exc(), "time"

    def shape(self, shape: Shape, wanted: list[Cell]) -> list[Record]:
        """Time the wanted cells of one shape with the baseline beside them; their records."""
        from harness.timing import device_check, feed_for, make_inputs, roofline_of, time_group

        _, batch, seq = shape
        timed = {c: s for c, s in self.sessions.items()
                 if c not in self.failed and (c in wanted or c.pipeline.label == BASELINE)}
        feeds: dict[Cell, Any] = {}
        failed = dict(self.failed)  # session failures hold for every shape, run failures not
        dev = self.runner.stages.split(wanted[0].task, "dev")
        for cell in list(timed):
            try:
                if cell not in self.tokenizers:
                    self.tokenizers[cell] = self.built[cell].tokenizer()
                feeds[cell] = make_inputs(self.tokenizers[cell], dev.text_a, dev.text_b,
                                          batch, seq, self.spec.seed)
                _smoke(timed[cell], feeds[cell])
                if cell not in self.checked:  # placement and agreement with the CPU
                    self.checked[cell] = device_check(self.built[cell].onnx_path, self.provider,
                                                      self.spec, feed_for(timed[cell], feeds[cell]),
                                                      timed[cell])
            except Exception as exc:  # noqa: BLE001 - this cell only
                failed[cell] = self._failure(cell, exc)
                del timed[cell]
        base = next((c.pipeline.label for c in timed if c.pipeline.label == BASELINE), None)
        try:
            fields = time_group({c.pipeline.label: s for c, s in timed.items()}, self.provider,
                                self.spec, {c.pipeline.label: f for c, f in feeds.items()},
                                batch, baseline=base) if timed else {}
        except Exception as exc:  # noqa: BLE001 - the whole group's timing broke
            log.error("%s %s failed: %s (traceback in run.log)", group_label(wanted), shape,
                      one_line(exc))
            trace = traceback.format_exc()
            return [self.runner.record(c, shape, self.built[c], status="failed",
                                       error=one_line(exc), stage="time", trace=trace)
                    for c in wanted]
        records = []
        for cell in wanted:
            if cell in failed:
                status, error, trace, stage = failed[cell]
                records.append(self.runner.record(cell, shape, self.built[cell], status=status,
                                                  error=error, stage=stage, trace=trace))
                continue
            got = fields[cell.pipeline.label]
            got["session"] = {**got.get("session", {}), **self.checked.get(cell, {})}
            got |= roofline_of(self.built[cell].onnx_path, self.provider, self.spec, batch, seq,
                               got, self.runner._flops(self.built[cell], batch, seq),
                               self.runner.peak_store)
            records.append(self.runner.record(cell, shape, self.built[cell], status="ok", **got))
        return records


def _smoke(runner: Any, feed: Any) -> None:
    """One untimed run, so a variant that cannot run fails alone, not its whole group."""
    from harness.timing import feed_for

    runner.run(feed_for(runner, feed))
