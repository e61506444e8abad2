"""The timing loop: warm-up, then at least N runs AND at least T seconds, load recorded."""
from __future__ import annotations

import gc
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
import psutil

from harness.schema import TimingSpec
from harness.timing.base import Runner
from harness.timing.stats import Stats

log = logging.getLogger(__name__)
MIN_LOAD_WINDOW_S = 0.2  # CPU seconds (all cores) needed before foreign load is judged


class Probe(NamedTuple):
    """CPU counters at one instant: per-core system times and this process's CPU seconds."""

    per_cpu: list[Any]
    own_cpu_s: float


def probe() -> Probe:
    times = psutil.Process().cpu_times()
    return Probe(psutil.cpu_times(percpu=True), times.user + times.system)


def _busy_total(t: Any) -> tuple[float, float]:
    # on Linux guest time is already inside user/nice (as psutil.cpu_percent treats it)
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    return total - idle, total


def load_between(before: Probe, after: Probe) -> tuple[float | None, list[float]]:
    """(share of all cores busy with other processes, busy share of each core).

    Other processes' load = (system-wide busy CPU seconds - this process's CPU seconds) /
    CPU seconds available, so 0.5 on 2 cores means one core's worth of foreign work.
    None when the window is too short (under MIN_LOAD_WINDOW_S CPU seconds) to tell.
    """
    busy_sum = total_sum = 0.0
    per_core = []
    for b, a in zip(before.per_cpu, after.per_cpu, strict=True):
        (b_busy, b_total), (a_busy, a_total) = _busy_total(b), _busy_total(a)
        d_busy, d_total = a_busy - b_busy, a_total - b_total
        per_core.append(round(d_busy / d_total, 3) if d_total > 0 else 0.0)
        busy_sum += d_busy
        total_sum += d_total
    if total_sum < MIN_LOAD_WINDOW_S:  # a few clock ticks cannot tell whose load it was
        return None, per_core
    others = max(0.0, busy_sum - (after.own_cpu_s - before.own_cpu_s)) / total_sum
    return round(others, 4), per_core


def steal_between(before: Probe, after: Probe) -> float | None:
    """Share of the CPU time the hypervisor gave to other guests (steal), or None where the
    system does not report it."""
    steal = total = 0.0
    for b, a in zip(before.per_cpu, after.per_cpu, strict=True):
        if not hasattr(a, "steal"):
            return None
        steal += a.steal - b.steal
        total += _busy_total(a)[1] - _busy_total(b)[1]
    return round(steal / total, 4) if total > 0 else None


def judge(stats: Stats, others_load: float | None, spec: TimingSpec,
          round_cv: float | None = None) -> tuple[bool, str | None]:
    """Flag a measurement whose spread (of the samples, or of the per-round medians) or whose
    competing load is above the spec's limits."""
    reasons = []
    if stats.cv > spec.unstable_cv:
        reasons.append(f"cv {stats.cv:.3f} > unstable_cv {spec.unstable_cv}")
    if round_cv is not None and round_cv > spec.unstable_round_cv:
        reasons.append(f"per-round p50s vary by cv {round_cv:.3f} > unstable_round_cv "
                       f"{spec.unstable_round_cv}")
    if others_load is not None and others_load > spec.unstable_load:
        reasons.append(f"other processes kept {others_load:.2f} of the CPU busy "
                       f"(> unstable_load {spec.unstable_load})")
    return bool(reasons), "; ".join(reasons) or None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (everything it loaded, not only ORT)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _nvidia_smi(query: str) -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, query, "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def gpu_mem_mb(pid: int | None = None) -> float | None:
    """GPU memory this process holds per nvidia-smi, or None when that is unknown."""
    out = _nvidia_smi("--query-compute-apps=pid,used_memory")
    if out is None:
        return None
    pid = os.getpid() if pid is None else pid
    used = [float(mem) for p, _, mem in (line.partition(",") for line in out.splitlines())
            if p.strip() == str(pid) and mem.strip().isdigit()]
    return sum(used) if used else None  # None too when the container hides host pids


def gpu_used_mb() -> float | None:
    """Memory in use on GPU 0 by every process (a fallback where pids are hidden)."""
    out = _nvidia_smi("--query-gpu=memory.used")
    lines = (out or "").split()
    return float(lines[0]) if lines and lines[0].isdigit() else None


def cpu_runner(session: ort.InferenceSession, feed: dict[str, np.ndarray]) -> Callable[[], Any]:
    """One inference with pre-built output names and RunOptions, outputs returned to host."""
    names = [o.name for o in session.get_outputs()]
    run_options = ort.RunOptions()
    run = session.run

    def step() -> Any:
        return run(names, feed, run_options)

    return step


