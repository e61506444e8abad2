"""Compare a run with one or more baseline runs, cell by cell, with thresholds.

Latency: the unit is a round (docs/timing.md), not a sample. Each record keeps its raw samples
per interleaved round; a statistic (p50, p90, ...) is taken per round, and the new run's
per-round values are compared with the baseline runs' by a Welch t-test on their logs, giving
the ratio new / baseline with a 95% interval between rounds and runs. The machine's speed moves
between runs by more than the effects compared (5-15% for a whole group on the development VM,
docs/timing.md), and every variant of a group moves with it: so a variant is tested on its
latency *relative to its group's baseline in the same rounds* (the per-round ratio its speedup
is made of), where that shift cancels; what is left of the machine's between-run movement in
that ratio (a group's rounds share one stretch of time, so one run's rounds cannot show it)
enters the test as a run-level variance: estimated from the baseline runs when there are
several, else the RUN_NOISE measured on the development VM (or --run-noise). A baseline cell
has nothing beside it to cancel the shift: it is tested on its absolute latency only against
several baseline runs (whose spread shows how far the machine moves between runs; one run's
rounds cannot), allowing for the between-run variance of its provider's baselines estimated
from those runs (the machine noise: OpenVINO's baselines can drift between runs while the
reference workload does not), and while the fixed reference workload timed at each round
boundary moved by at most PROBE_TOLERANCE between the runs; it is untested otherwise (a variant
whose baseline is missing gets the absolute test under the reference's gate alone). p-values
across all cells are adjusted with Benjamini-Hochberg (false discovery rate 5%); a regression is
a change both significant and beyond its threshold. With several baseline runs, the spread
between them is a noise floor: a change smaller than it is not a regression.

Metric: delta in points, tested once per (model, task, variant) on per-example predictions when
both runs have them with the same tests as the leaderboard (harness.significance: exact McNemar
where the metric is accuracy, a paired permutation test otherwise), with a paired-bootstrap 95%
interval over dev examples; otherwise reported unpaired. The metric tests' p-values are
adjusted with Benjamini-Hochberg among themselves (another family than latency's), as the
leaderboard adjusts a run's deltas; a metric regression is significant at q < 5%.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import ConfigError, HarnessError, first_line
from harness.publish.markdown import md_table
from harness.records import BASELINE, Record, resolve_stored_path
from harness.significance import paired_delta_ci, paired_test
from harness.timing.rounds import round_stat

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str, int, int]
Predictions = dict[Key, tuple[Sequence, Sequence, Sequence]]  # (pred_new, pred_base, labels)
# latency field -> the statistic of the raw samples it names (a percentile, or the mean)
LATENCY_STATS: dict[str, float | str] = {
    "latency_ms_p50": 50, "latency_ms_p90": 90, "latency_ms_p95": 95, "latency_ms_p99": 99,
    "latency_ms_mean": "mean", "latency_ms_min": 0,
}
ALPHA = 0.05
MAX_LOAD = 0.5  # other processes' CPU share above which latency is not tested (unstable_load)
PROBE_TOLERANCE = 0.03  # reference workload move between runs above which absolute latency is untested
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
ONE_BASELINE_NOTE = (
    "**One baseline run:** a variant's latency beside its baseline also moves between runs "
    "(up to ~10% at batch 1 in docs/timing.md's A/A pairs), which one run's rounds cannot "
    "show: its tests allow for the run noise below, a value measured elsewhere or, where "
    "larger, the spread of all cells between these two runs; baseline cells are untested. "
    "Give --baseline two or more times to have it estimated from your runs before acting on "
    "a latency regression.")
_THRESHOLD = re.compile(r"^(\w+):([+-]?\d+(?:\.\d*)?)(%?)$")


@dataclass(frozen=True)
class Threshold:
    """`latency_ms_p50:5%` (slowdown beyond 5%) or `metric:-0.5` (drop beyond 0.5 points)."""

    text: str
    field: str
    limit: float  # percent slowdown for latency, points dropped (positive) for the metric


def parse_threshold(text: str) -> Threshold:
    match = _THRESHOLD.match(text.strip())
    name, value, pct = match.groups() if match else (None, "0", "")
    if name in LATENCY_STATS and pct and float(value) >= 0:
        return Threshold(text, name, float(value))
    if name == "metric" and not pct and float(value) <= 0:
        return Threshold(text, name, -float(value))
    raise ConfigError(f"bad threshold '{text}': expected e.g. latency_ms_p50:5% or metric:-0.5 "
                      f"(latency fields: {', '.join(LATENCY_STATS)})")


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


def round_values(record: Record, stat: float | str) -> np.ndarray:
    """The statistic of each round of a record's samples (one value before rounds)."""
    return round_stat(record.rounds_ms, stat)


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
        anchors = _anchors(key, runs[0], runs[1:]) if record.status == "ok" else None
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


