"""How stage outputs are written and read: torch models with their tokenizer, ONNX sizes."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any


def train_device() -> str:
    """Fine-tuning and torch-level methods use the GPU when torch sees one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def save_torch(model: Any, tokenizer: Any, out: Path) -> None:
    import torch

    torch.save(model.cpu(), out / "model.pt")  # whole module: pruned shapes need no config
    tokenizer.save_pretrained(out / "tokenizer")


def load_torch(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer

    model = torch.load(path / "model.pt", weights_only=False, map_location=device)
    return model.eval(), AutoTokenizer.from_pretrained(path / "tokenizer")


def load_tokenizer(export_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(export_dir)


def zipped_size(path: Path) -> int:
    return len(zlib.compress(path.read_bytes(), 6))
