"""harness export mlflow: read back through MlflowClient from a local file store."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.publish import publish
from harness.records import Record
from harness.store import RunStore

mlflow = pytest.importorskip("mlflow", reason="needs the mlflow extra (mlflow-skinny)")

MANIFEST = {"run_id": "night-1", "suite": "nightly", "git_sha": "abc1234", "machine": "fp",
            "started": "2025-01-01T02:00:00+00:00"}


def rec(variant: str, p50: float | None, status: str = "ok", **extra: object) -> Record:
    samples = np.random.default_rng(0).normal(p50 or 1, 0.1, 40).tolist() if p50 else []
    fields = dict(run_id="night-1", model="minilm-l6", task="mrpc", method=variant.split("(")[0],
                  variant=variant, provider="cpu", batch_size=1, seq_len=128, status=status,
                  metric_name="accuracy", metric_value=0.8 if p50 else None,
                  accuracy=0.8 if p50 else None, n_eval=400, latency_ms_p50=p50,
                  latency_ms_p90=p50 and p50 * 1.1, samples_ms=samples, machine="fp",
                  onnx_bytes=1000 if p50 else None, method_params={"prune": {"sparsity": 0.5}}
                  if variant.startswith("prune") else {})
    return Record(**(fields | extra))


def export(run_dir: Path, uri: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", "export", "mlflow",
                           str(run_dir), "--tracking-uri", str(uri), "--experiment", "nightly"],
                          capture_output=True, text=True)


def cell_runs(client: object, experiment: str = "nightly") -> dict[str, object]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    return {r.data.tags["harness.cell_key"]: r for r in runs}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    store = RunStore.open(tmp_path / "results", "night-1")
    records = [rec("baseline", 10.0), rec("prune(sparsity=0.5)", 5.0),
               rec("distill", None, status="failed", error="boom", stage="build")]
    for r in records:
        store.append(r)
    store.update_manifest(**MANIFEST)
    publish(store.records(), store.dir, store.manifest())
    return store.dir


def test_export_matches_the_records_and_is_idempotent(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = tmp_path / "mlruns"
    res = export(run_dir, uri)
    assert res.returncode == 0, res.stderr
    assert "3 runs created" in res.stdout  # cells; the parent is not counted
    client = mlflow.tracking.MlflowClient(tracking_uri=uri.as_uri())
    runs = cell_runs(client)
    assert set(runs) == {"run", "minilm-l6|mrpc|baseline|cpu|1|128",
                         "minilm-l6|mrpc|prune(sparsity=0.5)|cpu|1|128",
                         "minilm-l6|mrpc|distill|cpu|1|128"}
    parent = runs.pop("run")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "report.html", "leaderboard.md", "leaderboard.csv"}
    for record in RunStore(run_dir).records():
        run = runs[f"minilm-l6|mrpc|{record.variant}|cpu|1|128"]
        assert run.data.tags["harness.run_id"] == "night-1"
        assert run.data.tags["git_sha"] == "abc1234"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        p, m = run.data.params, run.data.metrics
        assert (p["model"], p["task"], p["variant"], p["provider"], p["shape"], p["machine"]) == (
            "minilm-l6", "mrpc", record.variant, "cpu", "cpu/b1/s128", "fp")
        if record.status == "failed":
            assert run.info.status == "FAILED" and run.data.tags["harness.error"] == "boom"
            assert "latency_ms_p50" not in m
            continue
        assert m["latency_ms_p50"] == pytest.approx(record.latency_ms_p50)
        assert m["latency_ms_p90"] == pytest.approx(record.latency_ms_p90)
        assert m["accuracy"] == pytest.approx(0.8) and m["metric_value"] == pytest.approx(0.8)
        assert m["metric_ci_low"] < 0.8 < m["metric_ci_high"]  # Wilson, 400 examples
        assert m["latency_ms_p50_ci_low"] <= record.latency_ms_p50 <= m["latency_ms_p50_ci_high"]
        assert m["onnx_bytes"] == 1000
    assert runs["minilm-l6|mrpc|prune(sparsity=0.5)|cpu|1|128"].data.metrics["speedup"] == (
        pytest.approx(2.0, rel=0.05))
    assert runs["minilm-l6|mrpc|prune(sparsity=0.5)|cpu|1|128"].data.params[
        "method.prune.sparsity"] == "0.5"

    again = export(run_dir, uri)
    assert again.returncode == 0 and "0 runs created, 0 updated" in again.stdout
    assert {k: r.info.run_id for k, r in cell_runs(client).items() if k != "run"} == {
        k: r.info.run_id for k, r in runs.items()}


def test_a_resumed_run_replaces_the_redone_cell(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = tmp_path / "mlruns"
    assert export(run_dir, uri).returncode == 0
    RunStore(run_dir).append(rec("distill", 7.0))  # the resume redid the failed cell
    res = export(run_dir, uri)
    assert res.returncode == 0 and "0 runs created, 1 updated" in res.stdout
    runs = cell_runs(mlflow.tracking.MlflowClient(tracking_uri=uri.as_uri()))
    assert len(runs) == 4  # parent and three cells, none twice
    distill = runs["minilm-l6|mrpc|distill|cpu|1|128"]
    assert distill.info.status == "FINISHED" and distill.data.metrics["latency_ms_p50"] == 7.0


def test_missing_run_dir_is_a_user_error(tmp_path: Path) -> None:
    res = export(tmp_path / "nope", tmp_path / "mlruns")
    assert res.returncode == 2 and res.stderr.startswith("error: ")
