from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.errors import HarnessError, SchemaError
from harness.manifest import MANIFEST_VERSION
from harness.records import SCHEMA_VERSION, Record, migrate, resolve_stored_path
from harness.store import RunStore, load_records, write_json_atomic


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
    assert store.manifest() == {"schema_version": MANIFEST_VERSION, "suite": "quick",
                                "started": "t0", "finished": "t1"}
    assert not list(store.dir.glob(".*tmp"))


def test_failed_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.mkdir()  # os.replace onto a directory fails after the temp file is written
    with pytest.raises(OSError):
        write_json_atomic(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_manifest_is_versioned_and_old_ones_migrate(tmp_path: Path) -> None:
    store = RunStore.open(tmp_path, "run1")
    (store.dir / "manifest.json").write_text(json.dumps(
        {"suite_name": "demo", "started_at": "t0", "counts": {"ok": 1}}))
    assert store.manifest() == {"schema_version": MANIFEST_VERSION, "suite": "demo",
                                "started": "t0", "status_counts": {"ok": 1}}
    store.update_manifest(finished="t1")
    assert json.loads((store.dir / "manifest.json").read_text())["schema_version"] == \
        MANIFEST_VERSION


@pytest.mark.parametrize("text, message", [
    ("{not json", "manifest.json: not valid JSON"),
    ("[1, 2]", "manifest.json: not a JSON object"),
    ('{"schema_version": 1, "suite": "x", "colour": "red"}', "manifest.json: colour: Extra"),
    ('{"schema_version": 99}', "manifest.json: schema_version 99 is newer"),
    ('{"schema_version": 1, "cells": "many"}', "manifest.json: cells: Input should be"),
])
def test_damaged_manifest_is_one_error_naming_the_file(tmp_path: Path, text: str,
                                                       message: str) -> None:
    store = RunStore.open(tmp_path, "run1")
    (store.dir / "manifest.json").write_text(text)
    with pytest.raises(HarnessError, match=re.escape(message)):
        store.manifest()


@pytest.mark.parametrize("line, message", [
    ("[1, 2]", "records.jsonl:1: a record must be a JSON object"),
    ("3", "records.jsonl:1: a record must be a JSON object"),
    ('"text"', "records.jsonl:1: a record must be a JSON object"),
])
def test_json_lines_that_are_not_objects(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(line + "\n" + rec().model_dump_json() + "\n")
    with pytest.raises(HarnessError, match=re.escape(message)):
        load_records(path)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_records_that_are_not_utf8(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "records.jsonl"
    text = rec(model="modèle").model_dump_json() + "\n"
    path.write_bytes(text.encode(encoding))
    with pytest.raises(HarnessError, match=r"records.jsonl: not UTF-8 text"):
        load_records(path)


def test_predictions_path_is_stored_relative_and_v2_records_migrate(tmp_path: Path) -> None:
    v2 = rec().model_dump() | {"schema_version": 2}
    v2["predictions_path"] = "/somewhere/results/cache/evaluate/abc/predictions_dev.npy"
    del v2["eval_digest"]
    migrated = migrate(v2)
    assert migrated["predictions_path"] == "cache/evaluate/abc/predictions_dev.npy"
    record = Record.model_validate(migrated)
    assert resolve_stored_path(record.predictions_path, tmp_path) == \
        tmp_path / "cache/evaluate/abc/predictions_dev.npy"
    assert resolve_stored_path("/abs/file.npy", tmp_path) == Path("/abs/file.npy")
    assert resolve_stored_path(None, tmp_path) is None
