"""Tokenization: the one home of turning task text into model inputs.

Training, evaluation, export parity, calibration and timing all encode through `encode`, so
they see the same truncation and the same input names.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from harness.tasks.spec import TaskData

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
Padding = Literal["longest", "max_length"]


def encode(tokenizer: Any, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_len: int,
           padding: Padding = "longest", names: Sequence[str] = INPUT_NAMES
           ) -> dict[str, np.ndarray]:
    """int64 arrays of the inputs in `names`, truncated to `max_len` and padded as asked."""
    enc = tokenizer(list(texts_a), None if texts_b is None else list(texts_b), truncation=True,
                    max_length=max_len, padding=padding, return_tensors="np")
    return {k: np.ascontiguousarray(enc[k], dtype=np.int64) for k in names if k in enc}


def encode_batch(tokenizer: Any, data: TaskData, start: int, stop: int, max_len: int,
                 names: Sequence[str] = INPUT_NAMES, padding: Padding = "longest"
                 ) -> dict[str, np.ndarray]:
    """Examples [start, stop) of `data`, encoded."""
    text_b = None if data.text_b is None else data.text_b[start:stop]
    return encode(tokenizer, data.text_a[start:stop], text_b, max_len, padding, names)


def token_lists(tokenizer: Any, data: TaskData, max_len: int) -> dict[str, list[list[int]]]:
    """Unpadded token lists of every example (the training loop pads per batch)."""
    text_b = None if data.text_b is None else list(data.text_b)
    enc = tokenizer(list(data.text_a), text_b, truncation=True, max_length=max_len)
    return {k: list(v) for k, v in enc.items() if k in tokenizer.model_input_names}
