"""Task splits as the suite sizes them, loaded once per run, and their identity for cache keys."""
from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from harness.errors import DataError, DataMissing
from harness.schema import Suite
from harness.tasks import TaskData, get_task, load_split


class SuiteData:
    """The suite's splits: sampled to `max_train_samples` / `max_eval_samples` with its seed."""

    def __init__(self, suite: Suite, data_dir: Path | None) -> None:
        self.suite = suite
        self.data_dir = data_dir
        self.split = cache(self._load)
        self.digest = cache(self._digest)

    def _load(self, task: str, split: str) -> TaskData:
        ft = self.suite.finetune
        data = load_split(task, split, data_dir=self.data_dir, source=self.suite.data_source)
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        return data.take(n, ft.seed)

    def identity(self, task: str, split: str) -> dict[str, Any]:
        """What a cache key needs to know of a split: the content of every example used."""
        ft = self.suite.finetune
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        return {"split": split, "n": n, "seed": ft.seed, "digest": self.digest(task, split)}

    def _digest(self, task: str, split: str) -> str:
        return data_digest(self.split(task, split))

    def check(self) -> None:
        """Read every split the suite needs now: DataError (one line per broken file) before
        anything runs. Missing splits are left to the cells, which are skipped."""
        problems = []
        for task in self.suite.tasks:
            splits = ["train", "dev"] + (["dev_mismatched"] if get_task(task).name == "mnli"
                                         else [])
            for split in splits:
                try:
                    self.split(task, split)
                except DataMissing:
                    continue
                except DataError as exc:
                    problems.append(str(exc))
        if problems:
            raise DataError("\n".join(problems))


def data_digest(data: TaskData) -> str:
    """sha256 of every example's texts and label, in order."""
    h = hashlib.sha256(f"{data.task}\0{data.split}\0{len(data)}\0{data.labels.dtype}".encode())
    text_b = data.text_b if data.text_b is not None else [None] * len(data)
    for a, b in zip(data.text_a, text_b, strict=True):
        h.update(f"{a}\x1f{b}\x1e".encode())
    h.update(data.labels.tobytes())
    return h.hexdigest()[:32]
