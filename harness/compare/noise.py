"""Run noise: how far latency moves between runs by more than one run's rounds show, estimated
from the baseline runs (or the new run and its one baseline run), per (provider, batch size)
where there are enough cells; and the machine noise of the baselines' absolute latency."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from harness.compare.values import Key, group_anchors, relative_values, round_values
from harness.records import BASELINE, Record

# Between-run sd (log scale) of a variant's latency relative to its baseline that one run's
# rounds do not show (a group's rounds share one stretch of the machine's time), per run.
# estimate_run_noise over three series of six warm quick-suite runs on the development VM
# gave 1.1%, 1.1% and 1.8% (a noisier day), 1.5% over all 18 runs (docs/timing.md); used
# with one baseline run unless --run-noise is given.
RUN_NOISE = 0.015
MIN_NOISE_PAIRS = 20  # (cell, pair of baseline runs) differences needed to estimate it
# The same for a provider's baselines' absolute latency (the quick suite has 8 baseline cells a
# provider: two baseline runs give 8 differences, three 24)
MIN_MACHINE_PAIRS = 8


@dataclass(frozen=True)
class RunNoise:
    """The between-run sd (log scale) allowed for in a latency statistic's variant tests,
    and where it came from."""

    sd: float
    source: str


DEFAULT_NOISE = RunNoise(RUN_NOISE, "default, measured on the development VM")


def between_run_sd(series: Iterable[Sequence[np.ndarray]]) -> tuple[float, int] | None:
    """The between-run sd (log scale) that rounds do not show, from per-cell series of
    per-run log values (each cell timed in every run): for every cell and pair of runs, the
    difference of their means; its robust (MAD) variance less the part the rounds explain,
    halved (each difference holds two runs). Returns (sd, number of differences); None
    without a difference."""
    diffs, within = [], []
    for logs in series:
        for a, b in combinations(logs, 2):
            diffs.append(float(a.mean() - b.mean()))
            within.append(float(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    if not diffs:
        return None
    spread = float(stats.median_abs_deviation(diffs, scale="normal"))
    return math.sqrt(max(0.0, spread ** 2 - float(np.median(within))) / 2), len(diffs)


def _noise_from(cells: list[list[np.ndarray]], source: str, minimum: int = MIN_NOISE_PAIRS
                ) -> RunNoise | None:
    """`between_run_sd` of `cells` as a RunNoise (`source` with the number of differences
    filled in at `{}`); None with fewer than `minimum` differences."""
    found = between_run_sd(cells)
    if found is None or found[1] < minimum:
        return None
    return RunNoise(found[0], source.format(found[1]))


def estimate_run_noise(bases: list[dict[Key, Record]], stat: float | str) -> RunNoise | None:
    """The between-run sd of variants' per-round latency relative to their baseline, from
    several baseline runs (`between_run_sd` over every variant cell). None with fewer than
    MIN_NOISE_PAIRS (cell, pair of runs) differences."""
    return _runs_noise(list(_relative_series(bases, stat).values()), len(bases))


def _runs_noise(cells: list[list[np.ndarray]], n_runs: int) -> RunNoise | None:
    """`_noise_from` the series of `n_runs` baseline runs' variant cells."""
    return _noise_from(cells, f"estimated from {n_runs} baseline runs ({{}} cell pairs)")


def _relative_series(runs: list[dict[Key, Record]], stat: float | str
                     ) -> dict[Key, list[np.ndarray]]:
    """Per variant cell timed in every run: its per-round log latency relative to its group
    baseline, run by run."""
    series = {}
    for key, record in runs[0].items():
        anchors = group_anchors(key, runs[0], runs[1:]) if record.status == "ok" else None
        if anchors is None or not all(key in b and b[key].status == "ok" for b in runs):
            continue
        rel = [relative_values(b[key], a, stat) for b, a in zip(runs, (anchors[0], *anchors[1]),
                                                                strict=True)]
        if all(r is not None for r in rel):
            series[key] = [np.log(r) for r in rel]
    return series


def estimate_machine_noise(bases: list[dict[Key, Record]], stat: float | str
                           ) -> dict[str, RunNoise]:
    """Per provider, the between-run sd of a baseline's absolute per-round latency (how far
    the machine's speed moves between runs, as the provider's runtime sees it), from several
    baseline runs (`between_run_sd` over the provider's baseline cells). A provider with
    fewer than MIN_MACHINE_PAIRS (cell, pair of runs) differences is left out."""
    series: dict[str, list[list[np.ndarray]]] = {}
    for key in bases[0]:
        runs = [b[key] for b in bases if key in b and b[key].status == "ok"]
        if key[2] != BASELINE or len(runs) < len(bases):
            continue
        logs = [np.log(round_values(r, stat)) for r in runs]
        if all(len(v) > 1 for v in logs):
            series.setdefault(key[3], []).append(logs)
    found = {provider: _noise_from(cells, f"estimated from {len(bases)} baseline runs ({{}} "
                                          f"{provider} baseline cell pairs)", MIN_MACHINE_PAIRS)
             for provider, cells in series.items()}
    return {provider: n for provider, n in found.items() if n is not None}


Group = tuple[str, int]  # (provider, batch size): cells whose run noise is estimated together


@dataclass(frozen=True)
class NoiseTable:
    """The run noise of one latency statistic: per (provider, batch size) where that group's
    variant cells allow an estimate, `pooled` for the other cells. The groups differ: on the
    eleventh session's VM 6.1% for onnxruntime at batch 1 and 1.2% at batch 32, 5.0% pooled."""

    pooled: RunNoise
    groups: dict[Group, RunNoise] = field(default_factory=dict)

    @staticmethod
    def group(key: Key) -> Group:
        """The (provider, batch size) group whose run noise `key`'s cell shares."""
        return key[3], key[4]

    def for_key(self, key: Key) -> RunNoise:
        return self.groups.get(self.group(key), self.pooled)


def _pair_noise(cells: list[list[np.ndarray]]) -> RunNoise | None:
    """With one baseline run (`cells`: the new run's and its series): RUN_NOISE, or the
    spread between the two runs where it is larger (a noisier machine than the development
    VM: the MAD of the cells' differences is taken about their median, so a minority of
    changed cells, or a shift of all of them, barely moves it); None with fewer than
    MIN_NOISE_PAIRS variant cells."""
    found = _noise_from(cells, "estimated from this run and the baseline run ({} cell pairs), "
                               f"above the default {RUN_NOISE:.1%}")
    return DEFAULT_NOISE if found is not None and found.sd <= RUN_NOISE else found


def run_noise_for(new: dict[Key, Record], bases: list[dict[Key, Record]], stat: float | str,
                  given: float | None) -> NoiseTable:
    """`given` when set; else estimated from several baseline runs (as `estimate_run_noise`),
    or from the new run and its one baseline run (`_pair_noise`): per (provider, batch size)
    where the group's cells allow it, pooled for the others; RUN_NOISE where nothing does."""
    if given is not None:
        return NoiseTable(RunNoise(given, "given"))
    several = len(bases) > 1
    series = _relative_series(bases if several else [new, bases[0]], stat)

    def estimate(cells: list[list[np.ndarray]]) -> RunNoise | None:
        return _runs_noise(cells, len(bases)) if several else _pair_noise(cells)

    groups: dict[Group, list[list[np.ndarray]]] = {}
    for key, logs in series.items():
        groups.setdefault(NoiseTable.group(key), []).append(logs)
    found = {g: estimate(cells) for g, cells in groups.items()}
    return NoiseTable(estimate(list(series.values())) or DEFAULT_NOISE,
                      {g: n for g, n in found.items() if n is not None})
