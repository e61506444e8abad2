"""Uncertainty of dev-set metrics: bootstrap intervals, paired tests, false-discovery control.

The unit that varies is the dev example: an interval resamples dev examples (seeded
percentile bootstrap; a delta's draws the same examples for both models), and a delta between
two models evaluated on the same examples is tested pairwise — exact McNemar on the
discordant pairs where the metric is accuracy, a paired permutation test (swapping the two models' predictions within examples) for every other
metric (MCC, F1, Pearson, Spearman). Many deltas in one run are controlled with
Benjamini-Hochberg. The leaderboard and `compare` both read these functions.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    from harness.records import Record

ALPHA = 0.05
LEVEL = 0.95
N_RESAMPLES = 2000
SEED = 0
ACCURACY = "accuracy"

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _accuracy(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (pred == y).mean(axis=-1)


def _f1(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    tp = ((pred == 1) & (y == 1)).sum(axis=-1)
    wrong = ((pred == 1) != (y == 1)).sum(axis=-1)
    den = 2 * tp + wrong
    return np.divide(2 * tp, den, out=np.zeros(np.shape(den)), where=den > 0)


def _matthews(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Multi-class MCC (Gorodkin's R_K), as sklearn computes it; 0 where undefined."""
    classes = np.union1d(np.unique(pred), np.unique(y))
    n = pred.shape[-1]
    correct = (pred == y).sum(axis=-1)
    p_k = np.stack([(pred == k).sum(axis=-1) for k in classes], axis=-1)
    t_k = np.stack([(y == k).sum(axis=-1) for k in classes], axis=-1)
    cov_ytyp = correct * n - (t_k * p_k).sum(axis=-1)
    cov_ypyp = n * n - (p_k * p_k).sum(axis=-1)
    cov_ytyt = n * n - (t_k * t_k).sum(axis=-1)
    den = np.sqrt(cov_ytyt.astype(float) * cov_ypyp.astype(float))
    return np.divide(cov_ytyp, den, out=np.zeros(np.shape(den)), where=den > 0)


def _pearson(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    pm = pred - pred.mean(axis=-1, keepdims=True)
    ym = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((pm**2).sum(-1) * (ym**2).sum(-1))
    return np.divide((pm * ym).sum(-1), den, out=np.zeros(np.shape(den)), where=den > 0)


def _spearman(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _pearson(stats.rankdata(pred, axis=-1), stats.rankdata(y, axis=-1))


METRICS: dict[str, Statistic] = {
    "accuracy": _accuracy, "f1": _f1, "matthews_correlation": _matthews,
    "pearson": _pearson, "spearmanr": _spearman,
}


def metric_fn(name: str) -> Statistic:
    """The vectorised metric (predictions, labels) -> value along the last axis."""
    if name not in METRICS:
        raise ValueError(f"no statistic for metric '{name}'; expected one of {sorted(METRICS)}")
    return METRICS[name]


def _arrays(*values: Sequence[float]) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float) for v in values]
    if any(a.ndim != 1 or a.shape != arrays[0].shape for a in arrays) or not len(arrays[0]):
        raise ValueError(f"expected 1-D arrays of one non-zero length, got "
                         f"{[a.shape for a in arrays]}")
    return arrays


