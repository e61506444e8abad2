"""The fine-tuning loop: encoding, loss going down, schedules, prediction shapes."""
from __future__ import annotations

import math

import numpy as np
import torch
from conftest import make_tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.schema import FinetuneSpec
from harness.tasks.spec import TaskData, get_task
from harness.train import encode, finetune, predict

FILLER = "the a it this that he she they said".split()


def toy(n: int = 64, seed: int = 0, regression: bool = False) -> TaskData:
    """Separable sentiment: label 1 sentences say 'good great', label 0 'bad terrible'."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    texts = [" ".join([*rng.choice(FILLER, 3), "good great" if y else "bad terrible",
                       *rng.choice(FILLER, 2)]) for y in labels]
    values = labels.astype(np.float32) if regression else labels.astype(np.int64)
    return TaskData("stsb" if regression else "sst2", "train", texts, None, values)


def _load(path):
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_encode_pads_to_longest_and_pairs(tiny_bert_dir):
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    data = TaskData("mrpc", "dev", ["the cat", "a dog sat on the mat"], ["yes", "no no"], np.array([0, 1]))
    enc = encode(tok, data, max_len=8)
    assert enc["input_ids"].shape == (2, 8)  # 6 + 2 + [CLS] 2x[SEP] truncated to 8
    assert enc["attention_mask"][0].tolist() == [1] * 6 + [0] * 2
    assert enc["token_type_ids"][0, :6].tolist() == [0, 0, 0, 0, 1, 1]


def test_finetune_learns_separable_toy(tiny_bert_dir):
    model, tok = _load(tiny_bert_dir)
    data, task = toy(), get_task("sst2")
    before = torch.nn.functional.cross_entropy(
        torch.tensor(predict(model, tok, data, 32)), torch.tensor(data.labels)).item()
    spec = FinetuneSpec(epochs=5, lr=5e-3, batch_size=8, max_seq_len=32, warmup_ratio=0.1)
    steps = []
    log = finetune(model, tok, data, spec, task, on_step=lambda s, t: steps.append((s, t)),
                   log_every=8)
    logits = predict(model, tok, data, 32)
    after = torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor(data.labels)).item()
    assert log.steps == 40 and steps[0] == (0, 40) and steps[-1] == (39, 40)
    assert after < 0.5 * before and (logits.argmax(1) == data.labels).mean() == 1.0
    assert log.final_loss < log.loss_curve[0] and not model.training


def test_finetune_is_seeded(tiny_bert_dir):
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32)
    outs = []
    for _ in range(2):
        model, tok = _load(tiny_bert_dir)
        finetune(model, tok, toy(), spec, get_task("sst2"))
        outs.append(predict(model, tok, toy(8, seed=1), 32))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_fractional_epochs_and_max_train_samples(tiny_bert_dir):
    model, tok = _load(tiny_bert_dir)
    spec = FinetuneSpec(epochs=0.5, batch_size=8, max_seq_len=32, max_train_samples=40)
    log = finetune(model, tok, toy(64), spec, get_task("sst2"))
    assert log.examples == 40 and log.steps == math.ceil(0.5 * 5)


def test_regression_uses_mse_and_predicts_vector(tmp_path):
    path = make_tiny_bert(tmp_path / "reg", num_labels=1)
    model, tok = _load(path)
    data = toy(regression=True)
    spec = FinetuneSpec(epochs=5, lr=5e-3, batch_size=8, max_seq_len=32)
    before = np.mean((predict(model, tok, data, 32) - data.labels) ** 2)
    finetune(model, tok, data, spec, get_task("stsb"))
    pred = predict(model, tok, data, 32)
    assert pred.shape == (len(data),)
    assert np.mean((pred - data.labels) ** 2) < 0.25 * before


def test_predict_keeps_data_order(tiny_bert_dir):
    model, tok = _load(tiny_bert_dir)
    data = toy(10)
    full = predict(model, tok, data, 32, batch_size=3)
    one = np.concatenate([predict(model, tok, TaskData("sst2", "x", [t], None, data.labels[i:i + 1]), 32)
                          for i, t in enumerate(data.text_a)])
    np.testing.assert_allclose(full, one, atol=1e-5)
    assert full.shape == (10, 2)


def test_kd_with_teacher_runs(tiny_bert_dir):
    from harness.nn import KDLoss

    model, tok = _load(tiny_bert_dir)
    teacher, _ = _load(tiny_bert_dir)
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    spec = FinetuneSpec(epochs=1, batch_size=16, max_seq_len=32)
    log = finetune(model, tok, toy(), spec, get_task("sst2"), teacher=teacher,
                   kd=KDLoss(alpha_cos=1.0))
    assert log.steps == 4 and np.isfinite(log.mean_loss)
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training
