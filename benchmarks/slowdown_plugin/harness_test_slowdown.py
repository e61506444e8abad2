"""Test-only ONNX method `test-slowdown`: appends work costing about a fraction of the model.

For the sensitivity check of `harness compare` (benchmarks/latency_aa.py), never for real
suites. The fraction comes from the environment variable HARNESS_TEST_SLOWDOWN (0 = a copy
of the model) and is the method's version, so a run with another fraction rebuilds the
artifact while the variant's name, and so its record key, stays the same.

The work is a chain of n x n fp32 MatMuls fed from the attention mask (so onnxruntime
cannot fold it into a constant); its sum times 0 is added to the logits, which stay as they
were. Its length is the fraction times the model's GEMM FLOPs at (1, 128).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from harness.methods import method

FRACTION = float(os.environ.get("HARNESS_TEST_SLOWDOWN", "0") or 0)
WIDTH = 384  # MiniLM's hidden size


def extra_matmuls(model: onnx.ModelProto, fraction: float, width: int = WIDTH) -> int:
    """How many width x width MatMuls over (batch, seq) rows cost `fraction` of the model."""
    from harness.timing.roofline import count_flops

    if fraction <= 0:
        return 0
    total = count_flops(model, 1, 128).total
    return max(1, round(fraction * total / (2.0 * 128 * width * width)))


def append_work(model: onnx.ModelProto, k: int, width: int = WIDTH) -> onnx.ModelProto:
    """The model with k chained MatMuls whose zeroed sum is added to its first output."""
    if k == 0:
        return model
    graph, rng = model.graph, np.random.default_rng(0)
    source = next(i.name for i in graph.input if i.name == "attention_mask")
    out = graph.output[0].name
    for node in graph.node:  # the model's own result now feeds the Add below
        node.output[:] = [f"{out}_model" if o == out else o for o in node.output]
    inits = [numpy_helper.from_array(rng.standard_normal((1, width)).astype(np.float32), "sd_w0"),
             numpy_helper.from_array(np.array([2], np.int64), "sd_axis"),
             numpy_helper.from_array(np.array(0.0, np.float32), "sd_zero")]
    nodes = [helper.make_node("Cast", [source], ["sd_mask"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["sd_mask", "sd_axis"], ["sd_col"]),
             helper.make_node("MatMul", ["sd_col", "sd_w0"], ["sd_x0"])]
    for i in range(1, k + 1):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"sd_w{i}"))
        nodes.append(helper.make_node("MatMul", [f"sd_x{i - 1}", f"sd_w{i}"], [f"sd_x{i}"]))
    nodes += [helper.make_node("ReduceSum", [f"sd_x{k}"], ["sd_sum"], keepdims=0),
              helper.make_node("Mul", ["sd_sum", "sd_zero"], ["sd_nothing"]),
              helper.make_node("Add", [f"{out}_model", "sd_nothing"], [out])]
    graph.initializer.extend(inits)
    graph.node.extend(nodes)
    return model


class Slowdown:
    def __init__(self, params: object) -> None:
        self.params = params

    def apply(self, onnx_path: Path, out_dir: Path, ctx: object) -> Path:
        model = onnx.load(str(onnx_path))
        k = extra_matmuls(model, FRACTION)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / "model.slowdown.onnx"
        onnx.save(append_work(model, k), str(out))
        ctx.notes.append(f"test-slowdown: {k} extra {WIDTH}x{WIDTH} MatMuls "
                         f"(~{FRACTION:.0%} of the model's GEMM FLOPs)")
        return out


@method("test-slowdown", level="onnx", version=f"fraction={FRACTION}")
def test_slowdown(params: object) -> Slowdown:
    """Test only: append work costing HARNESS_TEST_SLOWDOWN of the model (logits unchanged)."""
    return Slowdown(params)
