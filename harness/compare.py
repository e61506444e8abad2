"""Compare a run with a baseline run, cell by cell, with confidence intervals and thresholds.

Latency: ratio of a statistic of the raw samples (new / baseline) with a bootstrap 95% CI.
Metric: delta in points, tested with McNemar's exact test (classification) or a paired
bootstrap (regression) when per-example predictions are given; otherwise reported unpaired.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import ConfigError, HarnessError
from harness.publish.markdown import md_table
from harness.records import Record

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str, int, int]
Predictions = dict[Key, tuple[Sequence, Sequence, Sequence]]  # (pred_new, pred_base, labels)
# latency field -> the statistic of the raw samples it names (a percentile, or the mean)
LATENCY_STATS: dict[str, float | str] = {
    "latency_ms_p50": 50, "latency_ms_p90": 90, "latency_ms_p95": 95, "latency_ms_p99": 99,
    "latency_ms_mean": "mean", "latency_ms_min": 0,
}
REGRESSION_METRICS = ("pearson", "spearmanr")
ALPHA = 0.05
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
class Interval:
    """A point estimate with a 95% interval; significant when the interval excludes `null`."""

    estimate: float
    low: float
    high: float
    null: float

    @property
    def significant(self) -> bool:
        return bool(self.low > self.null or self.high < self.null)


def _stat(x: np.ndarray, stat: float | str) -> np.ndarray:
    return x.mean(axis=-1) if stat == "mean" else np.percentile(x, stat, axis=-1)


def bootstrap_ratio(new: Sequence[float], base: Sequence[float], stat: float | str = 50,
                    n_boot: int = 2000, seed: int = 0) -> Interval:
    """stat(new) / stat(base) with a percentile bootstrap CI; each run resampled on its own."""
    a, b = np.asarray(new, dtype=float), np.asarray(base, dtype=float)
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, n_boot, 250):  # chunks keep memory at 250 x n samples
        size = min(250, n_boot - start)
        ra = _stat(a[rng.integers(0, len(a), (size, len(a)))], stat)
        rb = _stat(b[rng.integers(0, len(b), (size, len(b)))], stat)
        ratios.append(ra / rb)
    low, high = np.percentile(np.concatenate(ratios), [2.5, 97.5])
    return Interval(float(_stat(a, stat) / _stat(b, stat)), float(low), float(high), 1.0)


def mcnemar_exact(correct_new: Sequence[bool], correct_base: Sequence[bool]
                  ) -> tuple[int, int, float]:
    """Discordant counts (base right/new wrong, new right/base wrong) and the exact p-value."""
    new, base = np.asarray(correct_new, bool), np.asarray(correct_base, bool)
    b, c = int((base & ~new).sum()), int((new & ~base).sum())
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def _corr(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise Pearson or Spearman correlation of 2-D arrays."""
    if metric == "spearmanr":
        x, y = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
    xm = x - x.mean(axis=-1, keepdims=True)
    ym = y - y.mean(axis=-1, keepdims=True)
    return (xm * ym).sum(-1) / np.sqrt((xm**2).sum(-1) * (ym**2).sum(-1))


def paired_bootstrap(pred_new: Sequence[float], pred_base: Sequence[float],
                     labels: Sequence[float], metric: str = "pearson", n_boot: int = 2000,
                     seed: int = 0) -> tuple[Interval, float]:
    """Metric difference new - base in points, examples resampled jointly; CI and p-value."""
    pn, pb, y = (np.asarray(v, dtype=float) for v in (pred_new, pred_base, labels))
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_boot, 250):
        idx = rng.integers(0, len(y), (min(250, n_boot - start), len(y)))
        diffs.append(_corr(pn[idx], y[idx], metric) - _corr(pb[idx], y[idx], metric))
    d = np.concatenate(diffs) * 100
    d = d[np.isfinite(d)]
    observed = float(_corr(pn[None], y[None], metric)[0] - _corr(pb[None], y[None], metric)[0])
    low, high = np.percentile(d, [2.5, 97.5])
    p = min(1.0, 2 * min(float((d <= 0).mean()), float((d >= 0).mean())))
    return Interval(observed * 100, float(low), float(high), 0.0), p