def _percentile_interval(data: tuple[np.ndarray, ...], statistic: Callable[..., np.ndarray],
                         level: float, n_resamples: int, seed: int) -> tuple[float, float]:
    """scipy's seeded percentile bootstrap of a vectorised `statistic`, the arrays of `data`
    resampled together (one draw of dev examples for all of them)."""
    res = stats.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=n_resamples,
                          confidence_level=level, method="percentile",
                          rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_ci(pred: Sequence[float], labels: Sequence[float], metric: str, *,
                 level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of `metric` over dev examples (pairs resampled)."""
    p, y = _arrays(pred, labels)
    fn = metric_fn(metric)
    if np.all(p == p[0]) and np.all(y == y[0]):  # every resample gives the same value
        value = float(fn(p, y))
        return value, value

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return fn(a, b)

    return _percentile_interval((p, y), statistic, level, n_resamples, seed)


def paired_delta_ci(pred_new: Sequence[float], pred_base: Sequence[float],
                    labels: Sequence[float], metric: str, *, level: float = LEVEL,
                    n_resamples: int = N_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of metric(new) - metric(base) over dev examples,
    each resample drawing the same examples for both models (the metric's units)."""
    pn, pb, y = _arrays(pred_new, pred_base, labels)
    fn = metric_fn(metric)
    if np.array_equal(pn, pb):  # every resample gives a delta of 0
        return 0.0, 0.0

    def statistic(a: np.ndarray, b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return fn(a, c) - fn(b, c)

    return _percentile_interval((pn, pb, y), statistic, level, n_resamples, seed)


@dataclass(frozen=True)
class PairedTest:
    """A paired test of new - base on the same examples."""

    test: str  # 'mcnemar-exact' or 'permutation'
    delta: float  # metric(new) - metric(base), in the metric's units (not points)
    p_value: float


def mcnemar_exact(correct_new: Sequence[bool], correct_base: Sequence[bool]
                  ) -> tuple[int, int, float]:
    """Discordant counts (base right/new wrong, new right/base wrong) and the exact p-value."""
    new, base = np.asarray(correct_new, bool), np.asarray(correct_base, bool)
    b, c = int((base & ~new).sum()), int((new & ~base).sum())
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def permutation_test(pred_new: Sequence[float], pred_base: Sequence[float],
                     labels: Sequence[float], metric: str, *, n_resamples: int = 9999,
                     seed: int = SEED) -> float:
    """Two-sided p-value of metric(new) - metric(base), swapping predictions within examples.

    Exact (every one of the 2^n swaps) when n_resamples covers them, else Monte Carlo.
    """
    pn, pb, y = _arrays(pred_new, pred_base, labels)
    fn = metric_fn(metric)
    if np.array_equal(pn, pb):
        return 1.0

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return fn(a, y) - fn(b, y)

    res = stats.permutation_test((pn, pb), statistic, permutation_type="samples",
                                 vectorized=True, n_resamples=n_resamples,
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def paired_test(pred_new: Sequence[float], pred_base: Sequence[float], labels: Sequence[float],
                metric: str, *, seed: int = SEED) -> PairedTest:
    """Exact McNemar when the metric is accuracy, a paired permutation test otherwise."""
    pn, pb, y = _arrays(pred_new, pred_base, labels)
    fn = metric_fn(metric)
    delta = float(fn(pn, y) - fn(pb, y))
    if metric == ACCURACY:
        return PairedTest("mcnemar-exact", delta, mcnemar_exact(pn == y, pb == y)[2])
    return PairedTest("permutation", delta, permutation_test(pn, pb, y, metric, seed=seed))


def benjamini_hochberg(p_values: Sequence[float], alpha: float = ALPHA) -> list[bool]:
    """Which of these tests are discoveries at false-discovery rate `alpha` (BH step-up)."""
    if not len(p_values):
        return []
    adjusted = stats.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")
    return [bool(a <= alpha) for a in adjusted]


def _test_unit(record: Record) -> tuple[str, str, str, str | None]:
    return (record.model, record.task, record.variant or record.method, record.metric_provider)


def fdr_updates(records: Sequence[Record], alpha: float = ALPHA) -> list[Record]:
    """Records whose `delta_significant` changes under BH over the run's tested deltas.

    One test per (model, task, variant, metric runtime): every timing shape of a cell shares
    its dev predictions on one runtime, so counting shapes would count one test several
    times; another runtime (OpenVINO bf16, say) made other predictions, so it is another test.
    """
    tested = [r for r in records if r.status == "ok" and r.delta_p_value is not None]
    units: dict[tuple[str, str, str, str | None], float] = {}
    for r in tested:
        units.setdefault(_test_unit(r), r.delta_p_value)  # type: ignore[arg-type]
    verdict = dict(zip(units, benjamini_hochberg(list(units.values()), alpha), strict=True))
    return [r.model_copy(update={"delta_significant": verdict[_test_unit(r)]})
            for r in tested if r.delta_significant != verdict[_test_unit(r)]]
