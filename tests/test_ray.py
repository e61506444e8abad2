"""The Ray executor on a local Ray instance: same records as local, dead workers, resume.

One Ray instance serves the module. A test-only method plugin lives in a temporary directory
with an entry point (as an installed plugin would), on the workers' PYTHONPATH, so Ray
workers find it the way they find any `harness.methods` plugin.
"""
from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.records import Record
from harness.run import run_suite
from harness.store import RunStore

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'harness[ray]')")
pytestmark = pytest.mark.ray

PLUGIN = "harness_ray_test_plugin"
PLUGIN_SOURCE = '''
"""Test-only torch-level method for tests/test_ray.py: kills its own worker process."""
import os
import time
from pathlib import Path

from harness.methods import MethodParams, method


class DieParams(MethodParams):
    marker: str  # created on the first call
    always: bool = False


@method("ray-test-die", level="torch", params=DieParams)
class Die:
    """Exits the process on the first call (or on every call); otherwise a no-op."""

    def __init__(self, params):
        self.params = params

    def apply(self, model, ctx):
        marker = Path(self.params.marker)
        if self.params.always or not marker.exists():
            marker.touch()
            os._exit(1)
        return model


class LogParams(MethodParams):
    log: str  # one line per call


@method("ray-test-log", level="torch", params=LogParams)
class Log:
    """Appends a line to a file per call, slowly; otherwise a no-op."""

    def __init__(self, params):
        self.params = params

    def apply(self, model, ctx):
        with open(self.params.log, "a") as fh:
            fh.write(f"start {os.getpid()}\\n")
        time.sleep(5.0)  # long enough for a second worker to start the same step
        with open(self.params.log, "a") as fh:
            fh.write(f"done {os.getpid()}\\n")
        return model
'''

SUITE = """
name: tiny-ray
data_dir: {glue}
models: [{model}]
tasks: {tasks}
methods: {methods}
finetune: {{epochs: 1, batch_size: 8, max_seq_len: 32, max_train_samples: 32}}
timing: {{batch_sizes: {batches}, seq_lens: [32], warmup: 1, min_iterations: 3,
          min_seconds: {min_seconds}, optimize_fp32: false}}
ray: {{max_retries: 1}}
"""


