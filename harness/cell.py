"""The cell runner: one cell -> its records (build through the cached stages, then time)."""
from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import ArtifactCache
from harness.errors import DataError, SkipCell, one_line
from harness.plan import Cell
from harness.records import Record, cell_key
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

    @classmethod
    def failure(cls, exc: BaseException) -> BuildResult:
        """Missing data or an explicit skip is `skipped`; anything else `failed`."""
        status = "skipped" if isinstance(exc, DataError | SkipCell) else "failed"
        return cls(None, status, one_line(exc))


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

    def shapes(self) -> list[Shape]:
        t = self.suite.timing
        return [(p, b, s) for p in t.providers for b in t.batch_sizes for s in t.seq_lens]

    def key(self, cell: Cell, shape: Shape) -> tuple:
        return cell_key(cell.model, cell.task, cell.pipeline.label, *shape)

    def todo(self, cell: Cell, done: set[tuple]) -> list[Shape]:
        return [s for s in self.shapes() if self.key(cell, s) not in done]

    def run(self, cell: Cell, done: set[tuple]) -> Iterator[Record]:
        """Build then time a cell, skipping shapes already recorded as finished."""
        todo = self.todo(cell, done)
        if not todo:
            log.info("%s: all records present, not redone", cell.label)
            return
        yield from self.time(cell, self.build(cell), todo)

    def build(self, cell: Cell) -> BuildResult:
        try:
            return BuildResult(self.stages.build(cell))
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
            result = BuildResult.failure(exc)
            if result.status == "skipped":
                log.warning("%s skipped: %s", cell.label, exc)
            else:
                log.error("%s failed:\n%s", cell.label, traceback.format_exc())
            return result

    def time(self, cell: Cell, result: BuildResult, todo: list[Shape]) -> list[Record]:
        if result.built is None:
            return [self.record(cell, s, status=result.status, error=result.error, stage="build")
                    for s in todo]
        tokenizer = result.built.tokenizer()
        runners: dict[str, Any] = {}  # one runner per provider serves every shape
        return [self._timed(cell, result.built, tokenizer, shape, runners) for shape in todo]

    def _timed(self, cell: Cell, built: Built, tokenizer: Any, shape: Shape,
               runners: dict[str, Any]) -> Record:
        from harness.timing import make_inputs, make_runner, time_onnx

        provider, batch, seq = shape
        missing = built.unavailable(provider)
        if missing:  # no metric on this provider's runtime: a timing alone would mislead
            return self.record(cell, shape, built, status=missing[0], error=missing[1],
                               stage="evaluate")
        try:
            dev = self.stages.split(cell.task, "dev")
            feed = make_inputs(tokenizer, dev.text_a, dev.text_b, batch, seq, self.suite.timing.seed)
            if provider not in runners:
                runners[provider] = make_runner(built.onnx_path, provider, self.suite.timing)
            fields = time_onnx(built.onnx_path, provider, self.suite.timing, feed, batch,
                               flops=self._flops(built, batch, seq), session=runners[provider])
        except SkipCell as exc:
            return self.record(cell, shape, built, status="skipped", error=str(exc), stage="time")
        except Exception as exc:  # noqa: BLE001
            log.error("%s %s failed:\n%s", cell.label, shape, traceback.format_exc())
            return self.record(cell, shape, built, status="failed", error=one_line(exc),
                               stage="time")
        return self.record(cell, shape, built, status="ok", **fields)

    def _flops(self, built: Built, batch: int, seq: int) -> Any:
        try:
            return self.stages.flops(built, batch, seq)
        except Exception as exc:  # noqa: BLE001 - the timing does not depend on it
            log.warning("FLOP count for %s failed: %s", built.onnx_path, exc)
            return None

    def record(self, cell: Cell, shape: Shape, built: Built | None = None,
               **fields: Any) -> Record:
        provider, batch, seq = shape
        known = built.fields(shape[0]) if built else {}
        info = {k: v for k, v in known.items() if k in Record.model_fields}
        base = {"run_id": self.run_id, "model": cell.model, "task": cell.task,
                "method": cell.pipeline.method, "variant": cell.pipeline.label,
                "method_params": cell.pipeline.params(), "provider": provider,
                "batch_size": batch, "seq_len": seq, "env": self.env, "machine": self.machine,
                "node": self.node}
        return Record(**(base | info | fields))
