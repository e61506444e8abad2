"""A third-party method, installed as a package built in the test, runs in a suite."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import suite_file

PLUGIN = '''
"""A third-party method: halve the classifier's weights (changes logits, not predictions)."""
from harness.methods import MethodParams, method


class HalveParams(MethodParams):
    factor: float = 0.5


class Halve:
    def __init__(self, params: HalveParams) -> None:
        self.params = params

    def apply(self, model, ctx):
        import torch

        with torch.no_grad():
            model.classifier.weight.mul_(self.params.factor)
        ctx.notes.append(f"classifier scaled by {self.params.factor}")
        return model


@method("halve-classifier", level="torch", params=HalveParams)
def halve_classifier(params: HalveParams) -> Halve:
    """Scale the classification head's weights."""
    return Halve(params)


class CrashParams(MethodParams):
    task: str = "rte"


class Crash:
    def __init__(self, params: CrashParams) -> None:
        self.params = params

    def apply(self, model, ctx):
        import os
        import signal

        if ctx.task.name == self.params.task:  # what a crash in native code does
            os.kill(os.getpid(), signal.SIGSEGV)
        return model


@method("crash-on-task", level="torch", params=CrashParams)
def crash_on_task(params: CrashParams) -> Crash:
    """End the process with SIGSEGV on one task."""
    return Crash(params)
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "halve_plugin").mkdir()
    (src / "halve_plugin" / "__init__.py").write_text(PLUGIN)
    (src / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "halve-plugin"
        version = "0.1"
        [project.entry-points."harness.methods"]
        halve = "halve_plugin"
        [tool.setuptools]
        packages = ["halve_plugin"]
    """))
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)], check=True)
    return site


def run_cli(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True, env=env)


def test_plugin_is_listed_and_runs_in_a_suite(plugin_site: Path, tmp_path: Path,
                                              tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    listed = run_cli(plugin_site, "list", "methods")
    assert listed.returncode == 0 and "halve-classifier" in listed.stdout
    assert "factor=0.5" in listed.stdout
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir,
                       "[baseline, {name: halve-classifier, factor: 0.25}]")
    res = run_cli(plugin_site, "run", str(suite), "--results-dir", str(tmp_path / "r"),
                  "--run-id", "p")
    assert res.returncode == 0, res.stderr[-2000:]
    from harness.store import RunStore

    records = RunStore(tmp_path / "r" / "runs" / "p").records()
    plug = [r for r in records if r.method == "halve-classifier"]
    assert len(plug) == 2 and all(r.status == "ok" for r in plug)
    assert plug[0].variant == "halve-classifier(factor=0.25)"
    assert plug[0].notes == ["classifier scaled by 0.25"]


def test_without_the_plugin_the_name_is_unknown(tmp_path: Path, tiny_glue_dir: Path,
                                                tiny_bert_dir: Path) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, "[halve-classifier]")
    res = run_cli(tmp_path, "validate", str(suite))
    assert res.returncode == 2 and "unknown method 'halve-classifier'" in res.stderr


def test_a_crash_in_native_code_fails_its_group_and_the_run_goes_on(
        plugin_site: Path, tmp_path: Path, tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir,
                       "[baseline, {name: crash-on-task, task: mrpc}]")
    suite.write_text(suite.read_text().replace("tasks: [mrpc]", "tasks: [mrpc, rte]"))
    res = run_cli(plugin_site, "run", str(suite), "--results-dir", str(tmp_path / "r"),
                  "--run-id", "c")
    assert res.returncode == 1, res.stderr[-2000:]
    from harness.store import RunStore

    records = RunStore(tmp_path / "r" / "runs" / "c").records()
    assert {(r.task, r.status) for r in records} == {("mrpc", "failed"), ("rte", "ok")}
    died = "the worker process died with SIGSEGV (signal 11) while building or timing"
    assert all(r.error.startswith(died) and r.stage == "worker"
               for r in records if r.task == "mrpc")
    assert died in (tmp_path / "r" / "runs" / "c" / "run.log").read_text()
