"""The local executor with `isolate` runs the groups in a worker process: a crash in native
code fails that group's unrecorded cells and the run goes on."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

import pytest

from harness.errors import ConfigError
from harness.executors.local import LocalExecutor, _how


@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    variant: str


@dataclass
class Rec:
    model: str
    task: str
    variant: str
    shape: int
    status: str = "ok"
    error: str | None = None
    stage: str | None = None
    pid: int = field(default_factory=os.getpid)

    @property
    def key(self) -> tuple:
        return (self.model, self.task, self.variant, self.shape)


@dataclass
class Runner:
    """Records shapes 1 and 2 of each cell; in the group `crash` names, it dies after the
    first record, the way a segfault in an inference library ends a process."""

    crash: str = ""
    how: str = "segv"

    def todo(self, cell: Cell, done: set[tuple]) -> list[int]:
        return [s for s in (1, 2) if (cell.model, cell.task, cell.variant, s) not in done]

    def record(self, cell: Cell, shape: int, **fields) -> Rec:
        return Rec(cell.model, cell.task, cell.variant, shape, **fields)

    def run(self, group: list[Cell], done: set[tuple]):
        for cell in group:
            for shape in self.todo(cell, done):
                yield self.record(cell, shape)
                if cell.model == self.crash:
                    if self.how == "raise":
                        raise ConfigError("a bug in a stage")
                    os.kill(os.getpid(), signal.SIGSEGV)


CELLS = [Cell(m, "mrpc", v) for m in ("a", "b", "c") for v in ("baseline", "int8")]


def test_each_group_runs_in_a_worker_and_a_crash_fails_only_its_unrecorded_cells():
    records = list(LocalExecutor(isolate=True).run(CELLS, Runner(crash="b"), done=set()))
    assert {r.pid for r in records if r.status == "ok"}.isdisjoint({os.getpid()})
    by = {r.key: r for r in records}
    assert len(by) == len(records) == 12  # every cell and shape once
    failed = [r for r in records if r.status == "failed"]
    assert {(r.model, r.variant, r.shape) for r in failed} == {
        ("b", "baseline", 2), ("b", "int8", 1), ("b", "int8", 2)}  # ("b", "baseline", 1) was sent
    assert all(r.stage == "worker" and r.error.startswith(
        "the worker process died with SIGSEGV (signal 11) while building or timing b mrpc")
        for r in failed)
    assert all(r.status == "ok" for r in records if r.model in ("a", "c"))


def test_done_shapes_are_not_redone_or_failed():
    done = {("b", "mrpc", "baseline", 1), ("b", "mrpc", "baseline", 2)}
    records = list(LocalExecutor(isolate=True).run(CELLS, Runner(crash="b"), done=done))
    assert not {r.key for r in records} & done
    assert {(r.model, r.variant, r.shape, r.status) for r in records if r.model == "b"} == {
        ("b", "int8", 1, "ok"), ("b", "int8", 2, "failed")}


def test_an_exception_in_the_worker_is_raised_in_the_parent():
    with pytest.raises(ConfigError, match="a bug in a stage"):
        list(LocalExecutor(isolate=True).run(CELLS, Runner(crash="a", how="raise"), done=set()))


def test_in_process_when_not_isolated():
    records = list(LocalExecutor(isolate=False).run(CELLS[:2], Runner(), done=set()))
    assert {r.pid for r in records} == {os.getpid()}


def test_how_a_worker_ended():
    assert _how(-9) == "the worker process died with SIGKILL (signal 9)"
    assert _how(3) == "the worker process exited with code 3 before finishing"


def test_a_worker_that_died_while_idle_fails_the_next_group_and_a_new_one_takes_over():
    from harness.executors.local import Worker

    worker = Worker(Runner())
    worker.proc.kill()
    worker.proc.join()
    records = list(worker.group(CELLS[:2], set()))
    assert {(r.status, r.stage) for r in records} == {("failed", "worker")} and len(records) == 4
    assert records[0].error.startswith("the worker process died with SIGKILL (signal 9)")
    worker.close()
