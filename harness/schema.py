"""The suite file's schema: pure pydantic models with `extra="forbid"` (no registry, no torch)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt

from harness.errors import ConfigError
from harness.tasks.spec import canonical_task


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FinetuneSpec(Strict):
    """How each model is fine-tuned on each task (also used for recovery fine-tunes)."""

    epochs: float = Field(3.0, gt=0)
    lr: float = Field(5e-5, gt=0)
    batch_size: PositiveInt = 32
    max_seq_len: PositiveInt = 128
    seed: int = 42
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_train_samples: PositiveInt | None = None
    max_eval_samples: PositiveInt | None = None


class TimingSpec(Strict):
    """How every ONNX model is timed; all of it is recorded with each measurement."""

    # cpu, cuda: onnxruntime's execution providers; openvino: OpenVINO on the CPU (extra)
    providers: list[Literal["cpu", "cuda", "openvino"]] = ["cpu"]
    batch_sizes: list[PositiveInt] = [1]
    seq_lens: list[PositiveInt] = [128]
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
    seed: int = 0


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
    models: list[str] = Field(min_length=1)
    tasks: list[TaskName] = Field(min_length=1)
    methods: list[RawStep | list[RawStep]] = ["baseline"]
    finetune: FinetuneSpec = FinetuneSpec()
    timing: TimingSpec = TimingSpec()
    executor: Literal["local", "ray"] = "local"
    ray: RaySpec = RaySpec()
