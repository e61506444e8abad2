"""Pruning: global magnitude (unstructured, cubic schedule) and attention-head/FFN-neuron removal."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.nn.utils import prune
from transformers.pytorch_utils import prune_linear_layer

from harness.export import count_params
from harness.methods.base import MethodContext
from harness.methods.params import StructuredParams, UnstructuredParams
from harness.nn import KDLoss, encoder_layers
from harness.train import finetune, iter_batches, task_loss

if TYPE_CHECKING:
    from harness.tasks.spec import TaskData

log = logging.getLogger(__name__)


def encoder_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """Every nn.Linear inside the encoder blocks (attention q/k/v/output, FFN in/out)."""
    return [m for m in encoder_layers(model).modules() if isinstance(m, torch.nn.Linear)]


def sparsity_report(model: torch.nn.Module) -> dict[str, float | int]:
    """Total and nonzero parameter counts, and the zero fraction of the encoder linear weights."""
    weights = [m.weight for m in encoder_linears(model)]
    n = sum(w.numel() for w in weights)
    zeros = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    return {**count_params(model), "encoder_linear_params": n,
            "encoder_linear_sparsity": zeros / n if n else 0.0}


def cubic_sparsity(step: int, begin: int, end: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta 2017: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3, clamped to [t0, end]."""
    if end <= begin:
        return final if step >= begin else initial
    progress = min(max((step - begin) / (end - begin), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def _recovery(ctx: MethodContext, model: torch.nn.Module,
              p: UnstructuredParams | StructuredParams, desc: str,
              on_step: Callable[[int, int], None] | None = None) -> str:
    """Recovery fine-tune on the task's train data, optionally distilled from ctx.teacher
    (then on the train data with p's added unlabelled inputs, if any)."""
    epochs = ctx.finetune.epochs if p.epochs is None else p.epochs
    if epochs == 0:
        return "no recovery fine-tune"
    teacher = ctx.teacher if p.distill else None
    spec = ctx.finetune.model_copy(update={"epochs": epochs})
    kd = KDLoss() if teacher is not None else None
    result = finetune(model, ctx.tokenizer, ctx.train_data(), spec, ctx.task, teacher=teacher,
                      kd=kd, on_step=on_step, desc=desc,
                      more=p.augment if teacher is not None else None)
    how = "with KD from the baseline" if teacher is not None else "without KD"
    if p.distill and teacher is None:
        how += " (no teacher available" + (", so no added inputs)" if p.augment.adds else ")")
    return f"recovery fine-tune {result.steps} steps ({epochs} epochs) {how}{result.added_note}"


def _own(model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
    """Never prune the teacher in place."""
    return copy.deepcopy(model) if model is ctx.teacher else model


# --- unstructured ---------------------------------------------------------------------------


def prune_to(weights: list[tuple[torch.nn.Module, str]], sparsity: float) -> None:
    """Global L1 pruning of `weights` until `sparsity` of their entries are masked."""
    n = sum(getattr(m, name).numel() for m, name in weights)
    masked = sum(int((getattr(m, f"{name}_mask") == 0).sum()) for m, name in weights
                 if hasattr(m, f"{name}_mask"))
    extra = round(sparsity * n) - masked
    if extra > 0:
        prune.global_unstructured(weights, pruning_method=prune.L1Unstructured, amount=extra)


@dataclass
class PruneUnstructured:
    params: UnstructuredParams
    intervals: int = 20  # pruning events over the cubic ramp

    def apply(self, model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
        p = self.params
        model = _own(model, ctx)
        weights = [(m, "weight") for m in encoder_linears(model)]

        def on_step(step: int, total: int) -> None:
            if p.schedule == "oneshot":
                if step == 0:
                    prune_to(weights, p.sparsity)
                return
            begin, end = int(p.begin_fraction * total), int(p.end_fraction * total)
            every = max(1, (end - begin) // self.intervals)
            if step >= begin and ((step - begin) % every == 0 or step >= end):
                prune_to(weights, cubic_sparsity(step, begin, end, p.sparsity))

        how = _recovery(ctx, model, p, "prune-unstructured", on_step)
        prune_to(weights, p.sparsity)  # the schedule ends at s_f; make sure it is reached
        for module, name in weights:
            prune.remove(module, name)
        report = sparsity_report(model)
        ctx.notes.append(
            f"prune-unstructured: encoder linear sparsity {report['encoder_linear_sparsity']:.4f} "
            f"(target {p.sparsity}, {p.schedule}); {report['nonzero_params']}/{report['params']} "
            f"params nonzero; {how}; dense storage, so no speed-up without a sparse kernel")
        return model


def prune_unstructured(params: UnstructuredParams) -> PruneUnstructured:
    """Global magnitude pruning of encoder linears with a cubic sparsity schedule (Zhu & Gupta)."""
    return PruneUnstructured(params)


# --- structured -----------------------------------------------------------------------------


def importance(model: torch.nn.Module, ctx: MethodContext, kind: str, samples: int
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer head and FFN-neuron importance scores (higher is more important)."""
    if kind == "magnitude":
        return _magnitude_importance(model)
    data = ctx.train_data().take(samples, ctx.finetune.seed)
    return _gradient_importance(model, ctx, data)


def _magnitude_importance(model: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Head: |W_v rows| * |W_o cols| of the head; neuron: |W_in row| * |W_out col|."""
    heads, neurons = [], []
    with torch.no_grad():
        for blk in encoder_layers(model):
            att = blk.attention.self
            n, d = att.num_attention_heads, att.attention_head_size
            v = att.value.weight.view(n, d, -1).norm(dim=(1, 2))
            o = blk.attention.output.dense.weight.view(-1, n, d).norm(dim=(0, 2))
            heads.append((v * o).cpu())
            w_in, w_out = blk.intermediate.dense.weight, blk.output.dense.weight
            neurons.append((w_in.norm(dim=1) * w_out.norm(dim=0)).cpu())
    return heads, neurons


def _gradient_importance(model: torch.nn.Module, ctx: MethodContext, data: TaskData
                         ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Michel et al. 2019: sum over examples of |dL/d(head gate)|; FFN neurons alike (Taylor).

    A head gate scales the head's context vector, so dL/dgate = sum(context * dL/dcontext): hooks
    on the inputs of attention.output.dense and output.dense give it for heads and neurons at once
    (works with SDPA attention and with already-pruned, uneven layers).
    """
    layers = encoder_layers(model)
    grads: dict[tuple[str, int], torch.Tensor] = {}

    def capture(key: tuple[str, int]) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0]
            x.register_hook(lambda g: grads.__setitem__(key, (x.detach() * g).sum(1)))
        return hook

    handles = [h for i, blk in enumerate(layers) for h in (
        blk.attention.output.dense.register_forward_pre_hook(capture(("head", i))),
        blk.output.dense.register_forward_pre_hook(capture(("ffn", i))))]
    heads = [torch.zeros(b.attention.self.num_attention_heads) for b in layers]
    neurons = [torch.zeros(b.output.dense.in_features) for b in layers]
    device = next(model.parameters()).device
    model.eval()
    try:
        for batch, y in iter_batches(ctx.tokenizer, data, ctx.finetune.max_seq_len,
                                     ctx.finetune.batch_size):
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            loss = task_loss(logits, y.to(device), ctx.task.is_regression) * len(y)
            model.zero_grad(set_to_none=True)
            loss.backward()
            for i, blk in enumerate(layers):
                n = blk.attention.self.num_attention_heads
                heads[i] += grads[("head", i)].view(len(y), n, -1).sum(-1).abs().sum(0).cpu()
                neurons[i] += grads[("ffn", i)].abs().sum(0).cpu()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return heads, neurons


def head_plan(heads: list[torch.Tensor], fraction: float) -> dict[int, list[int]]:
    """Least important heads to remove globally (scores L2-normalized per layer, as Michel et
    al.'s code), keeping at least one head per layer. Indices are current positions per layer."""
    total = sum(len(h) for h in heads)
    n_remove = round(fraction * total)
    scores = [h / (h.norm() + 1e-20) for h in heads]
    ranked = sorted((float(s[j]), i, j) for i, s in enumerate(scores) for j in range(len(s)))
    left = [len(h) for h in heads]
    plan: dict[int, list[int]] = {}
    for _, i, j in ranked:
        if n_remove == 0:
            break
        if left[i] > 1:
            plan.setdefault(i, []).append(j)
            left[i] -= 1
            n_remove -= 1
    return plan


def remove_heads(model: torch.nn.Module, plan: dict[int, list[int]]) -> None:
    """model.prune_heads with current positions mapped to the original head numbering."""
    original = model.config.num_attention_heads
    mapped = {}
    for i, positions in plan.items():
        done = set(encoder_layers(model)[i].attention.pruned_heads)
        alive = [h for h in range(original) if h not in done]
        mapped[i] = [alive[j] for j in positions]
    if mapped:
        model.prune_heads(mapped)


def shrink_ffn(model: torch.nn.Module, neurons: list[torch.Tensor], fraction: float) -> list[int]:
    """Keep the same number of most important FFN neurons in every layer; new nn.Linear modules.

    Uniform per layer so config.intermediate_size stays true and save/from_pretrained round-trips.
    """
    kept = []
    for blk, score in zip(encoder_layers(model), neurons, strict=True):
        keep = max(1, round(len(score) * (1 - fraction)))
        idx = torch.topk(score, keep).indices.sort().values
        if keep < len(score):
            blk.intermediate.dense = prune_linear_layer(blk.intermediate.dense, idx, dim=0)
            blk.output.dense = prune_linear_layer(blk.output.dense, idx, dim=1)
        kept.append(keep)
    if len(set(kept)) == 1:
        model.config.intermediate_size = kept[0]
    return kept


@dataclass
class PruneStructured:
    params: StructuredParams

    def apply(self, model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
        p = self.params
        model = _own(model, ctx)
        heads, neurons = importance(model, ctx, p.importance, p.importance_samples)
        remove_heads(model, head_plan(heads, p.heads_fraction))
        kept = shrink_ffn(model, neurons, p.neurons_fraction)
        how = _recovery(ctx, model, p, "prune-structured")
        layers = encoder_layers(model)
        per_layer = [blk.attention.self.num_attention_heads for blk in layers]
        total = sum(x.numel() for x in model.parameters())
        ctx.notes.append(
            f"prune-structured ({p.importance} importance): heads per layer {per_layer}, "
            f"FFN neurons per layer {kept}; {total} params; {how}")
        return model


def prune_structured(params: StructuredParams) -> PruneStructured:
    """Remove attention heads (global, Michel et al. 2019) and FFN neurons (per layer), then recover."""
    return PruneStructured(params)
