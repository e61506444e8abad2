"""The cached stages of one cell: fine-tune -> torch steps -> export -> ONNX steps -> evaluate.

Each stage is a function of a `StageContext` in its own module, declared with the code that
makes its output (`keys.Stage`); `Stages` chains them for a cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cache import ArtifactCache
from harness.records import resolve_stored_path
from harness.stages.artifacts import load_tokenizer, zipped_size
from harness.stages.compress import onnx_steps, torch_steps
from harness.stages.context import StageContext
from harness.stages.data import SuiteData
from harness.stages.evaluate import evaluated
from harness.stages.export import exported
from harness.stages.finetune import finetuned
from harness.stages.flops import flops
from harness.tasks import TaskData, get_task

if TYPE_CHECKING:
    from harness.plan import Cell
    from harness.schema import Suite


@dataclass
class Built:
    """What the stages produced for a cell, ready for timing (picklable, for executors)."""

    onnx_path: Path
    tokenizer_dir: Path
    key: str
    info: dict[str, Any]  # record fields: metrics, parity, sizes, notes

    def tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_dir)


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
        """The cell's fine-tune and torch steps (the Ray executor runs them as shared stages)."""
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
        info |= evaluated(self.ctx, cell, onnx_path, key, load_tokenizer(export_dir))
        info |= {"onnx_bytes": onnx_path.stat().st_size, "onnx_zip_bytes": zipped_size(onnx_path),
                 "notes": notes, "artifact_key": key}
        spec = get_task(cell.task)
        info["metric_name"] = spec.main_metric
        info["metric_value"] = info.get(spec.main_metric)
        ft_info = self.cache.info(self.finetuned(cell.model, cell.task)[0])
        info["train_precision"] = ft_info.get("train_precision", "fp32")
        info |= self._uncertainty(cell, info)
        return Built(onnx_path, export_dir, key, info)

    def _uncertainty(self, cell: Cell, info: dict[str, Any]) -> dict[str, Any]:
        """The main metric's 95% bootstrap interval and, for a method, the paired test of its
        delta against the baseline of the same model and task on the same dev examples."""
        import numpy as np

        from harness.plan import Cell, Pipeline
        from harness.significance import bootstrap_ci, paired_test

        metric = get_task(cell.task).main_metric
        results_dir = self.cache.root.parent  # record paths are relative to it
        preds_path = resolve_stored_path(info["predictions_path"], results_dir)
        preds = np.load(preds_path)
        labels = np.load(preds_path.with_name("labels_dev.npy"))
        low, high = bootstrap_ci(preds, labels, metric)
        out: dict[str, Any] = {"metric_ci_low": low, "metric_ci_high": high}
        if cell.pipeline.steps:
            base = self.build(Cell(cell.model, cell.task, Pipeline(())))
            base_preds = resolve_stored_path(base.info["predictions_path"], results_dir)
            test = paired_test(preds, np.load(base_preds), labels, metric)
            out |= {"delta_p_value": test.p_value, "delta_test": test.test}
        return out


__all__ = ["Built", "Stages", "StageContext"]
