"""The cached stages of one cell: fine-tune -> torch methods -> export -> ONNX methods -> evaluate."""
from __future__ import annotations

import json
import logging
import traceback
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from harness import export as onnx_export
from harness.cache import ArtifactCache, content_key
from harness.config import Pipeline, Step, Suite
from harness.errors import SkipCell
from harness.evaluation import evaluate_logits, onnx_logits, predictions_from_logits
from harness.methods import METHODS, MethodContext
from harness.tasks import TaskData, get_task, load_split

log = logging.getLogger(__name__)
# A stage's code version is the hash of the modules that make its output, so editing the
# code rebuilds what it made and nothing else.
STAGE_MODULES = {
    "finetune": ("harness.train", "harness.models", "harness.models.catalogue",
                 "harness.models.minilm_l3"),
    "export": ("harness.export", "harness.optimize"),
    "evaluate": ("harness.evaluation", "harness.metrics", "harness.tasks.local",
                 "harness.precision", "harness.timing.backend", "harness.timing.openvino"),
    "flops": ("harness.timing.roofline",),
}
PARITY_EXAMPLES = 64
# A provider whose evaluation is skipped (its device is not where the build runs) takes the
# metric of the fallback, which runs the same graph in the same precision; the record's
# metric_provider says which runtime it came from. No fallback for OpenVINO: its bf16/fp16
# rows must be evaluated in the precision they are timed in.
EVAL_FALLBACK = {"cuda": "cpu"}


@dataclass(frozen=True)
class Cell:
    """One (model, task, method pipeline) of the suite's matrix."""

    model: str
    task: str
    pipeline: Pipeline

    @property
    def label(self) -> str:
        return f"{self.model} {self.task} {self.pipeline.label}"


@dataclass
class Built:
    """What the stages produced for a cell, ready for timing (picklable, for executors)."""

    onnx_path: Path
    tokenizer_dir: Path
    key: str
    info: dict[str, Any]  # record fields shared by every provider: parity, sizes, notes
    # per provider: its dev metrics as record fields, or {"status", "error"} when there are none
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fields(self, provider: str) -> dict[str, Any]:
        """Record fields of this provider's rows (metrics from its own runtime)."""
        metrics = self.metrics.get(provider, {})
        return self.info | {k: v for k, v in metrics.items() if k not in ("status", "error")}

    def unavailable(self, provider: str) -> tuple[str, str] | None:
        """(status, reason) when this provider's rows have no metric, else None."""
        metrics = self.metrics.get(provider, {})
        return (metrics["status"], metrics["error"]) if "status" in metrics else None

    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_dir)


def plan(suite: Suite, pipelines: list[Pipeline]) -> list[Cell]:
    return [Cell(m, t, p) for m in suite.models for t in suite.tasks for p in pipelines]


@cache
def code_version(*modules: str) -> str:
    """Hash of the source files of these modules."""
    import importlib
    import inspect

    sources = [inspect.getsource(importlib.import_module(m)) for m in modules]
    return content_key("code", "1", sources)


def stage_version(stage: str) -> str:
    return code_version(*STAGE_MODULES[stage])


def method_version(step: Step) -> str:
    info = METHODS.get(step.name)
    return f"{info.version}:{code_version(info.factory.__module__)}"


