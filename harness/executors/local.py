"""The embedded default: every stage of every cell in this process, one cell at a time."""
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
        start = time.perf_counter()
        for i, cell in enumerate(cells, 1):
            log.info("[%d/%d] %s", i, len(cells), cell.label)
            yield from runner.run(cell, done)
            elapsed = time.perf_counter() - start
            log.info("[%d/%d] done, %.0fs elapsed, ETA %.0fs", i, len(cells), elapsed,
                     elapsed / i * (len(cells) - i))
