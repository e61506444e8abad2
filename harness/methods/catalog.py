"""The built-in methods, registered lazily: their factories (and torch) load on first use."""
from __future__ import annotations

from harness.methods import params as p
from harness.methods.base import METHODS, NoParams, lazy_method

lazy_method("distill", "harness.methods.distill:distill", level="torch", params=p.DistillParams,
            summary="Knowledge distillation into a smaller student (layer copy of the teacher "
                    "or a suite model).")
lazy_method("prune-unstructured", "harness.methods.prune:prune_unstructured", level="torch",
            params=p.UnstructuredParams,
            summary="Global magnitude pruning of the encoder's linear weights to a sparsity.")
lazy_method("prune-structured", "harness.methods.prune:prune_structured", level="torch",
            params=p.StructuredParams,
            summary="Remove attention heads and FFN neurons by importance, then recover.")
lazy_method("int8-dynamic", "harness.methods.quantize:int8_dynamic", level="onnx",
            params=p.Int8DynamicParams,
            summary="Dynamic int8 quantization of the ONNX graph (weights int8, activations at run time).")
lazy_method("int8-static", "harness.methods.quantize:int8_static", level="onnx",
            params=p.Int8StaticParams,
            summary="Static int8 quantization with activation ranges calibrated on training data.")
lazy_method("bf16", "harness.methods.precision:bf16", level="onnx", params=NoParams,
            summary="Run in bfloat16 where the runtime supports it (OpenVINO on AMX / "
                    "AVX512-BF16 CPUs).")
lazy_method("fp16", "harness.methods.precision:fp16", level="onnx", params=NoParams,
            summary="Run in float16 where the runtime supports it (OpenVINO on AVX512-FP16 / "
                    "AMX-FP16 CPUs).")

__all__ = ["METHODS"]
