"""Training losses and layer helpers shared by the training loop and the methods."""
from __future__ import annotations

from dataclasses import dataclass

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
