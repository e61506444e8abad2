"""The suite file's schema: pure pydantic models with `extra="forbid"` (no registry, no torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from harness.errors import ConfigError
from harness.tasks.spec import canonical_task


class Strict(BaseModel):
    """Unknown keys, and infinite or NaN numbers, are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _unique(values: list[Any]) -> list[Any]:
    for v in values:
        if values.count(v) > 1:
            raise ValueError(f"{v!r} appears twice" if isinstance(v, str) else f"{v} appears twice")
    return values


Unique = AfterValidator(_unique)


class FinetuneSpec(Strict):
    """How each model is fine-tuned on each task (also used for recovery fine-tunes)."""

    epochs: float = Field(3.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    batch_size: PositiveInt = 32
    max_seq_len: PositiveInt = 128
    seed: int = Field(42, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None
    # auto: bf16 autocast where the CPU/GPU computes bf16 natively, else fp32
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    group_by_length: bool = False  # batches of similar lengths (less padding trained)
    # classification head on [CLS] through BERT's pooler, on the mean of the token states, or
    # (pair) on [u, v, |u-v|, u*v] of each sentence's mean (harness.models.pooling)
    pooling: Literal["cls", "mean", "pair"] = "cls"
    # where dropout masks come from when training on the CPU: numpy's generator
    # (harness.nn.NumpyDropout: same semantics, several times faster) or torch's own (the
    # stream of numbers trained before 2026-11-27); on CUDA always torch's
    dropout_rng: Literal["numpy", "torch"] = "numpy"
    # the dropout rate of every dropout while training (hidden states, attention probabilities,
    # the head); None keeps the checkpoint's (0.1 for the packaged MiniLMs); 0 draws no masks
    dropout: float | None = Field(None, ge=0, lt=1)


class TimingSpec(Strict):
    """How every ONNX model is timed; all of it is recorded with each measurement."""

    # cpu, cuda: onnxruntime's execution providers; openvino: OpenVINO on the CPU (extra)
    providers: Annotated[list[Literal["cpu", "cuda", "openvino"]], Field(min_length=1),
                         Unique] = ["cpu"]
    batch_sizes: Annotated[list[PositiveInt], Field(min_length=1), Unique] = [1]
    seq_lens: Annotated[list[PositiveInt], Field(min_length=1), Unique] = [128]
    warmup: int = Field(5, ge=0)
    min_iterations: PositiveInt = 20
    min_seconds: float = Field(1.0, ge=0)
    max_seconds: float = Field(60.0, gt=0)
    intra_op_threads: int | None = Field(None, ge=0)  # also OpenVINO's INFERENCE_NUM_THREADS
    inter_op_threads: int | None = Field(None, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    optimize_fp32: bool = True  # transformer fusions for every fp32 export (fair baseline)
    unstable_cv: float = Field(0.10, gt=0)  # coefficient of variation above which a row is flagged
    unstable_load: float = Field(0.5, gt=0)  # extra load (per core) above which a row is flagged
    # interleaved rounds: every variant of a (model, task, shape) group is timed in each round,
    # for its slice (1/rounds) of min_iterations, min_seconds and max_seconds
    rounds: PositiveInt = 5
    round_order: Literal["rotate", "shuffle"] = "rotate"  # shuffle: seeded with `seed`
    # within a round the variants take turns of this many seconds (one untimed run, then timed
    # runs until it has passed; at least one), in a fresh seeded order each cycle, until each
    # has its slice; a variant whose run lasts 4 turns takes its slice at once (batch 32);
    # None: every variant's whole slice at once (before the thirteenth session)
    turn_seconds: float | None = Field(0.025, gt=0)
    unstable_round_cv: float = Field(0.05, gt=0)  # spread of the per-round p50s that flags a row
    allow_spinning: bool = True  # onnxruntime's intra-op threads spin while waiting for work
    # onnxruntime's `session.force_spinning_stop`: a session's threads stop spinning when its
    # run returns, so they do not hold the cores while the next variant of a group runs
    # (docs/timing.md, "Stale spinning between sessions")
    stop_spinning_after_run: bool = True
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _seconds(self) -> TimingSpec:
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds}) must not exceed max_seconds "
                             f"({self.max_seconds})")
        return self


class RaySpec(Strict):
    """Resources of each stage when the suite runs on a Ray cluster."""

    address: str | None = None  # None: RAY_ADDRESS, else a local instance
    train_cpus: float = Field(1.0, gt=0)  # fine-tune, compress, export, evaluate
    train_gpus: float = Field(0.0, ge=0)
    timing_gpus: float = Field(0.0, ge=0)  # give CUDA timing a GPU
    # CPU timing takes this custom resource (start each node with `--resources
    # '{"harness_timing": 1}'`) so nothing else runs beside it; when no node has it, a timing
    # stage asks for every CPU of the largest node instead.
    timing_resource: str = "harness_timing"
    max_retries: int = Field(1, ge=0)  # a stage whose worker dies is retried this often


RawStep = str | dict[str, Any]


def _canonical_task(name: str) -> str:
    try:
        return canonical_task(name)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


TaskName = Annotated[str, AfterValidator(_canonical_task)]


class Suite(Strict):
    """A suite file: the matrix of models x tasks x method pipelines to measure."""

    name: str
    description: str = ""
    data_dir: Path | None = None
    data_source: Literal["auto", "local", "hub"] = "auto"
    models: Annotated[list[str], Field(min_length=1), Unique]
    tasks: list[TaskName] = Field(min_length=1)
    methods: list[RawStep | list[RawStep]] = Field(["baseline"], min_length=1)
    finetune: FinetuneSpec = FinetuneSpec()
    timing: TimingSpec = TimingSpec()
    executor: Literal["local", "ray"] = "local"
    ray: RaySpec = RaySpec()
    max_cells: PositiveInt = 1000  # models x tasks x pipelines above this are refused

    @field_validator("tasks", mode="wrap")
    @classmethod
    def _unique_tasks(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> list[str]:
        tasks = handler(value)
        for task in tasks:
            if tasks.count(task) > 1:
                raw = [str(v) for v, t in zip(value, tasks, strict=True) if t == task]
                raise ValueError(f"'{task}' appears twice (as {', '.join(raw)})")
        return tasks
