"""Content-addressed artifact cache: one directory per (stage, key), hashes checked on use."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

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
    """Artifacts live in `root/<stage>/<key>/`; `artifact.json` holds file hashes and info.

    A key is built under a lock (`root/.locks/<stage>.<key>.lock`), so two runs that need the same
    artifact build it once; a build writes `.<key>.<pid>.tmp` and renames it into place, and a
    temporary folder left by a killed build is removed by the next run or build of that key.
    """

    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The artifact's directory if present and intact; a damaged one is removed."""
        path = self.path(stage, key)
        if not self.enabled or not (path / META).exists():
            return None
        meta = _read_meta(path)
        if meta is None or _hash_tree(path) != meta["files"]:
            log.warning("cache: %s/%s is damaged; rebuilding", stage, key)
            shutil.rmtree(path, ignore_errors=True)
            return None
        os.utime(path / META)  # last use, for pruning
        return path

    def info(self, path: Path) -> dict[str, Any]:
        return json.loads((path / META).read_text(encoding="utf-8")).get("info", {})

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None],
                     label: str = "") -> tuple[Path, bool]:
        """Return (directory, was_cached); `build(tmp_dir)` writes the artifact's files."""
        found = self.lookup(stage, key)
        if found is not None:
            log.info("%-9s cached  %s", stage, label)
            return found, True
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        with self._locked(stage, key, label):
            found = self.lookup(stage, key)  # built by another run while this one waited
            if found is not None:
                log.info("%-9s cached  %s (built by another run)", stage, label)
                return found, True
            return self._build(stage, key, build, label), False

    def _lock(self, stage: str, key: str) -> FileLock:
        (self.root / ".locks").mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".locks" / f"{stage}.{key}.lock")

    @contextmanager
    def _locked(self, stage: str, key: str, label: str) -> Iterator[None]:
        lock = self._lock(stage, key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("%-9s waiting for another run to build %s", stage, label)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any] | None],
               label: str) -> Path:
        """Build under the key's lock: no one else writes its temporary folders now."""
        for stale in (self.root / stage).glob(f".{key}.*.tmp"):
            log.info("cache: removing %s left by an interrupted build", stale.name)
            shutil.rmtree(stale, ignore_errors=True)
        final = self.path(stage, key)
        tmp = final.with_name(f".{key}.{os.getpid()}.tmp")
        tmp.mkdir(parents=True)
        start = time.perf_counter()
        try:
            info = build(tmp) or {}
            meta = {"stage": stage, "key": key, "files": _hash_tree(tmp), "info": info,
                    "seconds": round(time.perf_counter() - start, 2)}
            (tmp / META).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("%-9s built   %s (%.1fs)", stage, label, time.perf_counter() - start)
        return final

    def prune(self, older_than_days: float) -> list[Path]:
        """Remove artifacts not used for `older_than_days`, and temporary folders of builds
        that no longer run; returns what was removed."""
        if not older_than_days >= 0:
            raise ValueError(f"older_than_days must be >= 0, got {older_than_days}")
        cutoff = time.time() - older_than_days * 86400
        removed = []
        for meta in self.root.glob(f"*/*/{META}"):
            if meta.stat().st_mtime < cutoff:
                shutil.rmtree(meta.parent, ignore_errors=True)
                removed.append(meta.parent)
        return removed + self.remove_interrupted()

    def remove_interrupted(self) -> list[Path]:
        """`.<key>.<pid>.tmp` folders whose key no build holds (killed builds); each run starts
        with this."""
        removed = []
        for tmp in self.root.glob("*/.*.tmp"):
            lock = self._lock(tmp.parent.name, tmp.name[1:].split(".", 1)[0])
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # being built right now
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
            finally:
                lock.release()
        return removed


def _read_meta(path: Path) -> dict[str, Any] | None:
    """artifact.json, or None when it is unreadable or not the expected shape."""
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        return None
    return meta
