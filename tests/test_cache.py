from __future__ import annotations

import os
import subprocess
import sys
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


@pytest.mark.parametrize("damage", [b"", b"{not json", b"\xff\xfe\x00garbage", b"[]", b"null",
                                    b'{"files": 3}', b'{"files": {"model.onnx": "00"}}'])
def test_damaged_artifact_json_is_rebuilt(tmp_path: Path, damage: bytes) -> None:
    cache = ArtifactCache(tmp_path)
    builds = []

    def build(out: Path) -> dict:
        builds.append(out)
        (out / "model.onnx").write_bytes(b"weights")
        return {"n": len(builds)}

    path, _ = cache.get_or_build("export", "k1", build)
    (path / "artifact.json").write_bytes(damage)
    path, cached = cache.get_or_build("export", "k1", build)
    assert not cached and len(builds) == 2 and cache.info(path) == {"n": 2}


def test_killed_build_leaves_no_temp_folder_behind(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    stale = tmp_path / "export" / ".k1.999999999.tmp"  # a build whose process was SIGKILLed
    stale.mkdir(parents=True)
    (stale / "half.onnx").write_bytes(b"x")
    cache.get_or_build("export", "k1", lambda out: (out / "model.onnx").write_bytes(b"w"))
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["k1"]


def test_prune_removes_temp_folders_of_dead_builds(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    stale = tmp_path / "torch" / ".k2.999999999.tmp"
    stale.mkdir(parents=True)
    live = tmp_path / "torch" / f".k3.{os.getpid()}.tmp"  # a build in progress
    live.mkdir()
    with cache._lock("torch", "k3"):
        assert cache.prune(older_than_days=30) == [stale]
    assert not stale.exists() and live.exists()


def test_a_key_is_built_once_by_concurrent_processes(tmp_path: Path) -> None:
    """Two processes asking for one key: one builds while the other waits, then reuses it."""
    script = f"""
import sys, time
from pathlib import Path
from harness.cache import ArtifactCache

def build(out):
    with open({str(tmp_path / 'builds.log')!r}, 'a') as fh:
        fh.write('built\\n')
    time.sleep(1.5)
    (out / 'model.onnx').write_bytes(b'w')

path, cached = ArtifactCache(Path({str(tmp_path / 'cache')!r})).get_or_build('export', 'k', build)
print('cached' if cached else 'built')
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs == ["built", "cached"]
    assert (tmp_path / "builds.log").read_text() == "built\n"


def test_the_key_lock_is_released_after_a_build(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    cache.get_or_build("export", "k1", lambda out: None)
    with pytest.raises(RuntimeError):
        cache.get_or_build("export", "k2", lambda out: (_ for _ in ()).throw(RuntimeError()))
    for key in ("k1", "k2"):
        lock = cache._lock("export", key)
        lock.acquire(timeout=0)  # raises Timeout if a build still held it
        lock.release()
