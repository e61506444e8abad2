"""What a timing and evaluation runtime offers: the `Runner` every backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np


class Runner(ABC):
    """A model loaded on one runtime, ready to run batches.

    `run(feed)` returns the outputs as numpy arrays (evaluation); `step(feed)` prepares the
    call the timing loop times; `get_inputs()` gives objects with the input `name` and its
    onnxruntime-style `type` (for `feed_for`); `describe()` the settings for the record;
    `precision` what the runtime computes in (fp32, bf16, fp16).
    """

    provider: str
    precision: str

    @abstractmethod
    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    @abstractmethod
    def step(self, feed: dict[str, np.ndarray]) -> Callable[[], Any]: ...

    @abstractmethod
    def get_inputs(self) -> list[Any]: ...

    @abstractmethod
    def describe(self) -> dict[str, Any]: ...
