"""Model sources: packaged catalogue keys, local HF directories and hub ids.

`check_model_name` is pure (no loading, no network); `load_model` returns a fresh
sequence-classification model and its tokenizer; `model_fingerprint` names the weights for
cache keys.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import ModelError, did_you_mean, first_line
from harness.models.catalogue import (
    CATALOGUE,
    describe_models,
    file_sha256,
    l3_onnx_path,
    l6_model_dir,
)
from harness.tasks.hub import hub_offline

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["CATALOGUE", "check_model_name", "describe_models", "load_model", "max_positions",
           "model_fingerprint"]

log = logging.getLogger(__name__)

HUB_REVISION = "main"
_HEAD_KEY = re.compile(r"(?:^|\.)(?:classifier|pooler|pre_classifier|score)\.")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def _is_path_like(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _is_hub_id(name: str) -> bool:
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and not Path(name).exists()


def check_model_name(name: str) -> str | None:
    """None if `name` is a catalogue key, a local model dir or a hub id; else the problem."""
    if name in CATALOGUE:
        return None
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            return f"model path '{name}' is a file; expected a directory with config.json"
        if not (path / "config.json").is_file():
            return f"model directory '{name}' has no config.json"
        return None
    if not _is_path_like(name) and _is_hub_id(name):
        return None
    if _is_path_like(name):
        return f"model directory '{name}' does not exist"
    expected = (f"Expected one of {', '.join(sorted(CATALOGUE))}, a local directory"
                " with config.json, or a hub id such as org/name.")
    return f"unknown model '{name}'. {did_you_mean(name, CATALOGUE, expected)}"


def max_positions(name: str) -> int | None:
    """The longest sequence a model takes, read without loading it (None when unknown: a hub
    id, or a config without max_position_embeddings)."""
    import json

    if name in CATALOGUE:
        return CATALOGUE[name].max_positions
    config = Path(name).expanduser() / "config.json"
    try:
        value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def load_model(name: str, num_labels: int, *, cache_dir: Path, seed: int | None = None,
               pooling: str = "cls") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A fresh AutoModelForSequenceClassification and its tokenizer.

    num_labels=1 gives a regression head. Catalogue keys load offline from packaged files
    (minilm-l3 is converted once into `cache_dir/models`). The new head is initialised from
    torch's global RNG: seeded with `seed` right before the weights load (after any first-use
    conversion), else as the caller left it. pooling 'mean' or 'pair' puts the head on
    mean-pooled token states (harness.models.pooling) instead of BERT's [CLS] pooler.
    """
    from harness.models.pooling import POOLINGS, to_pooling

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    model, tokenizer = _load(name, num_labels, cache_dir, seed)
    return to_pooling(model, pooling), tokenizer


def _load(name: str, num_labels: int, cache_dir: Path,
          seed: int | None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    problem = check_model_name(name)
    if problem:
        raise ModelError(problem)
    if num_labels < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    if name in CATALOGUE:
        path = catalogue_dir(name, cache_dir)
        _seed(seed)
        return _load_local(name, path, num_labels, strict=True)
    path = Path(name).expanduser()
    _seed(seed)
    if path.is_dir():
        return _load_local(name, path, num_labels, strict=False)
    return _load_hub(name, num_labels)


def _seed(seed: int | None) -> None:
    if seed is not None:
        import torch

        torch.manual_seed(seed)


def model_fingerprint(name: str) -> str:
    """A stable string naming the weights behind `name`, for cache keys."""
    problem = check_model_name(name)
    if problem:
        raise ModelError(problem)
    if name == "minilm-l6":
        return f"minilm-l6:safetensors-sha256:{file_sha256(l6_model_dir() / 'model.safetensors')}"
    if name == "minilm-l3":
        from harness.models.minilm_l3 import CONVERTER_VERSION

        return f"minilm-l3:onnx-sha256:{file_sha256(l3_onnx_path())}:convert-v{CONVERTER_VERSION}"
    path = Path(name).expanduser()
    if path.is_dir():
        return f"dir-sha256:{_dir_digest(path)}"
    return f"hub:{name}@{HUB_REVISION}"


def catalogue_dir(key: str, cache_dir: Path) -> Path:
    """The folder a catalogue model loads from (minilm-l3: its conversion in `cache_dir`,
    made by the first load_model)."""
    if key == "minilm-l6":
        return l6_model_dir()
    from harness.models.minilm_l3 import converted_dir

    return converted_dir(cache_dir)


def _dir_digest(path: Path) -> str:
    """sha256 over config.json and the weight files (names and contents) of a model dir."""
    files = {path / "config.json"}
    for pattern in _WEIGHT_GLOBS:
        files.update(path.glob(pattern))
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f"{f.name}\0{file_sha256(f)}\0".encode())
    return h.hexdigest()


