"""A fixed reference workload timed at every round boundary, to see the machine's speed mode.

The same small fp32 MatMul chain, through a session with the suite's thread settings, in
every run of every suite: its time per round says whether that round ran while the machine
was fast or slow (docs/timing.md), whatever the models being timed.
"""
from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from harness.schema import TimingSpec
from harness.timing.session import session_options

ROWS, WIDTH, DEPTH = 64, 256, 4  # ~34 MFLOP a run
RUNS = 10  # median of these per boundary


def reference_model() -> bytes:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "A"
    for i in range(DEPTH):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"Y{i}"]))
        x = f"Y{i}"
    graph = helper.make_graph(
        nodes, "reference", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [ROWS, WIDTH])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [ROWS, WIDTH])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


class Reference:
    """The reference session on the CPU with the spec's threads; `ms()` times it."""

    def __init__(self, spec: TimingSpec) -> None:
        self.session = ort.InferenceSession(reference_model(), sess_options=session_options(spec),
                                            providers=["CPUExecutionProvider"])
        self.feed = {"A": np.ones((ROWS, WIDTH), np.float32)}
        self.ms()  # first run allocates

    def ms(self) -> float:
        """Median of RUNS runs, in ms."""
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter_ns()
            self.session.run(None, self.feed)
            times.append(time.perf_counter_ns() - t0)
        return round(float(np.median(times)) / 1e6, 4)
