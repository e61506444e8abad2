from __future__ import annotations

from pathlib import Path

import pytest

from harness.cache import ArtifactCache, content_key


def test_key_depends_on_config_version_and_inputs() -> None:
    base = content_key("export", "1", {"a": 1}, ["k"])
    assert base == content_key("export", "1", {"a": 1}, ["k"])
    assert base != content_key("export", "2", {"a": 1}, ["k"])
    assert base != content_key("export", "1", {"a": 2}, ["k"])
    assert base != content_key("export", "1", {"a": 1}, ["j"])


def test_build_once_then_cached(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(out: Path) -> dict:
        calls.append(out)
        (out / "model.onnx").write_bytes(b"weights")
        return {"params": 3}

    path, cached = cache.get_or_build("export", "k1", build)
    assert not cached and (path / "model.onnx").read_bytes() == b"weights"
    path2, cached2 = cache.get_or_build("export", "k1", build)
    assert cached2 and path2 == path and len(calls) == 1
    assert cache.info(path) == {"params": 3}


def test_damaged_artifact_is_rebuilt(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    build_count = 0

    def build(out: Path) -> None:
        nonlocal build_count
        build_count += 1
        (out / "model.onnx").write_bytes(b"weights")

    path, _ = cache.get_or_build("export", "k1", build)
    (path / "model.onnx").write_bytes(b"weightz")
    _, cached = cache.get_or_build("export", "k1", build)
    assert not cached and build_count == 2
    assert (path / "model.onnx").read_bytes() == b"weights"


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def build(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cache.get_or_build("export", "k1", build)
    assert cache.lookup("export", "k1") is None
    assert list((tmp_path / "export").iterdir()) == []  # neither the artifact nor its temp dir


def test_disabled_cache_always_builds(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path, enabled=False)
    n = []
    for _ in range(2):
        cache.get_or_build("s", "k", lambda out: n.append(1))
    assert len(n) == 2


def test_prune_removes_old(tmp_path: Path) -> None:
    import os

    cache = ArtifactCache(tmp_path)
    path, _ = cache.get_or_build("s", "k", lambda out: None)
    os.utime(path / "artifact.json", (0, 0))
    assert cache.prune(older_than_days=1) == [path]
    assert not path.exists()
