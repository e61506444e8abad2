"""ONNX export through optimum-onnx, and the PyTorch-vs-ONNX parity check."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from harness.tasks import TaskData

log = logging.getLogger(__name__)
ONNX_NAME = "model.onnx"


def export_onnx(model: Any, tokenizer: Any, out_dir: Path) -> Path:
    """Export a sequence-classification model to `out_dir/model.onnx` (dynamic batch and seq)."""
    from optimum.exporters.onnx import onnx_export_from_model

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_export_from_model(model, out_dir, task="text-classification", do_validation=False,
                               preprocessors=[tokenizer] if tokenizer is not None else None)
    path = out_dir / ONNX_NAME
    if not path.exists():
        raise RuntimeError(f"optimum-onnx wrote no {ONNX_NAME} in {out_dir}")
    return path


def torch_logits(model: Any, tokenizer: Any, data: TaskData, max_len: int,
                 batch_size: int = 64) -> np.ndarray:
    """Logits of the PyTorch model (float32), shape (n, num_labels), as the training loop predicts."""
    from harness.train import predict

    logits = predict(model, tokenizer, data, max_len, batch_size)
    return logits.reshape(len(data), -1).astype(np.float32)


def parity(torch_out: np.ndarray, onnx_out: np.ndarray, regression: bool) -> dict[str, float]:
    """Prediction agreement and max |logit difference| between two sets of logits."""
    diff = float(np.max(np.abs(torch_out - onnx_out))) if torch_out.size else 0.0
    if regression:
        agree = float(np.mean(np.abs(torch_out - onnx_out) < 1e-2))
    else:
        agree = float(np.mean(torch_out.argmax(-1) == onnx_out.argmax(-1)))
    return {"parity_agreement": agree, "parity_max_abs_diff": diff}


def count_params(model: Any) -> dict[str, int]:
    """Total and non-zero parameter counts of a torch model."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(p.count_nonzero()) for p in model.parameters())
    return {"params": int(total), "nonzero_params": int(nonzero)}
