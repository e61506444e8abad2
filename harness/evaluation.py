"""Dev-set evaluation of an ONNX model on a runtime (onnxruntime by default), official metrics."""
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
                batch_size: int = 32, runner: Any = None) -> np.ndarray:
    """Logits of an ONNX model on every example: through `runner` (anything with
    `get_inputs()` and `run(feed)`, e.g. harness.timing.make_runner's) when given, so the
    metric comes from the runtime and precision that is timed; else onnxruntime's CPU
    provider with its default settings."""
    if runner is None:
        runner = _OrtSession(onnx_path)
    names = [i.name for i in runner.get_inputs()]
    out = []
    for start in range(0, len(data), batch_size):
        feed = encode_batch(tokenizer, data, start, start + batch_size, max_len, names)
        out.append(np.asarray(runner.run(feed)[0], dtype=np.float32))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


class _OrtSession:
    """An onnxruntime CPU session with the runner interface `onnx_logits` uses."""

    def __init__(self, onnx_path: Path) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts,
                                            providers=["CPUExecutionProvider"])
        self.get_inputs = self.session.get_inputs

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feed)


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
