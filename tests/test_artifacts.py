"""Torch artifacts are data only: safetensors plus config, pruned shapes included; no pickle runs."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from harness.errors import ModelError
from harness.stages.artifacts import load_torch, save_torch


class Payload:
    """Unpickling this writes a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "pwned"))


def pruned_tiny(tiny_bert_dir: Path) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.pytorch_utils import prune_linear_layer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    model.prune_heads({0: [1, 3], 1: [0]})  # recorded in config.pruned_heads
    for blk, keep in zip(model.bert.encoder.layer, (40, 17), strict=True):  # uneven FFN widths
        idx = torch.arange(keep)
        blk.intermediate.dense = prune_linear_layer(blk.intermediate.dense, idx, dim=0)
        blk.output.dense = prune_linear_layer(blk.output.dense, idx, dim=1)
    return model, AutoTokenizer.from_pretrained(tiny_bert_dir)


def test_pruned_model_round_trips_through_safetensors(tiny_bert_dir: Path, tmp_path: Path) -> None:
    model, tok = pruned_tiny(tiny_bert_dir)
    save_torch(model, tok, tmp_path)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json",
                                                                      "model.safetensors"]
    loaded, tok2 = load_torch(tmp_path)
    assert [b.attention.self.num_attention_heads for b in loaded.bert.encoder.layer] == [2, 3]
    assert [b.intermediate.dense.out_features for b in loaded.bert.encoder.layer] == [40, 17]
    enc = tok(["the cat sat on the mat", "a good film"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, loaded(**enc).logits)
    assert tok2.get_vocab() == tok.get_vocab()


def test_pickled_model_in_the_cache_is_never_loaded(tiny_bert_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    old = tmp_path / "old-artifact"  # the format before: a pickled module
    old.mkdir()
    (old / "model.pt").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelError, match="safetensors only"):
        load_torch(old)
    model, tok = pruned_tiny(tiny_bert_dir)
    save_torch(model, tok, tmp_path / "new")
    (tmp_path / "new" / "model" / "pytorch_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    (tmp_path / "new" / "model.pt").write_bytes(pickle.dumps(Payload(marker)))
    load_torch(tmp_path / "new")
    assert not marker.exists()


def test_tensors_that_do_not_fit_the_config_are_an_error(tiny_bert_dir: Path,
                                                         tmp_path: Path) -> None:
    model, tok = pruned_tiny(tiny_bert_dir)
    save_torch(model, tok, tmp_path)
    config = tmp_path / "model" / "config.json"
    config.write_text(config.read_text().replace('"harness_intermediate_sizes"', '"unused"'))
    with pytest.raises(ModelError, match="do not fit the saved config"):
        load_torch(tmp_path)


@pytest.mark.parametrize("pooling", ["mean", "pair"])
def test_a_pooling_head_round_trips_with_its_pooling(tiny_bert_dir: Path, tmp_path: Path,
                                                     pooling: str) -> None:
    from harness.models import load_model

    model, tok = load_model(str(tiny_bert_dir), 2, cache_dir=tmp_path, seed=0, pooling=pooling)
    model.eval()
    save_torch(model, tok, tmp_path / "saved")
    state = torch.get_rng_state()
    loaded, _ = load_torch(tmp_path / "saved")
    assert torch.equal(torch.get_rng_state(), state)  # loading draws nothing from the RNG
    assert type(loaded) is type(model) and loaded.pooling == pooling
    assert loaded.bert.pooler is None
    enc = tok(["the cat sat on the mat", "a good film"], ["a mat", "a film"], padding=True,
              return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**enc).logits, loaded(**enc).logits)