def _head_kwargs(num_labels: int) -> dict[str, object]:
    problem = "regression" if num_labels == 1 else "single_label_classification"
    return {"num_labels": num_labels, "problem_type": problem}


class _NewHeadFilter(logging.Filter):
    """Drops transformers' "newly initialized" warning; `_check_loaded` reports instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "newly initialized" not in record.getMessage()


@contextlib.contextmanager
def _quiet_head_warnings() -> Iterator[None]:
    # A filter, not setLevel: raising the level makes transformers run its tensor-parallel
    # plan check, which warns about every layer.
    logger = logging.getLogger("transformers.modeling_utils")
    head_filter = _NewHeadFilter()
    logger.addFilter(head_filter)
    try:
        yield
    finally:
        logger.removeFilter(head_filter)


def _check_loaded(name: str, info: dict[str, list], strict: bool) -> None:
    """Newly initialized weights must be head weights (classifier, pooler) only."""
    missing = [k for k in info.get("missing_keys", []) if not _HEAD_KEY.search(k)]
    if missing and strict:
        raise ModelError(f"model '{name}' checkpoint lacks encoder weights: {missing[:5]}")
    if missing:
        log.warning("model '%s': %d encoder weights newly initialized, e.g. %s",
                    name, len(missing), missing[:3])
    heads = [k for k in info.get("missing_keys", []) if _HEAD_KEY.search(k)]
    log.debug("model '%s': newly initialized head weights %s", name, heads)
    if info.get("mismatched_keys"):
        log.info("model '%s': re-initialized weights of another shape: %s",
                 name, [k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]])


def _load_local(name: str, path: Path, num_labels: int,
                strict: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    safetensors = any(path.glob("*.safetensors")) or any(path.glob("*.safetensors.index.json"))
    try:
        with _quiet_head_warnings():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                path, **_head_kwargs(num_labels), trust_remote_code=False,
                use_safetensors=True if safetensors else None, local_files_only=True,
                ignore_mismatched_sizes=True, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False,
                                                  local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load model '{name}' from {path}: {first_line(exc)}") from exc
    _check_loaded(name, info, strict)
    return model, tokenizer


def _hub_offline() -> bool:
    from transformers.utils.hub import is_offline_mode

    return is_offline_mode() or hub_offline("TRANSFORMERS_OFFLINE")


def _load_hub(name: str, num_labels: int) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    offline = _hub_offline()
    common = {"revision": HUB_REVISION, "trust_remote_code": False, "local_files_only": offline}
    try:
        try:
            with _quiet_head_warnings():
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    name, **_head_kwargs(num_labels), use_safetensors=True,
                    ignore_mismatched_sizes=True, output_loading_info=True, **common)
        except OSError as exc:
            if "safetensors" not in str(exc):
                raise
            log.warning("hub model '%s' has no safetensors weights; loading .bin", name)
            with _quiet_head_warnings():
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    name, **_head_kwargs(num_labels), use_safetensors=False,
                    ignore_mismatched_sizes=True, output_loading_info=True, **common)
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
    except (OSError, ValueError) as exc:
        if offline:
            raise ModelError(f"hub model '{name}' is not in the local Hugging Face cache and "
                             "HF_HUB_OFFLINE is set: download it first or pass a local "
                             "directory") from exc
        raise ModelError(f"cannot load hub model '{name}': the Hugging Face hub is unreachable "
                         f"or has no such model ({first_line(exc)}); set HF_HUB_OFFLINE=1 "
                         "to use only cached files") from exc
    _check_loaded(name, info, strict=False)
    return model, tokenizer
