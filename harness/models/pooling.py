"""BERT sequence classifiers whose head reads mean-pooled token states, not [CLS].

Sentence-embedding checkpoints (all-MiniLM-L6-v2, paraphrase-MiniLM-L3-v2) were trained with
mean pooling; their [CLS] state and pooler were never trained for a sentence-level task, so a
head on mean-pooled states starts from a useful representation and learns much faster.
- `mean`: dropout + linear on the mean of all the tokens' last states.
- `pair`: dropout + linear on [u, v, |u - v|, u * v], u and v the mean states of the first and
  the second sentence's tokens (token type 0 and 1): InferSent's pair features, of which
  Sentence-BERT trained these checkpoints' ancestors on NLI pairs with [u, v, |u - v|]. One
  forward pass over the pair, as the other heads; a single sentence has v = 0.
The classes keep BertForSequenceClassification's attributes (`bert`, `classifier`, `config`),
so pruning, distillation and the ONNX export treat them like the stock model.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("cls", "mean", "pair")


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `hidden` (batch, seq, dim) over the positions where `mask` is 1."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def pair_features(hidden: torch.Tensor, mask: torch.Tensor | None,
                  token_types: torch.Tensor | None) -> torch.Tensor:
    """[u, v, |u - v|, u * v] (batch, 4 * dim): u, v the means over the unmasked positions of
    token type 0 and of token type 1."""
    mask = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device) \
        if mask is None else mask.to(hidden.dtype)
    second = (torch.zeros_like(mask) if token_types is None
              else token_types.to(hidden.dtype) * mask)
    u, v = mean_pool(hidden, mask - second), mean_pool(hidden, second)
    return torch.cat([u, v, (u - v).abs(), u * v], dim=-1)


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    """BertForSequenceClassification with dropout + linear on the masked mean of the last layer."""

    pooling = "mean"  # saved into the config by stages.artifacts, so a reload re-classes it

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
             token_type_ids: torch.Tensor | None) -> torch.Tensor:
        return mean_pool(hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor | None = None,  # type: ignore[override]
                attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                output_hidden_states: bool | None = None, **kwargs: Any
                ) -> SequenceClassifierOutput:
        labels = kwargs.pop("labels", None)
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, output_hidden_states=output_hidden_states,
                        return_dict=True, **kwargs)
        pooled = self.pool(out.last_hidden_state, attention_mask, token_type_ids)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            loss = (torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float())
                    if self.num_labels == 1
                    else torch.nn.functional.cross_entropy(logits, labels.long()))
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=out.hidden_states,
                                        attentions=out.attentions)


class PairPoolBertForSequenceClassification(MeanPoolBertForSequenceClassification):
    """The mean-pooling classifier on [u, v, |u - v|, u * v] of the two sentences' means."""

    pooling = "pair"

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
             token_type_ids: torch.Tensor | None) -> torch.Tensor:
        return pair_features(hidden, attention_mask, token_type_ids)


def to_pooling(model: BertForSequenceClassification, pooling: str) -> BertForSequenceClassification:
    """The same module with the head `pooling` names (see the module docstring); 'pair' gets a
    new classifier (4x wide) from torch's global RNG, 'cls' leaves the model as it is."""
    from harness.errors import ModelError

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if pooling == "cls":
        return model
    if not isinstance(model, BertForSequenceClassification):
        raise ModelError(f"pooling '{pooling}' needs a BERT model, got {type(model).__name__}; "
                         "use pooling: cls")
    if pooling == "pair" and model.config.type_vocab_size < 2:
        raise ModelError("pooling 'pair' tells the sentences apart by token type, but this "
                         f"model has {model.config.type_vocab_size} token type; use mean")
    model.bert.pooler = None
    if pooling == "mean":
        model.__class__ = MeanPoolBertForSequenceClassification
        return model
    model.__class__ = PairPoolBertForSequenceClassification
    old = model.classifier
    model.classifier = torch.nn.Linear(4 * old.in_features, old.out_features).to(old.weight)
    model._init_weights(model.classifier)
    return model
