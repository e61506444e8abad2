"""Runners for every provider behind one interface (harness.timing.base.Runner).

`make_runner(onnx_path, provider, spec)` is the one seam the timing loop, the cell runner and
evaluation use: "cpu" and "cuda" run through onnxruntime, "openvino" through the OpenVINO
runtime on the CPU (harness.timing.openvino).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness import precision as prec
from harness.errors import SkipCell
from harness.schema import TimingSpec
from harness.timing.base import Runner
from harness.timing.loop import make_step
from harness.timing.openvino import openvino_runner
from harness.timing.session import describe_session, make_session

PROVIDERS = ("cpu", "cuda", "openvino")
ORT_PROVIDERS = ("cpu", "cuda")


class OrtRunner(Runner):
    """An onnxruntime InferenceSession on the CPU or CUDA execution provider."""

    def __init__(self, session: ort.InferenceSession, provider: str, spec: TimingSpec) -> None:
        self.session, self.provider, self.spec = session, provider, spec
        self.precision = prec.DEFAULT
        self._names = [o.name for o in session.get_outputs()]

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self._names, feed)

    def step(self, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
        return make_step(self.session, feed, self.provider)

    def get_inputs(self) -> list[Any]:
        return self.session.get_inputs()

    def describe(self) -> dict[str, Any]:
        return {**describe_session(self.session, self.provider, self.spec),
                "precision": self.precision}


def ort_runner(onnx_path: str | Path, provider: str, spec: TimingSpec) -> OrtRunner:
    """SkipCell for a file that asks for a reduced precision: onnxruntime runs a graph in its
    own types (no bf16 CPU kernels; a converted fp16 graph measured slower than fp32 on the
    CPU, see docs/openvino.md), so timing it would time fp32 under a bf16 label."""
    session = make_session(onnx_path, provider, spec)
    wanted = prec.requested(session.get_modelmeta().custom_metadata_map)
    if wanted != prec.DEFAULT:
        raise SkipCell(f"{wanted} needs a runtime that honours a precision hint: onnxruntime's "
                       f"{provider} provider would run this graph in fp32; time it with "
                       f"providers: [openvino]")
    return OrtRunner(session, provider, spec)


def make_runner(onnx_path: str | Path, provider: str, spec: TimingSpec) -> Runner:
    """The runner for `provider`; SkipCell when its runtime or device is unavailable."""
    if provider in ORT_PROVIDERS:
        return ort_runner(onnx_path, provider, spec)
    if provider == "openvino":
        return openvino_runner(onnx_path, spec)
    raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def as_runner(session: ort.InferenceSession | Runner, provider: str, spec: TimingSpec
              ) -> Runner:
    """A runner for an existing onnxruntime session (older callers pass sessions)."""
    return session if isinstance(session, Runner) else OrtRunner(session, provider, spec)
