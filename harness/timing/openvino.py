"""OpenVINO on the CPU as a timing and evaluation runtime (the optional `openvino` extra).

The ONNX file is read by OpenVINO's ONNX frontend (it knows onnxruntime's fused contrib ops,
so the optimized fp32 graph works too) and compiled for the CPU plugin with:
- INFERENCE_PRECISION_HINT from the file's precision entry (harness.precision), always set:
  on a CPU with AMX or AVX512-BF16 the plugin's default is bf16, so an fp32 row that left the
  hint out would silently run bf16. The precision is read back from the compiled model; when
  the plugin ran another precision than asked (no bf16 / fp16 support on this CPU), the cell
  is skipped with the reason rather than timed under the wrong label.
- INFERENCE_NUM_THREADS from the suite's intra_op_threads (unset: the plugin's default),
  PERFORMANCE_HINT=LATENCY (one stream, one request: the same single-batch latency the
  onnxruntime rows measure).
Chosen over onnxruntime's OpenVINO execution provider (onnxruntime-ep-openvino 1.8.1): same
speed within noise here, but its `precision` option (FP32, ACCURACY) was ignored on this AMX
CPU, which ran bf16 whatever was asked; see docs/openvino.md.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness import precision as prec
from harness.errors import SkipCell
from harness.schema import TimingSpec
from harness.timing.base import Runner

log = logging.getLogger(__name__)

NOT_INSTALLED = "openvino not installed: pip install 'harness[openvino]'"
DEVICE = "CPU"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
FROM_OV = {v: k for k, v in OV_PRECISION.items()}
_ORT_TYPES = {"i64": "tensor(int64)", "i32": "tensor(int32)", "f32": "tensor(float)",
              "f16": "tensor(float16)", "boolean": "tensor(bool)"}
# read back into the record's session field
REPORTED = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS",
            "PERFORMANCE_HINT", "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING",
            "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE")


class InputArg(NamedTuple):
    """What `feed_for` reads from an input: its name and ORT-style type string."""

    name: str
    type: str


@functools.cache
def _core() -> Any:
    import openvino as ov

    return ov.Core()


def available() -> str | None:
    """None when OpenVINO can run on this machine's CPU, else why not."""
    try:
        core = _core()
    except ImportError:
        return NOT_INSTALLED
    if DEVICE not in core.available_devices:
        return f"openvino sees no CPU device (devices: {core.available_devices})"
    return None


def device_info() -> dict[str, Any]:
    """The CPU as OpenVINO sees it, and the precisions its plugin can run here."""
    import openvino as ov

    core = _core()
    return {"openvino": ov.__version__,
            "device_name": core.get_property(DEVICE, "FULL_DEVICE_NAME"),
            "optimization_capabilities": list(core.get_property(DEVICE,
                                                                "OPTIMIZATION_CAPABILITIES"))}


def compile_config(spec: TimingSpec, precision: str) -> dict[str, Any]:
    """CPU plugin properties for one model (see the module docstring)."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
                              "PERFORMANCE_HINT": "LATENCY"}
    if spec.intra_op_threads:
        config["INFERENCE_NUM_THREADS"] = spec.intra_op_threads
    return config


def _requested(model: Any) -> str:
    path = ["framework", prec.PRECISION_KEY]
    if not model.has_rt_info(path):
        return prec.DEFAULT
    return prec.requested({prec.PRECISION_KEY: model.get_rt_info(path).astype(str)})


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    name = getattr(value, "get_type_name", None)  # ov.Type
    return name() if callable(name) else str(value).rsplit(".", 1)[-1]


class OpenVinoRunner(Runner):
    """A compiled model and one infer request on OpenVINO's CPU plugin."""

    provider = "openvino"

    def __init__(self, compiled: Any, spec: TimingSpec, precision: str) -> None:
        self.compiled, self.spec, self.precision = compiled, spec, precision
        self.request = compiled.create_infer_request()
        self._outputs = list(compiled.outputs)

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(feed)
        return [np.array(result[out]) for out in self._outputs]

    def step(self, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
        """One synchronous inference: the input arrays are bound each call without a copy
        (share_inputs, as onnxruntime binds numpy inputs) and the outputs come back as host
        arrays. `infer(feed)` with its default input copy costs ~0.2 ms more per call here
        (docs/openvino.md); that copy is not part of the model's latency. The step has an infer
        request of its own: a request whose inputs are bound to one feed's arrays refuses a larger
        feed later (it cannot grow memory it does not own)."""
        arrays = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        infer = self.compiled.create_infer_request().infer

        def step() -> Any:
            return infer(arrays, share_inputs=True)

        return step

    def get_inputs(self) -> list[InputArg]:
        return [InputArg(port.get_any_name(),
                         _ORT_TYPES.get(port.get_element_type().get_type_name(), "other"))
                for port in self.compiled.inputs]

    def describe(self) -> dict[str, Any]:
        props = {k.lower(): _plain(self.compiled.get_property(k)) for k in REPORTED}
        return {"provider": self.provider, "runtime": "openvino", "device": DEVICE,
                "precision": self.precision, "intra_op_threads": self.spec.intra_op_threads,
                **device_info(), **props}


def read_onnx(core: Any, onnx_path: str | Path) -> Any:
    """The ONNX file as an OpenVINO model; SkipCell for a graph with ops OpenVINO has no
    conversion for (onnxruntime-only contrib ops such as int8-dynamic's QAttention)."""
    try:
        return core.read_model(str(onnx_path))
    except RuntimeError as exc:
        missing = re.search(r"No conversion rule found for operations: ([^\n]+)", str(exc))
        if missing is None:
            raise
        raise SkipCell(f"openvino cannot read this graph: no conversion for "
                       f"{missing.group(1).strip()} (onnxruntime-only ops)") from None


def openvino_runner(onnx_path: str | Path, spec: TimingSpec) -> OpenVinoRunner:
    """Compile `onnx_path` for the CPU plugin at the precision the file asks for.

    SkipCell when OpenVINO is not installed or the CPU cannot run that precision.
    """
    reason = available()
    if reason:
        raise SkipCell(reason)
    core = _core()
    model = read_onnx(core, onnx_path)
    wanted = _requested(model)
    compiled = core.compile_model(model, DEVICE, compile_config(spec, wanted))
    ran = _plain(compiled.get_property("INFERENCE_PRECISION_HINT"))
    if FROM_OV.get(ran) != wanted:
        caps = ", ".join(device_info()["optimization_capabilities"])
        raise SkipCell(f"openvino: {wanted} asked for, but its CPU plugin runs {ran} on this "
                       f"CPU (capabilities: {caps})")
    log.debug("openvino compiled %s at %s", onnx_path, wanted)
    return OpenVinoRunner(compiled, spec, wanted)
