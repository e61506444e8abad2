"""Usage and input errors through the CLI in a subprocess: one line on stderr, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, no traceback, and the message names what is wrong."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "─" not in res.stderr, res.stderr[-3000:]
    for needle in needles:
        assert needle in res.stderr, res.stderr[-3000:]


@pytest.mark.parametrize("args, needle", [
    (["frobnicate"], "No such command"),
    (["run"], "run: Missing argument 'suite'"),
    (["time", "x.onnx", "--batch-size", "abc"], "time: Invalid value for '--batch-size'"),
    (["cache-prune", "--older-than-days", "-1"], "older-than-days"),
])
def test_usage_errors_exit_2_without_traceback(args: list[str], needle: str) -> None:
    assert_one_line_error(cli(*args), needle)
