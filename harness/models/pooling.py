"""A BERT sequence classifier whose head reads the mean of the token states, not [CLS].

Sentence-embedding checkpoints (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2) were trained with
mean pooling; their [CLS] state and pooler were never trained for a sentence-level task, so a
head on the mean-pooled states starts from a useful representation and learns much faster.
The class keeps BertForSequenceClassification's attributes (`bert`, `classifier`, `config`),
so pruning, distillation and the ONNX export treat it like the stock model.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("cls", "mean")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `hidden` (batch, seq, dim) over the positions where `mask` is 1."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification with dropout + linear on the masked mean of the last layer."""

    pooling = "mean"  # saved into the config by stages.artifacts, so a reload re-classes it

    def forward(self, input_ids: torch.Tensor | None = None,  # type: ignore[override]
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any
                ) -> SequenceClassifierOutput:
        labels = kwargs.pop("labels", None)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, output_hidden_states=output_hidden_states,
                        return_dict=True, **kwargs)
        pooled = mean_pool(out.last_hidden_state, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = (torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
                    if self.num_labels == 1
                    else torch.nn.functional.cross_entropy(logits, labels.long()))
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=out.hidden_states,
                                        attentions=out.attentions)


def to_mean_pooling(model: BertForSequenceClassification) -> MeanPoolBertForSequenceClassification:
    """The same module, re-classed to pool by mean; its (unused) pooler is dropped."""
    if not isinstance(model, BertForSequenceClassification):
        from harness.errors import ModelError

        raise ModelError(f"pooling 'mean' needs a BERT model, got {type(model).__name__}; "
                         "use pooling: cls")
    model.__class__ = MeanPoolBertForSequenceClassification
    model.bert.pooler = None
    return model
