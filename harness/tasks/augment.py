"""More inputs for distillation: perturbed copies and mismatched pairs of the train set.

The added examples carry no gold label (UNLABELLED, NaN for regression): only a teacher
labels them, so they are for KD losses alone (harness.nn.KDLoss leaves them out of its hard
loss). A simplified form of TinyBERT's task data augmentation (Jiao et al. 2020), without
its word-embedding replacement: a perturbed copy drops each word with probability DROP and
swaps a few neighbouring words; a mismatched pair puts one example's first sentence beside
another example's second (or first) sentence, an input far from the train set's pairs whose
teacher output shows the student how the teacher treats unrelated sentences.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from harness.tasks.spec import TaskData

UNLABELLED = -100  # class id of an added example (also torch's cross-entropy ignore_index)
DROP = 0.1  # chance that a word is left out of a perturbed copy


@dataclass(frozen=True)
class Augment:
    """How many inputs to add: perturbed copies of the train set, and mismatched pairs per
    train example (pair tasks only)."""

    copies: int = 0
    mismatched: float = 0.0

    @property
    def adds(self) -> bool:
        return self.copies > 0 or self.mismatched > 0


def perturb(text: str, rng: random.Random) -> str:
    """Drop each word with probability DROP (keeping at least one), then swap about one
    word in ten with its neighbour."""
    words = [w for w in text.split() if rng.random() >= DROP] or text.split()
    for _ in range(max(1, len(words) // 10)):
        i = rng.randrange(len(words))
        if i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def augment(data: TaskData, more: Augment, seed: int) -> TaskData:
    """`data`, then `more.copies` perturbed copies of it, then round(more.mismatched *
    len(data)) mismatched pairs (pair tasks only), every added example unlabelled; seeded."""
    rng = random.Random(seed)
    n = len(data)
    a, b = list(data.text_a), None if data.text_b is None else list(data.text_b)
    for _ in range(more.copies):
        a += [perturb(t, rng) for t in data.text_a]
        if b is not None:
            b += [perturb(t, rng) for t in b[:n]]
    if b is not None and n > 1:
        for _ in range(round(more.mismatched * n)):
            i, j = rng.randrange(n), rng.randrange(n)
            a.append(a[i])
            b.append(b[j] if rng.random() < 0.5 else a[j])
    fill = np.nan if data.labels.dtype.kind == "f" else UNLABELLED
    labels = np.concatenate([data.labels, np.full(len(a) - n, fill, dtype=data.labels.dtype)])
    return TaskData(data.task, data.split, a, b, labels)
