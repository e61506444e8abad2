"""Dev-set evaluation of an ONNX model through onnxruntime, metrics through `evaluate`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from harness.encode import encode_batch
from harness.metrics import compute_metrics
from harness.tasks import TaskData, TaskSpec

log = logging.getLogger(__name__)


def onnx_logits(onnx_path: Path, tokenizer: Any, data: TaskData, max_len: int,
                batch_size: int = 32) -> np.ndarray:
    """Logits of an ONNX model on every example, on the CPU execution provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    out = []
    for start in range(0, len(data), batch_size):
        feed = encode_batch(tokenizer, data, start, start + batch_size, max_len, names)
        out.append(session.run(None, feed)[0].astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def predictions_from_logits(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    if task.is_regression:
        return logits.reshape(-1).astype(np.float32)
    return logits.argmax(-1).astype(np.int64)


def evaluate_logits(task: TaskSpec, data: TaskData, logits: np.ndarray) -> dict[str, float]:
    """The task's official GLUE metrics for these logits (finite ones only: else ValueError)."""
    bad = ~np.isfinite(logits.reshape(len(logits), -1)).all(axis=1)
    if bad.any():
        raise ValueError(f"model outputs are NaN or infinite on {int(bad.sum())} of {len(logits)} "
                         f"{data.split} examples: no metric")
    preds = predictions_from_logits(task, logits)
    return compute_metrics(task, preds, data.labels)
