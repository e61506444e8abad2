"""Task splits as the suite sizes them, loaded once per run, and their identity for cache keys."""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from harness.cache import content_key
from harness.schema import Suite
from harness.tasks import TaskData, load_split


class SuiteData:
    """The suite's splits: sampled to `max_train_samples` / `max_eval_samples` with its seed."""

    def __init__(self, suite: Suite, data_dir: Path | None) -> None:
        self.suite = suite
        self.data_dir = data_dir
        self.split = cache(self._load)

    def _load(self, task: str, split: str) -> TaskData:
        ft = self.suite.finetune
        data = load_split(task, split, data_dir=self.data_dir, source=self.suite.data_source)
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        return data.take(n, ft.seed)

    def identity(self, task: str, split: str) -> dict[str, Any]:
        """What a cache key needs to know of a split."""
        ft = self.suite.finetune
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        data = self.split(task, split)
        digest = content_key("data", "1", [data.text_a[:50], data.labels[:50].tolist(), len(data)])
        return {"split": split, "n": n, "seed": ft.seed, "digest": digest}
