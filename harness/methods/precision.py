"""ONNX-level reduced precision: `bf16` and `fp16` ask the runtime to compute in them.

The step copies the graph (fp32 weights unchanged) and writes the precision into the file's
metadata (harness.precision). OpenVINO turns it into INFERENCE_PRECISION_HINT and converts
weights and activations when it compiles the model; the CPU plugin keeps the precision-critical
parts (softmax and normalisation accumulators) in fp32 by its own rules. onnxruntime does not
honour a hint: its rows of these methods are `skipped` with the reason (no bf16 CPU kernels;
a converted fp16 graph measured slower than fp32 on the CPU, see docs/openvino.md).
Composes like the int8 methods: after torch-level steps, e.g. `distill+bf16`.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from harness import precision as prec
from harness.methods.base import MethodContext, NoParams


def bf16(params: NoParams) -> PrecisionStep:
    """Run in bfloat16 where the runtime supports it (OpenVINO on AMX / AVX512-BF16 CPUs)."""
    return PrecisionStep("bf16")


def fp16(params: NoParams) -> PrecisionStep:
    """Run in float16 where the runtime supports it (OpenVINO on AVX512-FP16 / AMX-FP16 CPUs)."""
    return PrecisionStep("fp16")


class PrecisionStep:
    def __init__(self, precision: str) -> None:
        self.precision = precision

    def apply(self, onnx_path: Path, out_dir: Path, ctx: MethodContext) -> Path:
        model = onnx.load(str(onnx_path))
        prec.mark(model, self.precision)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / f"model.{self.precision}.onnx"
        onnx.save(model, str(out))
        ctx.notes.append(f"{self.precision}: precision hint in the file; weights stay fp32 in "
                         f"it, the runtime converts them")
        return out
