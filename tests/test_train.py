"""The fine-tuning loop: encoding, loss going down, schedules, prediction shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_bert
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness import train
from harness.nn import NumpyDropout, numpy_dropout
from harness.schema import FinetuneSpec
from harness.tasks.spec import TaskData, get_task
from harness.train import encode, finetune, predict, resolve_precision

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


def test_diverged_training_fails_with_one_line(tiny_bert_dir):
    from harness.train import TrainingDiverged

    model, tok = _load(tiny_bert_dir)
    spec = FinetuneSpec(epochs=2, lr=1e30, batch_size=8, max_seq_len=32)
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf) at step \d+/16") as info:
        finetune(model, tok, toy(), spec, get_task("sst2"), desc="fine-tune m sst2")
    assert "\n" not in str(info.value) and "fine-tune m sst2" in str(info.value)


def test_non_finite_model_outputs_are_an_error():
    from harness.evaluation import evaluate_logits

    data = TaskData("sst2", "dev", ["a", "b", "c"], None, np.array([0, 1, 1]))
    logits = np.array([[0.1, 0.2], [np.nan, 0.0], [0.3, 0.1]], dtype=np.float32)
    with pytest.raises(ValueError, match="1 of 3 dev examples"):
        evaluate_logits(get_task("sst2"), data, logits)


def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice wins
    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.parametrize(("precision", "native", "gpus", "said"), [
    ("auto", False, [], True),
    ("auto", True, [], False),
    ("auto", False, ["H100"], False),  # fine-tunes run on the GPU
    ("fp32", False, [], False),  # asked for: nothing to tell
])
def test_a_run_says_up_front_when_auto_will_train_in_fp32(caplog, monkeypatch, precision, native,
                                                          gpus, said):
    from types import SimpleNamespace

    from harness.run import _note_fp32_training

    monkeypatch.setattr(train, "cpu_supports_bf16", lambda: native)  # the fine-tune's detection
    suite = SimpleNamespace(finetune=FinetuneSpec(precision=precision))
    with caplog.at_level("INFO", logger="harness.run"):
        _note_fp32_training(suite, {"gpus": gpus})
    assert ("train in fp32: this CPU has no native bf16" in caplog.text) is said


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_finetune_runs_the_forward_under_the_precision_it_reports(tiny_bert_dir, precision):
    model, tok = _load(tiny_bert_dir)
    seen = []
    model.register_forward_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32, precision=precision)
    log = finetune(model, tok, toy(16), spec, get_task("sst2"))
    assert log.precision == precision
    assert seen and all(s == (precision == "bf16") for s in seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32


def test_length_grouped_batches_cover_every_example_once_per_epoch():
    lengths = list(np.random.default_rng(0).integers(5, 100, 500))
    batches = train._batch_order(500, 10, 50, seed=1, lengths=lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in batches])
    plain = train._batch_order(500, 10, 50, seed=1)
    assert spread < 0.5 * np.mean([np.ptp([lengths[i] for i in b]) for b in plain])


def test_numpy_dropout_keeps_one_minus_p_scaled_and_is_seeded():
    x = torch.ones(1000, 1000, requires_grad=True)
    drop = NumpyDropout(0.1, np.random.default_rng(7))
    out = drop(x)
    zeros = float((out == 0).float().mean())
    # 10^6 Bernoulli(0.1) draws: sd of the share 3e-4, so 0.1 +- 0.0015 is 5 sd
    assert abs(zeros - 0.1) < 0.0015
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.9))
    out.sum().backward()  # the gradient is the mask times the scale
    torch.testing.assert_close(x.grad, out.detach())
    again = NumpyDropout(0.1, np.random.default_rng(7))(torch.ones(1000, 1000))
    assert torch.equal(again, out.detach())
    assert drop.eval()(x) is x and NumpyDropout(0.0, np.random.default_rng(7))(x) is x


def test_numpy_dropout_swaps_every_dropout_and_puts_the_model_back(tiny_bert_dir):
    from transformers.models.bert.modeling_bert import BertSdpaSelfAttention, BertSelfAttention

    model, tok = _load(tiny_bert_dir)
    assert model.base_model.attn_implementation == "sdpa"
    originals = [m for m in model.modules() if type(m) is torch.nn.Dropout]
    inputs = encode(tok, toy(4), 32)
    model.eval()
    before = model(**inputs).logits
    model.train()
    with numpy_dropout(model, seed=3):
        inside = list(model.modules())
        assert not any(type(m) is torch.nn.Dropout for m in inside)
        assert sum(isinstance(m, NumpyDropout) for m in inside) == len(originals)
        # SDPA draws attention dropout inside its kernel: the eager twin uses the module
        assert {type(layer.attention.self) for layer in model.bert.encoder.layer} == {BertSelfAttention}
        assert model.base_model.attn_implementation == "eager"
        a, b = model(**inputs).logits, model(**inputs).logits
        assert not torch.equal(a, b)  # dropout is on in train mode
    assert [m for m in model.modules() if type(m) is torch.nn.Dropout] == originals
    assert {type(layer.attention.self) for layer in model.bert.encoder.layer} == {BertSdpaSelfAttention}
    assert model.base_model.attn_implementation == "sdpa"
    model.eval()
    torch.testing.assert_close(model(**inputs).logits, before)


def test_finetune_uses_fused_adamw_and_the_dropout_rng_it_is_given(tiny_bert_dir, monkeypatch):
    model, tok = _load(tiny_bert_dir)
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32)
    assert spec.dropout_rng == "numpy"
    opt, _ = train._optimizer(model, spec, 10)
    assert opt.defaults["fused"] is True
    used = []
    real = train.numpy_dropout
    monkeypatch.setattr(train, "numpy_dropout", lambda m, seed: used.append(seed) or real(m, seed))
    outs = {}
    for rng in ("numpy", "torch"):
        model, tok = _load(tiny_bert_dir)
        finetune(model, tok, toy(), spec.model_copy(update={"dropout_rng": rng}), get_task("sst2"))
        outs[rng] = predict(model, tok, toy(8, seed=1), 32)
    assert used == [spec.seed]  # only the numpy run swapped the modules
    assert not np.array_equal(outs["numpy"], outs["torch"])


def test_numpy_dropout_is_for_cpu_training_only(tiny_bert_dir):
    model, _ = _load(tiny_bert_dir)
    spec = FinetuneSpec()
    with train._dropout(model, spec):
        assert any(isinstance(m, NumpyDropout) for m in model.modules())
    on_meta = model.to("meta")  # stands for CUDA: any device but the CPU keeps torch's dropout
    with train._dropout(on_meta, spec):
        assert not any(isinstance(m, NumpyDropout) for m in on_meta.modules())
    with train._dropout(model, spec.model_copy(update={"dropout_rng": "torch"})):
        assert not any(isinstance(m, NumpyDropout) for m in model.modules())


def _rates(model) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] + [
        m.dropout_prob for m in model.modules() if isinstance(getattr(m, "dropout_prob", None), float)]


def test_dropout_rate_sets_every_dropout_and_puts_the_checkpoints_back(tiny_bert_dir):
    from harness.nn import dropout_rate

    model, tok = _load(tiny_bert_dir)
    inputs = tok(["the cat sat", "a dog ran far away"], padding=True, return_tensors="pt")
    before = _rates(model)
    assert before and set(before) == {0.1}  # hidden, head and SDPA attention dropout
    model.train()
    with dropout_rate(model, 0.0):
        assert set(_rates(model)) == {0.0}
        torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)
    assert _rates(model) == before
    assert not torch.equal(model(**inputs).logits, model(**inputs).logits)
    with dropout_rate(model, 0.3):
        assert set(_rates(model)) == {0.3}
    assert _rates(model) == before


def test_dropout_rate_reaches_the_numpy_masks_on_the_cpu(tiny_bert_dir):
    from transformers.models.bert.modeling_bert import BertSelfAttention

    model, tok = _load(tiny_bert_dir)
    inputs = tok(["the cat sat", "a dog ran far away"], padding=True, return_tensors="pt")
    model.train()
    with train._dropout(model, FinetuneSpec(dropout=0.0)):
        assert {m.p for m in model.modules() if isinstance(m, NumpyDropout)} == {0.0}
        # the eager twin trains faster than SDPA on the CPU, also without dropout
        assert {type(layer.attention.self) for layer in model.bert.encoder.layer} == {BertSelfAttention}
        torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)
    with train._dropout(model, FinetuneSpec(dropout=0.3)):
        assert {m.p for m in model.modules() if isinstance(m, NumpyDropout)} == {0.3}
    assert set(_rates(model)) == {0.1}


def test_finetune_at_another_dropout_trains_another_model_and_restores_the_rate(tiny_bert_dir):
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32)
    outs = {}
    for rate in (None, 0.0):
        model, tok = _load(tiny_bert_dir)
        finetune(model, tok, toy(), spec.model_copy(update={"dropout": rate}), get_task("sst2"))
        assert set(_rates(model)) == {0.1}
        outs[rate] = predict(model, tok, toy(8, seed=1), 32)
    assert not np.array_equal(outs[None], outs[0.0])
    with pytest.raises(ValueError, match="dropout"):
        FinetuneSpec(dropout=1.0)
