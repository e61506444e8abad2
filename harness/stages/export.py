"""Stage: export a torch model to ONNX, check it against PyTorch, optimize the fp32 graph."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import export as onnx_export
from harness.evaluation import onnx_logits
from harness.stages.artifacts import load_torch
from harness.stages.keys import Stage
from harness.tasks import get_task

if TYPE_CHECKING:
    from harness.plan import Cell
    from harness.stages.context import StageContext

EXPORT = Stage("export", ("harness.stages.export", "harness.export", "harness.optimize"))
PARITY_EXAMPLES = 64


def exported(ctx: StageContext, cell: Cell, torch_dir: Path, torch_key: str) -> tuple[Path, str]:
    """The export directory (model.onnx, model.opt.onnx, tokenizer) and its key."""
    spec = get_task(cell.task)
    optimize = ctx.suite.timing.optimize_fp32
    key = EXPORT.key({"optimize": optimize}, [torch_key])

    def build(out: Path) -> dict[str, Any]:
        model, tok = load_torch(torch_dir)
        path = onnx_export.export_onnx(model, tok, out)
        dev = ctx.data.split(cell.task, "dev").take(PARITY_EXAMPLES, ctx.suite.finetune.seed)
        max_len = ctx.suite.finetune.max_seq_len
        info = onnx_export.parity(onnx_export.torch_logits(model, tok, dev, max_len),
                                  onnx_logits(path, tok, dev, max_len), spec.is_regression)
        info |= onnx_export.count_params(model)
        if optimize:
            from harness.optimize import optimize_fp32

            info["fp32_optimization"] = optimize_fp32(
                path, out / "model.opt.onnx", num_heads=0, hidden_size=0)
        return info

    path, _ = ctx.cache.get_or_build(EXPORT.name, key, build, cell.label)
    return path, key
