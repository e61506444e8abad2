"""Stage: dev-set predictions of the final ONNX model and the task's GLUE metrics."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.evaluation import evaluate_logits, onnx_logits, predictions_from_logits
from harness.stages.keys import Stage
from harness.tasks import get_task

if TYPE_CHECKING:
    from harness.plan import Cell
    from harness.stages.context import StageContext

EVALUATE = Stage("evaluate", ("harness.stages.evaluate", "harness.evaluation", "harness.metrics",
                              "harness.tasks.local"))


def evaluated(ctx: StageContext, cell: Cell, onnx_path: Path, key: str, tokenizer: Any
              ) -> dict[str, Any]:
    """Metrics (and where the per-example predictions are) of the model at `onnx_path`."""
    spec = get_task(cell.task)
    max_len = ctx.suite.finetune.max_seq_len
    ekey = EVALUATE.key({"dev": ctx.data.identity(cell.task, "dev"), "max_len": max_len,
                         "file": onnx_path.name}, [key])

    def build(out: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for split in spec.dev_splits:
            name = "dev" if split in ("validation", "validation_matched") else "dev_mismatched"
            data = ctx.data.split(cell.task, name)
            logits = onnx_logits(onnx_path, tokenizer, data, max_len)
            np.save(out / f"predictions_{name}.npy", predictions_from_logits(spec, logits))
            np.save(out / f"labels_{name}.npy", data.labels)
            metrics = evaluate_logits(spec, data, logits)
            if name == "dev":
                result |= metrics | {"n_eval": len(data), "eval_split": "dev"}
            else:
                result["accuracy_mismatched"] = metrics.get("accuracy")
        return result

    path, _ = ctx.cache.get_or_build(EVALUATE.name, ekey, build, cell.label)
    return ctx.cache.info(path) | {"predictions_path": str(path / "predictions_dev.npy")}