@dataclass
class CellComparison:
    """One cell in both runs. The metric fields are set on one cell per (model, task,
    variant) only: the metric does not depend on the timing shape, so it is tested once."""

    key: Key
    latency: dict[str, LatencyTest] = field(default_factory=dict)  # latency field -> test
    metric_name: str | None = None
    metric_delta: float | None = None  # points, new - baseline
    metric_test: str | None = None  # mcnemar-exact | permutation | unpaired
    metric_p: float | None = None
    metric_q: float | None = None  # BH-adjusted over the comparison's metric tests
    metric_ci: tuple[float, float] | None = None  # 95%, points, paired bootstrap

    @property
    def metric_significant(self) -> bool:
        return self.metric_q is not None and self.metric_q < ALPHA


@dataclass
class Comparison:
    """Per-cell comparison of a run with one or more baseline runs."""

    cells: list[CellComparison]
    thresholds: list[Threshold]
    only_new: list[Key] = field(default_factory=list)
    only_baseline: list[Key] = field(default_factory=list)
    broken: list[Key] = field(default_factory=list)  # ok in the baseline, failed now
    machine_note: str | None = None
    settings_note: str | None = None  # timing settings that differ from a baseline run
    n_baselines: int = 1
    run_noise: dict[str, NoiseTable] = field(default_factory=dict)  # per latency field
    # per latency field and provider: between-run sd of baselines' absolute latency
    machine_noise: dict[str, dict[str, RunNoise]] = field(default_factory=dict)

    def _check(self, cell: CellComparison, t: Threshold) -> str | None:
        """Why the cell crosses the threshold ('' when not), None when it cannot be tested."""
        if t.field == "metric":
            if cell.metric_delta is None or cell.metric_delta >= -t.limit:
                return ""
            if cell.metric_test == "unpaired":
                return None
            return (f"metric {cell.metric_delta:+.2f} points ({metric_detail(cell)})"
                    if cell.metric_significant else "")
        test = cell.latency.get(t.field)
        if test is None or math.isnan(test.estimate):  # no latency measured in either run
            return ""
        slower = (test.estimate - 1) * 100
        limit = max(t.limit, test.floor)
        if not test.tested:
            return None if slower > limit else ""
        if slower > limit and test.significant:
            floor = f", baseline runs' spread {test.floor:.1f}%" if test.floor else ""
            basis = (f", relative to its baseline, run noise {test.run_noise:.1%}"
                     if test.basis == "vs baseline" else "")
            return (f"{t.field} {slower:+.1f}%{basis} (95% CI {test.low:.3f}–{test.high:.3f}×, "
                    f"q={test.q:.2g}, {test.n_new} vs {test.n_base} rounds{floor})")
        return ""

    def _key(self, cell: CellComparison, t: Threshold) -> tuple:
        return cell.key[:3] if t.field == "metric" else cell.key

    @property
    def regressions(self) -> list[tuple[tuple, str, str]]:
        """(cell, threshold, detail) for each significant change beyond a threshold; metric
        ones name (model, task, variant) only."""
        return [(self._key(c, t), t.text, why) for c in self.cells for t in self.thresholds
                if (why := self._check(c, t))]

    @property
    def untested(self) -> list[tuple[tuple, str]]:
        """(cell, threshold) where a change beyond the threshold could not be tested (the
        reasons: `why_untested`)."""
        return [(self._key(c, t), t.text) for c, t in self._untested()]

    def _untested(self) -> list[tuple[CellComparison, Threshold]]:
        return [(c, t) for c in self.cells for t in self.thresholds if self._check(c, t) is None]

    def why_untested(self) -> list[dict[str, object]]:
        """The untested cells as table rows: the change measured and why it was not tested."""
        rows = []
        for c, t in self._untested():
            if t.field == "metric":
                change, why = f"{c.metric_delta:+.2f} points", "no per-example predictions"
            else:
                test = c.latency[t.field]
                change = f"{(test.estimate - 1) * 100:+.1f}%"
                why = test.note or "fewer than two rounds or no samples"
            rows.append(_key_cols(self._key(c, t)) | {"threshold": t.text, "change": change,
                                                     "why untested": why})
        return rows

    def to_markdown(self) -> str:
        return _markdown(self)