def train_device() -> str:
    """Fine-tuning and torch-level methods use the GPU when torch sees one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _save_torch(model: Any, tokenizer: Any, out: Path) -> None:
    import torch

    torch.save(model.cpu(), out / "model.pt")  # whole module: pruned shapes need no config
    tokenizer.save_pretrained(out / "tokenizer")


def _load_torch(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer

    model = torch.load(path / "model.pt", weights_only=False, map_location=device)
    return model.eval(), AutoTokenizer.from_pretrained(path / "tokenizer")


def zipped_size(path: Path) -> int:
    return len(zlib.compress(path.read_bytes(), 6))


class Stages:
    """Stage functions of one run; each output is cached under a key of its inputs."""

    def __init__(self, suite: Suite, cache: ArtifactCache, data_dir: Path | None) -> None:
        self.suite = suite
        self.cache = cache
        self.data_dir = data_dir
        self.data = cache_data(self)

    # data -------------------------------------------------------------------------------
    def split(self, task: str, split: str) -> TaskData:
        return self.data(task, split)

    # fine-tune ----------------------------------------------------------------------------
    def finetuned(self, model: str, task: str) -> tuple[Path, str]:
        from harness.models import load_model, model_fingerprint
        from harness.train import finetune

        spec = get_task(task)
        ft = self.suite.finetune
        key = content_key("finetune", stage_version("finetune"),
                          {"model": model_fingerprint(model), "task": task,
                           "data": self._data_id(task, "train"), "finetune": ft.model_dump()})

        def build(out: Path) -> dict[str, Any]:
            import torch

            torch.manual_seed(ft.seed)
            net, tok = load_model(model, spec.num_labels, cache_dir=self.cache.root)
            net.to(train_device())
            train = self.split(task, "train")
            log_ = finetune(net, tok, train, ft, spec, desc=f"fine-tune {model} {task}")
            _save_torch(net, tok, out)
            return {"train_examples": len(train), "train_log": _plain(log_)}

        path, _ = self.cache.get_or_build("finetune", key, build, f"{model} {task}")
        return path, key

    # torch-level methods ------------------------------------------------------------------
    def context(self, cell: Cell, teacher_dir: Path, workdir: Path) -> MethodContext:
        teacher, tok = _load_torch(teacher_dir, train_device())
        return MethodContext(
            task=get_task(cell.task), finetune=self.suite.finetune, workdir=workdir,
            tokenizer=tok, load_train=lambda: self.split(cell.task, "train"), teacher=teacher,
            load_model=lambda name: _load_torch(self.finetuned(name, cell.task)[0],
                                                train_device()))

    def torch_steps(self, cell: Cell, notes: list[str]) -> tuple[Path, str]:
        path, key = self.finetuned(cell.model, cell.task)
        teacher_dir = path
        for step in cell.pipeline.torch_steps:
            path, key = self._torch_step(cell, step, path, key, teacher_dir, notes)
        return path, key

    def _torch_step(self, cell: Cell, step: Step, src: Path, src_key: str, teacher_dir: Path,
                    notes: list[str]) -> tuple[Path, str]:
        info = METHODS.get(step.name)
        config = {"params": step.params.model_dump(mode="json"),
                  "finetune": self.suite.finetune.model_dump(), "teacher": teacher_dir.name}
        key = content_key(f"method:{step.name}", method_version(step), config, [src_key])

        def build(out: Path) -> dict[str, Any]:
            ctx = self.context(cell, teacher_dir, out)
            model, tok = _load_torch(src, train_device())
            model = info.factory(step.params).apply(model, ctx)
            _save_torch(model, tok, out)
            return {"notes": ctx.notes}

        path, _ = self.cache.get_or_build("torch", key, build, f"{cell.label}: {step.label}")
        notes.extend(self.cache.info(path).get("notes", []))
        return path, key

    # export ---------------------------------------------------------------------------------
    def exported(self, cell: Cell, torch_dir: Path, torch_key: str) -> tuple[Path, str]:
        spec = get_task(cell.task)
        optimize = self.suite.timing.optimize_fp32
        key = content_key("export", stage_version("export"), {"optimize": optimize}, [torch_key])

        def build(out: Path) -> dict[str, Any]:
            model, tok = _load_torch(torch_dir)
            path = onnx_export.export_onnx(model, tok, out)
            dev = self.split(cell.task, "dev").take(PARITY_EXAMPLES, self.suite.finetune.seed)
            max_len = self.suite.finetune.max_seq_len
            info = onnx_export.parity(onnx_export.torch_logits(model, tok, dev, max_len),
                                      onnx_logits(path, tok, dev, max_len), spec.is_regression)
            info |= onnx_export.count_params(model)
            if optimize:
                from harness.optimize import optimize_fp32

                info["fp32_optimization"] = optimize_fp32(
                    path, out / "model.opt.onnx", num_heads=0, hidden_size=0)
            return info

        path, _ = self.cache.get_or_build("export", key, build, cell.label)
        return path, key

    def onnx_steps(self, cell: Cell, export_dir: Path, key: str, notes: list[str]
                   ) -> tuple[Path, str]:
        steps = cell.pipeline.onnx_steps
        opt = export_dir / "model.opt.onnx"
        path = opt if opt.exists() and not steps else export_dir / onnx_export.ONNX_NAME
        for step in steps:
            config = {"params": step.params.model_dump(mode="json"),
                      "seed": self.suite.finetune.seed, "max_len": self.suite.finetune.max_seq_len}
            key = content_key(f"method:{step.name}", method_version(step), config, [key])
            src = path

            def build(out: Path, src: Path = src, step: Step = step) -> dict[str, Any]:
                ctx = MethodContext(task=get_task(cell.task), finetune=self.suite.finetune,
                                    workdir=out, tokenizer=_load_tokenizer(export_dir),
                                    load_train=lambda: self.split(cell.task, "train"))
                made = METHODS.get(step.name).factory(step.params).apply(src, out, ctx)
                return {"notes": ctx.notes, "file": Path(made).name}

            out, _ = self.cache.get_or_build("onnx", key, build, f"{cell.label}: {step.label}")
            meta = self.cache.info(out)
            notes.extend(meta.get("notes", []))
            path = out / meta["file"]
        return path, key

    # evaluate ---------------------------------------------------------------------------
    def evaluated(self, cell: Cell, onnx_path: Path, key: str, tokenizer: Any,
                  provider: str = "cpu") -> dict[str, Any]:
        """Dev metrics of the model run on `provider`'s runtime at the file's precision (the
        runtime and settings its rows are timed with); SkipCell when it cannot run here."""
        spec = get_task(cell.task)
        max_len = self.suite.finetune.max_seq_len
        ekey = content_key("evaluate", stage_version("evaluate"),
                           {"dev": self._data_id(cell.task, "dev"), "max_len": max_len,
                            "file": onnx_path.name, "provider": provider}, [key])

        def build(out: Path) -> dict[str, Any]:
            from harness.timing.backend import make_runner

            runner = make_runner(onnx_path, provider, self.suite.timing)
            result: dict[str, Any] = {"metric_provider": provider}
            for split in spec.dev_splits:
                name = "dev" if split in ("validation", "validation_matched") else "dev_mismatched"
                data = self.split(cell.task, name)
                logits = onnx_logits(onnx_path, tokenizer, data, max_len, runner=runner)
                np.save(out / f"logits_{name}.npy", logits)
                np.save(out / f"predictions_{name}.npy", predictions_from_logits(spec, logits))
                np.save(out / f"labels_{name}.npy", data.labels)
                metrics = evaluate_logits(spec, data, logits)
                if name == "dev":
                    result |= metrics | {"n_eval": len(data), "eval_split": "dev"}
                else:
                    result["accuracy_mismatched"] = metrics.get("accuracy")
            return result

        path, _ = self.cache.get_or_build("evaluate", ekey, build, f"{cell.label} {provider}")
        info = self.cache.info(path)
        return info | {"predictions_path": str(path / "predictions_dev.npy"),
                       "metric_name": spec.main_metric,
                       "metric_value": info.get(spec.main_metric)}

    def evaluations(self, cell: Cell, onnx_path: Path, key: str, tokenizer: Any
                    ) -> dict[str, dict[str, Any]]:
        """Per timed provider: its dev metrics, or {"status", "error"} when it has none."""
        out: dict[str, dict[str, Any]] = {}
        for provider in dict.fromkeys(self.suite.timing.providers):
            out[provider] = self._evaluate_or_reason(cell, onnx_path, key, tokenizer, provider)
            fallback = EVAL_FALLBACK.get(provider)
            if out[provider].get("status") == "skipped" and fallback:
                if fallback not in out:
                    out[fallback] = self._evaluate_or_reason(cell, onnx_path, key, tokenizer,
                                                             fallback)
                if "status" not in out[fallback]:
                    out[provider] = out[fallback]
        return {p: out[p] for p in self.suite.timing.providers}

    def _evaluate_or_reason(self, cell: Cell, onnx_path: Path, key: str, tokenizer: Any,
                            provider: str) -> dict[str, Any]:
        try:
            return self.evaluated(cell, onnx_path, key, tokenizer, provider)
        except SkipCell as exc:
            log.warning("%s: no metric on %s: %s", cell.label, provider, exc)
            return {"status": "skipped", "error": " ".join(str(exc).split())}
        except Exception as exc:  # noqa: BLE001 - the other providers' rows go on
            log.error("%s: evaluation on %s failed:\n%s", cell.label, provider,
                      traceback.format_exc())
            return {"status": "failed",
                    "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}

    def flops(self, built: Built, batch: int, seq: int) -> Any:
        """The model's GEMM FLOPs at this shape (shape inference takes seconds: cached)."""
        from dataclasses import asdict

        import onnx

        from harness.timing.roofline import FlopCount, count_flops

        key = content_key("flops", stage_version("flops"), {"batch": batch, "seq": seq},
                          [built.key, built.onnx_path.name])

        def build(out: Path) -> dict[str, Any]:
            model = onnx.load(str(built.onnx_path), load_external_data=False)
            return asdict(count_flops(model, batch, seq))

        label = f"{built.onnx_path.name} {batch}x{seq}"
        path, _ = self.cache.get_or_build("flops", key, build, label)
        return FlopCount(**self.cache.info(path))

    def build(self, cell: Cell) -> Built:
        """Run (or fetch from the cache) every stage of a cell up to evaluation."""
        notes: list[str] = []
        torch_dir, key = self.torch_steps(cell, notes)
        export_dir, key = self.exported(cell, torch_dir, key)
        export_info = self.cache.info(export_dir)
        onnx_path, key = self.onnx_steps(cell, export_dir, key, notes)
        info = dict(export_info)
        info.pop("fp32_optimization", None)
        info |= {"onnx_bytes": onnx_path.stat().st_size, "onnx_zip_bytes": zipped_size(onnx_path),
                 "notes": notes, "artifact_key": key}
        metrics = self.evaluations(cell, onnx_path, key, _load_tokenizer(export_dir))
        return Built(onnx_path, export_dir, key, info, metrics)

    def _data_id(self, task: str, split: str) -> dict[str, Any]:
        ft = self.suite.finetune
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        data = self.split(task, split)
        digest = content_key("data", "1", [data.text_a[:50], data.labels[:50].tolist(), len(data)])
        return {"split": split, "n": n, "seed": ft.seed, "digest": digest}


def cache_data(stages: Stages):  # noqa: ANN201 - a memoized loader bound to the suite
    ft = stages.suite.finetune

    @cache
    def load(task: str, split: str) -> TaskData:
        data = load_split(task, split, data_dir=stages.data_dir, source=stages.suite.data_source)
        n = ft.max_train_samples if split == "train" else ft.max_eval_samples
        return data.take(n, ft.seed)

    return load


def _load_tokenizer(export_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(export_dir)


def _plain(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o))))
    except (TypeError, ValueError):
        return str(obj)

