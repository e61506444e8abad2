"""Training losses and layer helpers shared by the training loop and the methods."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.errors import ConfigError
from harness.tasks.augment import UNLABELLED


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
        """Mean over the batch; an example without a gold label (harness.tasks.augment: added
        for distillation) adds nothing, so its loss is the soft (and cosine) part alone."""
        if regression:
            keep = ~torch.isnan(labels)
            err = F.mse_loss(s_logits.squeeze(-1)[keep], labels[keep].float(), reduction="sum")
        else:
            err = F.cross_entropy(s_logits, labels.long(), ignore_index=UNLABELLED,
                                  reduction="sum")
        return err / len(labels)

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


class NumpyDropout(torch.nn.Module):
    """Dropout with masks drawn from a numpy generator instead of torch's.

    Same semantics as `nn.Dropout(p)` (each element kept with probability 1 - p, kept ones
    scaled by 1 / (1 - p), identity in eval mode), only faster on the CPU: torch draws its
    masks from one mt19937 generator at about 5 ns an element, which was a fifth of a
    MiniLM fine-tune step on two cores; numpy's PCG64 draws them several times faster.
    """

    def __init__(self, p: float, rng: np.random.Generator):
        super().__init__()
        self.p = float(p)
        self.rng = rng

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = self.rng.random(x.numel(), dtype=np.float32) >= self.p
        scale = torch.from_numpy(keep).view(x.shape).to(x.device, x.dtype) / (1.0 - self.p)
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


@contextlib.contextmanager
def dropout_rate(model: torch.nn.Module, p: float) -> Iterator[None]:
    """Within the block every dropout of `model` drops with probability `p`: each
    `nn.Dropout`, and the attention-probability rate that BERT's SDPA self-attention reads
    from its `dropout_prob`. The checkpoint's rates are put back on exit."""
    saved: list[tuple[torch.nn.Module, str, float]] = []
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            saved.append((module, "p", module.p))
        if isinstance(getattr(module, "dropout_prob", None), float):
            saved.append((module, "dropout_prob", module.dropout_prob))
    for module, attr, _ in saved:
        setattr(module, attr, float(p))
    try:
        yield
    finally:
        for module, attr, rate in saved:
            setattr(module, attr, rate)


def _sdpa_to_eager() -> tuple[type | None, type]:
    """BERT's SDPA self-attention class (None if this transformers has none) and its eager
    twin: SDPA draws its attention dropout inside `scaled_dot_product_attention`, out of
    reach of a module swap; the eager class applies its `dropout` module."""
    from transformers.models.bert import modeling_bert as bert

    return getattr(bert, "BertSdpaSelfAttention", None), bert.BertSelfAttention


@contextlib.contextmanager
def numpy_dropout(model: torch.nn.Module, seed: int) -> Iterator[None]:
    """Within the block every `nn.Dropout` of `model` is a `NumpyDropout` drawing from one
    generator seeded with `seed`, and BERT's SDPA self-attention runs its eager twin, whose
    attention-probability dropout is such a module. Everything is put back on exit, so export
    and prediction see the model as loaded."""
    rng = np.random.default_rng((seed, 0xD50))  # a stream of its own, not the batch order's
    sdpa, eager = _sdpa_to_eager()
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    attention = [m for m in model.modules() if sdpa is not None and type(m) is sdpa]
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, NumpyDropout(child.p, rng).train(child.training))
                swapped.append((parent, name, child))
    for module in attention:
        module.__class__ = eager
    base = getattr(model, "base_model", None)
    eager_mask = bool(attention) and getattr(base, "attn_implementation", None) == "sdpa"
    if eager_mask:
        base.attn_implementation = "eager"  # the extended mask eager attention expects
    try:
        yield
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)
        for module in attention:
            module.__class__ = sdpa
        if eager_mask:
            base.attn_implementation = "sdpa"
