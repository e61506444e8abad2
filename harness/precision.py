"""The inference precision an ONNX file asks its runtime for, stored in the file's metadata.

The `bf16` and `fp16` methods write it; the timing and evaluation runtimes read it: OpenVINO
turns it into its INFERENCE_PRECISION_HINT, onnxruntime (which runs a graph in the graph's own
types and has no CPU bf16 kernels) refuses a file that asks for anything but fp32. A file
without the entry asks for fp32.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

PRECISION_KEY = "harness.precision"
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
DEFAULT = "fp32"


def requested(metadata: Mapping[str, str]) -> str:
    """The precision in a model's metadata map (fp32 when absent); ValueError if unknown."""
    value = metadata.get(PRECISION_KEY, DEFAULT)
    if value not in PRECISIONS:
        raise ValueError(f"metadata {PRECISION_KEY}={value!r}; expected one of {PRECISIONS}")
    return value


def mark(model: Any, precision: str) -> None:
    """Set the precision entry of an onnx ModelProto in place (other entries kept)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    for prop in model.metadata_props:
        if prop.key == PRECISION_KEY:
            prop.value = precision
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = PRECISION_KEY, precision
