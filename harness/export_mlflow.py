"""`harness export mlflow RUN_DIR`: one MLflow run per cell, under one parent run per harness run.

Needs the `mlflow` extra (mlflow-skinny). Params: model, task, method, variant, the method
parameters, provider, shape, machine. Metrics: the task metrics (fractions, as in the records)
with the main metric's 95% interval, latency percentiles with the p50's interval, throughput,
speedup, size and size ratio (intervals as in harness.publish.intervals). Tags: the harness run id, the cell key, git sha and a
digest of the record. The parent run carries the run's report and leaderboards as artifacts.
Exporting again changes nothing for cells whose record is unchanged; a cell whose record
changed (a resumed run redid it) replaces its MLflow run, so no cell is ever there twice.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.publish.intervals import latency_interval, metric_interval
from harness.publish.tables import CELL, leaderboard, records_frame
from harness.records import METRIC_FIELDS, Record
from harness.results_store import read_manifest, record_key
from harness.store import RECORDS, load_records

log = logging.getLogger(__name__)

PARENT = "run"  # the cell key of the parent run (a cell key always holds "|")
ARTIFACTS = ("report.html", "leaderboard.md", "leaderboard.csv", "benchmark.json")
TAG_RUN, TAG_CELL, TAG_DIGEST, TAG_KIND = ("harness.run_id", "harness.cell_key",
                                          "harness.record_digest", "harness.kind")
# record field -> MLflow metric name (the task metrics keep their own names)
METRICS = {
    **{m: m for m in METRIC_FIELDS}, "metric_value": "metric_value",
    "accuracy_mismatched": "accuracy_mismatched",
    "latency_ms_p50": "latency_ms_p50", "latency_ms_p90": "latency_ms_p90",
    "latency_ms_p95": "latency_ms_p95", "latency_ms_p99": "latency_ms_p99",
    "latency_ms_mean": "latency_ms_mean", "latency_ms_min": "latency_ms_min",
    "latency_ms_stdev": "latency_ms_stdev", "latency_cv": "latency_cv",
    "throughput_per_s": "throughput_per_s", "speedup_ci_low": "speedup_ci_low",
    "speedup_ci_high": "speedup_ci_high", "params": "params", "nonzero_params": "nonzero_params",
    "onnx_bytes": "onnx_bytes", "onnx_zip_bytes": "onnx_zip_bytes",
    "gflops_per_s": "gflops_per_s", "parity_agreement": "parity_agreement",
}


@dataclass
class ExportResult:
    tracking_uri: str
    experiment: str
    created: int
    updated: int
    unchanged: int


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise HarnessError("export mlflow needs the mlflow extra: "
                           "pip install 'harness[mlflow]' (mlflow-skinny)") from None
    return mlflow


def resolve_tracking_uri(uri: str | None) -> str:
    """The given URI, else MLFLOW_TRACKING_URI, else ./mlruns; local paths become file: URIs.

    MLflow 3 keeps its file store in maintenance mode behind MLFLOW_ALLOW_FILE_STORE; a local
    folder named here is taken as that choice (a database store needs the full mlflow package).
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
    if "://" not in uri and not uri.startswith("file:"):
        uri = Path(uri).resolve().as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def _ms(stamp: Any) -> int | None:
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp() * 1000)
    except ValueError:
        return None


def _digest(record: Record) -> str:
    return hashlib.sha256(record.model_dump_json().encode()).hexdigest()[:16]


def cell_params(record: Record) -> dict[str, str]:
    """Params of one cell: what was measured, and how (MLflow params are strings)."""
    params = {"model": record.model, "task": record.task, "method": record.method,
              "variant": record.variant or record.method, "provider": record.provider,
              "batch_size": record.batch_size, "seq_len": record.seq_len,
              "shape": f"{record.provider}/b{record.batch_size}/s{record.seq_len}",
              "machine": record.machine, "status": record.status,
              "metric_name": record.metric_name, "eval_split": record.eval_split}
    for method, values in record.method_params.items():
        params |= {f"method.{method}.{k}": v for k, v in values.items()}
    return {k: str(v)[:6000] for k, v in params.items() if v is not None}


