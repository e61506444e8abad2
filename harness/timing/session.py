"""onnxruntime sessions built from a TimingSpec, one execution provider at a time."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort

from harness.errors import SkipCell
from harness.schema import TimingSpec

log = logging.getLogger(__name__)

EP_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
NO_CUDA = "CUDA execution provider not available: onnxruntime-gpu not installed / no GPU"
# ORT's CUDA default multiplies fp32 in TF32 (10-bit mantissa): an fp32 model would then be
# timed at a lower precision than the CPU computes its dev metric with.
CUDA_OPTIONS = {"device_id": "0", "use_tf32": "0"}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_EXEC_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}


def session_options(spec: TimingSpec) -> ort.SessionOptions:
    """Threads, graph optimization level and execution mode from the spec (0 = ORT default)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = spec.intra_op_threads or 0
    opts.inter_op_num_threads = spec.inter_op_threads or 0
    opts.graph_optimization_level = _OPT_LEVELS[spec.graph_optimization]
    opts.execution_mode = _EXEC_MODES[spec.execution_mode]
    opts.log_severity_level = 3  # errors only: ORT's warnings are noise in a timing run
    spin = "1" if spec.allow_spinning else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if spec.stop_spinning_after_run:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


def provider_list(provider: str) -> list[Any]:
    """ORT's providers argument for "cpu" or "cuda"; SkipCell when CUDA is not built in."""
    if provider == "cpu":
        return [EP_NAMES["cpu"]]
    if provider == "cuda":
        if EP_NAMES["cuda"] not in ort.get_available_providers():
            raise SkipCell(NO_CUDA)
        _preload_cuda_libraries()
        # CPU stays as the fallback for nodes CUDA has no kernel for (shape ops etc.)
        return [(EP_NAMES["cuda"], dict(CUDA_OPTIONS)), EP_NAMES["cpu"]]
    raise ValueError(f"unknown provider {provider!r}; expected one of {sorted(EP_NAMES)}")


@functools.cache
def _preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels (or the system) before the CUDA provider
    needs them, so a process that never imported torch finds them too (ORT >= 1.21)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except OSError as exc:  # the session's own error will say which library is missing
            log.debug("onnxruntime.preload_dlls failed: %s", exc)


def make_session(onnx_path: str | Path, provider: str, spec: TimingSpec) -> ort.InferenceSession:
    """An InferenceSession on `provider` ("cpu" or "cuda"); SkipCell when CUDA is unusable."""
    providers = provider_list(provider)
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=session_options(spec),
                                       providers=providers)
    except Exception as exc:
        if provider == "cuda" and "cuda" in str(exc).lower():
            raise SkipCell(f"{NO_CUDA} ({str(exc).splitlines()[0][:200]})") from exc
        raise
    if session.get_providers()[0] != EP_NAMES[provider]:
        # ORT logs and falls back to CPU when the CUDA libraries fail to load
        raise SkipCell(f"{NO_CUDA} (session fell back to {session.get_providers()[0]})")
    log.debug("session on %s for %s", session.get_providers(), onnx_path)
    return session


def describe_session(session: ort.InferenceSession, provider: str, spec: TimingSpec
                     ) -> dict[str, Any]:
    """The settings that shape a measurement, for the record's `session` field."""
    return {
        "provider": provider,
        "ort_providers": list(session.get_providers()),
        "intra_op_threads": spec.intra_op_threads,  # None: ORT default (one per physical core)
        "inter_op_threads": spec.inter_op_threads,
        "graph_optimization": spec.graph_optimization,
        "execution_mode": spec.execution_mode,
        "allow_spinning": spec.allow_spinning,
        "stop_spinning_after_run": spec.stop_spinning_after_run,
        "onnxruntime": ort.__version__,
        "ort_device": ort.get_device(),
        "provider_options": _options(session, provider),
    }


def _options(session: ort.InferenceSession, provider: str) -> dict[str, str]:
    """The options ORT applied to the provider, for the settings that change the numbers."""
    options = session.get_provider_options().get(EP_NAMES.get(provider, ""), {})
    return {k: v for k, v in options.items() if k in ("device_id", "use_tf32")}
