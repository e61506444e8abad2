"""GLUE task specifications: input columns, labels, official metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class TaskSpec:
    name: str  # canonical lower-case key: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli
    glue_dir: str  # folder name in glue_data: CoLA, SST-2, ...
    hub_config: str  # config name of the hub's GLUE dataset
    text_columns: tuple[str, ...]  # hub column names of the inputs
    label_names: tuple[str, ...]  # empty for regression
    metrics: tuple[str, ...]  # metric names as the GLUE metric returns them
    main_metric: str
    dev_splits: tuple[str, ...] = ("validation",)  # MNLI: matched and mismatched

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)


@dataclass
class TaskData:
    """One split of one task, as plain columns."""

    task: str
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray  # int64 class ids, or float32 scores for regression

    def __len__(self) -> int:
        return len(self.text_a)

    def take(self, n: int | None, seed: int = 0) -> TaskData:
        """A seeded random subset of n examples (all when n is None or >= len)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return TaskData(
            self.task, self.split, [self.text_a[i] for i in idx],
            None if self.text_b is None else [self.text_b[i] for i in idx], self.labels[idx],
        )


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("cola", "CoLA", "cola", ("sentence",), ("unacceptable", "acceptable"),
                 ("matthews_correlation",), "matthews_correlation"),
        TaskSpec("sst2", "SST-2", "sst2", ("sentence",), ("negative", "positive"),
                 ("accuracy",), "accuracy"),
        TaskSpec("mrpc", "MRPC", "mrpc", ("sentence1", "sentence2"),
                 ("not_equivalent", "equivalent"), ("accuracy", "f1"), "accuracy"),
        TaskSpec("stsb", "STS-B", "stsb", ("sentence1", "sentence2"), (),
                 ("pearson", "spearmanr"), "pearson"),
        TaskSpec("qqp", "QQP", "qqp", ("question1", "question2"),
                 ("not_duplicate", "duplicate"), ("accuracy", "f1"), "accuracy"),
        TaskSpec("mnli", "MNLI", "mnli", ("premise", "hypothesis"),
                 ("entailment", "neutral", "contradiction"), ("accuracy",), "accuracy",
                 ("validation_matched", "validation_mismatched")),
        TaskSpec("qnli", "QNLI", "qnli", ("question", "sentence"),
                 ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
        TaskSpec("rte", "RTE", "rte", ("sentence1", "sentence2"),
                 ("entailment", "not_entailment"), ("accuracy",), "accuracy"),
        TaskSpec("wnli", "WNLI", "wnli", ("sentence1", "sentence2"),
                 ("not_entailment", "entailment"), ("accuracy",), "accuracy"),
    ]
}

_ALIASES = {k.replace("-", "").lower(): k for k in TASKS} | {
    t.glue_dir.replace("-", "").lower(): t.name for t in TASKS.values()
}


def canonical_task(name: str) -> str:
    """'SST-2', 'sst2', 'Sst-2' -> 'sst2'; unknown names raise with suggestions."""
    key = name.replace("-", "").replace("_", "").lower()
    if key in _ALIASES:
        return _ALIASES[key]
    raise ConfigError(f"unknown task '{name}'. {did_you_mean(key, TASKS)}")


def get_task(name: str) -> TaskSpec:
    return TASKS[canonical_task(name)]
