"""Compare a run's records with one or more baseline runs' records, cell by cell: latency
tests, metric tests, false-discovery control, and which cells cross a threshold."""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from scipy import stats

from harness.compare.latency import ALPHA, MAX_LOAD, LatencyTest, latency_tests, point_latency
from harness.compare.noise import NoiseTable, RunNoise, estimate_machine_noise, run_noise_for
from harness.compare.thresholds import Threshold, parse_threshold
from harness.compare.values import LATENCY_STATS, Key, group_anchors, key_cols
from harness.errors import ConfigError, HarnessError
from harness.records import Record
from harness.significance import paired_delta_ci, paired_test

log = logging.getLogger(__name__)

Predictions = dict[Key, tuple[Sequence, Sequence, Sequence]]  # (pred_new, pred_base, labels)


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
            rows.append(key_cols(self._key(c, t)) | {"threshold": t.text, "change": change,
                                                     "why untested": why})
        return rows


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
        latency = (latency_tests(new[k], refs, fields, max_load, group_anchors(k, new, bases),
                                 {f: table.for_key(k) for f, table in noise.items()}, provider)
                   or point_latency(new[k], refs, fields))
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
