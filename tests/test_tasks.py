"""GLUE loaders: every canonical glue_data format, the real files, missing data, the hub route."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import MNLI_DEV_HEAD, MNLI_TRAIN_HEAD, mnli_row, write_tsv

import harness.tasks as tasks
from harness.errors import DataError
from harness.tasks import available_splits, get_task, load_split, resolve_data_dir
from harness.tasks.hub import hub_split, load_hub_split


@pytest.fixture
def glue(tmp_path: Path) -> Path:
    """Small files of all nine tasks in the canonical layouts, with their quirks."""
    write_tsv(tmp_path, "CoLA", "dev.tsv", [  # no header; 4th column is the sentence
        ["gj04", "1", "", "The sailors rode the breeze clear of the rocks."],
        ["gj04", "0", "*", 'He said " wow .'],  # an unbalanced quote is data
        ["bc01", "1", "", "It's \"quoted\" here."],
    ])
    write_tsv(tmp_path, "SST-2", "dev.tsv", [["sentence", "label"], ["a charming journey . ", "1"],
                                         ["unflinchingly bleak ", "0"]])
    write_tsv(tmp_path, "MRPC", "dev.tsv", [
        ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        ["1", "1355540", "1355592", "He said the pie doesn 't fit .", '" The pie does not fit .'],
        ["0", "2029631", "2029565", "Magnarelli said so .", 'His wife said " 100 percent " .'],
    ], bom=True)
    write_tsv(tmp_path, "STS-B", "dev.tsv", [
        "index genre filename year old_index source1 source2 sentence1 sentence2 score".split(),
        ["0", "main-captions", "MSRvid", "2012test", "0000", "none", "none", "A man dances.",
         "A man is dancing.", "5.000"],
        ["1", "main-news", "headlines", "2015", "0002", "none", "none", "A child rides.",
         "A kid rides a horse.", "3.800"],
    ])
    write_tsv(tmp_path, "QQP", "dev.tsv", [
        "id qid1 qid2 question1 question2 is_duplicate".split(),
        ["0", "1", "2", "How do I learn Python?", "What is the best way to learn Python?", "1"],
        ["1", "3", "4", "Why is the sky blue?\t"],  # malformed: wrong column count
        ["2", "5", "6", "What is \"null\"?", "null", "0"],
    ])
    write_tsv(tmp_path, "MNLI", "train.tsv", [MNLI_TRAIN_HEAD,
                                          mnli_row(0, "P0", "H0", ["neutral", "neutral"])])
    write_tsv(tmp_path, "MNLI", "dev_matched.tsv", [
        MNLI_DEV_HEAD, mnli_row(0, "The cat sat.", "A cat sat.", ["entailment"] * 6),
        mnli_row(1, "It rained.", "It was dry.", ["contradiction"] * 5 + ["contradiction"]),
    ])
    write_tsv(tmp_path, "MNLI", "dev_mismatched.tsv", [
        MNLI_DEV_HEAD, mnli_row(0, "Letters came.", "Mail arrived?", ["neutral"] * 6)])
    write_tsv(tmp_path, "QNLI", "dev.tsv", [
        ["index", "question", "sentence", "label"],
        ["0", "What came into force?", "The constitution came into force.", "entailment"],
        ["1", "Which river?", '"The Rhine," he said.', "not_entailment"],
    ])
    for task_dir in ("RTE", "WNLI"):
        labels = ("not_entailment", "entailment") if task_dir == "RTE" else ("0", "1")
        write_tsv(tmp_path, task_dir, "dev.tsv", [
            ["index", "sentence1", "sentence2", "label"],
            ["0", "No weapons found.", "Weapons found.", labels[0]],
            ["1", 'A " B', "C", labels[1]],
        ])
    return tmp_path


def test_cola_has_no_header_and_keeps_quotes(glue: Path) -> None:
    d = load_split("cola", "dev", data_dir=glue, source="local")
    assert len(d) == 3 and d.text_b is None
    assert d.labels.tolist() == [1, 0, 1] and d.labels.dtype == np.int64
    assert d.text_a[1] == 'He said " wow .'
    assert d.text_a[2] == "It's \"quoted\" here."


def test_sst2_keeps_trailing_space(glue: Path) -> None:
    d = load_split("SST-2", "validation", data_dir=glue, source="local")
    assert d.text_a == ["a charming journey . ", "unflinchingly bleak "]
    assert d.labels.tolist() == [1, 0] and d.split == "dev"


def test_mrpc_bom_header_and_quotes(glue: Path) -> None:
    d = load_split("mrpc", "dev", data_dir=glue, source="local")
    assert d.labels.tolist() == [1, 0]
    assert d.text_a[0] == "He said the pie doesn 't fit ."
    assert d.text_b == ['" The pie does not fit .', 'His wife said " 100 percent " .']


def test_stsb_float_scores(glue: Path) -> None:
    d = load_split("stsb", "dev", data_dir=glue, source="local")
    assert d.labels.dtype == np.float32
    np.testing.assert_array_equal(d.labels, np.array([5.0, 3.8], dtype=np.float32))
    assert d.text_a == ["A man dances.", "A child rides."]
    assert d.text_b == ["A man is dancing.", "A kid rides a horse."]


def test_qqp_skips_malformed_rows_with_a_count(glue: Path, caplog: pytest.LogCaptureFixture
                                               ) -> None:
    with caplog.at_level(logging.WARNING, logger="harness.tasks.local"):
        d = load_split("qqp", "dev", data_dir=glue, source="local")
    assert len(d) == 2 and d.labels.tolist() == [1, 0]
    assert d.text_b == ["What is the best way to learn Python?", "null"]  # not NaN
    assert "skipped 1 malformed" in caplog.text


def test_mnli_matched_and_mismatched(glue: Path) -> None:
    matched = load_split("mnli", "dev", data_dir=glue, source="local")
    assert matched.text_a == ["The cat sat.", "It rained."]
    assert matched.text_b == ["A cat sat.", "It was dry."]
    assert matched.labels.tolist() == [0, 2]
    mism = load_split("mnli", "validation_mismatched", data_dir=glue, source="local")
    assert mism.split == "dev_mismatched" and mism.labels.tolist() == [1]
    assert load_split("mnli", "train", data_dir=glue).labels.tolist() == [1]
    assert available_splits("mnli", glue) == ["train", "dev", "dev_mismatched"]


@pytest.mark.parametrize(("task", "labels"), [("qnli", [0, 1]), ("rte", [1, 0]),
                                              ("wnli", [0, 1])])
def test_pair_tasks_with_text_or_numeric_labels(glue: Path, task: str, labels: list[int]) -> None:
    d = load_split(task, "dev", data_dir=glue, source="local")
    assert d.labels.tolist() == labels and d.text_b is not None and len(d.text_b) == 2
    if task != "qnli":
        assert d.text_a[1] == 'A " B'


def test_bad_label_names_file_and_line(tmp_path: Path) -> None:
    write_tsv(tmp_path, "RTE", "dev.tsv", [["index", "sentence1", "sentence2", "label"],
                                       ["0", "a", "b", "entailment"], ["1", "a", "b", "maybe"]])
    with pytest.raises(DataError, match=r"RTE/dev\.tsv:3: label 'maybe'"):
        load_split("rte", "dev", data_dir=tmp_path)


def test_wrong_column_count_is_an_error_outside_qqp(tmp_path: Path) -> None:
    write_tsv(tmp_path, "SST-2", "train.tsv", [["sentence", "label"], ["good", "1"], ["bad"]])
    with pytest.raises(DataError, match=r"SST-2/train\.tsv:3: expected 2 .* found 1"):
        load_split("sst2", "train", data_dir=tmp_path)


def test_bad_stsb_score(tmp_path: Path) -> None:
    head = "index genre filename year old_index source1 source2 sentence1 sentence2 score"
    write_tsv(tmp_path, "STS-B", "dev.tsv", [head.split(), ["0", *"gfyoab", "s1", "s2", "high"]])
    with pytest.raises(DataError, match=r"dev\.tsv:2: score 'high'"):
        load_split("stsb", "dev", data_dir=tmp_path)


def test_missing_local_file_names_it(glue: Path) -> None:
    with pytest.raises(DataError, match=r"^rte: train\.tsv not found in .*RTE$"):
        load_split("rte", "train", data_dir=glue, source="local")


def test_auto_offline_missing_is_one_line(glue: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match=r"^qnli: train\.tsv not found in .*QNLI "
                                        r"\(and the hub is offline\)$"):
        load_split("qnli", "train", data_dir=glue)


def test_auto_offline_without_any_data_dir(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HARNESS_GLUE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_REPO_ROOT", tmp_path / "repo")
    assert resolve_data_dir(None) is None
    assert available_splits("mrpc") == []
    with pytest.raises(DataError, match=r"^mrpc: dev\.tsv not found \(no local GLUE dir"):
        load_split("mrpc", "dev")


def test_split_and_source_errors(glue: Path) -> None:
    with pytest.raises(DataError, match="dev_mismatched.*only for mnli"):
        load_split("rte", "dev_mismatched", data_dir=glue)
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_split("rte", "test", data_dir=glue)
    with pytest.raises(DataError, match="unknown data source 'web'"):
        load_split("rte", "dev", data_dir=glue, source="web")


def test_resolve_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"GLUE data dir .*nope does not exist"):
        resolve_data_dir(tmp_path / "nope")
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("HARNESS_GLUE_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    monkeypatch.setenv("HARNESS_GLUE_DIR", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="HARNESS_GLUE_DIR=.*gone"):
        resolve_data_dir(None)
    monkeypatch.delenv("HARNESS_GLUE_DIR")
    (tmp_path / "shared" / "glue").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_data_dir(None) == (tmp_path / "shared" / "glue").resolve()


def test_tiny_glue_fixture_loads(tiny_glue_dir: Path) -> None:
    assert len(load_split("mrpc", "train", data_dir=tiny_glue_dir)) == 48
    assert len(load_split("rte", "dev", data_dir=tiny_glue_dir)) == 24


# --- the real glue_data files --------------------------------------------------------------

REAL = [  # task, split, count, first label, first text_a
    ("cola", "train", 8551, 1, "Our friends won't buy this analysis, let alone the next one we "
                               "propose."),
    ("cola", "dev", 1043, 1, "The sailors rode the breeze clear of the rocks."),
    ("sst2", "train", 67349, 0, "hide new secretions from the parental units "),
    ("sst2", "dev", 872, 1, "it 's a charming and often affecting journey . "),
    ("mrpc", "train", 3668, 1, "Amrozi accused his brother , whom he called \" the witness \" , "
                               "of deliberately distorting his evidence ."),
    ("mrpc", "dev", 408, 1, "He said the foodservice pie business doesn 't fit the company 's "
                            "long-term growth strategy ."),
    ("stsb", "train", 5749, 5.0, "A plane is taking off."),
    ("stsb", "dev", 1500, 5.0, "A man with a hard hat is dancing."),
    ("qnli", "dev", 5463, 0, "What came into force after the new constitution was herald?"),
    ("rte", "train", 2490, 1, "No Weapons of Mass Destruction Found in Iraq Yet."),
    ("rte", "dev", 277, 1, "Dana Reeve, the widow of the actor Christopher Reeve, has died of "
                           "lung cancer at age 44, according to the Christopher Reeve "
                           "Foundation."),
    ("wnli", "train", 635, 1, "I stuck a pin through a carrot. When I pulled the pin out, it "
                              "had a hole."),
    ("wnli", "dev", 71, 0, "The drain is clogged with hair. It has to be cleaned."),
]


@pytest.mark.parametrize(("task", "split", "count", "label", "text"), REAL,
                         ids=[f"{r[0]}-{r[1]}" for r in REAL])
def test_real_glue_files(shared_glue: Path, task: str, split: str, count: int,
                         label: float, text: str) -> None:
    d = load_split(task, split, data_dir=shared_glue, source="local")
    assert len(d) == count == len(d.labels)
    assert d.labels[0] == label and d.text_a[0] == text
    if d.text_b is not None:
        assert len(d.text_b) == count


def test_real_dev_label_counts(shared_glue: Path) -> None:
    counts = {t: np.bincount(load_split(t, "dev", data_dir=shared_glue).labels).tolist()
              for t in ("cola", "sst2", "mrpc", "qnli", "rte", "wnli")}
    assert counts == {"cola": [322, 721], "sst2": [428, 444], "mrpc": [129, 279],
                      "qnli": [2702, 2761], "rte": [146, 131], "wnli": [40, 31]}
    scores = load_split("stsb", "dev", data_dir=shared_glue).labels
    assert scores.min() == 0.0 and scores.max() == 5.0
    assert available_splits("qnli", shared_glue) == ["dev"]
    assert available_splits("qqp", shared_glue) == []


# --- hub route ------------------------------------------------------------------------------

def test_hub_split_names() -> None:
    assert hub_split(get_task("mnli"), "dev") == "validation_matched"
    assert hub_split(get_task("mnli"), "dev_mismatched") == "validation_mismatched"
    assert hub_split(get_task("rte"), "dev") == "validation"
    assert hub_split(get_task("rte"), "train") == "train"


def test_hub_columns_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub route with `datasets.load_dataset` replaced by an in-memory dataset."""
    import datasets

    calls = []

    def fake_load(path: str, name: str, split: str) -> datasets.Dataset:
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"],
                                           "label": [2, 0], "idx": [0, 1]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    d = load_split("mnli", "dev_mismatched", source="hub")
    assert calls == [("nyu-mll/glue", "mnli", "validation_mismatched")]
    assert d.text_a == ["p0", "p1"] and d.text_b == ["h0", "h1"]
    assert d.labels.tolist() == [2, 0] and d.labels.dtype == np.int64


def test_hub_failure_is_a_data_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def fail(*args: object, **kwargs: object) -> None:
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DataError, match=r"^rte: could not load nyu-mll/glue/rte split "
                                        r"validation from the hub: ConnectionError"):
        load_split("rte", "dev", source="hub")


@pytest.mark.network
def test_hub_rte_dev_matches_local(shared_glue: Path) -> None:
    hub = load_hub_split(get_task("rte"), "dev")
    local = load_split("rte", "dev", data_dir=shared_glue, source="local")
    assert hub.text_a == local.text_a and hub.text_b == local.text_b
    np.testing.assert_array_equal(hub.labels, local.labels)
