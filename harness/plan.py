"""Suite file -> validated plan: method steps, pipelines and the cells of the matrix."""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError, HarnessError
from harness.methods.catalog import METHODS
from harness.models import check_model_name
from harness.records import BASELINE
from harness.schema import RawStep, Suite


@dataclass(frozen=True)
class Step:
    """One resolved method with validated parameters."""

    name: str
    params: BaseModel
    explicit: tuple[tuple[str, Any], ...]  # parameters the suite set, for labels
    level: str = "torch"  # "torch" or "onnx", resolved from the registry when planned

    def __hash__(self) -> int:  # list-valued parameters (layers: [0, 2]) are not hashable
        return hash((self.name, self.level, self.params.model_dump_json()))

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
        return "+".join(s.name for s in self.steps) or BASELINE

    @property
    def label(self) -> str:
        return "+".join(s.label for s in self.steps) or BASELINE

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
        return [] if entry.strip() == BASELINE else [p.strip() for p in entry.split("+")]
    return [entry]


def _takes_list(annotation: Any) -> bool:
    """True when a parameter's type accepts a list (`list[int]`, `list[str] | None`)."""
    origin = get_origin(annotation)
    if origin is list:
        return True
    return origin in (Union, UnionType) and any(_takes_list(a) for a in get_args(annotation))


@dataclass(frozen=True)
class RawSweep:
    """One step entry before validation: fixed parameters and swept ones (name -> values).

    A list is a sweep when the parameter does not take a list (`sparsity: [0.5, 0.8]`);
    `sweep: {layers: [[0, 2], [1, 3]]}` sweeps any parameter, list-valued ones included.
    """

    name: str
    fixed: dict[str, Any]
    swept: dict[str, list[Any]]

    @property
    def count(self) -> int:
        return math.prod(len(v) for v in self.swept.values())


def _parse_step(raw: RawStep, where: str) -> RawSweep:
    name, kwargs = (raw, {}) if isinstance(raw, str) else (raw.get("name"), dict(raw))
    kwargs.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a method step needs a 'name'")
    try:
        params = METHODS.get(name).params
    except HarnessError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    explicit = kwargs.pop("sweep", {})
    if not isinstance(explicit, dict):
        raise ConfigError(f"{where}.sweep: a mapping of parameter to a list of values, e.g. "
                          "sweep: {layers: [[0, 2], [1, 3]]}")
    for key, values in explicit.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.sweep.{key}: a list of values to sweep")
        if key in kwargs:
            raise ConfigError(f"{where}.sweep.{key}: also set outside sweep")
    fixed, swept = {}, {}
    for key, value in kwargs.items():
        field = params.model_fields.get(key)
        takes_list = field is not None and _takes_list(field.annotation)
        if isinstance(value, list) and not takes_list:
            swept[key] = value
        else:
            fixed[key] = value
    return RawSweep(name, fixed, swept | explicit)


def _expand_step(raw: RawSweep, where: str) -> list[Step]:
    """Validate the parameters of every combination of the step's swept values."""
    info = METHODS.get(raw.name)
    steps = []
    for combo in itertools.product(*raw.swept.values()):
        chosen = raw.fixed | dict(zip(raw.swept, combo, strict=True))
        try:
            params = info.params(**chosen)
        except ValidationError as exc:
            raise ConfigError(_format_errors(exc, f"{where}.{raw.name}")[0]) from None
        steps.append(Step(raw.name, params, tuple(chosen.items()), info.level))
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
    """Expand the suite's method entries into pipelines; returns (pipelines, problems).

    The pipelines are counted before any is made: a suite over `max_cells` is refused.
    """
    parsed: list[tuple[str, list[RawSweep]]] = []
    problems: list[str] = []
    for i, entry in enumerate(suite.methods):
        where = f"methods.{i}"
        try:
            parsed.append((where, [_parse_step(raw, f"{where}.{j}")
                                   for j, raw in enumerate(_split_entry(entry))]))
        except ConfigError as exc:
            problems.append(str(exc))
    n = sum(math.prod(step.count for step in steps) for _, steps in parsed)
    cells = len(suite.models) * len(suite.tasks) * n
    if cells > suite.max_cells:
        return [], problems + [
            f"methods: {cells} cells ({len(suite.models)} models x {len(suite.tasks)} tasks x "
            f"{n} pipelines) is more than max_cells ({suite.max_cells}); raise max_cells to "
            "run them"]
    pipelines: list[Pipeline] = []
    for where, steps in parsed:
        try:
            options = [_expand_step(raw, f"{where}.{j}") for j, raw in enumerate(steps)]
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        problems += _suite_problems(options, suite, where)
        for combo in itertools.product(*options):
            levels = [s.level for s in combo]
            if "onnx" in levels and "torch" in levels[levels.index("onnx"):]:
                problems.append(f"{where}: torch-level steps must come before ONNX-level steps")
                break
            pipelines.append(Pipeline(tuple(combo)))
    labels = [p.label for p in pipelines]
    problems += [f"methods: pipeline '{lab}' appears twice" for lab in sorted(set(labels))
                 if labels.count(lab) > 1]
    return pipelines, problems


def _suite_problems(options: list[list[Step]], suite: Suite, where: str) -> list[str]:
    """What each step's parameters say about the rest of the suite (e.g. a distill student)."""
    found = {f"{where}.{j}.{step.name}.{key}: {problem}"
             for j, steps in enumerate(options) for step in steps
             for key, problem in step.params.suite_problems(suite.models).items()}
    return sorted(found)


def _length_problems(suite: Suite) -> list[str]:
    """Sequence lengths longer than a model's position table."""
    from harness.models import max_positions

    problems = []
    for name in suite.models:
        limit = max_positions(name)
        if limit is None:
            continue
        asked = [("finetune.max_seq_len", suite.finetune.max_seq_len)]
        asked += [("timing.seq_lens", n) for n in suite.timing.seq_lens]
        problems += [f"{where}: {n} is longer than model '{name}' takes ({limit} positions)"
                     for where, n in asked if n > limit]
    return problems


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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the suite as UTF-8"
                          ) from None
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
    if not any(p.startswith("models.") for p in problems):
        problems += _length_problems(suite)
    return suite, pipelines, [f"{path}: {p}" for p in problems]


def load_suite(path: Path) -> tuple[Suite, list[Pipeline]]:
    """Load a suite or raise one ConfigError listing every problem, one per line."""
    suite, pipelines, problems = check_suite(path)
    if problems or suite is None:
        raise ConfigError("\n".join(problems))
    return suite, pipelines
