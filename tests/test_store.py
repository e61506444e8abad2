from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import SchemaError
from harness.records import SCHEMA_VERSION, Record, migrate
from harness.store import RunStore, load_records


def rec(**kw: object) -> Record:
    base = dict(run_id="r", model="m", task="mrpc", method="baseline", variant="baseline",
                provider="cpu", batch_size=1, seq_len=128, status="ok")
    return Record(**(base | kw))


def test_append_and_resume_keys(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, "run1")
    store.append(rec(status="failed", error="boom"))
    store.append(rec(batch_size=32))
    assert store.finished_keys() == {rec(batch_size=32).key}
    store.append(rec())  # the failed cell redone: the last record of a key wins
    assert len(store.records()) == 2
    assert len(store.records(latest_only=False)) == 3
    assert store.finished_keys() == {rec().key, rec(batch_size=32).key}


def test_torn_line_is_ignored_and_the_next_append_survives(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, "run1")
    store.append(rec())
    with store.records_path.open("a") as fh:
        fh.write('{"schema_version": 2, "run_')  # the driver was killed mid-write
    assert len(store.records()) == 1
    store.append(rec(batch_size=8))  # resume appends after the partial line
    assert {r.batch_size for r in store.records()} == {1, 8}
    assert store.records_path.read_text().count("\n") == 3


def test_garbage_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, "run1")
    store.append(rec())
    with store.records_path.open("a") as fh:
        fh.write("garbage\n")
    store.append(rec(batch_size=8))
    with pytest.raises(Exception, match=r"records.jsonl:2: not valid JSON"):
        store.records()


def test_schema_migration_and_refusal(tmp_path: Path) -> None:
    v1 = rec().model_dump() | {"schema_version": 1}
    v1.pop("variant")
    v1["samples"] = v1.pop("samples_ms")
    assert migrate(v1)["schema_version"] == SCHEMA_VERSION
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(v1) + "\n")
    (loaded,) = load_records(path)
    assert loaded.variant == "baseline" and loaded.schema_version == SCHEMA_VERSION
    path.write_text(json.dumps(rec().model_dump() | {"schema_version": 99}) + "\n")
    with pytest.raises(SchemaError, match="schema_version 99 is newer"):
        load_records(path)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(rec().model_dump() | {"latency_p50": 1.0}) + "\n")
    with pytest.raises(SchemaError, match=r"records.jsonl:1: latency_p50"):
        load_records(path)


def test_manifest_updates_atomically(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, "run1")
    store.update_manifest(suite="quick", started="t0")
    store.update_manifest(finished="t1")
    assert store.manifest() == {"suite": "quick", "started": "t0", "finished": "t1"}
    assert not list(store.dir.glob(".*tmp"))