def write_plugin(root: Path) -> Path:
    """The plugin module plus a dist-info whose entry point names it."""
    (root / f"{PLUGIN}.py").write_text(PLUGIN_SOURCE)
    dist = root / f"{PLUGIN}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[harness.methods]\nray-test = {PLUGIN}\n")
    return root


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local 2-CPU Ray instance for the module; yields its GCS address."""
    if ray.is_initialized():
        pytest.skip("a Ray instance is already initialized in this process")
    plugin_dir = write_plugin(tmp_path_factory.mktemp("ray-plugin"))
    sys.path.insert(0, str(plugin_dir))
    try:
        importlib.import_module(PLUGIN)  # the driver validates suites naming the method
    finally:
        sys.path.remove(str(plugin_dir))
    ray.init(num_cpus=2, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(plugin_dir)}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def suite_file(tmp_path: Path, glue: Path, model: Path, methods: str, batches: str = "[1]",
               min_seconds: float = 0.0, tasks: str = "[mrpc]") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(glue=glue, model=model, methods=methods, batches=batches,
                                 min_seconds=min_seconds, tasks=tasks))
    return path


def by_key(records: list[Record]) -> dict[tuple, Record]:
    return {r.key: r for r in records}


def test_ray_and_local_give_the_same_records(ray_address: str, tmp_path: Path,
                                             tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    # CoLA has no data in the tiny GLUE dir: both executors must record it as skipped.
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, "[baseline, prune-structured]",
                       tasks="[mrpc, cola]")
    local = run_suite(suite, tmp_path / "local", "r1", executor="local")
    remote = run_suite(suite, tmp_path / "ray", "r1", executor="ray")
    assert local.exit_code == remote.exit_code == 0
    loc = by_key(RunStore(local.run_dir).records())
    ray_ = by_key(RunStore(remote.run_dir).records())
    assert set(loc) == set(ray_) and len(loc) == 4
    for key, r in ray_.items():
        assert (r.status, r.error) == (loc[key].status, loc[key].error), key
        assert r.status == ("skipped" if r.task == "cola" else "ok"), r.error
        for name in ("metric_value", "accuracy", "f1", "params", "nonzero_params"):
            assert getattr(r, name) == getattr(loc[key], name), (key, name)
        if r.status == "ok":
            assert r.node and len(r.node) == 56 and r.machine == loc[key].machine
            # one timing task per group: both variants in the same rounds, as locally
            assert sorted(r.round_order[0]) == ["baseline", "prune-structured"]
            assert r.speedup is not None and len(r.round_sizes) == 5  # five rounds of at
            assert min(r.round_sizes) >= 1  # least ceil(3 / 5) runs each (more in turns)
            assert loc[key].node is None
    assert json.loads((remote.run_dir / "manifest.json").read_text())["executor"] == "ray"


def test_dead_worker_is_retried_or_recorded_as_failed(ray_address: str, tmp_path: Path,
                                                      tiny_glue_dir: Path,
                                                      tiny_bert_dir: Path) -> None:
    once, always = tmp_path / "once", tmp_path / "always"
    methods = (f"[baseline, {{name: ray-test-die, marker: '{once}'}}, "
               f"{{name: ray-test-die, marker: '{always}', always: true}}]")
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods)
    summary = run_suite(suite, tmp_path / "results", "r1", executor="ray")
    records = RunStore(summary.run_dir).records()
    status = {Path(r.method_params.get("ray-test-die", {}).get("marker", "baseline")).name: r
              for r in records}
    assert set(status) == {"baseline", "once", "always"}
    assert once.exists() and always.exists()  # both workers really died at least once
    assert status["baseline"].status == "ok"
    assert status["once"].status == "ok", status["once"].error
    failed = status["always"]
    assert failed.status == "failed" and failed.stage == "build"
    assert failed.error.startswith("WorkerCrashedError: ") and "\x1b" not in failed.error
    assert summary.exit_code == 1


def test_a_shared_torch_step_runs_once(ray_address: str, tmp_path: Path, tiny_glue_dir: Path,
                                       tiny_bert_dir: Path) -> None:
    step = f"{{name: ray-test-log, log: '{tmp_path / 'calls'}'}}"
    methods = (f"[{step}, [{step}, prune-unstructured], "
               f"[{step}, {{name: prune-unstructured, sparsity: 0.5}}]]")
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods)
    summary = run_suite(suite, tmp_path / "results", "r1", executor="ray")
    records = RunStore(summary.run_dir).records()
    assert len(records) == 3 and {r.status for r in records} == {"ok"}
    calls = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    done = [pid for event, pid in calls if event == "done"]
    started = [pid for event, pid in calls if event == "start"]
    # one worker applied it; another start is only Ray's retry of a task whose worker was
    # killed before it finished (e.g. by Ray's memory monitor on a crowded machine)
    assert len(done) == 1 and started[-1] == done[0], calls
    assert started.count(done[0]) == 1 and len(started) == len(set(started)), calls


def test_resume_after_the_driver_is_killed(ray_address: str, tmp_path: Path,
                                           tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    methods = "[baseline, prune-structured, {name: prune-unstructured, sparsity: 0.5}]"
    # two (model, task) groups: each is one timing task whose 6 records come together
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods, "[1, 4]", 1.0,
                       tasks="[mrpc, rte]")
    results = tmp_path / "results"
    records = results / "runs" / "r1" / "records.jsonl"
    cmd = [sys.executable, "-m", "harness.cli_main", "run", str(suite), "--results-dir",
           str(results), "--run-id", "r1", "--executor", "ray", "--address", ray_address]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (records.exists() and records.read_text().strip()):
            assert driver.poll() is None, "driver exited before writing a record"
            assert time.monotonic() < deadline, "no record within 300s"
            time.sleep(0.1)
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
    first = records.read_text().splitlines()
    assert 0 < len(first) < 12, "the driver was not killed mid-run"

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = records.read_text().splitlines()
    assert lines[:len(first)] == first  # kept, not redone
    parsed = [json.loads(line) for line in lines]
    by_key: dict[tuple, list[dict]] = {}
    for d in parsed:
        by_key.setdefault((d["task"], d["variant"], d["batch_size"]), []).append(d)
    assert len(by_key) == 12, sorted(by_key)
    for key, lines_of_key in by_key.items():
        # each key is measured once; a later line may only re-annotate the significance of its
        # delta (Benjamini-Hochberg runs over the finished run's deltas and appends what changed)
        measured = [{k: v for k, v in d.items() if k != "delta_significant"} for d in lines_of_key]
        assert all(m == measured[0] for m in measured), key
    assert {d["status"] for d in parsed} == {"ok"}