@dataclass
class CellComparison:
    """One cell in both runs."""

    key: Key
    latency: dict[str, Interval] = field(default_factory=dict)  # latency field -> ratio
    metric_name: str | None = None
    metric_delta: float | None = None  # points, new - baseline
    metric_test: str | None = None  # mcnemar | paired-bootstrap | unpaired
    metric_p: float | None = None
    metric_ci: Interval | None = None

    @property
    def metric_significant(self) -> bool:
        return self.metric_p is not None and self.metric_p < ALPHA


@dataclass
class Comparison:
    """Per-cell comparison of a run with a baseline run."""

    cells: list[CellComparison]
    thresholds: list[Threshold]
    only_new: list[Key] = field(default_factory=list)
    only_baseline: list[Key] = field(default_factory=list)
    broken: list[Key] = field(default_factory=list)  # ok in the baseline, failed now
    machine_note: str | None = None

    def _check(self, cell: CellComparison, t: Threshold) -> str | None:
        """Why the cell crosses the threshold ('' when not), None when it cannot be tested."""
        if t.field == "metric":
            if cell.metric_delta is None or cell.metric_delta >= -t.limit:
                return ""
            if cell.metric_test == "unpaired":
                return None
            return (f"metric {cell.metric_delta:+.2f} points ({cell.metric_test}, "
                    f"p={cell.metric_p:.3g})") if cell.metric_significant else ""
        iv = cell.latency.get(t.field)
        if iv is None:  # no latency measured in either run
            return ""
        slower = (iv.estimate - 1) * 100
        if math.isnan(iv.low):
            return None if slower > t.limit else ""
        if slower > t.limit and iv.significant and iv.low > 1:
            return f"{t.field} {slower:+.1f}% (95% CI {iv.low:.3f}–{iv.high:.3f}×)"
        return ""

    @property
    def regressions(self) -> list[tuple[Key, str, str]]:
        """(cell, threshold, detail) for each significant change beyond a threshold."""
        return [(c.key, t.text, why) for c in self.cells for t in self.thresholds
                if (why := self._check(c, t))]

    @property
    def untested(self) -> list[tuple[Key, str]]:
        """(cell, threshold) where the change could not be tested (no predictions or samples)."""
        return [(c.key, t.text) for c in self.cells for t in self.thresholds
                if self._check(c, t) is None]

    def to_markdown(self) -> str:
        return _markdown(self)


def _latency(new: Record, base: Record, fields: Iterable[str], n_boot: int, seed: int
             ) -> dict[str, Interval]:
    if len(new.samples_ms) < 2 or len(base.samples_ms) < 2:  # point ratio only, untested
        point = {f: (getattr(new, f), getattr(base, f)) for f in fields}
        return {f: Interval(a / b, math.nan, math.nan, 1.0) for f, (a, b) in point.items()
                if a is not None and b}
    return {f: bootstrap_ratio(new.samples_ms, base.samples_ms, LATENCY_STATS[f], n_boot, seed)
            for f in fields}


def _metric(cell: CellComparison, new: Record, base: Record,
            preds: tuple[Sequence, Sequence, Sequence] | None, n_boot: int, seed: int) -> None:
    if new.metric_value is None or base.metric_value is None:
        return
    cell.metric_name = new.metric_name
    cell.metric_delta = (new.metric_value - base.metric_value) * 100
    if preds is None:
        cell.metric_test = "unpaired"
    elif new.metric_name in REGRESSION_METRICS:
        cell.metric_ci, cell.metric_p = paired_bootstrap(*preds, metric=new.metric_name,
                                                         n_boot=n_boot, seed=seed)
        cell.metric_test = "paired-bootstrap"
    else:
        pred_new, pred_base, labels = (np.asarray(v) for v in preds)
        _, _, cell.metric_p = mcnemar_exact(pred_new == labels, pred_base == labels)
        cell.metric_test = "mcnemar"


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


