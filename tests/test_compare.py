"""Run comparison: bootstrap latency ratios, paired metric tests, thresholds, machine check."""
from __future__ import annotations

import numpy as np
import pytest

from harness.compare import (
    bootstrap_ratio,
    compare_runs,
    mcnemar_exact,
    paired_bootstrap,
    parse_threshold,
)
from harness.errors import ConfigError, HarnessError
from harness.records import Record

THRESHOLDS = ["latency_ms_p50:5%", "metric:-0.5"]


def samples(scale: float = 1.0, seed: int = 0, n: int = 200) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(scale * (10.0 + rng.gamma(2.0, 0.25, n)))


def rec(samples_ms: list[float], *, variant: str = "int8-dynamic", metric: float = 0.9,
        machine: str | None = "fp-a", status: str = "ok", task: str = "sst2",
        metric_name: str = "accuracy") -> Record:
    return Record(run_id="r", model="m", task=task, method=variant, variant=variant,
                  provider="cpu", batch_size=1, seq_len=128, status=status,
                  metric_name=metric_name, metric_value=metric, samples_ms=samples_ms,
                  latency_ms_p50=float(np.median(samples_ms)) if samples_ms else None,
                  machine=machine)


def test_known_regression_is_detected() -> None:
    base = [rec(samples(seed=1))]
    new = [rec(samples(1.2, seed=2))]
    cmp = compare_runs(new, base, thresholds=THRESHOLDS)
    iv = cmp.cells[0].latency["latency_ms_p50"]
    assert iv.estimate == pytest.approx(1.2, abs=0.03)
    assert iv.low > 1.1 and iv.significant
    assert [(k[2], t) for k, t, _ in cmp.regressions] == [("int8-dynamic", "latency_ms_p50:5%")]
    assert "latency_ms_p50:5%" in cmp.to_markdown()


def test_identical_runs_are_not_flagged() -> None:
    same = samples(seed=3)
    cmp = compare_runs([rec(same)], [rec(same)], thresholds=THRESHOLDS)
    iv = cmp.cells[0].latency["latency_ms_p50"]
    assert iv.estimate == 1.0 and iv.low < 1.0 < iv.high and not iv.significant
    assert cmp.regressions == []


def test_small_significant_slowdown_below_threshold_is_not_flagged() -> None:
    cmp = compare_runs([rec(samples(1.03, seed=4, n=2000))], [rec(samples(seed=5, n=2000))],
                       thresholds=THRESHOLDS)
    assert cmp.cells[0].latency["latency_ms_p50"].significant
    assert cmp.regressions == []


def test_other_percentile_threshold_bootstraps_that_statistic() -> None:
    base, new = samples(seed=6), samples(seed=7)
    new_tail = sorted(new)[:180] + [x * 1.5 for x in sorted(new)[180:]]  # slower tail only
    cmp = compare_runs([rec(new_tail)], [rec(base)], thresholds=["latency_ms_p99:10%"])
    assert set(cmp.cells[0].latency) == {"latency_ms_p50", "latency_ms_p99"}
    assert [t for _, t, _ in cmp.regressions] == ["latency_ms_p99:10%"]


def test_bootstrap_is_seeded() -> None:
    a, b = samples(seed=8), samples(seed=9)
    assert bootstrap_ratio(a, b, seed=0) == bootstrap_ratio(a, b, seed=0)
    assert bootstrap_ratio(a, b, seed=0) != bootstrap_ratio(a, b, seed=1)


def test_mcnemar_exact_on_fixed_table() -> None:
    # 10 pairs only the baseline got right, 2 only the new model, 30 both, 8 neither
    base = [True] * 10 + [False] * 2 + [True] * 30 + [False] * 8
    new = [False] * 10 + [True] * 2 + [True] * 30 + [False] * 8
    b, c, p = mcnemar_exact(new, base)
    assert (b, c) == (10, 2)
    # two-sided exact binomial: 2 * (C(12,10) + C(12,11) + C(12,12)) / 2**12
    assert p == pytest.approx(2 * (66 + 12 + 1) / 4096)
    assert mcnemar_exact(base, base)[2] == 1.0


