"""Timing inputs: the same seeded real dev sentences for every model and method (paired)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.encode import encode
from harness.errors import HarnessError

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def describe_inputs(batch_size: int, seq_len: int, seed: int, source: str = "dev") -> str:
    """One line saying what the timed inputs are, for records and CLI output."""
    if source == "random":
        return (f"{batch_size} x {seq_len} uniformly random token ids (seed {seed}), every "
                f"token attended; no tokenizer given")
    return (f"{batch_size} {source} examples drawn by seed {seed}, tokenized with "
            f"padding='max_length', truncation=True to exactly {seq_len} tokens")


def pick_rows(n_pool: int, batch_size: int, seed: int) -> np.ndarray:
    """Row indices chosen by a seeded RNG; without replacement when the pool is big enough."""
    if n_pool <= 0:
        raise HarnessError("no dev examples to build timing inputs from")
    rng = np.random.default_rng(seed)
    return rng.choice(n_pool, size=batch_size, replace=n_pool < batch_size)


def make_inputs(tokenizer: Any, texts_a: Sequence[str], texts_b: Sequence[str] | None,
                batch_size: int, seq_len: int, seed: int) -> dict[str, np.ndarray]:
    """int64 input_ids / attention_mask / token_type_ids of shape (batch_size, seq_len).

    Real sentences (pairs when `texts_b` is given) picked by `seed`, padded and truncated to
    exactly `seq_len`; the same seed and shape give identical arrays for every model sharing
    the tokenizer. token_type_ids are zeros when the tokenizer does not produce them.
    """
    rows = pick_rows(len(texts_a), batch_size, seed)
    a = [texts_a[i] for i in rows]
    b = None if texts_b is None else [texts_b[i] for i in rows]
    out = encode(tokenizer, a, b, seq_len, padding="max_length")
    out.setdefault("token_type_ids", np.zeros_like(out["input_ids"]))
    if out["input_ids"].shape != (batch_size, seq_len):
        raise HarnessError(f"tokenizer gave shape {out['input_ids'].shape}, "
                           f"expected {(batch_size, seq_len)}")
    return out


def random_inputs(batch_size: int, seq_len: int, seed: int, vocab_size: int
                  ) -> dict[str, np.ndarray]:
    """Seeded random token ids in [0, vocab_size), full attention mask, zero token types."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(batch_size, seq_len), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "token_type_ids": np.zeros_like(ids)}


def feed_for(session: Any, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Only the inputs the session declares, cast to its integer type where it differs."""
    feed = {}
    for arg in session.get_inputs():
        if arg.name not in inputs:
            raise HarnessError(f"model input '{arg.name}' is not one of {sorted(inputs)}")
        arr = inputs[arg.name]
        dtype = _ORT_INT_TYPES.get(arg.type)
        feed[arg.name] = arr if dtype is None or arr.dtype == dtype else arr.astype(dtype)
    return feed
