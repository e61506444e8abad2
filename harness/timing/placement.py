"""Where a session's nodes ran, and whether a GPU session computes what the CPU one does.

A CUDA session that keeps its matrix products on the CPU (ORT has no CUDA kernel for the
dynamic int8 ops, for example) would time the CPU plus host-device copies under the label
`cuda`; a CUDA session whose outputs differ from the CPU's would carry a dev metric (measured
on the CPU) that does not describe it. Both are refused here, before anything is timed.
"""
from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness.errors import SkipCell
from harness.schema import TimingSpec
from harness.timing.base import Runner
from harness.timing.session import EP_NAMES, provider_list, session_options

DEVICE_PROVIDERS = ("cuda",)  # the providers that run off the CPU: checked before timing
# op types that carry the arithmetic of a transformer: none of them may fall back to the CPU
HEAVY_OP_MARKERS = ("MatMul", "Gemm", "Attention", "Conv")
# outputs of the same fp32 graph on two providers: |a - b| <= ATOL + RTOL * |b|
ATOL, RTOL = 1e-3, 1e-3


def is_heavy(op_type: str) -> bool:
    return any(marker in op_type for marker in HEAVY_OP_MARKERS)


@dataclass(frozen=True)
class Placement:
    """Node counts per (op type, execution provider) seen in one profiled run."""

    counts: dict[str, dict[str, int]]

    @classmethod
    def from_profile(cls, events: list[dict[str, Any]]) -> Placement:
        seen: dict[str, Counter[str]] = {}
        for event in events:
            args = event.get("args") or {}
            if event.get("cat") == "Node" and "op_name" in args and "provider" in args:
                seen.setdefault(args["op_name"], Counter())[args["provider"]] += 1
        return cls({op: dict(c) for op, c in sorted(seen.items())})

    def heavy_elsewhere(self, ep_name: str) -> dict[str, int]:
        """Heavy op types with nodes that ran on another provider than `ep_name`: counts."""
        return {op: sum(n for ep, n in by_ep.items() if ep != ep_name)
                for op, by_ep in self.counts.items()
                if is_heavy(op) and any(ep != ep_name for ep in by_ep)}

    def summary(self) -> dict[str, Any]:
        per_ep: Counter[str] = Counter()
        for by_ep in self.counts.values():
            per_ep.update(by_ep)
        return {"nodes_per_provider": dict(per_ep), "ops": self.counts}


def profile_placement(onnx_path: str | Path, provider: str, spec: TimingSpec,
                      feed: Mapping[str, np.ndarray]) -> Placement:
    """Run `feed` once through a profiled session on `provider`; where did each node run?"""
    opts = session_options(spec)
    with tempfile.TemporaryDirectory(prefix="harness-placement-") as tmp:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                       providers=provider_list(provider))
        session.run(None, dict(feed))
        profile = Path(session.end_profiling())
        events = json.loads(profile.read_text())
        del session
    return Placement.from_profile(events)


def require_on_device(placement: Placement, provider: str) -> None:
    """SkipCell when a heavy op of a non-CPU session ran on another provider."""
    ep_name = EP_NAMES[provider]
    elsewhere = placement.heavy_elsewhere(ep_name)
    if provider != "cpu" and elsewhere:
        ops = ", ".join(f"{op} x{n}" for op, n in elsewhere.items())
        raise SkipCell(f"{provider}: {ops} have no {ep_name} kernel and ran on the CPU; a "
                       f"{provider} latency would time the CPU and host-device copies")


def outputs_agree(device_session: ort.InferenceSession | Runner, onnx_path: str | Path,
                  feed: Mapping[str, np.ndarray], spec: TimingSpec) -> dict[str, Any]:
    """Compare the first output of `device_session` (an onnxruntime session or a backend
    runner) with a CPU session of the same file.

    Returns the comparison for the record; raises ValueError beyond float tolerance, because
    the dev metric (computed on the CPU) would then not describe the model on this provider.
    """
    cpu = ort.InferenceSession(str(onnx_path), sess_options=session_options(spec),
                               providers=provider_list("cpu"))
    want = np.asarray(cpu.run(None, dict(feed))[0], dtype=np.float64)
    outputs = (device_session.run(dict(feed)) if isinstance(device_session, Runner)
               else device_session.run(None, dict(feed)))
    got = np.asarray(outputs[0], dtype=np.float64)
    diff = np.abs(got - want)
    excess = float(np.max(diff - RTOL * np.abs(want))) if diff.size else 0.0
    result = {"max_abs_diff": float(diff.max()) if diff.size else 0.0,
              "atol": ATOL, "rtol": RTOL}
    if want.ndim == 2 and want.shape[1] > 1:
        result["argmax_agreement"] = float(np.mean(got.argmax(1) == want.argmax(1)))
    if not np.isfinite(got).all() or excess > ATOL:
        raise ValueError(f"outputs differ from the CPU's by up to {result['max_abs_diff']:.3g} "
                         f"(atol {ATOL}, rtol {RTOL}): the dev metric, measured on the CPU, "
                         "would not describe this model here")
    return result


def device_check(onnx_path: str | Path, provider: str, spec: TimingSpec,
                 feed: Mapping[str, np.ndarray], session: ort.InferenceSession | Runner
                 ) -> dict[str, Any]:
    """For onnxruntime's CUDA provider: where the nodes ran and how its outputs compare with
    the CPU's.

    Empty for the providers that run on the CPU (onnxruntime's CPU provider, OpenVINO, whose
    metric is measured on OpenVINO itself). Raises SkipCell (heavy ops on the CPU) or
    ValueError (outputs differ).
    """
    if provider not in DEVICE_PROVIDERS:
        return {}
    placement = profile_placement(onnx_path, provider, spec, feed)
    require_on_device(placement, provider)
    return {"placement": placement.summary(),
            "cpu_agreement": outputs_agree(session, onnx_path, feed, spec)}