def test_paired_metric_drop_is_a_regression() -> None:
    labels = np.array([0, 1] * 100)
    base_pred = labels.copy()
    new_pred = labels.copy()
    new_pred[:30] = 1 - new_pred[:30]  # 30 new errors, none fixed
    key = rec([]).key
    cmp = compare_runs([rec([], metric=0.85)], [rec([], metric=1.0)], thresholds=THRESHOLDS,
                       predictions={key: (new_pred, base_pred, labels)})
    cell = cmp.cells[0]
    assert cell.metric_test == "mcnemar" and cell.metric_p < 1e-6
    assert cell.metric_delta == pytest.approx(-15.0)
    assert [t for _, t, _ in cmp.regressions] == ["metric:-0.5"]


def test_regression_task_uses_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 300)
    good, bad = labels + rng.normal(0, 0.3, 300), labels + rng.normal(0, 2.0, 300)
    ci, p = paired_bootstrap(bad, good, labels, "pearson", n_boot=500)
    assert ci.estimate < -10 and ci.high < 0 and p < 0.01
    same, p_same = paired_bootstrap(good, good, labels, "spearmanr", n_boot=200)
    assert same.estimate == 0.0 and p_same == 1.0
    key = rec([], task="stsb").key
    cmp = compare_runs([rec([], task="stsb", metric_name="pearson", metric=0.8)],
                       [rec([], task="stsb", metric_name="pearson", metric=0.95)],
                       thresholds=THRESHOLDS, predictions={key: (bad, good, labels)})
    assert cmp.cells[0].metric_test == "paired-bootstrap"
    assert [t for _, t, _ in cmp.regressions] == ["metric:-0.5"]


def test_unpaired_metric_drop_is_reported_not_flagged() -> None:
    same = samples(seed=10)
    cmp = compare_runs([rec(same, metric=0.80)], [rec(same, metric=0.90)],
                       thresholds=THRESHOLDS)
    assert cmp.cells[0].metric_test == "unpaired"
    assert cmp.regressions == []
    assert [t for _, t in cmp.untested] == ["metric:-0.5"]
    assert "unpaired" in cmp.to_markdown() and "-10.00" in cmp.to_markdown()


@pytest.mark.parametrize("text", ["latency_ms_p50:5%", "latency_ms_p99:0.5%", "metric:-0.5",
                                  "metric:0", "latency_ms_mean:10%"])
def test_threshold_parsing(text: str) -> None:
    t = parse_threshold(text)
    assert t.text == text and t.limit >= 0


def test_threshold_values() -> None:
    assert parse_threshold("latency_ms_p50:5%").limit == 5.0
    assert parse_threshold("metric:-0.5").limit == 0.5


@pytest.mark.parametrize("text", ["latency_ms_p50:5", "metric:0.5", "metric:-1%", "speed:5%",
                                  "latency_ms_p50:abc", "latency_ms_p50:-5%", "", "metric"])
def test_bad_threshold_names_it(text: str) -> None:
    with pytest.raises(ConfigError, match=f"'{text}'"):
        compare_runs([], [], thresholds=[text])


def test_machine_mismatch_refused_then_forced() -> None:
    new, base = [rec(samples(), machine="fp-new")], [rec(samples(), machine="fp-old")]
    with pytest.raises(HarnessError, match="fp-new.*fp-old"):
        compare_runs(new, base, thresholds=THRESHOLDS)
    cmp = compare_runs(new, base, thresholds=THRESHOLDS, force=True)
    assert len(cmp.cells) == 1 and "fp-new" in cmp.to_markdown()


def test_unmatched_and_broken_cells() -> None:
    s = samples()
    new = [rec(s, variant="a"), rec(s, variant="b", status="failed"), rec(s, variant="new")]
    base = [rec(s, variant="a"), rec(s, variant="b"), rec(s, variant="gone")]
    cmp = compare_runs(new, base, thresholds=THRESHOLDS)
    assert [c.key[2] for c in cmp.cells] == ["a"]
    assert [k[2] for k in cmp.broken] == ["b"]
    assert [k[2] for k in cmp.only_new] == ["new"] and [k[2] for k in cmp.only_baseline] == ["gone"]


def test_no_samples_gives_untested_point_ratio() -> None:
    new, base = rec([]), rec([])
    new.latency_ms_p50, base.latency_ms_p50 = 12.0, 10.0
    cmp = compare_runs([new], [base], thresholds=["latency_ms_p50:5%"])
    assert cmp.cells[0].latency["latency_ms_p50"].estimate == pytest.approx(1.2)
    assert cmp.regressions == [] and len(cmp.untested) == 1
