"""The Hugging Face hub route for GLUE splits, through `datasets.load_dataset`."""
from __future__ import annotations

import logging
import os

import numpy as np

from harness.errors import DataError, DataMissing
from harness.tasks.spec import TaskData, TaskSpec

log = logging.getLogger(__name__)

GLUE_HUB_ID = "nyu-mll/glue"
_TRUE = {"1", "ON", "YES", "TRUE"}


def hub_offline(*extra_vars: str) -> bool:
    """True when HF_HUB_OFFLINE, HF_DATASETS_OFFLINE or one of `extra_vars` is set to a true value.

    Read at call time (not import time) so that tests and the CLI can switch it.
    """
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", *extra_vars)
    return any(os.environ.get(n, "").strip().upper() in _TRUE for n in names)


def hub_split(spec: TaskSpec, split: str) -> str:
    """The hub split name of 'train', 'dev' or 'dev_mismatched' (MNLI: validation_matched, ...)."""
    if split == "train":
        return "train"
    if split == "dev":
        return spec.dev_splits[0]
    if split == "dev_mismatched" and len(spec.dev_splits) > 1:
        return spec.dev_splits[1]
    raise DataError(f"{spec.name}: the hub has no split for '{split}'")


def load_hub_split(spec: TaskSpec, split: str) -> TaskData:
    """Load one split from the hub's GLUE dataset (or the local `datasets` cache when offline)."""
    import datasets  # heavy; only imported on this route

    name = hub_split(spec, split)
    log.info("loading %s/%s split %s from the hub", GLUE_HUB_ID, spec.hub_config, name)
    try:
        ds = datasets.load_dataset(GLUE_HUB_ID, spec.hub_config, split=name)
    except Exception as exc:  # network, auth and cache errors all mean "data not available"
        raise DataMissing(f"{spec.name}: could not load {GLUE_HUB_ID}/{spec.hub_config} "
                        f"split {name} from the hub: {type(exc).__name__}: {exc}") from exc
    missing = [c for c in (*spec.text_columns, "label") if c not in ds.column_names]
    if missing:
        raise DataError(f"{spec.name}: hub split {name} lacks columns {', '.join(missing)}")
    text_a = list(ds[spec.text_columns[0]])
    text_b = list(ds[spec.text_columns[1]]) if len(spec.text_columns) > 1 else None
    labels = np.asarray(ds["label"], dtype=np.float32 if spec.is_regression else np.int64)
    if not spec.is_regression and (labels < 0).any():
        raise DataError(f"{spec.name}: hub split {name} has unlabeled rows (label -1)")
    return TaskData(spec.name, split, text_a, text_b, labels)
