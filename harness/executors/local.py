"""The embedded default: one (model, task) group at a time on this machine.

With `isolate` (what `harness run` uses) the groups run in one worker process, started for the
run and started again after it dies: a crash in native code (an inference library's segfault)
fails the unrecorded cells of the group it hit, and the run goes on. The worker is spawned,
not forked (a fork of a process whose OpenMP pool has run hangs in its first parallel region);
its log records go through the parent's handlers, so the console and run.log read as before.
Without it (the Python API's default) every group runs in this process.
"""
from __future__ import annotations

import logging
import logging.handlers
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from harness.cell import CellRunner
    from harness.plan import Cell
    from harness.records import Record

log = logging.getLogger(__name__)


class WorkerDied(HarnessError):
    """The worker process ended without finishing its group (a signal or an exit)."""


class LocalExecutor:
    name = "local"

    def __init__(self, isolate: bool = False) -> None:
        self.isolate = isolate

    def run(self, cells: list[Cell], runner: CellRunner, done: set[tuple]) -> Iterator[Record]:
        from harness.cell import group_label, groups

        start, todo = time.perf_counter(), groups(cells)
        worker: Worker | None = None
        try:
            for i, group in enumerate(todo, 1):
                log.info("[%d/%d] %s: %d variants", i, len(todo), group_label(group), len(group))
                if not self.isolate:
                    yield from runner.run(group, done)
                else:
                    worker = worker or Worker(runner)
                    yield from worker.group(group, done)
                    if not worker.alive:  # it died: the next group gets a new one
                        worker.close()
                        worker = None
                elapsed = time.perf_counter() - start
                log.info("[%d/%d] done, %.0fs elapsed, ETA %.0fs", i, len(todo), elapsed,
                         elapsed / i * (len(todo) - i))
        finally:
            if worker is not None:
                worker.close()


class Worker:
    """A spawned process that builds and times the groups it is sent."""

    def __init__(self, runner: CellRunner) -> None:
        ctx = mp.get_context("spawn")
        self.runner = runner
        self.conn, child = ctx.Pipe()
        level = logging.getLogger("harness").getEffectiveLevel()
        self.proc = ctx.Process(target=_serve, args=(child, runner, os.getpid(), level),
                                name="harness-worker")
        self.proc.start()
        child.close()

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def group(self, group: list[Cell], done: set[tuple]) -> Iterator[Record]:
        """The group's records; if the worker dies first, the cells it had not recorded are
        recorded as failed, naming how it died."""
        sent: set[tuple] = set()
        for kind, value in self._messages(group, done):
            if kind == "log":
                logging.getLogger(value.name).handle(value)
            elif kind == "record":
                sent.add(value.key)
                yield value
            elif kind == "raise":
                raise value
            else:
                return
        self.proc.join()
        yield from died(self.runner, group, done | sent, WorkerDied(_how(self.proc.exitcode)))

    def _messages(self, group: list[Cell], done: set[tuple]) -> Iterator[tuple[str, Any]]:
        """What the worker sends for the group; the iterator ends early if the worker dies
        (while busy, or before, while idle)."""
        try:
            self.conn.send((group, done))
            while True:
                yield self.conn.recv()
        except (EOFError, OSError):  # the worker's end of the pipe closed: it died
            return

    def close(self) -> None:
        """Ask the worker to stop; interrupt it if it is still busy (the parent was
        interrupted: it cleans up as an interrupted run does), kill it if that does not end it."""
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(timeout=2)  # a terminal's Ctrl-C reaches the worker too
        if self.proc.is_alive():
            os.kill(self.proc.pid, signal.SIGINT)
            self.proc.join(timeout=60)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


def died(runner: CellRunner, group: list[Cell], done: set[tuple],
         exc: WorkerDied) -> list[Record]:
    """Failed records for the cells of a group whose worker died before recording them."""
    from harness.cell import group_label

    error = f"{exc} while building or timing {group_label(group)}; resume the run to retry"
    log.error("%s", error)
    return [runner.record(cell, shape, status="failed", error=error, stage="worker")
            for cell in group for shape in runner.todo(cell, done)]


def _serve(conn: Connection, runner: CellRunner, parent: int, level: int) -> None:
    """The worker: for each (group, done) received, its records, then "end"; an exception
    goes to the parent, which raises it as a run in one process would. None ends it."""
    _die_with_parent(parent)
    _log_to(conn, level)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        group, done = job
        try:
            for record in runner.run(group, done):
                conn.send(("record", record))
            conn.send(("end", None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the parent
            conn.send(("raise", _picklable(exc)))
            if not isinstance(exc, Exception):
                return


class _PipeQueue:
    """What QueueHandler needs of a queue: log records go to the parent."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def put_nowait(self, record: logging.LogRecord) -> None:
        self.conn.send(("log", record))


def _log_to(conn: Connection, level: int) -> None:
    root = logging.getLogger("harness")
    root.handlers[:] = [logging.handlers.QueueHandler(_PipeQueue(conn))]  # type: ignore[arg-type]
    root.setLevel(level)
    root.propagate = False


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills the worker when the parent dies (a killed run leaves no worker
    going on without it); elsewhere nothing."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        return
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _picklable(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - whatever it holds, the parent gets its text
        return HarnessError(f"{type(exc).__name__}: {exc}")


def _how(code: Any) -> str:
    """'the worker process died with SIGSEGV (signal 11)' or '... exited with code 3'."""
    if isinstance(code, int) and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "a signal"
        return f"the worker process died with {name} (signal {-code})"
    return f"the worker process exited with code {code} before finishing"
