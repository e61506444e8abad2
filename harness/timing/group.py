"""Time a group of sessions (onnxruntime or OpenVINO: the variants of one model, task,
provider and shape) in interleaved rounds; one set of Record fields per variant, with the
speedup over the baseline taken from the same rounds."""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

from harness.schema import TimingSpec
from harness.timing.backend import as_runner
from harness.timing.base import Runner
from harness.timing.inputs import feed_for
from harness.timing.loop import (
    gpu_mem_mb,
    judge,
    load_between,
    peak_rss_mb,
    probe,
    steal_between,
)
from harness.timing.reference import Reference
from harness.timing.rounds import SLICE_WARMUP, Rounds, Slice, paired_speedup, round_cv, time_rounds
from harness.timing.stats import Stats

log = logging.getLogger(__name__)
ON_CPU = ("cpu", "openvino")  # providers whose rounds the CPU reference workload describes
SAMPLE_DECIMALS = 4  # ms rounded to 0.1 µs in records (perf_counter_ns resolution is finer
#                      than the run-to-run noise by orders of magnitude; halves record size)


def time_group(sessions: Mapping[str, ort.InferenceSession | Runner], provider: str,
               spec: TimingSpec, feeds: Mapping[str, Mapping[str, np.ndarray]],
               batch_size: int, *, baseline: str | None = None) -> dict[str, dict[str, Any]]:
    """Time every session on its inputs (`feeds`, per variant: the same texts through each
    variant's tokenizer) in `spec.rounds` interleaved rounds.

    A session is an onnxruntime session of `provider` or a runner of any backend
    (harness.timing.backend.make_runner: onnxruntime, OpenVINO); each is timed through its
    runner's step (IO binding on CUDA). Returns Record fields per variant: latency stats over
    all its samples, the raw samples with their round sizes and the round order, the speedup
    over `baseline` (a key of `sessions`) with its 95% interval over rounds, the precision the
    runtime computed in, stability, load and memory.
    """
    runners = {name: as_runner(s, provider, spec) for name, s in sessions.items()}
    steps = {name: r.step(feed_for(r, feeds[name])) for name, r in runners.items()}
    reference = Reference(spec) if provider in ON_CPU else None
    wall0 = time.perf_counter()
    rounds = time_rounds(steps, spec, mark=lambda: (probe(), reference and reference.ms()))
    wall = time.perf_counter() - wall0
    counters = [c for c, _ in rounds.marks]
    others, per_core = load_between(counters[0], counters[-1])
    marks = list(zip(counters[:-1], counters[1:], strict=True))
    shared = {"load_avg": round(psutil.getloadavg()[0], 3), "peak_rss_mb": round(peak_rss_mb(), 1),
              "gpu_mem_mb": gpu_mem_mb() if provider == "cuda" else None}
    details = {"warmup": spec.warmup, "rounds": spec.rounds, "round_order": spec.round_order,
               "slice": vars(Slice.of(spec)), "slice_warmup": SLICE_WARMUP,
               "turn_seconds": spec.turn_seconds,
               "group_seconds": round(wall, 3), "group": list(sessions),
               "others_load": others, "cpu_busy_per_core": per_core,
               "round_others_load": [load_between(a, b)[0] for a, b in marks],
               "round_steal": [steal_between(a, b) for a, b in marks],
               "reference_ms": [ms for _, ms in rounds.marks], "gc_disabled": True,
               "timer": "time.perf_counter_ns", "io_binding": provider == "cuda"}
    return {name: variant_fields(rounds, name, batch_size, spec, others, baseline)
            | shared | {"precision": runner.precision,
                        "session": runner.describe()
                        | {"measurement": details | {"stopped_by": rounds.stopped_by[name]}}}
            for name, runner in runners.items()}


def variant_fields(rounds: Rounds, name: str, batch_size: int, spec: TimingSpec,
                   others_load: float | None, baseline: str | None) -> dict[str, Any]:
    """Record fields of one variant of a timed group (see `time_group`)."""
    per_round = rounds.samples_ms[name]
    flat = rounds.flat(name)
    stats = Stats.from_samples(flat)
    spread = round_cv(per_round)
    unstable, reason = judge(stats, others_load, spec, spread)
    if unstable:
        log.info("unstable timing of %s: %s", name, reason)
    fields: dict[str, Any] = {
        **stats.to_record_fields(batch_size),
        "samples_ms": [round(x, SAMPLE_DECIMALS) for x in flat],
        "round_sizes": rounds.sizes(name), "round_order": rounds.order,
        "latency_round_cv": spread, "unstable": unstable, "unstable_reason": reason,
        "others_load": others_load,
    }
    if baseline is not None and baseline in rounds.samples_ms:
        ci = paired_speedup(rounds.samples_ms[baseline], per_round)
        fields |= {"speedup": ci.estimate, "speedup_ci_low": ci.low if ci.n > 1 else None,
                   "speedup_ci_high": ci.high if ci.n > 1 else None}
    return fields

