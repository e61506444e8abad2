"""Stage: fine-tune a model on a task (the baseline every method starts from)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models import load_model, model_fingerprint
from harness.stages.artifacts import save_torch, train_device, train_precision
from harness.stages.keys import Stage
from harness.tasks import get_task

if TYPE_CHECKING:
    from harness.stages.context import StageContext

FINETUNE = Stage("finetune", ("harness.stages.finetune", "harness.train", "harness.models",
                              "harness.models.minilm_l3"))


def finetuned(ctx: StageContext, model: str, task: str) -> tuple[Path, str]:
    """The fine-tuned baseline's directory and key, built on first use (once per run)."""
    if ("finetune", model, task) not in ctx.resolved:
        ctx.resolved["finetune", model, task] = _finetuned(ctx, model, task)
    return ctx.resolved["finetune", model, task]


def _finetuned(ctx: StageContext, model: str, task: str) -> tuple[Path, str]:
    ft = ctx.suite.finetune
    key = FINETUNE.key({"model": model_fingerprint(model), "task": task,
                        "data": ctx.data.identity(task, "train"), "finetune": ft.model_dump(),
                        "precision": train_precision(ft)})

    def build(out: Path) -> dict[str, Any]:
        from harness.train import finetune  # torch: imported when something is trained

        spec = get_task(task)
        # seeded right before the head is initialised (after a first-use conversion), and
        # `finetune` seeds again before training: the same key gives the same weights
        net, tok = load_model(model, spec.num_labels, cache_dir=ctx.cache.root, seed=ft.seed,
                              pooling=ft.pooling)
        net.to(train_device())
        train = ctx.data.split(task, "train")
        log_ = finetune(net, tok, train, ft, spec, desc=f"fine-tune {model} {task}")
        save_torch(net, tok, out)
        return {"train_examples": len(train), "train_log": _plain(log_),
                "train_precision": log_.precision, "train_seconds": log_.seconds}

    path, _ = ctx.cache.get_or_build(FINETUNE.name, key, build, f"{model} {task}")
    return path, key


def _plain(obj: Any) -> Any:
    try:
        return json.loads(json.dumps(obj, default=lambda o: getattr(o, "__dict__", str(o))))
    except (TypeError, ValueError):
        return str(obj)
