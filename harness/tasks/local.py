"""Readers for the canonical `glue_data/` TSV files of all nine GLUE tasks.

Quotes are data in these files, so they are read with `csv.QUOTE_NONE`; text is kept as-is
(SST-2 sentences keep their trailing space). See SOURCES.md beside the shared GLUE data for the quirks.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError, DataMissing
from harness.tasks.spec import TaskData, TaskSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "dev_mismatched")


@dataclass(frozen=True)
class Layout:
    """Where the inputs and label sit in one task's TSV rows (column indices; -1 = last)."""

    text_a: int
    text_b: int | None
    label: int
    header: bool = True
    n_cols: int | None = None  # expected columns when there is no header
    skip_malformed: bool = False  # skip (and count) rows with a wrong column count


LAYOUTS: dict[str, Layout] = {
    "cola": Layout(3, None, 1, header=False, n_cols=4),  # source, label, mark, sentence
    "sst2": Layout(0, None, 1),  # sentence, label
    "mrpc": Layout(3, 4, 0),  # Quality, #1 ID, #2 ID, #1 String, #2 String
    "stsb": Layout(7, 8, 9),  # index genre filename year old_index source1 source2 s1 s2 score
    "qqp": Layout(3, 4, 5, skip_malformed=True),  # id qid1 qid2 question1 question2 is_duplicate
    "mnli": Layout(8, 9, -1),  # ... sentence1 sentence2 [label1..label5] gold_label
    "qnli": Layout(1, 2, 3),  # index question sentence label
    "rte": Layout(1, 2, 3),  # index sentence1 sentence2 label
    "wnli": Layout(1, 2, 3),  # index sentence1 sentence2 label
}


def split_file(spec: TaskSpec, split: str) -> str:
    """The glue_data file name of a split: 'dev.tsv', MNLI 'dev_matched.tsv', ..."""
    if split not in SPLITS:
        raise DataError(f"{spec.name}: unknown split '{split}' (expected {', '.join(SPLITS)})")
    if spec.name == "mnli":
        return {"train": "train.tsv", "dev": "dev_matched.tsv",
                "dev_mismatched": "dev_mismatched.tsv"}[split]
    if split == "dev_mismatched":
        raise DataError(f"{spec.name}: split 'dev_mismatched' exists only for mnli")
    return f"{split}.tsv"


def split_path(spec: TaskSpec, split: str, data_dir: Path) -> Path:
    """Path of a split's TSV under a glue_data directory (it may not exist)."""
    return Path(data_dir) / spec.glue_dir / split_file(spec, split)


def local_splits(spec: TaskSpec, data_dir: Path) -> list[str]:
    """The splits of `spec` whose files exist under `data_dir`."""
    names = SPLITS if spec.name == "mnli" else SPLITS[:2]
    return [s for s in names if split_path(spec, s, data_dir).is_file()]


def read_split(spec: TaskSpec, split: str, data_dir: Path) -> TaskData:
    """Read one split of one task from a glue_data directory.

    DataMissing if the file is not there; DataError if it is malformed (not UTF-8, empty, a row
    with the wrong number of columns, as a truncated copy leaves it, or a bad label).
    """
    path = split_path(spec, split, data_dir)
    if not path.is_file():
        raise DataMissing(f"{spec.name}: {path.name} not found in {path.parent}")
    try:
        return _read_rows(spec, split, path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _read_rows(spec: TaskSpec, split: str, path: Path) -> TaskData:
    layout = LAYOUTS[spec.name]
    text_a: list[str] = []
    text_b: list[str] | None = None if layout.text_b is None else []
    labels: list[int | float] = []
    skipped = 0
    # utf-8-sig drops the BOM that starts the MRPC header
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        n_cols = layout.n_cols
        if layout.header:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file")
            n_cols = len(header)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != n_cols:
                if layout.skip_malformed:
                    skipped += 1
                    continue
                raise DataError(f"{path}:{line}: expected {n_cols} tab-separated columns, "
                                f"found {len(row)}")
            labels.append(_parse_label(spec, row[layout.label], path, line))
            text_a.append(row[layout.text_a])
            if text_b is not None:
                text_b.append(row[layout.text_b])  # type: ignore[index]
    if not text_a:
        raise DataError(f"{path}: no examples")
    if skipped:
        log.warning("%s: skipped %d malformed rows (wrong column count)", path, skipped)
    dtype = np.float32 if spec.is_regression else np.int64
    log.debug("read %d examples from %s", len(text_a), path)
    return TaskData(spec.name, split, text_a, text_b, np.asarray(labels, dtype=dtype))


def _parse_label(spec: TaskSpec, raw: str, path: Path, line: int) -> int | float:
    value = raw.strip()
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not np.isfinite(score):
            raise DataError(f"{path}:{line}: score '{raw}' is not a finite number")
        return score
    if value in spec.label_names:
        return spec.label_names.index(value)
    if value.isdigit() and int(value) < spec.num_labels:
        return int(value)
    raise DataError(f"{path}:{line}: label '{raw}' is not one of "
                    f"{', '.join(spec.label_names)} or 0..{spec.num_labels - 1}")
