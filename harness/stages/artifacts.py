"""How stage outputs are written and read: torch models with their tokenizer, ONNX sizes.

A torch model is stored as data only: its config (`model/config.json`) and its tensors
(`model/model.safetensors`), never a pickle, so reading a cache cannot run code. Shapes that
compression changed are in the config: `pruned_heads` (transformers re-applies it when the
model is built) and, when FFN slicing left layers of different widths,
`harness_intermediate_sizes`; a mean-pooling head is `harness_pooling: mean` (or `pair`). The tensors must
then fit the rebuilt model exactly.
"""
from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.schema import FinetuneSpec

from harness.errors import ConfigError, ModelError

MODEL_DIR = "model"
WEIGHTS = "model.safetensors"


def train_device() -> str:
    """Fine-tuning and torch-level methods use the GPU when torch sees one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_precision(ft: FinetuneSpec) -> str:
    """The precision fine-tunes run at on this machine ('auto' resolved), for keys and records."""
    from harness.train import resolve_precision

    return resolve_precision(ft.precision, train_device())


def _ffn_sizes(model: Any) -> list[int] | None:
    """Per-layer FFN widths of a BERT-style encoder, or None for other models."""
    from harness.nn import encoder_layers

    try:
        return [blk.intermediate.dense.out_features for blk in encoder_layers(model)]
    except (AttributeError, ConfigError):  # not BERT-style: no FFN widths to keep
        return None


def save_torch(model: Any, tokenizer: Any, out: Path) -> None:
    """Config and safetensors tensors under `out/model`, the tokenizer under `out/tokenizer`."""
    from safetensors.torch import save_model

    model = model.cpu()
    config = copy.deepcopy(model.config)
    sizes = _ffn_sizes(model)
    if sizes and any(s != config.intermediate_size for s in sizes):
        config.harness_intermediate_sizes = sizes
    if getattr(model, "pooling", "cls") != "cls":
        config.harness_pooling = model.pooling  # no pooler tensors; 'pair': a 4x wide head
    (out / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out / MODEL_DIR)
    save_model(model, str(out / MODEL_DIR / WEIGHTS))
    tokenizer.save_pretrained(out / "tokenizer")


def _resize_ffn(model: Any, sizes: list[int]) -> None:
    """Give each encoder layer the FFN width it was saved with (weights loaded afterwards)."""
    import torch

    from harness.nn import encoder_layers

    for blk, size in zip(encoder_layers(model), sizes, strict=True):
        dense_in, dense_out = blk.intermediate.dense, blk.output.dense
        if dense_in.out_features != size:
            blk.intermediate.dense = torch.nn.Linear(dense_in.in_features, size)
            blk.output.dense = torch.nn.Linear(size, dense_out.out_features)


def load_torch(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """The model and tokenizer `save_torch` wrote; tensors must match the config exactly."""
    import torch
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from harness.models.pooling import to_pooling

    weights = path / MODEL_DIR / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{path}: no {MODEL_DIR}/{WEIGHTS} (models are read from safetensors "
                         "only; rebuild the artifact)")
    config = AutoConfig.from_pretrained(path / MODEL_DIR, trust_remote_code=False,
                                        local_files_only=True)
    sizes = getattr(config, "harness_intermediate_sizes", None)
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: keep the RNG
        model = AutoModelForSequenceClassification.from_config(config, trust_remote_code=False)
        model = to_pooling(model, getattr(config, "harness_pooling", "cls"))
    if sizes:
        _resize_ffn(model, sizes)
    try:
        load_model(model, str(weights), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: tensors do not fit the saved config "
                         f"({str(exc).splitlines()[0]})") from None
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", trust_remote_code=False,
                                              local_files_only=True)
    return model.to(device).eval(), tokenizer


def load_tokenizer(export_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(export_dir)


def zipped_size(path: Path) -> int:
    return len(zlib.compress(path.read_bytes(), 6))