def relative_values(record: Record, anchor: Record, stat: float | str) -> np.ndarray | None:
    """Per-round statistic of `record` over its group baseline's (`anchor`) in the same rounds;
    None when the two were not timed in the same rounds."""
    if len(record.round_sizes) < 2 or len(record.round_sizes) != len(anchor.round_sizes):
        return None
    return round_values(record, stat) / round_values(anchor, stat)


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


def _latency(new: Record, bases: list[Record], fields: Iterable[str], max_load: float,
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


def _point_latency(new: Record, bases: list[Record], fields: Iterable[str]
                   ) -> dict[str, LatencyTest]:
    """Records without samples: the ratio of the stored statistic, untested."""
    out = {}
    for f in fields:
        a, b = getattr(new, f), [getattr(r, f) for r in bases]
        if a is not None and all(b):
            out[f] = LatencyTest(a / float(np.exp(np.mean(np.log(b)))), math.nan, math.nan,
                                 math.nan, 1, len(b))
    return out


def adjust_fdr(cells: list[CellComparison]) -> None:
    """Benjamini-Hochberg q-values over every tested latency comparison of the run, and
    separately over its metric tests (one per variant and evaluating runtime)."""
    tests = [(c, f, t) for c in cells for f, t in c.latency.items() if t.tested]
    if tests:
        q = stats.false_discovery_control([t.p for _, _, t in tests], method="bh")
        for (cell, name, test), qi in zip(tests, q, strict=True):
            cell.latency[name] = replace(test, q=float(qi))
    metric = [c for c in cells if c.metric_p is not None]
    if metric:
        q = stats.false_discovery_control([c.metric_p for c in metric], method="bh")
        for cell, qi in zip(metric, q, strict=True):
            cell.metric_q = float(qi)


def metric_detail(cell: CellComparison) -> str:
    """The metric delta's test, p, q and interval, as a regression line or a report says it."""
    ci = (f", 95% CI {cell.metric_ci[0]:+.2f} to {cell.metric_ci[1]:+.2f}"
          if cell.metric_ci else "")
    return f"{cell.metric_test}, p={cell.metric_p:.3g}, q={cell.metric_q:.3g}{ci}"


def _metric(cell: CellComparison, new: Record, base: Record,
            preds: tuple[Sequence, Sequence, Sequence] | None, seed: int) -> None:
    if new.metric_value is None or base.metric_value is None:
        return
    cell.metric_name = new.metric_name
    cell.metric_delta = (new.metric_value - base.metric_value) * 100
    if preds is None:
        cell.metric_test = "unpaired"
        return
    metric = new.metric_name or "accuracy"
    test = paired_test(*preds, metric=metric, seed=seed)
    cell.metric_test, cell.metric_p = test.test, test.p_value
    low, high = paired_delta_ci(*preds, metric=metric, seed=seed)
    cell.metric_ci = (low * 100, high * 100)


def _check_machines(pairs: list[tuple[Record, Record]], force: bool) -> str | None:
    for new, base in pairs:
        if new.machine and base.machine and new.machine != base.machine:
            msg = f"machines differ: run {new.machine} vs baseline {base.machine}"
            if not force:
                raise HarnessError(f"{msg}; latencies are not comparable (use --force to "
                                   "compare anyway)")
            log.warning("%s; compared anyway (forced)", msg)
            return msg + " (forced)"
    return None


def _settings(record: Record) -> dict[str, object]:
    """The settings a record was timed with: its `session`, less what was measured, and
    whether its rounds were taken in turns (`turn_seconds`; None: whole slices, as every
    record before turns existed)."""
    session = record.session or {}
    measured = session.get("measurement") or {}
    return ({k: v for k, v in session.items() if k not in ("measurement", "roofline")}
            | {"turn_seconds": measured.get("turn_seconds")})


def _settings_note(pairs: list[tuple[Record, Record]]) -> str | None:
    """Which timing settings differ between the run and a baseline run, in how many cells."""
    cells: dict[str, int] = {}
    seen: dict[str, tuple[object, object]] = {}
    for new, base in pairs:
        a, b = _settings(new), _settings(base)
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key):
                cells[key] = cells.get(key, 0) + 1
                seen.setdefault(key, (b.get(key), a.get(key)))
    if not cells:
        return None
    return "timing settings differ from the baseline (" + "; ".join(
        f"{k}: {seen[k][0]!r} there, {seen[k][1]!r} here, in {n} cells"
        for k, n in cells.items()) + "): a latency change in those cells may be theirs"


