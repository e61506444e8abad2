"""Unlabelled inputs added for distillation: what is added, that only a teacher trains on
them, and that the methods that distil use them."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import toy_sst2 as toy
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.errors import ConfigError
from harness.methods import METHODS, MethodContext
from harness.methods.params import DistillParams, StructuredParams, UnstructuredParams
from harness.nn import KDLoss
from harness.schema import FinetuneSpec
from harness.tasks.augment import UNLABELLED, Augment, augment, perturb
from harness.tasks.spec import TaskData, get_task
from harness.train import finetune


def pairs(n: int = 6, regression: bool = False) -> TaskData:
    a = [f"first sentence number {i} has some words in it" for i in range(n)]
    b = [f"second sentence {i} says something else entirely here" for i in range(n)]
    labels = (np.linspace(0, 5, n).astype(np.float32) if regression
              else np.arange(n, dtype=np.int64) % 2)
    return TaskData("mrpc", "train", a, b, labels)


def test_augment_appends_unlabelled_copies_and_mismatched_pairs() -> None:
    data = pairs()
    out = augment(data, Augment(copies=2, mismatched=0.5), seed=1)
    assert len(out) == 6 + 12 + 3
    assert out.text_a[:6] == data.text_a and out.text_b[:6] == data.text_b  # originals first
    assert np.array_equal(out.labels[:6], data.labels)
    assert (out.labels[6:] == UNLABELLED).all() and out.labels.dtype == np.int64
    for i in range(6, 18):  # a perturbed copy keeps only words of its original
        original = data.text_a[(i - 6) % 6].split()
        assert set(out.text_a[i].split()) <= set(original) and out.text_a[i]
    for a, b in zip(out.text_a[18:], out.text_b[18:]):  # mismatched: a first sentence beside
        assert a in data.text_a and (b in data.text_b or b in data.text_a)  # another's
    again = augment(data, Augment(copies=2, mismatched=0.5), seed=1)
    assert again.text_a == out.text_a and again.text_b == out.text_b  # seeded
    assert augment(data, Augment(copies=2, mismatched=0.5), seed=2).text_a != out.text_a


def test_regression_and_single_sentence_tasks() -> None:
    out = augment(pairs(regression=True), Augment(copies=1), seed=0)
    assert len(out) == 12 and np.isnan(out.labels[6:]).all() and not np.isnan(out.labels[:6]).any()
    single = augment(toy(8), Augment(copies=1, mismatched=1.0), seed=0)
    assert len(single) == 16 and single.text_b is None  # no pairs to mismatch


def test_perturb_drops_and_swaps_but_keeps_a_word() -> None:
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(40))
    out = perturb(text, rng).split()
    assert 20 < len(out) < 40 and set(out) <= set(text.split())
    assert out != sorted(out, key=lambda w: int(w[1:]))  # some neighbours swapped
    assert perturb("one", random.Random(3)) == "one"


def test_hard_loss_leaves_unlabelled_examples_out() -> None:
    s = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]])
    y = torch.tensor([1, UNLABELLED, 0])
    ce = -np.log(np.exp([2.0, 3.0]) / np.exp([[1.0, 2.0], [3.0, 0.0]]).sum(-1))
    assert KDLoss.hard(s, y, regression=False).item() == pytest.approx(ce.sum() / 3, rel=1e-6)
    r = torch.tensor([[1.0], [3.0], [0.0]])
    yr = torch.tensor([0.0, float("nan"), 2.0])
    assert KDLoss.hard(r, yr, regression=True).item() == pytest.approx((1 + 4) / 3)
    none = torch.tensor([UNLABELLED, UNLABELLED, UNLABELLED])
    assert KDLoss.hard(s, none, regression=False).item() == 0.0


def _load(path):
    return (AutoModelForSequenceClassification.from_pretrained(path),
            AutoTokenizer.from_pretrained(path))


def test_finetune_adds_inputs_only_with_a_teacher(tiny_bert_dir) -> None:
    model, tok = _load(tiny_bert_dir)
    teacher, _ = _load(tiny_bert_dir)
    spec = FinetuneSpec(epochs=1, batch_size=16, max_seq_len=32, max_train_samples=16)
    log = finetune(model, tok, toy(), spec, get_task("sst2"), teacher=teacher,
                   more=Augment(copies=2))
    assert (log.examples, log.added, log.steps) == (48, 32, 3)  # the subset, then 2 copies
    assert np.isfinite(log.mean_loss) and "48 examples (32 added" in log.added_note
    with pytest.raises(ConfigError, match="need a teacher"):
        finetune(model, tok, toy(), spec, get_task("sst2"), more=Augment(copies=1))


def test_params_refuse_added_inputs_without_distillation() -> None:
    with pytest.raises(ValidationError, match="distill: true"):
        UnstructuredParams(augment_copies=1)
    with pytest.raises(ValidationError, match="distill: true"):
        StructuredParams(augment_mismatched=0.5, distill=False)
    assert UnstructuredParams(augment_copies=2, distill=True).augment == Augment(2, 0.0)
    assert not DistillParams().augment.adds


@pytest.mark.parametrize("name, params", [
    ("distill", DistillParams(augment_copies=1, epochs=0.5)),
    ("prune-unstructured", UnstructuredParams(sparsity=0.5, epochs=0.5, distill=True,
                                              augment_copies=1)),
    ("prune-structured", StructuredParams(epochs=0.5, augment_copies=1,
                                          importance="magnitude")),
])
def test_methods_that_distil_train_on_the_added_inputs(tiny_bert_dir, tmp_path, name,
                                                       params) -> None:
    teacher, tok = _load(tiny_bert_dir)
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32)
    ctx = MethodContext(get_task("sst2"), spec, tmp_path, tok, load_train=toy,
                        teacher=teacher.eval())
    model = METHODS.get(name).factory(params).apply(teacher, ctx)
    assert not model.training
    assert any("on 64 examples (32 added, unlabelled" in n for n in ctx.notes), ctx.notes
