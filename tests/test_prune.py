"""Pruning: cubic schedule, global magnitude sparsity, real head/neuron removal that exports."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import toy_sst2 as toy
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from harness.methods import METHODS, MethodContext
from harness.methods.prune import (
    StructuredParams,
    UnstructuredParams,
    _gradient_importance,
    cubic_sparsity,
    encoder_linears,
    head_plan,
    prune_to,
    sparsity_report,
)
from harness.schema import FinetuneSpec
from harness.tasks.spec import get_task


def _ctx(path, tmp_path, epochs: float = 1.0) -> MethodContext:
    teacher = AutoModelForSequenceClassification.from_pretrained(path).eval()
    spec = FinetuneSpec(epochs=epochs, lr=1e-3, batch_size=8, max_seq_len=32)
    return MethodContext(get_task("sst2"), spec, tmp_path, AutoTokenizer.from_pretrained(path),
                         load_train=toy, teacher=teacher)


def _apply(name, params, ctx, model=None):
    return METHODS.get(name).factory(params).apply(model if model is not None else ctx.teacher, ctx)


def test_cubic_schedule_values():
    assert cubic_sparsity(10, 10, 110, 0.8) == 0.0
    assert cubic_sparsity(60, 10, 110, 0.8) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert cubic_sparsity(110, 10, 110, 0.8) == pytest.approx(0.8)
    assert cubic_sparsity(5, 10, 110, 0.8) == 0.0 and cubic_sparsity(500, 10, 110, 0.8) == 0.8
    assert cubic_sparsity(3, 0, 0, 0.5) == 0.5


def test_prune_to_is_global_and_incremental(tiny_bert_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    weights = [(m, "weight") for m in encoder_linears(model)]
    assert len(weights) == 2 * 6
    for target in (0.3, 0.6, 0.6, 0.9):
        prune_to(weights, target)
        zero = sum(int((m.weight == 0).sum()) for m, _ in weights)
        assert zero / sum(m.weight.numel() for m, _ in weights) == pytest.approx(target, abs=1e-3)
    per_layer = {float((m.weight == 0).float().mean()) for m, _ in weights}
    assert len(per_layer) > 1  # global threshold, not a uniform per-matrix amount


@pytest.mark.parametrize("schedule", ["cubic", "oneshot"])
def test_unstructured_reaches_target(tiny_bert_dir, tmp_path, schedule):
    ctx = _ctx(tiny_bert_dir, tmp_path)
    params = UnstructuredParams(sparsity=0.7, schedule=schedule, distill=True)
    model = _apply("prune-unstructured", params, ctx)
    report = sparsity_report(model)
    assert report["encoder_linear_sparsity"] == pytest.approx(0.7, abs=0.005)
    assert not any(name.endswith("_orig") for name, _ in model.named_parameters())
    assert not any(name.endswith("_mask") for name, _ in model.named_buffers())
    assert torch.count_nonzero(model.classifier.weight) == model.classifier.weight.numel()
    assert sparsity_report(ctx.teacher)["encoder_linear_sparsity"] == 0.0  # teacher untouched
    assert report["nonzero_params"] < report["params"] and "0.70" in ctx.notes[-1]


def test_cubic_ramp_is_applied_during_training(tiny_bert_dir, tmp_path):
    ctx = _ctx(tiny_bert_dir, tmp_path, epochs=4)  # 16 steps; ramp over steps 0..8
    seen = []
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    hook = model.bert.encoder.layer[0].intermediate.register_forward_hook(
        lambda m, i, o: seen.append(float((m.dense.weight == 0).float().mean())) if m.training else None)
    _apply("prune-unstructured", UnstructuredParams(sparsity=0.5, end_fraction=0.5), ctx, model)
    hook.remove()
    assert len(seen) == 16 and seen[0] == 0.0 and seen[-1] > 0.3
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_head_plan_is_global_and_keeps_one_per_layer():
    scores = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.1, 0.1, 0.1, 10.0])]
    assert head_plan(scores, 0.25) == {1: [0, 1]}
    plan = head_plan(scores, 0.99)
    assert sorted(plan[0]) == [0, 1, 2] and sorted(plan[1]) == [0, 1, 2]


def test_gradient_importance_matches_head_mask_gradient(tiny_bert_dir, tmp_path):
    ctx = _ctx(tiny_bert_dir, tmp_path)
    model = ctx.teacher
    data = toy(1)
    heads, _ = _gradient_importance(model, ctx, data)
    enc = ctx.tokenizer(data.text_a, return_tensors="pt")
    mask = torch.ones(2, 4, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(model(**enc, head_mask=mask).logits, torch.tensor(data.labels))
    loss.backward()
    np.testing.assert_allclose(torch.stack(heads).numpy(), mask.grad.abs().numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("importance", ["gradient", "magnitude"])
def test_structured_shrinks_runs_and_round_trips(tiny_bert_dir, tmp_path, importance):
    ctx = _ctx(tiny_bert_dir, tmp_path, epochs=0.5)
    params = StructuredParams(importance=importance, importance_samples=16)
    model = _apply("prune-structured", params, ctx)
    layers = model.bert.encoder.layer
    assert sum(b.attention.self.num_attention_heads for b in layers) == 4
    assert all(b.attention.self.num_attention_heads >= 1 for b in layers)
    for b in layers:
        n = b.attention.self.num_attention_heads
        assert b.attention.self.query.weight.shape == (n * 8, 32)
        assert b.attention.self.value.weight.shape == (n * 8, 32)
        assert b.attention.output.dense.weight.shape == (32, n * 8)
        assert b.intermediate.dense.weight.shape == (32, 32) and b.output.dense.weight.shape == (32, 32)
    assert ctx.teacher.bert.encoder.layer[0].intermediate.dense.weight.shape == (64, 32)
    enc = ctx.tokenizer(["the good movie", "a bad film it was"], padding=True, return_tensors="pt")
    logits = model(**enc).logits
    model.save_pretrained(tmp_path / "pruned")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "pruned").eval()
    torch.testing.assert_close(again(**enc).logits, logits)
    assert "heads per layer" in ctx.notes[-1]


def test_structured_twice_and_onnx_export(tiny_bert_dir, tmp_path):
    import onnxruntime as ort

    ctx = _ctx(tiny_bert_dir, tmp_path)
    first = StructuredParams(heads_fraction=0.25, neurons_fraction=0.25, importance_samples=8, epochs=0)
    model = _apply("prune-structured", first, ctx)
    second = StructuredParams(heads_fraction=0.5, importance_samples=8, epochs=0)
    model = _apply("prune-structured", second, ctx, model)
    heads = [b.attention.self.num_attention_heads for b in model.bert.encoder.layer]
    assert sum(heads) == 3 and model.config.intermediate_size == 24  # round(48 * 0.5)
    enc = ctx.tokenizer(["the good movie", "a bad film it was"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, tuple(enc[n] for n in names), str(path), input_names=names,
                      output_names=["logits"], dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {n: enc[n].numpy() for n in names})[0]
    np.testing.assert_allclose(out, model(**enc).logits.detach().numpy(), atol=1e-5)
