"""Time a group of sessions (onnxruntime or OpenVINO: the variants of one model, task,
provider and shape) in interleaved rounds; one set of Record fields per variant, with the
speedup over the baseline taken from the same rounds. Several shapes of one provider are
timed at once, their rounds alternating (`time_groups`)."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from harness.timing.rounds import (
    SLICE_WARMUP,
    Rounds,
    Slice,
    paired_speedup,
    round_cv,
    time_rounds_together,
)
from harness.timing.stats import Stats

log = logging.getLogger(__name__)
ON_CPU = ("cpu", "openvino")  # providers whose rounds the CPU reference workload describes
SAMPLE_DECIMALS = 4  # ms rounded to 0.1 µs in records (perf_counter_ns resolution is finer
#                      than the run-to-run noise by orders of magnitude; halves record size)


@dataclass
class Group:
    """One shape's variants to time: their sessions (or runners), each variant's inputs
    (the same texts through its own tokenizer), the batch size and the baseline's key."""

    sessions: Mapping[str, ort.InferenceSession | Runner]
    feeds: Mapping[str, Mapping[str, np.ndarray]]
    batch_size: int
    baseline: str | None = None
    seq_len: int | None = None  # only to name the shape in the others' records


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
    got = time_groups([Group(sessions, feeds, batch_size, baseline)], provider, spec)[0]
    if isinstance(got, Exception):
        raise got
    return got


def time_groups(groups: Sequence[Group], provider: str, spec: TimingSpec
                ) -> list[dict[str, dict[str, Any]] | Exception]:
    """`time_group` for several shapes of one provider at once, their rounds alternating
    (harness.timing.rounds.time_rounds_together): each group's Record fields per variant, or
    the exception that stopped that group's timing."""
    runners = [{name: as_runner(s, provider, spec) for name, s in g.sessions.items()}
               for g in groups]
    steps = [{name: r.step(feed_for(r, g.feeds[name])) for name, r in rs.items()}
             for g, rs in zip(groups, runners, strict=True)]
    reference = Reference(spec) if provider in ON_CPU else None

    def mark() -> tuple[Any, float | None]:
        return probe(), reference and reference.ms()

    timed = time_rounds_together(steps, spec, [mark] * len(groups))
    shapes = [[g.batch_size, g.seq_len] for g in groups]
    return [got if isinstance(got, Exception) else
            _fields(got, g, rs, provider, spec, shapes[:i] + shapes[i + 1:])
            for i, (g, rs, got) in enumerate(zip(groups, runners, timed, strict=True))]


def _fields(rounds: Rounds, group: Group, runners: Mapping[str, Runner], provider: str,
            spec: TimingSpec, alongside: list[list[int | None]]) -> dict[str, dict[str, Any]]:
    """Record fields of every variant of one timed group."""
    counters = [c for c, _ in rounds.marks]
    others, per_core = load_between(counters[0], counters[-1])
    marks = list(zip(counters[:-1], counters[1:], strict=True))
    shared = {"load_avg": round(psutil.getloadavg()[0], 3), "peak_rss_mb": round(peak_rss_mb(), 1),
              "gpu_mem_mb": gpu_mem_mb() if provider == "cuda" else None}
    details = {"warmup": spec.warmup, "rounds": spec.rounds, "round_order": spec.round_order,
               "slice": vars(Slice.of(spec)), "slice_warmup": SLICE_WARMUP,
               "turn_seconds": spec.turn_seconds,
               "group_seconds": rounds.seconds, "group": list(group.sessions),
               "rounds_alongside": alongside,  # [batch, seq] of the shapes timed in turn
               "others_load": others, "cpu_busy_per_core": per_core,
               "round_others_load": [load_between(a, b)[0] for a, b in marks],
               "round_steal": [steal_between(a, b) for a, b in marks],
               "reference_ms": [ms for _, ms in rounds.marks], "gc_disabled": True,
               "timer": "time.perf_counter_ns", "io_binding": provider == "cuda"}
    return {name: variant_fields(rounds, name, group.batch_size, spec, others, group.baseline)
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

