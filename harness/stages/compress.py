"""Stages: the pipeline's torch-level steps (before export) and ONNX-level steps (after)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.export import ONNX_NAME
from harness.methods import METHODS, MethodContext
from harness.stages.artifacts import (
    load_tokenizer,
    load_torch,
    save_torch,
    train_device,
    train_precision,
)
from harness.stages.finetune import finetuned
from harness.stages.keys import Stage
from harness.tasks import get_task

if TYPE_CHECKING:
    from harness.plan import Cell, Step
    from harness.stages.context import StageContext

TORCH_STEP = Stage("torch", ("harness.stages.compress",))
ONNX_STEP = Stage("onnx", ("harness.stages.compress",))


def _step_key(stage: Stage, step: Step, config: dict[str, Any], src_key: str) -> str:
    info = METHODS.get(step.name)
    return stage.key({"method": step.name} | config, [src_key], extra_code=(info.module,),
                     version=info.version)


def torch_steps(ctx: StageContext, cell: Cell, notes: list[str]) -> tuple[Path, str]:
    """The fine-tuned baseline, then each torch-level step applied in turn."""
    path, key = finetuned(ctx, cell.model, cell.task)
    teacher_dir = path
    for step in cell.pipeline.torch_steps:
        path, key = _torch_step(ctx, cell, step, path, key, teacher_dir, notes)
    return path, key


def _method_context(ctx: StageContext, cell: Cell, teacher_dir: Path, workdir: Path
                    ) -> MethodContext:
    teacher, tok = load_torch(teacher_dir, train_device())
    return MethodContext(
        task=get_task(cell.task), finetune=ctx.suite.finetune, workdir=workdir, model=cell.model,
        tokenizer=tok,
        load_train=lambda: ctx.data.split(cell.task, "train"), teacher=teacher,
        load_model=lambda name: load_torch(finetuned(ctx, name, cell.task)[0], train_device()))


def _torch_step(ctx: StageContext, cell: Cell, step: Step, src: Path, src_key: str,
                teacher_dir: Path, notes: list[str]) -> tuple[Path, str]:
    config = {"params": step.params.model_dump(mode="json"),
              "finetune": ctx.suite.finetune.model_dump(), "teacher": teacher_dir.name,
              "precision": train_precision(ctx.suite.finetune)}
    key = _step_key(TORCH_STEP, step, config, src_key)

    def build(out: Path) -> dict[str, Any]:
        mctx = _method_context(ctx, cell, teacher_dir, out)
        model, tok = load_torch(src, train_device())
        model = METHODS.get(step.name).factory(step.params).apply(model, mctx)
        save_torch(model, tok, out)
        return {"notes": mctx.notes}

    path, _ = ctx.cache.get_or_build(TORCH_STEP.name, key, build, f"{cell.label}: {step.label}")
    notes.extend(ctx.cache.info(path).get("notes", []))
    return path, key


def onnx_steps(ctx: StageContext, cell: Cell, export_dir: Path, key: str, notes: list[str]
               ) -> tuple[Path, str]:
    """Each ONNX-level step applied in turn to the exported (for a baseline: optimized) graph."""
    steps = cell.pipeline.onnx_steps
    opt = export_dir / "model.opt.onnx"
    path = opt if opt.exists() and not steps else export_dir / ONNX_NAME
    for step in steps:
        config = {"params": step.params.model_dump(mode="json"),
                  "seed": ctx.suite.finetune.seed, "max_len": ctx.suite.finetune.max_seq_len}
        key = _step_key(ONNX_STEP, step, config, key)
        src = path

        def build(out: Path, src: Path = src, step: Step = step) -> dict[str, Any]:
            mctx = MethodContext(task=get_task(cell.task), finetune=ctx.suite.finetune,
                                 workdir=out, tokenizer=load_tokenizer(export_dir),
                                 load_train=lambda: ctx.data.split(cell.task, "train"),
                                 model=cell.model)
            made = METHODS.get(step.name).factory(step.params).apply(src, out, mctx)
            return {"notes": mctx.notes, "file": Path(made).name}

        out, _ = ctx.cache.get_or_build(ONNX_STEP.name, key, build, f"{cell.label}: {step.label}")
        meta = ctx.cache.info(out)
        notes.extend(meta.get("notes", []))
        path = out / meta["file"]
    return path, key