def compare_runs(run_records: Iterable[Record], *baseline_runs: Iterable[Record],
                 thresholds: list[str], force: bool = False,
                 predictions: Predictions | None = None, seed: int = 0, max_load: float = MAX_LOAD,
                 run_noise: float | None = None) -> Comparison:
    """Compare every cell present in the run and in every baseline run (the first baseline
    run is the metric's reference); refuse different machines unless forced. Latency is
    not tested where other processes used more than `max_load` of the CPU while timing.
    A variant's test allows for `run_noise` (sd, log scale) between runs; None: estimated
    from several baseline runs, else RUN_NOISE."""
    parsed = [parse_threshold(t) for t in thresholds]
    if not baseline_runs:
        raise ConfigError("compare: at least one baseline run is needed")
    new = {r.key: r for r in run_records}
    bases = [{r.key: r for r in run} for run in baseline_runs]
    both = [k for k in new if all(k in b for b in bases)]
    ok = [k for k in both if new[k].status == "ok" and all(b[k].status == "ok" for b in bases)]
    pairs = [(new[k], b[k]) for k in ok for b in bases]
    note, settings = _check_machines(pairs, force), _settings_note(pairs)
    fields = sorted({"latency_ms_p50"} | {t.field for t in parsed if t.field != "metric"})
    noise = {f: run_noise_for(new, bases, LATENCY_STATS[f], run_noise) for f in fields}
    machine = ({f: estimate_machine_noise(bases, LATENCY_STATS[f]) for f in fields}
               if len(bases) > 1 else {})
    cells, metric_done = [], set()
    for k in ok:
        refs = [b[k] for b in bases]
        provider = {f: m[k[3]] for f, m in machine.items() if k[3] in m}
        latency = (_latency(new[k], refs, fields, max_load, _anchors(k, new, bases),
                            {f: table.for_key(k) for f, table in noise.items()}, provider)
                   or _point_latency(new[k], refs, fields))
        cell = CellComparison(k, latency)
        tested = (*k[:3], new[k].metric_provider)  # once per variant and evaluating runtime
        if tested not in metric_done:
            metric_done.add(tested)
            _metric(cell, new[k], refs[0], (predictions or {}).get(k), seed)
        cells.append(cell)
    adjust_fdr(cells)
    broken = [k for k in both
              if all(b[k].status == "ok" for b in bases) and new[k].status == "failed"]
    return Comparison(cells, parsed, [k for k in new if k not in bases[0]],
                      [k for k in bases[0] if k not in new], broken, note, settings, len(bases),
                      noise, machine)


def _anchors(key: Key, new: dict[Key, Record], bases: list[dict[Key, Record]]
             ) -> tuple[Record, list[Record]] | None:
    """The group baseline's records (new run, baseline runs) for a variant's cell, when every
    run has it timed; None for a baseline cell or when one is missing."""
    if key[2] == BASELINE:
        return None
    anchor = (*key[:2], BASELINE, *key[3:])
    runs = [new, *bases]
    if not all(anchor in r and r[anchor].status == "ok" for r in runs):
        return None
    return new[anchor], [b[anchor] for b in bases]


