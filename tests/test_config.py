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


@pytest.mark.parametrize("name", ["quick.yaml", "nightly.yaml", "reproduce.yaml", "gpu.yaml"])
def test_shipped_suites_validate(name: str) -> None:
    load_suite(REPO / "suites" / name)


def test_reproduce_suite_uses_the_nightly_recipe() -> None:
    """docs/baselines.md checks the nightly recipe against published scores with reproduce.yaml:
    only its cap on training examples (SST-2, to fit a few hours) may differ."""
    nightly = load_suite(REPO / "suites" / "nightly.yaml")[0].finetune
    reproduce = load_suite(REPO / "suites" / "reproduce.yaml")[0].finetune
    assert reproduce.model_copy(update={"max_train_samples": None}) == nightly


BASE = "name: t\nmodels: [minilm-l6]\ntasks: [rte]\n"


@pytest.mark.parametrize("extra, expected", [
    ("methods: []", "methods: List should have at least 1 item"),
    ("timing: {batch_sizes: []}", "timing.batch_sizes: List should have at least 1 item"),
    ("timing: {seq_lens: []}", "timing.seq_lens: List should have at least 1 item"),
    ("timing: {providers: []}", "timing.providers: List should have at least 1 item"),
    ("models: [minilm-l6, minilm-l6]", "models: 'minilm-l6' appears twice"),
    ("tasks: [rte, RTE]", "tasks: 'rte' appears twice (as rte, RTE)"),
    ("timing: {batch_sizes: [1, 1]}", "timing.batch_sizes: 1 appears twice"),
    ("finetune: {seed: -1}", "finetune.seed: Input should be greater than or equal to 0"),
    ("timing: {seed: -1}", "timing.seed: Input should be greater than or equal to 0"),
    ("finetune: {epochs: .inf}", "finetune.epochs: Input should be a finite number"),
    ("finetune: {lr: .inf}", "finetune.lr: Input should be a finite number"),
    ("finetune: {lr: .nan}", "finetune.lr: Input should be a finite number"),
    ("timing: {min_seconds: 10, max_seconds: 5}",
     "timing: min_seconds (10.0) must not exceed max_seconds (5.0)"),
    ("finetune: {max_seq_len: 1000}",
     "finetune.max_seq_len: 1000 is longer than model 'minilm-l6' takes (512 positions)"),
    ("timing: {seq_lens: [128, 600]}",
     "timing.seq_lens: 600 is longer than model 'minilm-l6' takes (512 positions)"),
    ("methods: [{name: distill, student: minilm-l3}]",
     "methods.0.0.distill.student: 'minilm-l3' is not a model of this suite"),
    ("methods: [{name: prune-unstructured, sparsity: .nan}]",
     "methods.0.0.prune-unstructured.sparsity: Input should be a finite number"),
])
def test_validation_gaps(tmp_path: Path, extra: str, expected: str) -> None:
    lines = BASE.splitlines()
    key = extra.split(":")[0]
    text = "\n".join([line for line in lines if not line.startswith(key + ":")] + [extra])
    _, _, problems = check_suite(write(tmp_path, text))
    assert any(expected in p for p in problems), problems


def test_local_model_dir_sequence_limit(tmp_path: Path, tiny_bert_dir: Path) -> None:
    text = f"name: t\nmodels: ['{tiny_bert_dir}']\ntasks: [rte]\nfinetune: {{max_seq_len: 256}}\n"
    _, _, problems = check_suite(write(tmp_path, text))
    assert any("longer than model" in p and "(128 positions)" in p for p in problems), problems


def test_student_in_the_suite_is_fine(tmp_path: Path) -> None:
    text = BASE.replace("[minilm-l6]", "[minilm-l6, minilm-l3]")
    text += "methods: [{name: distill, student: minilm-l3}]\n"
    assert check_suite(write(tmp_path, text))[2] == []


