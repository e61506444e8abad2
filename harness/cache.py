"""Content-addressed artifact cache: one directory per (stage, key), hashes checked on use."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
META = "artifact.json"


def content_key(stage: str, version: str, config: Any, inputs: list[str] | None = None) -> str:
    """Key of a stage's output: its name, code version, config and upstream keys."""
    blob = json.dumps({"stage": stage, "version": version, "config": config,
                       "inputs": inputs or []}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes: the one file hash of the harness."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): file_sha256(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != META}


class ArtifactCache:
    """Artifacts live in `root/<stage>/<key>/`; `artifact.json` holds file hashes and info."""

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The artifact's directory if present and intact; a damaged one is removed."""
        path = self.path(stage, key)
        meta = path / META
        if not self.enabled or not meta.exists():
            return None
        try:
            expected = json.loads(meta.read_text())["files"]
        except (json.JSONDecodeError, KeyError):
            expected = None
        if expected is None or _hash_tree(path) != expected:
            log.warning("cache: %s/%s is damaged; rebuilding", stage, key)
            shutil.rmtree(path, ignore_errors=True)
            return None
        os.utime(meta)  # last use, for pruning
        return path

    def info(self, path: Path) -> dict[str, Any]:
        return json.loads((path / META).read_text()).get("info", {})

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None],
                     label: str = "") -> tuple[Path, bool]:
        """Return (directory, was_cached); `build(tmp_dir)` writes the artifact's files."""
        found = self.lookup(stage, key)
        if found is not None:
            log.info("%-9s cached  %s", stage, label)
            return found, True
        final = self.path(stage, key)
        tmp = final.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        start = time.perf_counter()
        try:
            info = build(tmp) or {}
            meta = {"stage": stage, "key": key, "files": _hash_tree(tmp), "info": info,
                    "seconds": round(time.perf_counter() - start, 2)}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("%-9s built   %s (%.1fs)", stage, label, time.perf_counter() - start)
        return final, False

    def prune(self, older_than_days: float) -> list[Path]:
        """Remove artifacts not used for `older_than_days`; returns what was removed."""
        cutoff = time.time() - older_than_days * 86400
        removed = []
        for meta in self.root.glob(f"*/*/{META}"):
            if meta.stat().st_mtime < cutoff:
                shutil.rmtree(meta.parent, ignore_errors=True)
                removed.append(meta.parent)
        return removed
