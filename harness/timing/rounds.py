"""Interleaved rounds: every variant of a group is timed in every round, in a recorded order.

A group is the variants (method pipelines) of one (model, task, provider, batch, seq). Their
sessions stay open and `spec.rounds` rounds each run every variant for its slice (1/rounds)
of the spec's iterations and seconds. The machine's speed drifts and flips between modes over
seconds (docs/timing.md); a variant and its baseline timed in the same round see the same mode,
so their per-round ratio is stable where their separate medians are not. Within a round the
slices are taken in turns of `spec.turn_seconds` (the variants' order reshuffled every cycle),
so a variant and its baseline are timed tens of milliseconds apart rather than a slice apart:
on a 2-core VM whose speed moves within a second this cut the spread of per-round ratios at
batch 1 by two to four times (docs/timing.md, "Turns").

Backend-agnostic: a variant is a zero-argument callable running one inference (an
onnxruntime session with its feed, or any other backend's `run(feed)` bound to its feed).
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from harness.schema import TimingSpec
from harness.timing.loop import time_until

Step = Callable[[], Any]
SLICE_WARMUP = 1  # untimed runs at the start of each slice: caches refill after a switch
LONG_RUN = 4  # in turns, a variant whose run lasts this many turns takes its slice at once
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


def cycle_orders(first: Sequence[str], seed: int, round_index: int) -> Iterator[list[str]]:
    """The variants' order in each cycle of turns of one round: the round's own order first,
    then a permutation per cycle seeded with (seed, round), so every variant follows every
    other about equally often."""
    yield list(first)
    rng = np.random.default_rng([seed, round_index])
    while True:
        yield [first[i] for i in rng.permutation(len(first))]


def timed_turns(steps: Mapping[str, Step], first: Sequence[str], part: Slice,
                turn_seconds: float, seed: int, round_index: int
                ) -> dict[str, tuple[list[int], str]]:
    """One round taken in turns: cycle after cycle every variant runs SLICE_WARMUP times
    untimed, then timed (ns) until `turn_seconds` have passed (at least one run), until every
    variant has `part.iterations` runs AND `part.seconds` of timed runs, or the round has
    lasted `part.max_seconds` per variant. A variant whose first run lasts LONG_RUN turns or
    more (batch 32) takes the rest of its slice in that turn, as a whole slice: its runs are
    seconds apart from the others' whichever way, and a run after a run of its own needs no
    untimed run. Returns each variant's samples and stop reason, as `timed_slice` does."""
    ns: dict[str, list[int]] = {n: [] for n in first}
    why: dict[str, str] = {}  # the variants that took their slice at once, and how it ended
    clock = time.perf_counter_ns
    max_end = clock() + int(part.max_seconds * len(first) * 1e9)
    need_ns, long_ns = part.seconds * 1e9, LONG_RUN * turn_seconds * 1e9

    def has_slice(x: list[int]) -> bool:
        return len(x) >= part.iterations and sum(x) >= need_ns

    for order in cycle_orders(first, seed, round_index):
        for name in (n for n in order if n not in why):
            for _ in range(SLICE_WARMUP):
                steps[name]()
            ns[name] += time_until(steps[name], 1, turn_seconds, turn_seconds, clock)[0]
            if ns[name][0] < long_ns:
                continue
            why[name] = "criteria met"
            if not has_slice(ns[name]):
                more, why[name] = time_until(
                    steps[name], part.iterations - len(ns[name]),
                    (need_ns - sum(ns[name])) / 1e9, part.max_seconds - sum(ns[name]) / 1e9)
                ns[name] += more
        if all(has_slice(x) for x in ns.values()):
            return {n: (ns[n], why.get(n, "criteria met")) for n in first}
        if clock() >= max_end:
            return {n: (ns[n], why.get(n, "max_seconds")) for n in first}
    raise AssertionError("unreachable")  # cycle_orders never ends


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
    """Warm every variant up (spec.warmup runs), then run spec.rounds interleaved rounds:
    each variant's slice at once (`spec.turn_seconds` None) or in turns (`timed_turns`).

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
        for index, names_in_round in enumerate(order):
            if mark is not None:
                marks.append(mark())
            taken = ({n: timed_slice(steps[n], part) for n in names_in_round}
                     if spec.turn_seconds is None else
                     timed_turns(steps, names_in_round, part, spec.turn_seconds, spec.seed,
                                 index))
            for name, (ns, reason) in taken.items():
                samples[name].append((np.asarray(ns, dtype=np.float64) / 1e6).tolist())
                stopped[name].append(reason)
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