def test_sweeps_are_counted_before_they_are_expanded(tmp_path: Path) -> None:
    values = "[" + ", ".join(f"0.{i:02d}" for i in range(1, 100)) + "]"
    prune = (f"{{name: prune-unstructured, sparsity: {values}, begin_fraction: {values}, "
             f"end_fraction: {values}}}")
    text = BASE + f"methods:\n  - [{prune}, {{name: int8-static, percentile: [99.0, 99.9, 99.99]}}]\n"
    _, pipelines, problems = check_suite(write(tmp_path, text))
    assert pipelines == []
    assert problems == [f"{tmp_path / 'suite.yaml'}: methods: 2910897 cells (1 models x 1 tasks x "
                        "2910897 pipelines) is more than max_cells (1000); raise max_cells to "
                        "run them"]


def test_max_cells_counts_models_and_tasks(tmp_path: Path) -> None:
    text = ("name: t\nmodels: [minilm-l6, minilm-l3]\ntasks: [rte, mrpc, sst2]\nmax_cells: 10\n"
            "methods: [{name: prune-unstructured, sparsity: [0.5, 0.6]}]\n")
    _, pipelines, problems = check_suite(write(tmp_path, text))
    assert "12 cells (2 models x 3 tasks x 2 pipelines) is more than max_cells (10)" in problems[0]
    _, pipelines, problems = check_suite(write(tmp_path, text.replace("10", "12")))
    assert problems == [] and len(pipelines) == 2


@pytest.mark.parametrize("entry, labels", [
    ("{name: distill, layers: [0, 2]}", ["distill(layers=[0, 2])"]),
    ("{name: distill, sweep: {layers: [[0, 2], [1, 3]]}}",
     ["distill(layers=[0, 2])", "distill(layers=[1, 3])"]),
    ("{name: int8-dynamic, op_types: [MatMul, Attention]}",
     ["int8-dynamic(op_types=['MatMul', 'Attention'])"]),
    ("{name: prune-unstructured, sparsity: [0.5, 0.8]}",  # a list for a number: a sweep
     ["prune-unstructured(sparsity=0.5)", "prune-unstructured(sparsity=0.8)"]),
    ("{name: prune-unstructured, sweep: {sparsity: [0.5, 0.8]}, epochs: 1}",
     ["prune-unstructured(epochs=1,sparsity=0.5)", "prune-unstructured(epochs=1,sparsity=0.8)"]),
])
def test_list_values_and_explicit_sweeps(tmp_path: Path, entry: str, labels: list[str]) -> None:
    text = BASE.replace("minilm-l6", "minilm-l6") + f"methods: [{entry}]\n"
    _, pipelines, problems = check_suite(write(tmp_path, text))
    assert problems == [] and [p.label for p in pipelines] == labels


@pytest.mark.parametrize("entry, expected", [
    ("{name: distill, sweep: {layers: [0, 2]}}", "methods.0.0.distill.layers: Input should be a valid list"),
    ("{name: distill, sweep: [layers]}", "methods.0.0.sweep: a mapping of parameter to a list"),
    ("{name: distill, sweep: {epochs: 1}}", "methods.0.0.sweep.epochs: a list of values"),
    ("{name: distill, sweep: {epochs: [1]}, epochs: 2}",
     "methods.0.0.sweep.epochs: also set outside sweep"),
])
def test_bad_sweeps(tmp_path: Path, entry: str, expected: str) -> None:
    _, _, problems = check_suite(write(tmp_path, BASE + f"methods: [{entry}]\n"))
    assert any(expected in p for p in problems), problems


def test_validate_refuses_a_huge_sweep_quickly(tmp_path: Path) -> None:
    values = "[" + ", ".join(str(i) for i in range(1, 28)) + "]"
    text = BASE + "methods:\n  - [" + ", ".join(
        f"{{name: prune-unstructured, sparsity: 0.5, epochs: {values}}}" for _ in range(5)) + "]\n"
    res = subprocess.run([sys.executable, "-m", "harness.cli_main", "validate",
                          str(write(tmp_path, text))], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "14348907 cells" in res.stderr and "max_cells" in res.stderr


def test_cells_with_list_parameters_are_hashable() -> None:
    """Cells key dicts (a group's builds and timings): list-valued parameters must not break that."""
    from harness.methods.params import DistillParams
    from harness.plan import Cell, Pipeline, Step

    def cell() -> Cell:
        step = Step("distill", DistillParams(layers=[0, 2]), (("layers", [0, 2]),))
        return Cell("m", "rte", Pipeline((step,)))

    assert {cell(): 1}[cell()] == 1
