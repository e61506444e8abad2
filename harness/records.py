"""The record contract: one measured cell per line of records.jsonl."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.clock import now
from harness.errors import SchemaError

SCHEMA_VERSION = 3
METRIC_FIELDS = ("accuracy", "f1", "matthews_correlation", "pearson", "spearmanr")
Status = Literal["ok", "failed", "skipped"]


class Record(BaseModel):
    """One (model, task, method pipeline, provider, batch size, sequence length) measurement."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    model: str
    task: str
    method: str  # pipeline of method names, 'baseline' for the empty one
    variant: str = ""  # the pipeline with the parameters the suite set, e.g. prune(sparsity=0.8)
    method_params: dict[str, dict[str, Any]] = {}
    provider: str
    batch_size: int
    seq_len: int
    status: Literal["ok", "failed", "skipped"]
    error: str | None = None
    stage: str | None = None  # the stage that failed or skipped
    notes: list[str] = []
    precision: str | None = None  # what the timed runtime computed in: fp32, bf16, fp16
    # task metrics (dev set, the ONNX model run by `metric_provider`)
    metric_provider: str | None = None  # the runtime of the metric: cpu (onnxruntime), openvino
    metric_name: str | None = None
    metric_value: float | None = None
    accuracy: float | None = None
    f1: float | None = None
    matthews_correlation: float | None = None
    pearson: float | None = None
    spearmanr: float | None = None
    eval_split: str | None = None
    n_eval: int | None = None
    accuracy_mismatched: float | None = None  # MNLI's second dev set
    predictions_path: str | None = None  # per-example dev predictions (.npy), for paired tests
    # export parity (PyTorch vs ONNX on dev examples)
    parity_agreement: float | None = None
    parity_max_abs_diff: float | None = None
    # latency
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p95: float | None = None
    latency_ms_p99: float | None = None
    latency_ms_mean: float | None = None
    latency_ms_min: float | None = None
    latency_ms_stdev: float | None = None
    latency_ms_iqr: float | None = None
    latency_ms_mad: float | None = None
    latency_cv: float | None = None
    n_timed: int | None = None
    throughput_per_s: float | None = None
    unstable: bool | None = None
    unstable_reason: str | None = None
    load_avg: float | None = None
    peak_rss_mb: float | None = None
    gpu_mem_mb: float | None = None
    flops: float | None = None
    gflops_per_s: float | None = None
    efficiency: float | None = None
    # size
    params: int | None = None
    nonzero_params: int | None = None
    onnx_bytes: int | None = None
    onnx_zip_bytes: int | None = None
    # provenance
    session: dict[str, Any] = {}
    artifact_key: str | None = None
    samples_ms: list[float] = []
    env: dict[str, Any] = {}
    machine: str | None = None  # machine fingerprint
    node: str | None = None
    created_at: str = Field(default_factory=now)

    @property
    def key(self) -> tuple[str, str, str, str, int, int]:
        return cell_key(self.model, self.task, self.variant or self.method, self.provider,
                        self.batch_size, self.seq_len)


def cell_key(model: str, task: str, variant: str, provider: str, batch: int, seq: int
             ) -> tuple[str, str, str, str, int, int]:
    return (model, task, variant, provider, int(batch), int(seq))


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 called the raw samples `samples` and had no variant."""
    data = dict(data)
    if "samples" in data:
        data["samples_ms"] = data.pop("samples")
    data.setdefault("variant", data.get("method", ""))
    data["schema_version"] = 2
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 evaluated every row with onnxruntime's CPU provider and timed graphs as they were."""
    data = dict(data)
    if data.get("metric_value") is not None:
        data.setdefault("metric_provider", "cpu")
    if data.get("status") == "ok":
        data.setdefault("precision", "fp32")
    data["schema_version"] = 3
    return data


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(data: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """Bring a stored record up to SCHEMA_VERSION; refuse versions from the future."""
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise SchemaError(f"{where}: no integer schema_version")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"{where}: schema_version {version} is newer than this harness "
                          f"reads ({SCHEMA_VERSION}); upgrade harness")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise SchemaError(f"{where}: schema_version {version} cannot be migrated")
        data = MIGRATIONS[version](data)
        version = data["schema_version"]
    return data


def parse_record(data: dict[str, Any], where: str = "record") -> Record:
    return Record.model_validate(migrate(data, where))
