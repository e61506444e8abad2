"""Runs through the CLI in a subprocess: the run lock, interrupts and kills, changed suites,
run.log, diverged training."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from conftest import suite_file

from harness.store import RunStore


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "harness.cli_main", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True, timeout=600)


def slow_suite(tmp_path: Path, glue: Path, model: Path) -> Path:
    """A suite whose fine-tune runs long enough to be interrupted."""
    path = suite_file(tmp_path, glue, model)
    data = yaml.safe_load(path.read_text())
    data["finetune"]["epochs"] = 200
    data["timing"]["batch_sizes"] = [1]
    path.write_text(yaml.safe_dump(data))
    return path


def wait_for(check, what: str, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"run ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def building(cache: Path) -> bool:
    return any(cache.glob("*/.*.tmp"))


def test_run_lock_interrupt_and_resume(tmp_path: Path, tiny_glue_dir: Path,
                                       tiny_bert_dir: Path) -> None:
    suite, results = slow_suite(tmp_path, tiny_glue_dir, tiny_bert_dir), tmp_path / "results"
    first = start("run", str(suite), "--results-dir", str(results), "--run-id", "r1")
    wait_for(lambda: building(results / "cache"), "a build", first)

    second = cli("run", str(suite), "--results-dir", str(results), "--run-id", "r1")
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"run r1 is in use by pid {first.pid}" in second.stderr
    assert first.poll() is None  # the second run did not touch the first

    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130 and err.strip().splitlines()[-1] == "aborted (SIGINT)"
    assert not building(results / "cache")  # the interrupted build removed its folder
    assert "aborted" in (results / "runs" / "r1" / "run.log").read_text()
    assert not (results / "runs" / "r1" / ".lock.holder").exists()


def test_killed_run_leaves_no_lock_and_no_temp_folder(tmp_path: Path, tiny_glue_dir: Path,
                                                      tiny_bert_dir: Path) -> None:
    suite, results = slow_suite(tmp_path, tiny_glue_dir, tiny_bert_dir), tmp_path / "results"
    killed = start("run", str(suite), "--results-dir", str(results), "--run-id", "r1")
    wait_for(lambda: building(results / "cache"), "a build", killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate(timeout=60)
    assert building(results / "cache")  # SIGKILL runs no cleanup...
    data = yaml.safe_load(suite.read_text())
    data["finetune"]["epochs"] = 1
    suite.write_text(yaml.safe_dump(data))
    res = cli("run", str(suite), "--results-dir", str(results), "--run-id", "r2")
    assert res.returncode == 0, res.stderr[-3000:]
    res = cli("run", str(suite), "--results-dir", str(results), "--run-id", "r1", "--force")
    assert res.returncode == 0, res.stderr[-3000:]  # ...but the OS released the lock
    assert not building(results / "cache")  # and the next build of that key cleaned up


def test_resume_with_a_changed_suite_is_refused(tmp_path: Path, tiny_glue_dir: Path,
                                                tiny_bert_dir: Path) -> None:
    suite, results = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir), tmp_path / "results"
    data = yaml.safe_load(suite.read_text())
    data["timing"]["batch_sizes"] = [1]
    suite.write_text(yaml.safe_dump(data))
    args = ["run", str(suite), "--results-dir", str(results), "--run-id", "r1"]
    assert cli(*args).returncode == 0
    suite.write_text("# a comment changes nothing\n" + suite.read_text())
    assert cli(*args).returncode == 0
    kept = (results / "runs" / "r1" / "suite.yaml").read_text()
    data["finetune"]["epochs"] = 2
    suite.write_text(yaml.safe_dump(data))
    res = cli(*args)
    assert res.returncode == 2 and "was started with another suite" in res.stderr, res.stderr
    assert (results / "runs" / "r1" / "suite.yaml").read_text() == kept
    res = cli(*args, "--force")
    assert res.returncode == 0, res.stderr[-3000:]
    assert yaml.safe_load((results / "runs" / "r1" / "suite.yaml").read_text()) == data
    assert len(list((results / "runs" / "r1").glob("suite.*.yaml"))) == 1  # the old one


def test_diverged_fine_tune_is_a_failed_cell_with_its_traceback_in_run_log(
        tmp_path: Path, tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    suite, results = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir), tmp_path / "results"
    data = yaml.safe_load(suite.read_text())
    data["finetune"]["lr"] = 1.0e30
    suite.write_text(yaml.safe_dump(data))
    res = cli("run", str(suite), "--results-dir", str(results), "--run-id", "r1")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "traceback in run.log" in res.stderr
    records = RunStore(results / "runs" / "r1").records()
    assert {r.status for r in records} == {"failed"}
    assert all(r.error.startswith("TrainingDiverged: fine-tune") and "loss is nan" in r.error
               for r in records)
    log = (results / "runs" / "r1" / "run.log").read_text()
    assert log.count("Traceback (most recent call last)") == 1
    assert "raise TrainingDiverged" in log and "finetune  built" not in log
