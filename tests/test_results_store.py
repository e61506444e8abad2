"""The results store: Parquet per run, idempotent ingest, read-only queries."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import suite_file

from harness.query import QueryError, run_query, stored_runs
from harness.records import Record
from harness.results_store import ResultsStore
from harness.store import RunStore


def rec(run_id: str, variant: str = "baseline", batch: int = 1, status: str = "ok",
        **extra: object) -> Record:
    fields = dict(run_id=run_id, model="m", task="mrpc", method=variant, variant=variant,
                  provider="cpu", batch_size=batch, seq_len=128, status=status,
                  metric_name="accuracy", metric_value=0.8 if status == "ok" else None,
                  latency_ms_p50=10.0 if status == "ok" else None,
                  samples_ms=[9.0, 10.0, 11.0] if status == "ok" else [],
                  method_params={variant: {"x": 1}}, machine="fp")
    return Record(**(fields | extra))


def write_run(root: Path, run_id: str, records: list[Record], **manifest: object) -> Path:
    store = RunStore.open(root, run_id)
    for r in records:
        store.append(r)
    store.update_manifest(run_id=run_id, suite="demo", git_sha="abc123", machine="fp",
                          started=f"2025-01-0{len(list(root.glob('runs/*')))}T00:00:00Z",
                          **manifest)
    return store.dir


def count(store: ResultsStore, sql: str) -> int:
    return int(run_query(store, sql).iloc[0, 0])


def test_resumed_run_holds_each_record_once(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r1", [rec("r1"), rec("r1", batch=32, status="failed")])
    store = ResultsStore(tmp_path)
    assert store.ingest(run) == 2
    RunStore(run).append(rec("r1", batch=32))  # resume: the failed cell is redone
    RunStore(run).append(rec("r1", "int8-dynamic"))
    store.ingest(run)
    store.ingest(run)  # and again: nothing doubles
    rows = run_query(store, "SELECT record_key, status FROM records ORDER BY record_key")
    assert rows["record_key"].tolist() == ["m|mrpc|baseline|cpu|1|128",
                                           "m|mrpc|baseline|cpu|32|128",
                                           "m|mrpc|int8-dynamic|cpu|1|128"]
    assert set(rows["status"]) == {"ok"}
    runs = stored_runs(store)
    assert runs[["run_id", "ok", "failed", "n_records", "git_sha"]].values.tolist() == [
        ["r1", 3, 0, 3, "abc123"]]


def test_columns_keep_lists_and_json(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    store.ingest(write_run(tmp_path, "r1", [rec("r1")]))
    row = run_query(store, "SELECT samples_ms, method_params, len(samples_ms) AS n "
                           "FROM records").iloc[0]
    assert list(row["samples_ms"]) == [9.0, 10.0, 11.0] and row["n"] == 3
    assert json.loads(row["method_params"]) == {"baseline": {"x": 1}}


def test_sync_imports_new_and_changed_runs_and_drops_deleted(tmp_path: Path) -> None:
    import shutil

    store = ResultsStore(tmp_path)
    first = write_run(tmp_path, "r1", [rec("r1")])
    write_run(tmp_path, "r2", [rec("r2")])
    assert store.sync() == ["r1", "r2"]
    assert store.sync() == []  # nothing changed since
    RunStore(first).append(rec("r1", batch=8))
    assert store.sync() == ["r1"]
    shutil.rmtree(tmp_path / "runs" / "r2")
    assert store.sync() == ["r2"]
    assert count(store, "SELECT count(*) FROM records") == 2
    assert stored_runs(store)["run_id"].tolist() == ["r1"]


def test_rebuild_imports_every_run(tmp_path: Path) -> None:
    for run_id in ("a", "b", "c"):
        write_run(tmp_path, run_id, [rec(run_id), rec(run_id, batch=4)])
    store = ResultsStore(tmp_path)
    assert store.rebuild() == 3
    (store.records_dir / "a.parquet").write_bytes(b"garbage")  # a damaged store file
    assert store.rebuild() == 3
    assert count(store, "SELECT count(DISTINCT run_id || record_key) FROM records") == 6


def test_empty_store_has_the_tables(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path)
    assert count(store, "SELECT count(*) FROM records") == 0
    assert stored_runs(store).empty


@pytest.mark.parametrize("sql", [
    "COPY records TO 'out.csv'", "CREATE TABLE t AS SELECT 1", "INSERT INTO runs VALUES (1)",
    "DROP VIEW records", "ATTACH 'other.db'", "SET threads = 1", "INSTALL httpfs",
    "SELECT 1; DROP VIEW records", "PRAGMA version"])
def test_query_refuses_anything_but_select(tmp_path: Path, sql: str) -> None:
    store = ResultsStore(tmp_path)
    store.ingest(write_run(tmp_path, "r1", [rec("r1")]))
    with pytest.raises(QueryError):
        run_query(store, sql)
    assert count(store, "SELECT count(*) FROM records") == 1
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob("*.db"))


def test_query_reads_only_the_store(tmp_path: Path) -> None:
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    store = ResultsStore(tmp_path)
    store.ingest(write_run(tmp_path, "r1", [rec("r1")]))
    with pytest.raises(QueryError, match="disabled"):
        run_query(store, f"SELECT * FROM read_csv('{outside}')")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True)


def test_history_and_query_commands(tmp_path: Path) -> None:
    write_run(tmp_path, "r1", [rec("r1"), rec("r1", batch=32, status="failed")])
    res = cli("history", "--results-dir", str(tmp_path))
    assert res.returncode == 0 and "| r1 " in res.stdout, res.stderr
    assert (tmp_path / "store" / "records" / "r1.parquet").exists()
    res = cli("history", "--results-dir", str(tmp_path), "--rebuild")
    assert res.returncode == 0 and "| r1 " in res.stdout
    sql = "SELECT batch_size, status FROM records ORDER BY batch_size"
    res = cli("query", sql, "--results-dir", str(tmp_path), "--format", "csv")
    assert res.returncode == 0 and res.stdout.splitlines() == [
        "batch_size,status", "1,ok", "32,failed"]
    res = cli("query", sql, "--results-dir", str(tmp_path), "--format", "json")
    assert json.loads(res.stdout) == [{"batch_size": 1, "status": "ok"},
                                      {"batch_size": 32, "status": "failed"}]
    res = cli("query", "DELETE FROM records", "--results-dir", str(tmp_path))
    assert res.returncode == 2 and "read-only" in res.stderr
    assert count(ResultsStore(tmp_path), "SELECT count(*) FROM records") == 2


def test_run_writes_the_store_and_a_resume_keeps_records_once(
        tmp_path: Path, tiny_glue_dir: Path, tiny_bert_dir: Path) -> None:
    from harness.run import run_suite

    methods = "[baseline, {name: distill, layers: [5]}]"  # fails in its stage: 2-layer model
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods)
    results = tmp_path / "results"
    run_suite(suite, results, "r1")
    run_suite(suite, results, "r1")  # resume: the failed cell is retried and appended again
    run = RunStore(results / "runs" / "r1")
    assert len(run.records(latest_only=False)) > len(run.records())
    store = ResultsStore(results)
    assert store.stale() == ([], [])  # the run itself brought the store up to date
    rows = run_query(store, "SELECT record_key, status FROM records")
    assert sorted(rows["record_key"]) == sorted(
        "|".join(map(str, r.key)) for r in run.records())
    assert sorted(rows["status"]) == sorted(r.status for r in run.records())
