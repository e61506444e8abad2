"""Suite file -> validated plan: method steps, pipelines and the cells of the matrix."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError, HarnessError
from harness.methods.catalog import METHODS
from harness.models import check_model_name
from harness.schema import RawStep, Suite


@dataclass(frozen=True)
class Step:
    """One resolved method with validated parameters."""

    name: str
    params: BaseModel
    explicit: tuple[tuple[str, Any], ...]  # parameters the suite set, for labels
    level: str = "torch"  # "torch" or "onnx", resolved from the registry when planned

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
        steps.append(Step(name, params, tuple(chosen.items()), info.level))
    return steps


@dataclass(frozen=True)
class Cell:
    """One (model, task, method pipeline) of the suite's matrix."""

    model: str
    task: str
    pipeline: Pipeline

    @property
    def label(self) -> str:
        return f"{self.model} {self.task} {self.pipeline.label}"


def plan(suite: Suite, pipelines: list[Pipeline]) -> list[Cell]:
    """Every cell of the matrix, models outermost."""
    return [Cell(m, t, p) for m in suite.models for t in suite.tasks for p in pipelines]


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
