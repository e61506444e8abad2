"""Usage and input errors through the CLI in a subprocess: one line on stderr, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import suite_file


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


@pytest.mark.parametrize("run_id", ["../../../x", "/abs/x", "..", ".", "a/b", "x" * 300, "",
                                    "-rf", "a b", "é"])
def test_unsafe_run_id_is_refused(tmp_path: Path, tiny_glue_dir: Path, tiny_bert_dir: Path,
                                  run_id: str) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir)
    work = tmp_path / "deep" / "er" / "cwd"
    work.mkdir(parents=True)
    res = cli("run", str(suite), "--results-dir", "results", f"--run-id={run_id}", cwd=work)
    assert_one_line_error(res, "--run-id")
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "suite.yaml"]
    assert not (work / "results").exists()