def _key_cols(key: tuple) -> dict[str, object]:
    cols = dict.fromkeys(("model", "task", "variant", "provider", "batch", "seq"), "–")
    return cols | dict(zip(cols, key))


def cell_row(cell: CellComparison) -> dict[str, object]:
    t = cell.latency.get("latency_ms_p50")
    p = "–" if cell.metric_p is None else f"{cell.metric_p:.3g}"
    mq = "–" if cell.metric_q is None else f"{cell.metric_q:.3g}"
    mci = "–" if cell.metric_ci is None else f"{cell.metric_ci[0]:+.2f} to {cell.metric_ci[1]:+.2f}"
    tested = t is not None and t.tested
    return _key_cols(cell.key) | {
        "p50 new/base": f"{t.estimate:.3f}×" if t else "–",
        "basis": t.basis if t else "–",
        "95% CI": f"{t.low:.3f}–{t.high:.3f}" if tested
        else f"– (untested: {t.note or '< 2 rounds'})" if t else "–",
        "q": f"{t.q:.2g}" if tested else "–",
        "rounds": f"{t.n_new} vs {t.n_base}" if t else "–",
        "latency": ("slower" if t.estimate > 1 else "faster") if tested and t.significant
        else "–",
        "Δ metric (points)": "–" if cell.metric_delta is None else f"{cell.metric_delta:+.2f}",
        "Δ 95% CI": mci, "test": cell.metric_test or "–", "p": p, "q (metric)": mq,
    }


def _noise_text(field_name: str, table: NoiseTable) -> str:
    groups = [f"{p} batch {b} {n.sd:.1%} ({n.source})"
              for (p, b), n in sorted(table.groups.items()) if n != table.pooled]
    pooled = f"{table.pooled.sd:.1%} ({table.pooled.source})"
    return f"{field_name} " + (", ".join([*groups, f"other cells {pooled}"]) if groups else pooled)


def _markdown(cmp: Comparison) -> str:
    runs = "the baseline run" if cmp.n_baselines == 1 else f"{cmp.n_baselines} baseline runs"
    lines = [f"# Comparison with {runs}", "",
             f"{len(cmp.cells)} cells compared; {len(cmp.only_new)} only in this run, "
             f"{len(cmp.only_baseline)} only in the baseline. Thresholds: "
             f"{', '.join(t.text for t in cmp.thresholds) or 'none'}. Latency: ratio of the "
             "per-round values (geometric means) — for a variant, of its per-round latency "
             "relative to its group's baseline in the same rounds ('vs baseline'), so the "
             "machine's speed between runs cancels; a baseline's absolute latency is tested "
             "only against several baseline runs, allowing for how far its runtime's "
             "baselines moved between them, and while the reference workload moved by "
             f"at most {PROBE_TOLERANCE:.0%} —, 95% Welch interval between rounds and runs, "
             "q = Benjamini-Hochberg adjusted p over all cells; a regression is significant "
             "(q < 0.05) and beyond its threshold"
             + (" and beyond the baseline runs' spread" if cmp.n_baselines > 1 else "")
             + ". The metric is tested once per model, task and variant on the same dev "
             "examples (exact McNemar for accuracy, else a paired permutation test), with a "
             "paired-bootstrap 95% interval of the delta; its q adjusts the metric tests' p "
             "among themselves, and a metric regression needs q < 0.05; 'unpaired' metric "
             "deltas are not tested.", ""]
    if cmp.machine_note:
        lines += [f"**Warning:** {cmp.machine_note}.", ""]
    if cmp.settings_note:
        lines += [f"**Note:** {cmp.settings_note}.", ""]
    if cmp.n_baselines == 1:
        lines += [ONE_BASELINE_NOTE, ""]
    if cmp.run_noise:
        lines += ["Run noise allowed for in variant tests (between-run sd beside the baseline): "
                  + "; ".join(_noise_text(f, t) for f, t in cmp.run_noise.items()) + ".", ""]
    machine = [f"{f} {n.sd:.1%} ({n.source})" for f, by in cmp.machine_noise.items()
               for n in by.values()]
    if machine:
        lines += ["Machine noise allowed for in baselines' absolute tests (between-run sd of "
                  "their latency): " + "; ".join(machine) + ".", ""]
    regs = pd.DataFrame([_key_cols(k) | {"threshold": t, "change": why}
                         for k, t, why in cmp.regressions])
    lines += ["## Regressions", "", md_table(regs.astype(str)), ""]
    if cmp.broken:
        broken = pd.DataFrame([_key_cols(k) for k in cmp.broken]).astype(str)
        lines += ["## Cells that failed in this run but not in the baseline", "",
                  md_table(broken), ""]
    if cmp.untested:
        untested = pd.DataFrame(cmp.why_untested())
        lines += ["## Beyond a threshold but untested", "", md_table(untested.astype(str)), ""]
    cells = pd.DataFrame([cell_row(c) for c in cmp.cells])
    lines += ["## All cells", "", md_table(cells.astype(str)), ""]
    return "\n".join(lines)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise HarnessError(f"{path}: not a .npy file ({first_line(exc)})") from None