def compare_runs(run_records: Iterable[Record], baseline_records: Iterable[Record], *,
                 thresholds: list[str], force: bool = False,
                 predictions: Predictions | None = None, n_boot: int = 2000,
                 seed: int = 0) -> Comparison:
    """Compare every cell present in both runs; refuse different machines unless forced."""
    parsed = [parse_threshold(t) for t in thresholds]
    new = {r.key: r for r in run_records}
    base = {r.key: r for r in baseline_records}
    both = [k for k in new if k in base]
    ok_pairs = [(new[k], base[k]) for k in both
                if new[k].status == "ok" and base[k].status == "ok"]
    note = _check_machines(ok_pairs, force)
    fields = sorted({"latency_ms_p50"} | {t.field for t in parsed if t.field != "metric"})
    cells = []
    for n, b in ok_pairs:
        cell = CellComparison(n.key, _latency(n, b, fields, n_boot, seed))
        _metric(cell, n, b, (predictions or {}).get(n.key), n_boot, seed)
        cells.append(cell)
    broken = [k for k in both if base[k].status == "ok" and new[k].status == "failed"]
    return Comparison(cells, parsed, [k for k in new if k not in base],
                      [k for k in base if k not in new], broken, note)


def _key_cols(key: Key) -> dict[str, object]:
    return dict(zip(("model", "task", "variant", "provider", "batch", "seq"), key))


def _cell_row(cell: CellComparison) -> dict[str, object]:
    iv = cell.latency.get("latency_ms_p50")
    p = "–" if cell.metric_p is None else f"{cell.metric_p:.3g}"
    return _key_cols(cell.key) | {
        "p50 new/base": f"{iv.estimate:.3f}×" if iv else "–",
        "95% CI": f"{iv.low:.3f}–{iv.high:.3f}" if iv and not math.isnan(iv.low)
        else "– (no samples)",
        "latency": ("slower" if iv.low > 1 else "faster") if iv and iv.significant else "–",
        "Δ metric (points)": "–" if cell.metric_delta is None else f"{cell.metric_delta:+.2f}",
        "test": cell.metric_test or "–", "p": p,
    }


def _markdown(cmp: Comparison) -> str:
    lines = ["# Comparison with the baseline run", "",
             f"{len(cmp.cells)} cells compared; {len(cmp.only_new)} only in this run, "
             f"{len(cmp.only_baseline)} only in the baseline. Thresholds: "
             f"{', '.join(t.text for t in cmp.thresholds) or 'none'}. Latency intervals are "
             "bootstrap 95% CIs of the ratio; 'unpaired' metric deltas are not tested.", ""]
    if cmp.machine_note:
        lines += [f"**Warning:** {cmp.machine_note}.", ""]
    regs = pd.DataFrame([_key_cols(k) | {"threshold": t, "change": why}
                         for k, t, why in cmp.regressions])
    lines += ["## Regressions", "", md_table(regs.astype(str)), ""]
    if cmp.broken:
        broken = pd.DataFrame([_key_cols(k) for k in cmp.broken]).astype(str)
        lines += ["## Cells that failed in this run but not in the baseline", "",
                  md_table(broken), ""]
    if cmp.untested:
        untested = pd.DataFrame([_key_cols(k) | {"threshold": t} for k, t in cmp.untested])
        lines += ["## Beyond a threshold but untested (no predictions or samples)", "",
                  md_table(untested.astype(str)), ""]
    cells = pd.DataFrame([_cell_row(c) for c in cmp.cells])
    lines += ["## All cells", "", md_table(cells.astype(str)), ""]
    return "\n".join(lines)


def _load_predictions(new: Record, base: Record) -> tuple | None:
    """(pred_new, pred_base, labels) from the records' stored dev predictions, if both exist."""
    paths = [Path(r.predictions_path) if r.predictions_path else None for r in (new, base)]
    if not all(p is not None and p.exists() for p in paths):
        return None
    labels = paths[0].with_name("labels_dev.npy")  # type: ignore[union-attr]
    if not labels.exists():
        return None
    return np.load(paths[0]), np.load(paths[1]), np.load(labels)  # type: ignore[arg-type]


DEFAULT_THRESHOLDS = ["latency_ms_p50:5%", "metric:-0.5"]


def compare_run_dirs(run_dir: Path, baseline_dir: Path, *, thresholds: list[str],
                     force: bool = False) -> Comparison:
    """Compare two run directories, pairing metric tests on their stored predictions."""
    from harness.store import RECORDS, load_records

    new = load_records(run_dir / RECORDS)
    base = {r.key: r for r in load_records(baseline_dir / RECORDS)}
    predictions = {r.key: p for r in new if r.key in base
                   if (p := _load_predictions(r, base[r.key])) is not None}
    return compare_runs(new, base.values(), thresholds=thresholds or DEFAULT_THRESHOLDS,
                        force=force, predictions=predictions)
