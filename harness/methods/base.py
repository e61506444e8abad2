"""Method contract: a decorated factory taking a pydantic params model, returning a step."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from harness.errors import DataMissing
from harness.registry import Registry, load_object

if TYPE_CHECKING:
    from harness.schema import FinetuneSpec
    from harness.tasks import TaskData, TaskSpec

Level = Literal["torch", "onnx"]


class MethodParams(BaseModel):
    """Base for every method's parameters: unknown keys and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def suite_problems(self, models: Sequence[str]) -> dict[str, str]:
        """Problems with the suite around the step ({parameter: problem}); none by default."""
        return {}


@dataclass
class MethodContext:
    """What a step may use besides the model it transforms."""

    task: TaskSpec
    finetune: FinetuneSpec
    workdir: Path
    tokenizer: Any = None
    load_train: Callable[[], TaskData] | None = None
    teacher: Any = None  # the fine-tuned baseline (torch model) of the same model and task
    load_model: Callable[[str], Any] | None = None  # fine-tuned baseline of another suite model
    notes: list[str] = field(default_factory=list)  # said in the record
    model: str = ""  # the cell's suite model (its name, e.g. minilm-l6)

    def train_data(self) -> TaskData:
        if self.load_train is None:
            raise DataMissing(f"{self.task.name}: no training data available for this method")
        return self.load_train()


class TorchStep(Protocol):
    def apply(self, model: Any, ctx: MethodContext) -> Any: ...


class OnnxStep(Protocol):
    def apply(self, onnx_path: Path, out_dir: Path, ctx: MethodContext) -> Path: ...


Factory = Callable[[Any], "TorchStep | OnnxStep"]


@dataclass(frozen=True)
class MethodInfo:
    """A registered method: its level, parameter model and factory.

    `target` is the factory itself (plugins, via `@method`) or a "module:function" string that
    is imported on first use, so listing and validating built-in methods imports no torch.
    """

    name: str
    level: Level
    params: type[MethodParams]
    target: Factory | str
    summary: str
    version: str = "1"  # bump when the method's output changes, so cached artifacts are rebuilt

    @property
    def module(self) -> str:
        """The module whose code makes this method's output (part of its cache key)."""
        return self.target.split(":")[0] if isinstance(self.target, str) else self.target.__module__

    @property
    def factory(self) -> Factory:
        return load_object(self.target) if isinstance(self.target, str) else self.target


METHODS: Registry[MethodInfo] = Registry("method", entry_point_group="harness.methods")


class NoParams(MethodParams):
    pass


def method(
    name: str, *, level: Level, params: type[MethodParams] = NoParams, version: str = "1"
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Register a compression method (the plugin API): `@method("x", level="onnx", params=P)`."""

    def deco(factory: Callable[[Any], Any]) -> Callable[[Any], Any]:
        summary = (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else ""
        METHODS.add(name, MethodInfo(name, level, params, factory, summary, version))
        return factory

    return deco


def lazy_method(name: str, target: str, *, level: Level, params: type[MethodParams],
                summary: str, version: str = "1") -> None:
    """Register a method whose factory ("module:function") is imported on first use."""
    METHODS.add(name, MethodInfo(name, level, params, target, summary, version))
