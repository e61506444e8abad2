"""The test-only `test-slowdown` method of benchmarks/latency_aa.py adds work, not changes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "slowdown_plugin"))
import harness_test_slowdown as slowdown  # noqa: E402


def toy_classifier() -> onnx.ModelProto:
    """logits = sum over the sequence of the attention mask, as floats: (batch, 1)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["m", "axes"], ["logits"], keepdims=1)], "toy",
        [helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_appended_work_leaves_the_logits_and_runs(tmp_path: Path) -> None:
    slow = slowdown.append_work(toy_classifier(), 3, width=32)
    onnx.checker.check_model(slow)
    assert [n.op_type for n in slow.graph.node].count("MatMul") == 4  # input projection + 3
    feed = {"attention_mask": np.array([[1, 1, 0], [1, 0, 0]], np.int64)}
    plain = ort.InferenceSession(toy_classifier().SerializeToString()).run(None, feed)[0]
    got = ort.InferenceSession(slow.SerializeToString()).run(None, feed)[0]
    assert np.array_equal(got, plain) and got.tolist() == [[2.0], [1.0]]
    assert slowdown.append_work(toy_classifier(), 0) == toy_classifier()
