"""Stage: the GEMM work of an ONNX model at one shape (shape inference takes seconds: cached)."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.stages.keys import Stage

if TYPE_CHECKING:
    from harness.stages import Built
    from harness.stages.context import StageContext

FLOPS = Stage("flops", ("harness.stages.flops", "harness.timing.roofline"))


def flops(ctx: StageContext, built: Built, batch: int, seq: int) -> Any:
    """The model's FlopCount at batch x seq."""
    import onnx

    from harness.timing.roofline import FlopCount, count_flops

    key = FLOPS.key({"batch": batch, "seq": seq}, [built.key, built.onnx_path.name])

    def build(out: Path) -> dict[str, Any]:
        model = onnx.load(str(built.onnx_path), load_external_data=False)
        return asdict(count_flops(model, batch, seq))

    path, _ = ctx.cache.get_or_build(FLOPS.name, key, build,
                                     f"{built.onnx_path.name} {batch}x{seq}")
    return FlopCount(**ctx.cache.info(path))
