"""Task-specific knowledge distillation (Hinton et al. 2015; DistilBERT layer-copy students)."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import ConfigError, SkipCell
from harness.methods.base import MethodContext
from harness.methods.params import DistillParams
from harness.nn import KDLoss, encoder_layers
from harness.train import finetune

log = logging.getLogger(__name__)


def default_layers(n: int) -> list[int]:
    """Every other layer, as DistilBERT: 6 -> [0, 2, 4]; 12 -> [0, 2, ..., 10]."""
    return list(range(0, n, 2))


def build_student(teacher: torch.nn.Module, layers: list[int]) -> torch.nn.Module:
    """A copy of `teacher` keeping only `layers` (embeddings, pooler and head copied too)."""
    n = len(encoder_layers(teacher))
    if not layers or any(not 0 <= i < n for i in layers) or len(set(layers)) != len(layers):
        raise ConfigError(f"distill: layers must be distinct indices in 0..{n - 1}, got {layers}")
    student = copy.deepcopy(teacher)
    kept = [encoder_layers(student)[i] for i in layers]
    student.base_model.encoder.layer = torch.nn.ModuleList(kept)
    for new, block in enumerate(kept):
        attn = getattr(block.attention, "self", None)
        if hasattr(attn, "layer_idx"):
            attn.layer_idx = new
    config = student.config
    config.num_hidden_layers = len(layers)
    pruned = {int(k): v for k, v in (config.pruned_heads or {}).items()}
    config.pruned_heads = {new: pruned[old] for new, old in enumerate(layers) if pruned.get(old)}
    return student


def _same_vocab(a: Any, b: Any) -> bool:
    return a is b or a is None or b is None or a.get_vocab() == b.get_vocab()


@dataclass
class Distill:
    params: DistillParams

    def apply(self, model: torch.nn.Module, ctx: MethodContext) -> torch.nn.Module:
        p = self.params
        teacher = ctx.teacher if ctx.teacher is not None else model
        teacher.eval()
        student = self._student(model, teacher, ctx)
        kd = KDLoss(p.alpha_soft, p.alpha_hard, p.alpha_cos, p.temperature)
        t_size, s_size = teacher.config.hidden_size, student.config.hidden_size
        if kd.alpha_cos and t_size != s_size:
            kd.alpha_cos = 0.0
            ctx.notes.append(f"distill: cosine loss skipped (hidden {s_size} vs teacher {t_size})")
        epochs = ctx.finetune.epochs if p.epochs is None else p.epochs
        spec = ctx.finetune.model_copy(update={"epochs": epochs})
        result = finetune(student, ctx.tokenizer, ctx.train_data(), spec, ctx.task,
                          teacher=teacher, kd=kd, desc="distill", more=p.augment)
        ctx.notes.append(
            f"distill: T={p.temperature} alpha soft/hard/cos={kd.alpha_soft}/{kd.alpha_hard}/"
            f"{kd.alpha_cos}, {result.steps} steps ({epochs} epochs){result.added_note}, final "
            f"loss {result.final_loss:.4f}")
        return student

    def _student(self, model: torch.nn.Module, teacher: torch.nn.Module,
                 ctx: MethodContext) -> torch.nn.Module:
        p = self.params
        if p.student is not None:
            if p.student == ctx.model:
                raise SkipCell(f"distill: the student '{p.student}' is this cell's model itself; "
                               "distilling a model into itself compresses nothing")
            if ctx.load_model is None:
                raise ConfigError(f"distill: cannot load student model '{p.student}' here")
            student, tokenizer = ctx.load_model(p.student)
            if not _same_vocab(tokenizer, ctx.tokenizer):
                raise ConfigError(f"distill: student '{p.student}' uses a different vocabulary "
                                  "than the teacher")
            n = len(encoder_layers(student))
            ctx.notes.append(f"distill: student '{p.student}' ({n} layers), fine-tuned baseline "
                             f"as the starting point; teacher has {len(encoder_layers(teacher))}")
            return copy.deepcopy(student)
        n = len(encoder_layers(model))
        layers = default_layers(n) if p.layers is None else list(p.layers)
        ctx.notes.append(f"distill: student keeps layers {layers} of {n}")
        return build_student(model, layers)


def distill(params: DistillParams) -> Distill:
    """Knowledge distillation into a smaller student (layer copy of the teacher or a suite model)."""
    return Distill(params)
