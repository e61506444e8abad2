"""Interleaved rounds: every variant of a group is timed in every round, in a recorded order.

A group is the variants (method pipelines) of one (model, task, provider, batch, seq). Their
sessions stay open and `spec.rounds` rounds each run every variant for its slice (1/rounds)
of the spec's iterations and seconds. The machine's speed drifts and flips between modes over
seconds (docs/timing.md); a variant and its baseline timed in the same round see the same mode,
so their per-round ratio is stable where their separate medians are not.

Backend-agnostic: a variant is a zero-argument callable running one inference (an
onnxruntime session with its feed, or any other backend's `run(feed)` bound to its feed).
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.schema import TimingSpec
from harness.timing.loop import time_until

Step = Callable[[], Any]
SLICE_WARMUP = 1  # untimed runs at the start of each slice: caches refill after a switch
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Slice:
    """What one variant runs in one round: iterations AND seconds, or until max_seconds."""

    iterations: int
    seconds: float
    max_seconds: float

    @classmethod
    def of(cls, spec: TimingSpec) -> Slice:
        n = spec.rounds
        return cls(math.ceil(spec.min_iterations / n), spec.min_seconds / n, spec.max_seconds / n)


def round_orders(variants: Sequence[str], rounds: int, how: str = "rotate", seed: int = 0
                 ) -> list[list[str]]:
    """The order of the variants in each round: rotated by one per round, or shuffled with
    `seed` (a seeded permutation per round)."""
    names = list(variants)
    if how == "shuffle":
        rng = np.random.default_rng(seed)
        return [[names[i] for i in rng.permutation(len(names))] for _ in range(rounds)]
    if how != "rotate":
        raise ValueError(f"round order {how!r}: expected rotate or shuffle")
    n = len(names)
    return [names[r % n:] + names[:r % n] if n else [] for r in range(rounds)]


def timed_slice(step: Step, part: Slice) -> tuple[list[int], str]:
    """Run `step` SLICE_WARMUP times untimed, then time it (ns) until `part.iterations` AND
    `part.seconds` are both reached, or `part.max_seconds` has passed."""
    for _ in range(SLICE_WARMUP):
        step()
    return time_until(step, part.iterations, part.seconds, part.max_seconds)


@dataclass
class Rounds:
    """Raw samples (ms) of every variant in every round, and the order they ran in."""

    samples_ms: dict[str, list[list[float]]]
    order: list[list[str]]
    stopped_by: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    marks: list[Any] = field(default_factory=list)  # `mark()` before each round and at the end

    def flat(self, variant: str) -> list[float]:
        """All samples of a variant, round after round."""
        return [x for r in self.samples_ms[variant] for x in r]

    def sizes(self, variant: str) -> list[int]:
        return [len(r) for r in self.samples_ms[variant]]


def time_rounds(steps: Mapping[str, Step], spec: TimingSpec,
                mark: Callable[[], Any] | None = None) -> Rounds:
    """Warm every variant up (spec.warmup runs), then run spec.rounds interleaved rounds.

    The GC is off while timing. Samples are kept per round; nothing is discarded. `mark`
    (e.g. CPU counters) is called before each round and after the last one.
    """
    names = list(steps)
    order = round_orders(names, spec.rounds, spec.round_order, spec.seed)
    part = Slice.of(spec)
    for name in order[0] if order else []:
        for _ in range(spec.warmup):
            steps[name]()
    samples: dict[str, list[list[float]]] = {n: [] for n in names}
    stopped: dict[str, list[str]] = {n: [] for n in names}
    gc.collect()
    was_on = gc.isenabled()
    gc.disable()
    start = time.perf_counter()
    marks = []
    try:
        for names_in_round in order:
            if mark is not None:
                marks.append(mark())
            for name in names_in_round:
                ns, why = timed_slice(steps[name], part)
                samples[name].append((np.asarray(ns, dtype=np.float64) / 1e6).tolist())
                stopped[name].append(why)
        if mark is not None:
            marks.append(mark())
    finally:
        if was_on:
            gc.enable()
    return Rounds(samples, order, stopped, round(time.perf_counter() - start, 3), marks)


def round_stat(rounds_ms: Sequence[Sequence[float]], q: float | str = 50) -> np.ndarray:
    """One value per round: a percentile `q` of its samples, or their mean."""
    return np.array([float(np.mean(r)) if q == "mean" else float(np.percentile(r, q))
                     for r in rounds_ms if len(r)])


@dataclass(frozen=True)
class RatioCI:
    """A ratio with its 95% interval over rounds (NaN bounds with fewer than two rounds)."""

    estimate: float
    low: float
    high: float
    n: int


def log_ratio_ci(log_ratios: Sequence[float]) -> RatioCI:
    """Geometric mean of per-round ratios with a Student-t 95% interval on their logs."""
    x = np.asarray(log_ratios, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return RatioCI(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2:
        return RatioCI(math.exp(mean), math.nan, math.nan, n)
    half = float(sps.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return RatioCI(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n)


def paired_speedup(base_rounds: Sequence[Sequence[float]],
                   variant_rounds: Sequence[Sequence[float]]) -> RatioCI:
    """Speedup of a variant over the baseline timed in the same rounds: per round, the
    baseline's median / the variant's median; summarised by `log_ratio_ci`."""
    base, var = round_stat(base_rounds), round_stat(variant_rounds)
    if len(base) != len(var):
        raise ValueError(f"{len(base)} baseline rounds vs {len(var)} variant rounds")
    return log_ratio_ci(np.log(base) - np.log(var))


def round_cv(rounds_ms: Sequence[Sequence[float]]) -> float:
    """Coefficient of variation of the per-round medians (0 with one round)."""
    med = round_stat(rounds_ms)
    return float(med.std(ddof=1) / med.mean()) if len(med) > 1 and med.mean() > 0 else 0.0
