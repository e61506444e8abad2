"""Executors run a suite's cells; the local one on this machine (in a worker process with
`isolate`), the Ray one on a cluster."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.cell import CellRunner
    from harness.plan import Cell
    from harness.records import Record


class Executor(Protocol):
    name: str

    def run(self, cells: list[Cell], runner: CellRunner, done: set[tuple]) -> Iterator[Record]:
        """Yield every new record as soon as it exists; the caller stores it."""
        ...


def make_executor(name: str, address: str | None = None, isolate: bool = False) -> Executor:
    """`isolate`: the local executor's groups run in a worker process, so that a crash in
    native code fails one group's cells instead of ending the run (Ray's tasks always are)."""
    if name == "local":
        from harness.executors.local import LocalExecutor

        return LocalExecutor(isolate)
    if name == "ray":
        from harness.executors.ray import RayExecutor

        return RayExecutor(address)
    raise ConfigError(f"executor: unknown executor '{name}' (local or ray)")
