"""Suite files: plain YAML validated by pydantic models with `extra="forbid"`."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PositiveInt,
                      ValidationError)

from harness.errors import ConfigError, HarnessError


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
    from harness.tasks import canonical_task

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


@dataclass(frozen=True)
class Step:
    """One resolved method with validated parameters."""

    name: str
    params: BaseModel
    explicit: tuple[tuple[str, Any], ...]  # parameters the suite set, for labels

    @property
    def level(self) -> str:
        from harness.methods import METHODS

        return METHODS.get(self.name).level

    @property
    def label(self) -> str:
        if not self.explicit:
            return self.name
        args = ",".join(f"{k}={v}" for k, v in self.explicit)
        return f"{self.name}({args})"


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of steps; the empty pipeline is the baseline."""

    steps: tuple[Step, ...]

    @property
    def method(self) -> str:
        return "+".join(s.name for s in self.steps) or "baseline"

    @property
    def label(self) -> str:
        return "+".join(s.label for s in self.steps) or "baseline"

    @property
    def torch_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.level == "torch")

    @property
    def onnx_steps(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.level == "onnx")

    def params(self) -> dict[str, dict[str, Any]]:
        return {s.name: s.params.model_dump(mode="json") for s in self.steps}


def _split_entry(entry: RawStep | list[RawStep]) -> list[RawStep]:
    if isinstance(entry, list):
        return entry
    if isinstance(entry, str):
        return [] if entry.strip() == "baseline" else [p.strip() for p in entry.split("+")]
    return [entry]


def _is_list_field(params: type[BaseModel], key: str) -> bool:
    field = params.model_fields.get(key)
    return field is not None and get_origin(field.annotation) is list


def _expand_step(raw: RawStep, where: str) -> list[Step]:
    """Validate one step's params; a list value for a non-list field is a sweep."""
    from harness.methods import METHODS

    name, kwargs = (raw, {}) if isinstance(raw, str) else (raw.get("name"), dict(raw))
    kwargs.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a method step needs a 'name'")
    try:
        info = METHODS.get(name)
    except HarnessError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    swept = {k: v if isinstance(v, list) and not _is_list_field(info.params, k) else [v]
             for k, v in kwargs.items()}
    steps = []
    for combo in itertools.product(*swept.values()):
        chosen = dict(zip(swept, combo, strict=True))
        try:
            params = info.params(**chosen)
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, f"{where}.{name}")[0]) from None
        steps.append(Step(name, params, tuple(chosen.items())))
    return steps


def resolve_pipelines(suite: Suite) -> tuple[list[Pipeline], list[str]]:
    """Expand the suite's method entries into pipelines; returns (pipelines, problems)."""
    pipelines: list[Pipeline] = []
    problems: list[str] = []
    for i, entry in enumerate(suite.methods):
        where = f"methods.{i}"
        try:
            options = [_expand_step(raw, f"{where}.{j}") for j, raw in enumerate(_split_entry(entry))]
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        for steps in itertools.product(*options):
            levels = [s.level for s in steps]
            if "onnx" in levels and "torch" in levels[levels.index("onnx"):]:
                problems.append(f"{where}: torch-level steps must come before ONNX-level steps")
                break
            pipelines.append(Pipeline(tuple(steps)))
    labels = [p.label for p in pipelines]
    problems += [f"methods: pipeline '{lab}' appears twice" for lab in sorted(set(labels))
                 if labels.count(lab) > 1]
    return pipelines, problems


def _format_errors(exc: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        loc = ".".join(x for x in (prefix, loc) if x)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc or '<suite>'}: {msg}")
    return lines


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read suite file ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None


def check_suite(path: Path) -> tuple[Suite | None, list[Pipeline], list[str]]:
    """Load and resolve a suite; every problem is one line naming the field."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        return None, [], [f"{path}: a suite file must be a mapping"]
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        return None, [], [f"{path}: {line}" for line in _format_errors(exc)]
    pipelines, problems = resolve_pipelines(suite)
    from harness.models import check_model_name

    for i, name in enumerate(suite.models):
        problem = check_model_name(name)
        if problem:
            problems.append(f"models.{i}: {problem}")
    return suite, pipelines, [f"{path}: {p}" for p in problems]


def load_suite(path: Path) -> tuple[Suite, list[Pipeline]]:
    """Load a suite or raise one ConfigError listing every problem, one per line."""
    suite, pipelines, problems = check_suite(path)
    if problems or suite is None:
        raise ConfigError("\n".join(problems))
    return suite, pipelines
