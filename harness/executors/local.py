"""The embedded default: every stage in this process, one (model, task) group at a time."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.cell import CellRunner
    from harness.plan import Cell
    from harness.records import Record

log = logging.getLogger(__name__)


class LocalExecutor:
    name = "local"

    def run(self, cells: list[Cell], runner: CellRunner, done: set[tuple]) -> Iterator[Record]:
        from harness.cell import group_label, groups

        start, todo = time.perf_counter(), groups(cells)
        for i, group in enumerate(todo, 1):
            log.info("[%d/%d] %s: %d variants", i, len(todo), group_label(group), len(group))
            yield from runner.run(group, done)
            elapsed = time.perf_counter() - start
            log.info("[%d/%d] done, %.0fs elapsed, ETA %.0fs", i, len(todo), elapsed,
                     elapsed / i * (len(todo) - i))
