"""Stage: dev-set predictions of the final ONNX model and the task's GLUE metrics, computed on
each timed provider's own runtime at the file's precision (so a bf16 row's accuracy is that of
the bf16 model that was timed)."""
from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import SkipCell, one_line
from harness.evaluation import evaluate_logits, onnx_logits, predictions_from_logits
from harness.stages.keys import Stage
from harness.tasks import get_task
from harness.timing.backend import make_runner

if TYPE_CHECKING:
    from harness.plan import Cell
    from harness.stages.context import StageContext

log = logging.getLogger(__name__)
EVALUATE = Stage("evaluate", ("harness.stages.evaluate", "harness.evaluation", "harness.metrics",
                              "harness.tasks.local", "harness.timing.backend"))
# A provider whose evaluation is skipped (its device is not where the build runs) takes the
# metric of the fallback, which runs the same graph in the same precision; the record's
# metric_provider says which runtime it came from. OpenVINO has none: its bf16/fp16 rows must
# be evaluated in the precision they are timed in.
EVAL_FALLBACK = {"cuda": "cpu"}


def evaluated(ctx: StageContext, cell: Cell, onnx_path: Path, key: str, tokenizer: Any,
              provider: str = "cpu") -> dict[str, Any]:
    """Metrics (and where the per-example logits and predictions are) of the model at
    `onnx_path` run on `provider`; SkipCell when that runtime cannot run it here."""
    spec = get_task(cell.task)
    max_len = ctx.suite.finetune.max_seq_len
    ekey = EVALUATE.key({"dev": ctx.data.identity(cell.task, "dev"), "max_len": max_len,
                         "file": onnx_path.name, "provider": provider}, [key])

    def build(out: Path) -> dict[str, Any]:
        runner = make_runner(onnx_path, provider, ctx.suite.timing)
        result: dict[str, Any] = {"metric_provider": provider}
        for split in spec.dev_splits:
            name = "dev" if split in ("validation", "validation_matched") else "dev_mismatched"
            data = ctx.data.split(cell.task, name)
            logits = onnx_logits(onnx_path, tokenizer, data, max_len, runner=runner)
            np.save(out / f"logits_{name}.npy", logits)
            np.save(out / f"predictions_{name}.npy", predictions_from_logits(spec, logits))
            np.save(out / f"labels_{name}.npy", data.labels)
            metrics = evaluate_logits(spec, data, logits)
            if name == "dev":
                result |= metrics | {"n_eval": len(data), "eval_split": "dev"}
            else:
                result["accuracy_mismatched"] = metrics.get("accuracy")
        return result

    path, _ = ctx.cache.get_or_build(EVALUATE.name, ekey, build, f"{cell.label} {provider}")
    info = ctx.cache.info(path)
    # stored relative to the results directory, the parent of the cache root
    stored = path.relative_to(ctx.cache.root.parent) / "predictions_dev.npy"
    return info | {"predictions_path": stored.as_posix(),
                   "eval_digest": ctx.data.digest(cell.task, "dev"),
                   "metric_name": spec.main_metric, "metric_value": info.get(spec.main_metric)}


def evaluations(ctx: StageContext, cell: Cell, onnx_path: Path, key: str, tokenizer: Any
                ) -> dict[str, dict[str, Any]]:
    """Per timed provider: its dev metrics, or {"status", "error", "trace"} when it has none."""
    out: dict[str, dict[str, Any]] = {}

    def on(provider: str) -> dict[str, Any]:
        if provider not in out:
            out[provider] = _evaluated_or_reason(ctx, cell, onnx_path, key, tokenizer, provider)
        return out[provider]

    chosen = {}
    for provider in ctx.suite.timing.providers:
        chosen[provider] = on(provider)
        fallback = EVAL_FALLBACK.get(provider)
        if chosen[provider].get("status") == "skipped" and fallback:
            if "status" not in on(fallback):
                chosen[provider] = out[fallback]
    return chosen


def _evaluated_or_reason(ctx: StageContext, cell: Cell, onnx_path: Path, key: str,
                         tokenizer: Any, provider: str) -> dict[str, Any]:
    try:
        return evaluated(ctx, cell, onnx_path, key, tokenizer, provider)
    except SkipCell as exc:
        log.warning("%s: no metric on %s: %s", cell.label, provider, exc)
        return {"status": "skipped", "error": one_line(exc), "trace": None}
    except Exception as exc:  # noqa: BLE001 - the other providers' rows go on
        log.error("%s: evaluation on %s failed: %s (traceback in run.log)", cell.label,
                  provider, one_line(exc))
        return {"status": "failed", "error": one_line(exc), "trace": traceback.format_exc()}
