"""Data changes reach the cache keys; missing data is skipped, broken data is an error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import suite_file, write_tiny_glue

from harness.cell import BuildResult
from harness.errors import DataError, DataMissing
from harness.schema import Suite
from harness.stages.data import SuiteData
from harness.tasks import load_split


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True)


def edit_row(path: Path, row: int, column: int, value: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = lines[row].split("\t")
    cells[column] = value
    lines[row] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("split, row, column, value", [
    ("dev", 70, 3, "flip"),  # a label after the first 50 examples
    ("train", 75, 3, "flip"),
    ("dev", 79, 2, "the cat sat on a different mat"),  # text of the last example
])
def test_data_id_covers_every_example(tmp_path: Path, split: str, row: int, column: int,
                                      value: str) -> None:
    glue = write_tiny_glue(tmp_path / "glue", n_train=80, n_dev=80)
    suite = Suite(name="s", models=["m"], tasks=["rte"], data_dir=glue)
    before = SuiteData(suite, glue).identity("rte", split)
    path = glue / "RTE" / f"{split}.tsv"
    if value == "flip":
        old = path.read_text().splitlines()[row].split("\t")[column]
        value = "entailment" if old == "not_entailment" else "not_entailment"
    edit_row(path, row, column, value)
    after = SuiteData(suite, glue).identity("rte", split)
    assert before["digest"] != after["digest"]
    assert SuiteData(suite, glue).identity("rte", split) == after  # and it is stable


def test_missing_and_broken_data_are_told_apart(tmp_path: Path) -> None:
    glue = write_tiny_glue(tmp_path / "glue")
    with pytest.raises(DataMissing):
        load_split("cola", "train", data_dir=glue, source="local")
    edit_row(glue / "RTE" / "train.tsv", 5, 3, "maybe")
    with pytest.raises(DataError) as info:
        load_split("rte", "train", data_dir=glue, source="local")
    assert not isinstance(info.value, DataMissing) and "train.tsv:6: label 'maybe'" in str(info.value)
    assert BuildResult.failure(info.value).status == "failed"
    assert BuildResult.failure(DataMissing("cola: train.tsv not found")).status == "skipped"


@pytest.mark.parametrize("damage, needle", [
    ("label", "train.tsv:4: label '2' is not one of"),
    ("truncate", "train.tsv:21: expected 5 tab-separated columns"),
    ("empty-dev", "dev.tsv: empty file"),
    ("header-only", "dev.tsv: no examples"),
    ("latin-1", "train.tsv: not UTF-8"),
])
def test_broken_data_is_found_before_running(tmp_path: Path, tiny_bert_dir: Path, damage: str,
                                             needle: str) -> None:
    glue = write_tiny_glue(tmp_path / "glue")
    train, dev = glue / "MRPC" / "train.tsv", glue / "MRPC" / "dev.tsv"
    if damage == "label":
        edit_row(train, 3, 0, "2")
    elif damage == "truncate":
        lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
        cut = "".join(lines[:20]) + lines[20][:12]  # a copy that stopped inside row 21
        assert cut.count("\t") % 4 != 0
        train.write_text(cut, encoding="utf-8")
    elif damage == "empty-dev":
        dev.write_text("")
    elif damage == "header-only":
        dev.write_text(dev.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    else:
        edit_row(train, 2, 3, "caf\u00e9")
        train.write_bytes(train.read_text(encoding="utf-8").encode("latin-1", "replace"))
    suite = suite_file(tmp_path, glue, tiny_bert_dir)
    res = cli("run", str(suite), "--results-dir", str(tmp_path / "results"))
    assert res.returncode == 2, res.stderr[-3000:]
    assert needle in res.stderr and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert not (tmp_path / "results").exists()


def test_resume_retries_skipped_cells(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """A cell skipped for missing data runs when the data is there on resume."""
    import shutil

    from harness.run import run_suite
    from harness.store import RunStore

    glue = write_tiny_glue(tmp_path / "glue")
    suite = suite_file(tmp_path, glue, tiny_bert_dir)
    data = yaml.safe_load(suite.read_text())
    data["tasks"], data["timing"]["batch_sizes"] = ["mrpc", "rte"], [1]
    suite.write_text(yaml.safe_dump(data))
    shutil.move(glue / "RTE", tmp_path / "RTE-away")
    first = run_suite(suite, tmp_path / "results", "r1")
    statuses = {r.task: r.status for r in RunStore(first.run_dir).records()}
    assert statuses == {"mrpc": "ok", "rte": "skipped"} and first.exit_code == 0
    shutil.move(tmp_path / "RTE-away", glue / "RTE")
    again = run_suite(suite, tmp_path / "results", "r1")
    assert {r.task: r.status for r in RunStore(again.run_dir).records()} == {
        "mrpc": "ok", "rte": "ok"}
