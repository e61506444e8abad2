"""The record contract: one measured cell per line of records.jsonl."""
from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from harness.clock import now
from harness.errors import SchemaError

SCHEMA_VERSION = 5
BASELINE = "baseline"  # the variant (and method) name of a pipeline without steps
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
    # per-example dev predictions (.npy) for paired tests, relative to the results directory
    predictions_path: str | None = None
    eval_digest: str | None = None  # content of the dev examples evaluated (paired tests)
    # uncertainty of the main metric (harness.significance): 95% seeded bootstrap over dev
    # examples; for a method, the paired test of its delta against the same model and task's
    # baseline and whether it survives Benjamini-Hochberg over the run's (model, task, variant)s
    metric_ci_low: float | None = None
    metric_ci_high: float | None = None
    delta_p_value: float | None = None
    delta_test: str | None = None  # 'mcnemar-exact' or 'permutation'
    delta_significant: bool | None = None
    train_precision: str | None = None  # 'bf16' (autocast) or 'fp32': how fine-tunes ran
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
    others_load: float | None = None  # share of the CPU other processes used while timing
    peak_rss_mb: float | None = None
    gpu_mem_mb: float | None = None
    latency_round_cv: float | None = None  # cv of the per-round p50s
    # speedup over the baseline timed in the same rounds: geometric mean of the per-round
    # p50 ratios (baseline / this) and its 95% interval over rounds
    speedup: float | None = None
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
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
    samples_ms: list[float] = []  # raw, in the order taken: round after round
    round_sizes: list[int] = []  # samples in each round (empty: one round, before v3)
    round_order: list[list[str]] = []  # the variants of the group in the order each round ran
    env: dict[str, Any] = {}
    machine: str | None = None  # machine fingerprint
    node: str | None = None
    created_at: str = Field(default_factory=now)
    # the traceback of a failure, for the run's run.log; not stored in records.jsonl
    _trace: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _rounds_cover_samples(self) -> Record:
        if self.round_sizes and sum(self.round_sizes) != len(self.samples_ms):
            raise ValueError(f"round_sizes add up to {sum(self.round_sizes)}, not the "
                             f"{len(self.samples_ms)} samples")
        return self

    @property
    def rounds_ms(self) -> list[list[float]]:
        """The raw samples split into their rounds."""
        return split_rounds(self.samples_ms, self.round_sizes)

    @property
    def key(self) -> tuple[str, str, str, str, int, int]:
        return cell_key(self.model, self.task, self.variant or self.method, self.provider,
                        self.batch_size, self.seq_len)


def cell_key(model: str, task: str, variant: str, provider: str, batch: int, seq: int
             ) -> tuple[str, str, str, str, int, int]:
    return (model, task, variant, provider, int(batch), int(seq))


def split_rounds(samples_ms: Sequence[float], sizes: Sequence[int]) -> list[list[float]]:
    """Per-round samples from the flat list and the round sizes a record stores
    (no sizes: one round, as records before interleaving)."""
    if not sizes:
        return [list(samples_ms)] if len(samples_ms) else []
    if sum(sizes) != len(samples_ms):
        raise ValueError(f"round sizes add up to {sum(sizes)}, not {len(samples_ms)} samples")
    bounds = list(accumulate(sizes, initial=0))
    return [list(samples_ms[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 called the raw samples `samples` and had no variant."""
    data = dict(data)
    if "samples" in data:
        data["samples_ms"] = data.pop("samples")
    data.setdefault("variant", data.get("method", ""))
    data["schema_version"] = 2
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v2 stored predictions_path as an absolute path into <results>/cache."""
    data = dict(data)
    stored = data.get("predictions_path")
    if stored and Path(stored).is_absolute() and "cache" in Path(stored).parts:
        parts = Path(stored).parts
        at = len(parts) - 1 - parts[::-1].index("cache")
        data["predictions_path"] = str(PurePosixPath(*parts[at:]))
    data["schema_version"] = 3
    return data


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """v3 timed each variant alone: one round, no paired speedup (the new fields stay empty)."""
    return dict(data) | {"schema_version": 4}


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """v4 evaluated every row with onnxruntime's CPU provider and timed graphs as they were."""
    data = dict(data)
    if data.get("metric_value") is not None:
        data.setdefault("metric_provider", "cpu")
    if data.get("status") == "ok":
        data.setdefault("precision", "fp32")
    data["schema_version"] = 5
    return data


MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def resolve_stored_path(stored: str | None, results_dir: Path) -> Path | None:
    """A path stored in a record (relative to the results directory) as a usable path."""
    if not stored:
        return None
    path = Path(stored)
    return path if path.is_absolute() else results_dir / path


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


def parse_record(data: Any, where: str = "record") -> Record:
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: a record must be a JSON object")
    return Record.model_validate(migrate(data, where))