def cuda_runner(session: ort.InferenceSession, feed: dict[str, np.ndarray],
                device_id: int = 0) -> Callable[[], Any]:
    """IO binding: inputs copied to the GPU once, outputs left on the GPU.

    The host-to-device copies happen here, outside the timed region; each timed step is the
    run plus a wait for the output stream, so the time covers the GPU work and no copies.
    """
    binding = session.io_binding()
    on_device = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", device_id) for k, v in feed.items()}
    for name, value in on_device.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", device_id)
    binding.synchronize_inputs()
    run_options = ort.RunOptions()
    run, sync = session.run_with_iobinding, binding.synchronize_outputs

    def step() -> None:
        run(binding, run_options)
        sync()

    step.keep_alive = on_device  # type: ignore[attr-defined]
    return step


def time_until(step: Callable[[], Any], iterations: int, seconds: float, max_seconds: float,
               clock: Callable[[], int] = time.perf_counter_ns) -> tuple[list[int], str]:
    """Time `step` (ns) until `iterations` AND `seconds` are both reached, or `max_seconds`
    has passed; returns the samples and which criterion stopped the loop."""
    samples: list[int] = []
    append = samples.append
    start = clock()
    min_end, max_end = start + int(seconds * 1e9), start + int(max_seconds * 1e9)
    while True:
        t0 = clock()
        step()
        t1 = clock()
        append(t1 - t0)
        if t1 >= min_end and len(samples) >= iterations:
            return samples, "criteria met"
        if t1 >= max_end:
            return samples, "max_seconds"


def timed_loop(step: Callable[[], Any], spec: TimingSpec) -> tuple[list[int], str]:
    """Warm-up, then time `step` with perf_counter_ns until min_iterations AND min_seconds
    are both reached, or max_seconds has passed; the GC is off while timing."""
    for _ in range(spec.warmup):
        step()
    gc.collect()
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return time_until(step, spec.min_iterations, spec.min_seconds, spec.max_seconds)
    finally:
        if gc_was_on:
            gc.enable()


@dataclass(frozen=True)
class Measurement:
    """Raw samples, their summary, and the conditions they were taken under."""

    samples_ms: list[float]
    stats: Stats
    batch_size: int
    unstable: bool
    unstable_reason: str | None
    load_avg: float | None
    others_load: float | None
    peak_rss_mb: float | None
    gpu_mem_mb: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def record_fields(self) -> dict[str, Any]:
        """Record fields: latency stats, raw samples, stability, load and memory."""
        return {
            **self.stats.to_record_fields(self.batch_size),
            "samples_ms": self.samples_ms,
            "unstable": self.unstable,
            "unstable_reason": self.unstable_reason,
            "load_avg": self.load_avg,
            "peak_rss_mb": self.peak_rss_mb,
            "gpu_mem_mb": self.gpu_mem_mb,
        }


def make_step(session: Any, feed: dict[str, np.ndarray], provider: str) -> Callable[[], Any]:
    """The timed call: an onnxruntime session's (IO binding on CUDA), else a runner's own
    prepared step (harness.timing.backend)."""
    if isinstance(session, Runner):
        return session.step(feed)
    return cuda_runner(session, feed) if provider == "cuda" else cpu_runner(session, feed)


def measure(session: Any, feed: dict[str, np.ndarray], spec: TimingSpec, *,
            batch_size: int, provider: str) -> Measurement:
    """Time `session` (an onnxruntime session or a backend runner) on `feed` per `spec`;
    CUDA runs through IO binding."""
    step = make_step(session, feed, provider)
    before, wall0 = probe(), time.perf_counter()
    samples_ns, stopped_by = timed_loop(step, spec)
    wall = time.perf_counter() - wall0
    after = probe()
    others, per_core = load_between(before, after)
    samples_ms = (np.asarray(samples_ns, dtype=np.float64) / 1e6).tolist()
    stats = Stats.from_samples(samples_ms)
    unstable, reason = judge(stats, others, spec)
    if unstable:
        log.info("unstable timing: %s", reason)
    details = {"warmup": spec.warmup, "seconds": round(wall, 3), "stopped_by": stopped_by,
               "others_load": others, "cpu_busy_per_core": per_core, "gc_disabled": True,
               "timer": "time.perf_counter_ns", "io_binding": provider == "cuda"}
    if provider == "cuda":
        details["gpu_used_mb_all_processes"] = gpu_used_mb()
    return Measurement(samples_ms=samples_ms, stats=stats, batch_size=batch_size,
                       unstable=unstable, unstable_reason=reason,
                       load_avg=round(psutil.getloadavg()[0], 3), others_load=others,
                       peak_rss_mb=round(peak_rss_mb(), 1),
                       gpu_mem_mb=gpu_mem_mb() if provider == "cuda" else None,
                       details=details)
