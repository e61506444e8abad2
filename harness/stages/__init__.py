"""The cached stages of one cell: fine-tune -> torch steps -> export -> ONNX steps -> evaluate.

Each stage is a function of a `StageContext` in its own module, declared with the code that
makes its output (`keys.Stage`); `Stages` chains them for a cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cache import ArtifactCache
from harness.stages.artifacts import load_tokenizer, zipped_size
from harness.stages.compress import onnx_steps, torch_steps
from harness.stages.context import StageContext
from harness.stages.data import SuiteData
from harness.stages.evaluate import evaluations
from harness.stages.export import exported
from harness.stages.finetune import finetuned
from harness.stages.flops import flops
from harness.tasks import TaskData

if TYPE_CHECKING:
    from harness.plan import Cell
    from harness.schema import Suite


@dataclass
class Built:
    """What the stages produced for a cell, ready for timing (picklable, for executors)."""

    onnx_path: Path
    tokenizer_dir: Path
    key: str
    info: dict[str, Any]  # record fields shared by every provider: parity, sizes, notes
    # per provider: its dev metrics as record fields, or {"status", "error"} when there are none
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_dir)

    def fields(self, provider: str) -> dict[str, Any]:
        """Record fields of this provider's rows (metrics from its own runtime)."""
        metrics = self.metrics.get(provider, {})
        return self.info | {k: v for k, v in metrics.items() if k not in ("status", "error")}

    def unavailable(self, provider: str) -> tuple[str, str] | None:
        """(status, reason) when this provider's rows have no metric, else None."""
        metrics = self.metrics.get(provider, {})
        return (metrics["status"], metrics["error"]) if "status" in metrics else None


class Stages:
    """The stages of one run, sharing its suite, artifact cache and loaded data."""

    def __init__(self, suite: Suite, cache: ArtifactCache, data_dir: Path | None) -> None:
        self.ctx = StageContext(suite, cache, SuiteData(suite, data_dir))

    @property
    def cache(self) -> ArtifactCache:
        return self.ctx.cache

    def split(self, task: str, split: str) -> TaskData:
        return self.ctx.data.split(task, split)

    def finetuned(self, model: str, task: str) -> tuple[Path, str]:
        return finetuned(self.ctx, model, task)

    def torch_steps(self, cell: Cell, notes: list[str]) -> tuple[Path, str]:
        return torch_steps(self.ctx, cell, notes)

    def exported(self, cell: Cell, torch_dir: Path, torch_key: str) -> tuple[Path, str]:
        return exported(self.ctx, cell, torch_dir, torch_key)

    def flops(self, built: Built, batch: int, seq: int) -> Any:
        return flops(self.ctx, built, batch, seq)

    def build(self, cell: Cell) -> Built:
        """Run (or fetch from the cache) every stage of a cell up to evaluation."""
        notes: list[str] = []
        torch_dir, key = torch_steps(self.ctx, cell, notes)
        export_dir, key = exported(self.ctx, cell, torch_dir, key)
        info = dict(self.cache.info(export_dir))
        info.pop("fp32_optimization", None)
        onnx_path, key = onnx_steps(self.ctx, cell, export_dir, key, notes)
        info |= {"onnx_bytes": onnx_path.stat().st_size, "onnx_zip_bytes": zipped_size(onnx_path),
                 "notes": notes, "artifact_key": key}
        metrics = evaluations(self.ctx, cell, onnx_path, key, load_tokenizer(export_dir))
        return Built(onnx_path, export_dir, key, info, metrics)


__all__ = ["Built", "Stages", "StageContext"]
