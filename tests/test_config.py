from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.plan import check_suite, load_suite

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


GOOD = """
name: t
models: [minilm-l6]
tasks: [MRPC, sst-2]
methods:
  - baseline
  - distill+prune-structured
  - {name: prune-unstructured, sparsity: [0.5, 0.8]}
finetune: {epochs: 1, max_train_samples: 10}
timing: {batch_sizes: [1, 8], seq_lens: [64]}
"""


def test_good_suite_resolves_and_sweeps(tmp_path: Path) -> None:
    suite, pipelines = load_suite(write(tmp_path, GOOD))
    assert suite.tasks == ["mrpc", "sst2"]
    labels = [p.label for p in pipelines]
    assert labels == ["baseline", "distill+prune-structured",
                      "prune-unstructured(sparsity=0.5)", "prune-unstructured(sparsity=0.8)"]
    assert pipelines[0].method == "baseline" and pipelines[0].steps == ()
    assert pipelines[3].steps[0].params.sparsity == 0.8
    assert [s.level for s in pipelines[1].steps] == ["torch", "torch"]


@pytest.mark.parametrize("suite_text, expected", [
    (GOOD.replace("tasks: [MRPC, sst-2]", "tasks: [mrcp]"), "tasks.0: unknown task 'mrcp'. Did you mean: mrpc?"),
    (GOOD.replace("epochs: 1", "epoch: 1"), "finetune.epoch: Extra inputs are not permitted"),
    (GOOD.replace("seq_lens: [64]", "seq_lens: [0]"), "timing.seq_lens.0: Input should be greater than 0"),
    (GOOD.replace("- baseline", "- prune-structurd"), "methods.0.0: unknown method 'prune-structurd'. Did you mean: prune-structured, prune-unstructured?"),
    (GOOD.replace("sparsity: [0.5, 0.8]", "sparsty: 0.5"), "methods.2.0.prune-unstructured.sparsty: Extra inputs are not permitted"),
    (GOOD.replace("[minilm-l6]", "[minilm-l7]"), "models.0: unknown model 'minilm-l7'"),
    ("name: t\nmodels: []\ntasks: [rte]\n", "models: List should have at least 1 item"),
    ("name: [unclosed\n", "invalid YAML"),
])
def test_bad_suites_name_the_field(tmp_path: Path, suite_text: str, expected: str) -> None:
    path = write(tmp_path, suite_text)
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert expected in str(info.value)
    assert all(line.startswith(str(path)) for line in str(info.value).splitlines())


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace("- baseline", "- nope").replace("[minilm-l6]", "[minilm-l7]")
    _, _, problems = check_suite(write(tmp_path, text))
    assert len(problems) == 2


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    good = subprocess.run([sys.executable, "-m", "harness.cli_main", "validate",
                           str(write(tmp_path, GOOD))], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "8 cells" in good.stdout
    bad = write(tmp_path, GOOD.replace("epochs: 1", "epoch: 1"))
    res = subprocess.run([sys.executable, "-m", "harness.cli_main", "validate", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {bad}: finetune.epoch: Extra inputs are not permitted"]


@pytest.mark.parametrize("name", ["quick.yaml", "nightly.yaml"])
def test_shipped_suites_validate(name: str) -> None:
    load_suite(REPO / "suites" / name)
