"""Task-specific knowledge distillation (Hinton et al. 2015; DistilBERT layer-copy students)."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from harness.errors import ConfigError
from harness.methods.base import MethodContext, MethodParams, method

log = logging.getLogger(__name__)


@dataclass
class KDLoss:
    """alpha_soft * soft + alpha_hard * hard + alpha_cos * cosine.

    soft: cross-entropy between teacher and student distributions at temperature T, times T^2
    (regression: MSE to the teacher's score); hard: CE (regression: MSE) to the gold labels;
    cosine: mean over non-padding tokens of 1 - cos(student, teacher last hidden state).
    """

    alpha_soft: float = 0.5
    alpha_hard: float = 0.5
    alpha_cos: float = 0.0
    temperature: float = 2.0

    def soft(self, s_logits: torch.Tensor, t_logits: torch.Tensor, regression: bool) -> torch.Tensor:
        if regression:
            return F.mse_loss(s_logits.squeeze(-1), t_logits.squeeze(-1))
        T = self.temperature
        target = F.softmax(t_logits / T, dim=-1)
        return -(target * F.log_softmax(s_logits / T, dim=-1)).sum(-1).mean() * T * T

    @staticmethod
    def hard(s_logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
        if regression:
            return F.mse_loss(s_logits.squeeze(-1), labels.float())
        return F.cross_entropy(s_logits, labels.long())

    @staticmethod
    def cosine(s_hidden: torch.Tensor, t_hidden: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.cosine_similarity(s_hidden, t_hidden, dim=-1)  # (batch, seq)
        if mask is None:
            return (1 - cos).mean()
        mask = mask.to(cos.dtype)
        return ((1 - cos) * mask).sum() / mask.sum().clamp(min=1)

    def __call__(self, s_logits: torch.Tensor, t_logits: torch.Tensor, labels: torch.Tensor, *,
                 regression: bool, s_hidden: torch.Tensor | None = None,
                 t_hidden: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        loss = s_logits.new_zeros(())
        if self.alpha_soft:
            loss = loss + self.alpha_soft * self.soft(s_logits, t_logits, regression)
        if self.alpha_hard:
            loss = loss + self.alpha_hard * self.hard(s_logits, labels, regression)
        if self.alpha_cos and s_hidden is not None and t_hidden is not None:
            loss = loss + self.alpha_cos * self.cosine(s_hidden, t_hidden, mask)
        return loss


def encoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks of a BERT-style model (`base_model.encoder.layer`)."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(f"{type(model).__name__}: only BERT-style encoders (encoder.layer) "
                          "are supported by this method")
    return layers


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


class DistillParams(MethodParams):
    student: str | None = None  # a suite model whose fine-tuned baseline starts the student
    layers: list[int] | None = None  # teacher layers copied into the student (default every other)
    temperature: float = Field(2.0, gt=0)
    alpha_soft: float = Field(0.5, ge=0)
    alpha_hard: float = Field(0.5, ge=0)
    alpha_cos: float = Field(0.0, ge=0)
    epochs: float | None = Field(None, ge=0)  # None: the suite's finetune.epochs

    @model_validator(mode="after")
    def _check(self) -> DistillParams:
        if self.student is not None and self.layers is not None:
            raise ValueError("give either 'student' or 'layers', not both")
        if self.alpha_soft + self.alpha_hard + self.alpha_cos == 0:
            raise ValueError("at least one of alpha_soft, alpha_hard, alpha_cos must be > 0")
        return self


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
        from harness.train import finetune

        result = finetune(student, ctx.tokenizer, ctx.train_data(), spec, ctx.task,
                          teacher=teacher, kd=kd, desc="distill")
        ctx.notes.append(
            f"distill: T={p.temperature} alpha soft/hard/cos={kd.alpha_soft}/{kd.alpha_hard}/"
            f"{kd.alpha_cos}, {result.steps} steps ({epochs} epochs), final loss {result.final_loss:.4f}")
        return student

    def _student(self, model: torch.nn.Module, teacher: torch.nn.Module,
                 ctx: MethodContext) -> torch.nn.Module:
        p = self.params
        if p.student is not None:
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


@method("distill", level="torch", params=DistillParams)
def distill(params: DistillParams) -> Distill:
    """Knowledge distillation into a smaller student (layer copy of the teacher or a suite model)."""
    return Distill(params)
