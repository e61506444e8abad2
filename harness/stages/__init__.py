"""The cached stages of one cell: fine-tune -> torch steps -> export -> ONNX steps -> evaluate.

Each stage is a function of a `StageContext` in its own module, declared with the code that
makes its output (`keys.Stage`); `Stages` chains them for a cell.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cache import ArtifactCache
from harness.records import resolve_stored_path
from harness.stages.artifacts import load_tokenizer, zipped_size
from harness.stages.compress import onnx_steps, torch_steps
from harness.stages.context import StageContext
from harness.stages.data import SuiteData
from harness.stages.evaluate import evaluations
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
    info: dict[str, Any]  # record fields shared by every provider: parity, sizes, notes
    # per provider: its dev metrics as record fields, or {"status", "error"} when there are none
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def tokenizer(self) -> Any:
        return load_tokenizer(self.tokenizer_dir)

    def fields(self, provider: str) -> dict[str, Any]:
        """Record fields of this provider's rows (metrics from its own runtime)."""
        metrics = self.metrics.get(provider, {})
        return self.info | {k: v for k, v in metrics.items()
                            if k not in ("status", "error", "trace")}

    def unavailable(self, provider: str) -> tuple[str, str, str | None] | None:
        """(status, reason, traceback) when this provider's rows have no metric, else None."""
        metrics = self.metrics.get(provider, {})
        if "status" not in metrics:
            return None
        return metrics["status"], metrics["error"], metrics.get("trace")

    def on_runtime(self, runtime: str) -> dict[str, Any] | None:
        """The metrics measured on `runtime` (a record's metric_provider), if any."""
        return next((m for m in self.metrics.values()
                     if "status" not in m and m.get("metric_provider") == runtime), None)


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
        """Run (or fetch from the cache) every stage of a cell up to evaluation, once per run:
        a method's paired test asks again for its baseline."""
        if ("build", cell) not in self.ctx.resolved:
            self.ctx.resolved["build", cell] = self._build(cell)
        return self.ctx.resolved["build", cell]

    def _build(self, cell: Cell) -> Built:
        notes: list[str] = []
        torch_dir, key = torch_steps(self.ctx, cell, notes)
        export_dir, key = exported(self.ctx, cell, torch_dir, key)
        info = dict(self.cache.info(export_dir))
        info.pop("fp32_optimization", None)
        onnx_path, key = onnx_steps(self.ctx, cell, export_dir, key, notes)
        info |= {"onnx_bytes": onnx_path.stat().st_size,
                 "onnx_zip_bytes": self._zip_bytes(cell, onnx_path, key),
                 "notes": notes, "artifact_key": key}
        ft_info = self.cache.info(self.finetuned(cell.model, cell.task)[0])
        info["train_precision"] = ft_info.get("train_precision", "fp32")
        metrics = evaluations(self.ctx, cell, onnx_path, key, load_tokenizer(export_dir))
        return Built(onnx_path, export_dir, key, info, self._with_uncertainty(cell, metrics))

    def _zip_bytes(self, cell: Cell, onnx_path: Path, key: str) -> int:
        """The ONNX file's zlib size, computed once per artifact and kept in the cache: it took
        ~2 s a 90 MB file, a quarter of a warm quick rerun."""
        def build(out: Path) -> dict[str, Any]:
            return {"onnx_zip_bytes": zipped_size(onnx_path)}

        path, _ = self.cache.get_or_build("zipsize", f"{key}.{onnx_path.stem}", build,
                                          f"{cell.label} {onnx_path.name}")
        return int(self.cache.info(path)["onnx_zip_bytes"])

    def _with_uncertainty(self, cell: Cell, metrics: dict[str, dict[str, Any]]
                          ) -> dict[str, dict[str, Any]]:
        """Each provider's metrics with `_uncertainty`, computed once per runtime (a provider
        whose metric falls back to another runtime shares that runtime's)."""
        from harness.plan import Cell, Pipeline

        base = None
        if cell.pipeline.steps:  # a method: its deltas are tested against the baseline's
            base = self.build(Cell(cell.model, cell.task, Pipeline(())))
        per_runtime: dict[str, dict[str, Any]] = {}
        out = {}
        for provider, got in metrics.items():
            if "status" in got:  # no metric on this provider
                out[provider] = got
                continue
            runtime = got["metric_provider"]
            if runtime not in per_runtime:
                per_runtime[runtime] = self._uncertainty(cell, got, base)
            out[provider] = got | per_runtime[runtime]
        return out

    def _uncertainty(self, cell: Cell, info: dict[str, Any], base: Built | None
                     ) -> dict[str, Any]:
        """The main metric's 95% bootstrap interval and, for a method, the paired test of its
        delta against the baseline (`base`) of the same model and task on the same dev
        examples, run on the same runtime."""
        import numpy as np

        from harness.significance import bootstrap_ci, paired_test

        metric = get_task(cell.task).main_metric
        results_dir = self.cache.root.parent  # record paths are relative to it
        preds_path = resolve_stored_path(info["predictions_path"], results_dir)
        preds = np.load(preds_path)
        labels = np.load(preds_path.with_name("labels_dev.npy"))
        low, high = bootstrap_ci(preds, labels, metric)
        out: dict[str, Any] = {"metric_ci_low": low, "metric_ci_high": high}
        same = base.on_runtime(info["metric_provider"]) if base is not None else None
        if same is not None:
            base_preds = resolve_stored_path(same["predictions_path"], results_dir)
            test = paired_test(preds, np.load(base_preds), labels, metric)
            out |= {"delta_p_value": test.p_value, "delta_test": test.test}
        return out


__all__ = ["Built", "Stages", "StageContext"]