def cell_metrics(record: Record, relative: dict[str, float]) -> dict[str, float]:
    """Numeric results of one cell; None and NaN are left out, speedup and size ratio added."""
    data = record.model_dump()
    values = {name: data.get(field) for field, name in METRICS.items()}
    values |= relative
    low, high, _ = metric_interval(data)  # points
    values |= {"metric_ci_low": low and low / 100, "metric_ci_high": high and high / 100}
    values["latency_ms_p50_ci_low"], values["latency_ms_p50_ci_high"] = latency_interval(data)
    if data.get("speedup") is not None:  # timed in the same rounds as the baseline
        values["speedup"] = data["speedup"]
    return {k: float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _relative(records: list[Record]) -> dict[str, dict[str, float]]:
    """record key -> speedup and size ratio against the baseline, from the leaderboard."""
    lb = leaderboard(records_frame(records))
    out: dict[str, dict[str, float]] = {}
    for row in lb.to_dict("records"):
        found = {k: row[k] for k in ("speedup", "size_ratio", "metric_delta")
                 if row.get(k) is not None and not pd.isna(row[k])}
        out[record_key({k: row[k] for k in CELL})] = found
    return out


class _Exporter:
    """The MLflow side: an experiment, the parent run, and the cells' runs already there."""

    def __init__(self, uri: str, experiment: str, run_id: str) -> None:
        mlflow = _mlflow()
        self.client = mlflow.tracking.MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (found.experiment_id if found
                              else self.client.create_experiment(experiment))
        self.run_id = run_id
        runs = self.client.search_runs([self.experiment_id],
                                       filter_string=f"tags.`{TAG_RUN}` = '{run_id}'",
                                       max_results=50_000)
        self.existing = {r.data.tags.get(TAG_CELL, ""): r for r in runs}

    def parent(self, name: str, tags: dict[str, str], params: dict[str, str],
               start: int | None, files: list[Path]) -> str:
        """The harness run's own MLflow run, made once; its artifacts refreshed on change."""
        old = self.existing.get(PARENT)
        if old is None:
            self.log(PARENT, name, tags, params, {}, start)
        elif old.data.tags.get(TAG_DIGEST) == tags[TAG_DIGEST]:
            return old.info.run_id
        run_id = self.existing[PARENT].info.run_id
        for path in files:
            self.client.log_artifact(run_id, str(path))
        self.client.set_tag(run_id, TAG_DIGEST, tags[TAG_DIGEST])
        return run_id

    def log(self, key: str, name: str, tags: dict[str, str], params: dict[str, str],
            metrics: dict[str, float], start: int | None, status: str = "FINISHED") -> str:
        """Create the run, or keep the one there when its digest matches; returns what it did."""
        from mlflow.entities import Metric, Param

        old = self.existing.get(key)
        if old is not None and old.data.tags.get(TAG_DIGEST) == tags[TAG_DIGEST]:
            return "unchanged"
        if old is not None:
            self.client.delete_run(old.info.run_id)
        tags = tags | {TAG_RUN: self.run_id, TAG_CELL: key, "mlflow.runName": name}
        run = self.client.create_run(self.experiment_id, start_time=start, tags=tags)
        self.client.log_batch(run.info.run_id,
                              metrics=[Metric(k, v, start or 0, 0) for k, v in metrics.items()],
                              params=[Param(k, v) for k, v in params.items()])
        self.client.set_terminated(run.info.run_id, status=status)
        self.existing[key] = self.client.get_run(run.info.run_id)
        return "updated" if old is not None else "created"


def export_run(run_dir: Path, *, tracking_uri: str | None = None,
               experiment: str | None = None) -> ExportResult:
    """Log every cell of a run directory to MLflow (see the module docstring)."""
    records = load_records(run_dir / RECORDS)
    manifest = read_manifest(run_dir)
    uri = resolve_tracking_uri(tracking_uri)
    name = experiment or manifest.get("suite") or "harness"
    exporter = _Exporter(uri, name, run_dir.name)
    git_sha = str(manifest.get("git_sha") or "")
    files = sorted(run_dir / a for a in ARTIFACTS if (run_dir / a).exists())
    parent_tags = {TAG_KIND: "run", "git_sha": git_sha,
                   TAG_DIGEST: hashlib.sha256(b"".join(
                       f.read_bytes() for f in [run_dir / RECORDS, *files])).hexdigest()[:16]}
    parent_params = {"suite": str(manifest.get("suite")), "machine": str(manifest.get("machine"))}
    parent = exporter.parent(f"harness run {run_dir.name}", parent_tags, parent_params,
                             _ms(manifest.get("started")), files)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    relative = _relative(records)
    for record in records:
        key = record_key(record.model_dump() | {"variant": record.variant or record.method})
        tags = {TAG_KIND: "cell", "git_sha": git_sha, TAG_DIGEST: _digest(record),
                "mlflow.parentRunId": parent, "harness.status": record.status}
        if record.error:
            tags["harness.error"] = record.error[:5000]
        status = "FAILED" if record.status == "failed" else "FINISHED"
        result = exporter.log(key, key.replace("|", " "), tags, cell_params(record),
                              cell_metrics(record, relative.get(key, {})),
                              _ms(record.created_at), status)
        counts[result] += 1
    log.info("mlflow: %s", counts)
    return ExportResult(uri, name, **counts)
