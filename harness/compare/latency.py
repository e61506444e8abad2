"""Round-level latency tests of one cell: Welch on the logs of per-round values, a variant
relative to its group's baseline (allowing for the run noise), a baseline on its absolute
latency (allowing for the machine noise, gated by the reference workload)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

from harness.compare.noise import MIN_MACHINE_PAIRS, RunNoise
from harness.compare.values import LATENCY_STATS, relative_values, round_values
from harness.records import BASELINE, Record

ALPHA = 0.05
MAX_LOAD = 0.5  # other processes' CPU share above which latency is not tested (unstable_load)
PROBE_TOLERANCE = 0.03  # reference workload move between runs above which absolute latency is untested


@dataclass(frozen=True)
class LatencyTest:
    """One latency statistic of one cell, new run vs baseline run(s), at the round level.

    `estimate`, `low`, `high`: ratio new / baseline (of geometric means of per-round values)
    and its 95% Welch interval; `p`: two-sided Welch t-test on the logs (NaN: untested, fewer
    than two rounds on a side); `q`: `p` adjusted across cells (Benjamini-Hochberg); `floor`:
    largest difference between the baseline runs, in percent (0 with one baseline run).
    A cell timed while other processes used more than `max_load` of the CPU, in either run,
    is untested (`note`): its change says more about the machine than about the code.
    """

    estimate: float
    low: float
    high: float
    p: float
    n_new: int
    n_base: int
    floor: float = 0.0
    q: float = math.nan
    note: str | None = None  # why untested, when that is not fewer than two rounds
    basis: str = "absolute"  # or "vs baseline": per-round ratio to the group's baseline
    run_noise: float = 0.0  # between-run sd (log scale) allowed for beyond the rounds

    @property
    def tested(self) -> bool:
        return not math.isnan(self.p)

    @property
    def significant(self) -> bool:
        return self.tested and not math.isnan(self.q) and self.q < ALPHA


def welch_ratio(new: Sequence[float], base_runs: Sequence[Sequence[float]],
                run_noise: float = 0.0) -> LatencyTest:
    """Round-level test of new vs baseline values (positive, e.g. per-round p50s); several
    baseline runs are pooled and their spread is reported as the noise floor.

    Welch's t-test on the logs, with `run_noise` (a between-run sd on the log scale that the
    rounds of one run do not show) added to the variance of each side's mean: the new run's
    mean carries it once, the pooled mean of k baseline runs 1/k times. With run_noise 0 this
    is scipy's Welch test.
    """
    a = np.log(np.asarray(new, dtype=float))
    runs = [np.log(np.asarray(r, dtype=float)) for r in base_runs if len(r)]
    b = np.concatenate(runs) if runs else np.array([])
    if not len(a) or not len(b):
        return LatencyTest(math.nan, math.nan, math.nan, math.nan, len(a), len(b))
    means = [float(r.mean()) for r in runs]
    floor = (math.exp(max(means) - min(means)) - 1) * 100 if len(runs) > 1 else 0.0
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return LatencyTest(math.exp(diff), math.nan, math.nan, math.nan, len(a), len(b), floor)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb + run_noise ** 2 * (1 + 1 / len(runs)))
    if se == 0:  # identical rounds and no run noise: no spread to test against
        p = 1.0 if diff == 0 else 0.0
        return LatencyTest(math.exp(diff), math.exp(diff), math.exp(diff), p, len(a), len(b),
                           floor)
    df = ((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb
          else math.inf)  # Welch-Satterthwaite
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    return LatencyTest(math.exp(diff), math.exp(diff - half), math.exp(diff + half), p,
                       len(a), len(b), floor, run_noise=run_noise)


def reference_ms(record: Record) -> float | None:
    """Geometric mean of the reference workload's times at the record's round boundaries."""
    marks = ((record.session or {}).get("measurement") or {}).get("reference_ms") or []
    marks = [m for m in marks if m]
    return float(np.exp(np.mean(np.log(marks)))) if marks else None


def probe_move(new: Record, bases: list[Record]) -> float | None:
    """Largest relative move of the reference workload between `new` and any baseline run."""
    ref = reference_ms(new)
    others = [reference_ms(b) for b in bases]
    if ref is None or any(o is None for o in others):
        return None
    return max(abs(ref / o - 1) for o in others)


def latency_tests(new: Record, bases: list[Record], fields: Iterable[str], max_load: float,
                  anchors: tuple[Record, list[Record]] | None, noise: dict[str, RunNoise],
                  machine: dict[str, RunNoise]) -> dict[str, LatencyTest]:
    """Round-level tests of one cell; `anchors` = (new run's, baseline runs') group baseline
    records, for a variant: then its latency relative to them is tested, allowing for the
    field's between-run `noise`; otherwise its absolute latency, allowing for the field's
    `machine` noise of the cell's provider when the baseline runs gave one."""
    if not new.samples_ms or not all(b.samples_ms for b in bases):
        return {}
    tests = {}
    for f in fields:
        stat = LATENCY_STATS[f]
        rel = None
        if anchors is not None:
            rel = [relative_values(new, anchors[0], stat)] + [
                relative_values(b, a, stat) for b, a in zip(bases, anchors[1], strict=True)]
        if rel is not None and all(r is not None for r in rel):
            tests[f] = replace(welch_ratio(rel[0], rel[1:], noise[f].sd), basis="vs baseline")
        else:
            tests[f] = welch_ratio(round_values(new, stat),
                                   [round_values(b, stat) for b in bases],
                                   machine[f].sd if f in machine else 0.0)
    if any((r.others_load or 0.0) > max_load for r in (new, *bases)):  # not the code's doing
        return {f: replace(t, p=math.nan, note="timed under load") for f, t in tests.items()}
    note = _absolute_untested(new, bases, new.variant == BASELINE, bool(machine))
    if note:
        tests = {f: t if t.basis == "vs baseline" else replace(t, p=math.nan, note=note)
                 for f, t in tests.items()}
    return tests


def _absolute_untested(new: Record, bases: list[Record], baseline: bool, estimated: bool
                       ) -> str | None:
    """Why absolute latency cannot be tested between these runs, or None when it can. A
    baseline cell needs several baseline runs and the between-run noise of its provider's
    baselines estimated from them (`estimated`); a variant whose group baseline is missing
    from a run falls back to the absolute test with the reference workload's gate only."""
    move = probe_move(new, bases)
    moved = "" if move is None else f" (reference workload off by {move:.0%})"
    if baseline and len(bases) < 2:  # A/A: baselines moved 6-9% (q < 0.01), reference < 3%
        return (f"one baseline run: the machine's speed between runs is unknown{moved}; "
                "give --baseline twice or more")
    if move is not None and move > PROBE_TOLERANCE:
        return f"machine speed moved{moved}"
    if baseline and not estimated:
        return (f"too few {new.provider} baselines in the baseline runs to estimate how far "
                f"their latency moves between runs (fewer than {MIN_MACHINE_PAIRS} cell pairs)")
    return None


def point_latency(new: Record, bases: list[Record], fields: Iterable[str]
                   ) -> dict[str, LatencyTest]:
    """Records without samples: the ratio of the stored statistic, untested."""
    out = {}
    for f in fields:
        a, b = getattr(new, f), [getattr(r, f) for r in bases]
        if a is not None and all(b):
            out[f] = LatencyTest(a / float(np.exp(np.mean(np.log(b)))), math.nan, math.nan,
                                 math.nan, 1, len(b))
    return out
