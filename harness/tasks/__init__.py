"""GLUE tasks: specs, and loading a split from a local glue_data dir or the hub."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from harness.errors import DataError, DataMissing
from harness.tasks import hub, local
from harness.tasks.spec import TASKS, TaskData, TaskSpec, canonical_task, get_task

__all__ = [
    "TASKS", "TaskData", "TaskSpec", "available_splits", "canonical_task", "get_task",
    "load_split", "normalize_split", "resolve_data_dir",
]

log = logging.getLogger(__name__)

ENV_DATA_DIR = "HARNESS_GLUE_DIR"
SOURCES = ("auto", "local", "hub")
_REPO_ROOT = Path(__file__).resolve().parents[2]
_SPLIT_ALIASES = {
    "train": "train", "dev": "dev", "validation": "dev", "dev_matched": "dev",
    "validation_matched": "dev", "dev_mismatched": "dev_mismatched",
    "validation_mismatched": "dev_mismatched",
}


def resolve_data_dir(explicit: Path | None = None) -> Path | None:
    """The glue_data directory: `explicit`, else $HARNESS_GLUE_DIR, else ../shared/glue
    relative to the current directory, then to the repository root; None if none exists."""
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise DataError(f"GLUE data dir {explicit} does not exist")
        return Path(explicit)
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        if not Path(env).is_dir():
            raise DataError(f"{ENV_DATA_DIR}={env} is not a directory")
        return Path(env)
    for base in (Path.cwd(), _REPO_ROOT):
        candidate = (base / ".." / "shared" / "glue").resolve()
        if candidate.is_dir():
            return candidate
    return None


def normalize_split(split: str) -> str:
    """'dev', 'validation', 'validation_matched' -> 'dev'; '*_mismatched' -> 'dev_mismatched'."""
    if split not in _SPLIT_ALIASES:
        raise DataError(f"unknown split '{split}' (expected train, dev or dev_mismatched)")
    return _SPLIT_ALIASES[split]


def _spec(task: str | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def available_splits(task: str | TaskSpec, data_dir: Path | None = None) -> list[str]:
    """Splits of `task` present in the local glue_data dir (resolved when not given)."""
    root = data_dir if data_dir is not None else resolve_data_dir(None)
    return [] if root is None else local.local_splits(_spec(task), Path(root))


def load_split(task: str | TaskSpec, split: str, *, data_dir: Path | None = None,
               source: str = "auto") -> TaskData:
    """Load one split ('train', 'dev' = MNLI matched, 'dev_mismatched') of a GLUE task.

    source 'local' reads the glue_data dir, 'hub' uses `datasets`, 'auto' reads the local file
    when it exists and otherwise goes to the hub unless HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set.
    """
    spec = _spec(task)
    split = normalize_split(split)
    local.split_file(spec, split)  # rejects dev_mismatched for tasks other than MNLI
    if source not in SOURCES:
        raise DataError(f"unknown data source '{source}' (expected {', '.join(SOURCES)})")
    if source == "hub":
        return hub.load_hub_split(spec, split)
    root = resolve_data_dir(data_dir)
    if source == "local":
        if root is None:
            raise DataMissing(f"{spec.name}: no local GLUE dir found (set {ENV_DATA_DIR})")
        return local.read_split(spec, split, root)
    if root is not None and local.split_path(spec, split, root).is_file():
        return local.read_split(spec, split, root)
    if hub.hub_offline():
        where = (f"in {root / spec.glue_dir}" if root is not None
                 else f"(no local GLUE dir; set {ENV_DATA_DIR})")
        raise DataMissing(f"{spec.name}: {local.split_file(spec, split)} not found {where} "
                        "(and the hub is offline)")
    log.info("%s: no local %s file; trying the hub", spec.name, split)
    return hub.load_hub_split(spec, split)
