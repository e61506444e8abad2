"""Node placement and CPU agreement of non-CPU sessions, exercised on the CPU provider."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.errors import SkipCell
from harness.schema import TimingSpec
from harness.timing import session as sess_mod
from harness.timing.placement import (
    Placement,
    device_check,
    outputs_agree,
    profile_placement,
    require_on_device,
)

SPEC = TimingSpec(warmup=0, min_iterations=1, min_seconds=0.0)
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


def mm_relu(path: Path, scale: float = 1.0) -> Path:
    w = numpy_helper.from_array(np.full((5, 3), scale, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"]), helper.make_node("Relu", ["Y"], ["Z"])],
        "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["b", 5])],
        [helper.make_tensor_value_info("Z", TensorProto.FLOAT, ["b", 3])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def feed() -> dict[str, np.ndarray]:
    return {"A": np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)}


def test_profile_reads_op_and_provider_of_every_node(tmp_path: Path) -> None:
    placement = profile_placement(mm_relu(tmp_path / "m.onnx"), "cpu", SPEC, feed())
    assert placement.counts == {"MatMul": {CPU: 1}, "Relu": {CPU: 1}}
    assert placement.summary()["nodes_per_provider"] == {CPU: 2}
    assert not list(tmp_path.glob("*.json"))  # the profile went to a temporary directory


def test_heavy_ops_off_the_device_skip_the_cell() -> None:
    split = Placement({"MatMulInteger": {CPU: 4, CUDA: 1}, "QAttention": {CPU: 2},
                       "Shape": {CPU: 9}, "MatMul": {CUDA: 2}})
    assert split.heavy_elsewhere(CUDA) == {"MatMulInteger": 4, "QAttention": 2}
    with pytest.raises(SkipCell, match=r"MatMulInteger x4, QAttention x2 have no "
                                       r"CUDAExecutionProvider kernel and ran on the CPU"):
        require_on_device(split, "cuda")
    require_on_device(Placement({"MatMul": {CUDA: 2}, "Shape": {CPU: 3}}), "cuda")  # shape ops ok
    require_on_device(Placement({"MatMul": {CPU: 2}}), "cpu")


def test_outputs_must_agree_with_the_cpu(tmp_path: Path) -> None:
    path = mm_relu(tmp_path / "m.onnx")
    same = ort.InferenceSession(str(path), providers=[CPU])
    agree = outputs_agree(same, path, feed(), SPEC)
    assert agree["max_abs_diff"] == 0.0
    other = ort.InferenceSession(str(mm_relu(tmp_path / "other.onnx", scale=1.01)),
                                 providers=[CPU])
    with pytest.raises(ValueError, match="differ from the CPU's"):
        outputs_agree(other, path, feed(), SPEC)


def test_device_check_is_empty_on_cpu_and_cuda_options_turn_tf32_off(tmp_path: Path,
                                                                     monkeypatch) -> None:
    path = mm_relu(tmp_path / "m.onnx")
    assert device_check(path, "cpu", SPEC, feed(), ort.InferenceSession(str(path))) == {}
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    providers = sess_mod.provider_list("cuda")
    assert providers[0] == (CUDA, {"device_id": "0", "use_tf32": "0"}) and providers[1] == CPU