def _load_predictions(new: Record, base: Record, new_root: Path, base_root: Path
                      ) -> tuple | None:
    """(pred_new, pred_base, labels) from the records' stored dev predictions, if both exist.

    Paths in records are relative to each run's results directory. Runs evaluated on other
    dev examples cannot be paired: that is an error, never a broadcast.
    """
    paths = [resolve_stored_path(r.predictions_path, root)
             for r, root in ((new, new_root), (base, base_root))]
    if not all(p is not None and p.exists() for p in paths):
        return None
    labels = [p.with_name("labels_dev.npy") for p in paths]  # type: ignore[union-attr]
    if not all(p.exists() for p in labels):
        return None
    pred_new, pred_base = (_load_npy(p) for p in paths)  # type: ignore[arg-type]
    y_new, y_base = (_load_npy(p) for p in labels)
    digests = {new.eval_digest, base.eval_digest}
    if (len(pred_new) != len(pred_base) or len(y_new) != len(y_base)
            or not np.array_equal(y_new, y_base) or (None not in digests and len(digests) > 1)):
        raise HarnessError(
            f"{'/'.join(map(str, new.key))}: the runs are not comparable: evaluated on "
            f"different dev examples ({len(y_new)} here, {len(y_base)} in the baseline; "
            "check max_eval_samples, seed and the data)")
    if len(pred_new) != len(y_new):
        raise HarnessError(f"{paths[0]}: {len(pred_new)} predictions for {len(y_new)} labels")
    return pred_new, pred_base, y_new


DEFAULT_THRESHOLDS = ["latency_ms_p50:5%", "metric:-0.5"]


def compare_run_dirs(run_dir: Path, baseline_dirs: Path | Sequence[Path], *,
                     thresholds: list[str], force: bool = False,
                     max_load: float = MAX_LOAD, run_noise: float | None = None
                     ) -> Comparison:
    """Compare a run directory with one or more baseline run directories, pairing metric
    tests on the stored predictions of the run and the first baseline."""
    from harness.store import RECORDS, load_records

    dirs = [baseline_dirs] if isinstance(baseline_dirs, Path) else list(baseline_dirs)
    new = load_records(run_dir / RECORDS)
    bases = [load_records(d / RECORDS) for d in dirs]
    first = {r.key: r for r in bases[0]} if bases else {}
    roots = run_dir.resolve().parents[1], dirs[0].resolve().parents[1]  # <results>/runs/<id>
    predictions = {r.key: p for r in new if r.key in first and r.status == "ok"
                   and first[r.key].status == "ok"
                   if (p := _load_predictions(r, first[r.key], *roots)) is not None}
    return compare_runs(new, *bases, thresholds=thresholds or DEFAULT_THRESHOLDS,
                        force=force, predictions=predictions, max_load=max_load,
                        run_noise=run_noise)
