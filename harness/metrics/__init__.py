"""GLUE metrics through `evaluate`: the hub's `glue` module when reachable, else a local copy.

The local copy (harness/metrics/glue/glue.py) reproduces the hub module exactly, so results do
not depend on the route; `metric_source()` says which one was used so records can carry it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.tasks.hub import hub_offline
from harness.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import evaluate

__all__ = ["LOCAL_GLUE_METRIC", "compute_metrics", "load_glue_metric", "main_metric",
           "metric_source"]

log = logging.getLogger(__name__)

LOCAL_GLUE_METRIC = Path(__file__).resolve().parent / "glue"
HUB_GLUE_METRIC = "evaluate-metric/glue"  # owner/name: never shadowed by a ./glue folder

_loaded: dict[str, tuple[evaluate.EvaluationModule, str]] = {}  # config -> (metric, source)
_hub_ok: bool | None = None  # result of the first hub attempt in this process


def _offline() -> bool:
    return hub_offline("HF_EVALUATE_OFFLINE")


def metric_source(task: TaskSpec | None = None, config: str | None = None) -> str:
    """'hub' or 'local': the source of the metric used for `task` (or `config`), or, with
    neither, the source this process uses now (offline -> local; else hub if it answered)."""
    if task is not None or config is not None:
        return _load(config or task.hub_config)[1]  # type: ignore[union-attr]
    if _offline():
        return "local"
    if _hub_ok is None:
        _load("sst2")
    return "hub" if _hub_ok else "local"


def load_glue_metric(config: str) -> evaluate.EvaluationModule:
    """The `evaluate` GLUE metric for a config name (cola, mrpc, mnli_mismatched, ...), cached."""
    return _load(config)[0]


def _load(config: str) -> tuple[evaluate.EvaluationModule, str]:
    global _hub_ok
    source = "local" if _offline() or _hub_ok is False else "hub"
    cached = _loaded.get(config)
    if cached is not None and cached[1] == source:
        return cached
    import evaluate

    metric = None
    if source == "hub":
        try:
            metric = evaluate.load(HUB_GLUE_METRIC, config, keep_in_memory=True)
            _hub_ok = True
        except Exception as exc:  # unreachable hub, auth, cache: use the local copy instead
            log.warning("GLUE metric not available from the hub (%s: %s); using the local copy",
                        type(exc).__name__, exc)
            _hub_ok, source = False, "local"
    if metric is None:
        metric = evaluate.load(str(LOCAL_GLUE_METRIC), config, keep_in_memory=True)
    _loaded[config] = (metric, source)
    log.debug("loaded GLUE metric %s from %s", config, source)
    return metric, source


def compute_metrics(task: TaskSpec, predictions: Sequence[float] | np.ndarray,
                    references: Sequence[float] | np.ndarray,
                    config: str | None = None) -> dict[str, float]:
    """The task's official GLUE metrics, e.g. {'accuracy': .., 'f1': ..}.

    Predictions are class ids, or float scores for regression (STS-B). `config` overrides the
    metric config (e.g. 'mnli_mismatched'; the values are the same as 'mnli').
    """
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.ndim != 1 or preds.shape != refs.shape:
        raise ValueError(f"{task.name}: predictions {preds.shape} and references {refs.shape} "
                         "must be 1-D and of equal length")
    if len(preds) == 0:
        raise ValueError(f"{task.name}: no predictions to score")
    if task.is_regression:
        preds, refs = preds.astype(np.float32), refs.astype(np.float32)
    else:
        preds, refs = _class_ids(task, preds, "predictions"), _class_ids(task, refs, "references")
    values = load_glue_metric(config or task.hub_config).compute(predictions=preds,
                                                                 references=refs)
    return {k: float(v) for k, v in values.items()}


def _class_ids(task: TaskSpec, values: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"{task.name}: {what} must be class ids, got dtype {values.dtype}")
    return values.astype(np.int64)


def main_metric(task: TaskSpec, values: Mapping[str, float]) -> float:
    """The task's main metric (accuracy, matthews_correlation or pearson) out of `values`."""
    if task.main_metric not in values:
        raise KeyError(f"{task.name}: main metric '{task.main_metric}' missing from "
                       f"{sorted(values)}")
    return float(values[task.main_metric])
