"""Knowledge distillation: loss terms by hand, layer-copy students, the `distill` method."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_tiny_bert
from conftest import toy_sst2 as toy
from pydantic import ValidationError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.errors import ConfigError, SkipCell
from harness.methods import METHODS, MethodContext
from harness.methods.distill import build_student, default_layers
from harness.methods.params import DistillParams
from harness.nn import KDLoss
from harness.schema import FinetuneSpec
from harness.tasks.spec import get_task


@pytest.fixture(scope="module")
def deep_bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert4"), layers=4)


def _ctx(path, tmp_path, **kw) -> MethodContext:
    teacher = AutoModelForSequenceClassification.from_pretrained(path).eval()
    spec = FinetuneSpec(epochs=1, lr=1e-3, batch_size=8, max_seq_len=32)
    return MethodContext(get_task("sst2"), spec, tmp_path, AutoTokenizer.from_pretrained(path),
                         load_train=toy, teacher=teacher, **kw)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


S = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]])
T = np.array([[0.5, 1.5, -1.0], [0.0, 0.0, 2.0]])
Y = np.array([1, 0])


def test_soft_loss_is_temperature_ce_times_t_squared():
    loss = KDLoss(temperature=2.0).soft(torch.tensor(S), torch.tensor(T), regression=False)
    expected = -(_softmax(T / 2) * np.log(_softmax(S / 2))).sum(-1).mean() * 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hard_and_regression_losses():
    hard = KDLoss.hard(torch.tensor(S), torch.tensor(Y), regression=False)
    assert hard.item() == pytest.approx(-np.log(_softmax(S)[[0, 1], Y]).mean(), rel=1e-6)
    s, t, y = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [1.0]]), torch.tensor([0.0, 3.0])
    kd = KDLoss(alpha_soft=0.25, alpha_hard=0.75, temperature=5.0)
    assert kd.soft(s, t, regression=True).item() == pytest.approx((1 + 4) / 2)
    assert kd(s, t, y, regression=True).item() == pytest.approx(0.25 * 2.5 + 0.75 * (1 + 0) / 2)


def test_cosine_loss_ignores_padding():
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[0.0, 1.0], [2.0, 2.0], [-1.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert KDLoss.cosine(s, t, mask).item() == pytest.approx((1.0 + 0.0) / 2)
    unmasked = (1 + 0 + 1 + math.sqrt(0.5)) / 3
    assert KDLoss.cosine(s, t).item() == pytest.approx(unmasked, rel=1e-6)


def test_total_is_weighted_sum():
    kd = KDLoss(alpha_soft=0.3, alpha_hard=0.7, alpha_cos=2.0, temperature=3.0)
    s, t, y = torch.tensor(S), torch.tensor(T), torch.tensor(Y)
    hs, ht = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    expected = (0.3 * kd.soft(s, t, False) + 0.7 * kd.hard(s, y, False)
                + 2.0 * kd.cosine(hs, ht))
    assert kd(s, t, y, regression=False, s_hidden=hs, t_hidden=ht).item() == pytest.approx(expected.item())


def test_default_layers_every_other():
    assert default_layers(6) == [0, 2, 4] and default_layers(4) == [0, 2] and default_layers(1) == [0]


def test_student_copies_selected_layers(deep_bert_dir):
    teacher = AutoModelForSequenceClassification.from_pretrained(deep_bert_dir)
    student = build_student(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    assert teacher.config.num_hidden_layers == 4 and len(teacher.bert.encoder.layer) == 4
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for new, old in enumerate([1, 3]):
        for key, value in student.bert.encoder.layer[new].state_dict().items():
            assert torch.equal(value, t_sd[f"bert.encoder.layer.{old}.{key}"])
    for key in s_sd:
        if "encoder.layer" not in key:
            assert torch.equal(s_sd[key], t_sd[key]), key
    assert student.bert.encoder.layer[0].attention.self.query.weight is not \
        teacher.bert.encoder.layer[1].attention.self.query.weight
    ids = torch.tensor([[2, 10, 11, 3]])
    assert student(input_ids=ids).logits.shape == (1, 2)
    with pytest.raises(ConfigError):
        build_student(teacher, [0, 4])


def test_params_validation():
    with pytest.raises(ValidationError):
        DistillParams(student="minilm-l3", layers=[0])
    with pytest.raises(ValidationError):
        DistillParams(alpha_soft=0, alpha_hard=0)
    assert METHODS.get("distill").level == "torch"


def test_distill_method_trains_a_layer_copy(deep_bert_dir, tmp_path):
    ctx = _ctx(deep_bert_dir, tmp_path)
    before = {k: v.clone() for k, v in ctx.teacher.state_dict().items()}
    step = METHODS.get("distill").factory(DistillParams(alpha_cos=1.0))
    student = step.apply(ctx.teacher, ctx)
    assert student.config.num_hidden_layers == 2 and not student.training
    assert all(torch.equal(before[k], v) for k, v in ctx.teacher.state_dict().items())
    assert any("layers [0, 2] of 4" in n for n in ctx.notes)
    assert any("4 steps" in n for n in ctx.notes)


def test_distill_from_a_suite_student(deep_bert_dir, tiny_bert_dir, tmp_path):
    other = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    ctx = _ctx(deep_bert_dir, tmp_path,
               load_model=lambda name: (other, AutoTokenizer.from_pretrained(tiny_bert_dir)))
    step = METHODS.get("distill").factory(DistillParams(student="tiny", epochs=0.5))
    student = step.apply(ctx.teacher, ctx)
    assert student.config.num_hidden_layers == 2 and student is not other
    assert any("student 'tiny'" in n for n in ctx.notes)


def test_a_student_that_is_the_cells_own_model_skips_the_cell(deep_bert_dir, tmp_path):
    calls = []
    ctx = _ctx(deep_bert_dir, tmp_path, model="tiny",
               load_model=lambda name: calls.append(name))
    step = METHODS.get("distill").factory(DistillParams(student="tiny"))
    with pytest.raises(SkipCell, match="'tiny' is this cell's model itself"):
        step.apply(ctx.teacher, ctx)
    assert calls == []  # decided before any model is loaded or trained


def test_distill_then_prune_structured(deep_bert_dir, tmp_path):
    from harness.methods.prune import StructuredParams

    ctx = _ctx(deep_bert_dir, tmp_path)
    model = METHODS.get("distill").factory(DistillParams(epochs=0.5)).apply(ctx.teacher, ctx)
    params = StructuredParams(importance_samples=16, epochs=0.5)
    model = METHODS.get("prune-structured").factory(params).apply(model, ctx)
    layers = model.bert.encoder.layer
    assert len(layers) == 2 and sum(b.attention.self.num_attention_heads for b in layers) == 4
    assert model.config.intermediate_size == 32
    assert model(input_ids=torch.tensor([[2, 10, 3]])).logits.shape == (1, 2)
