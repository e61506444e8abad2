"""Bootstrap intervals, paired tests and FDR control against values worked out by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from harness.records import Record
from harness.significance import (
    benjamini_hochberg,
    bootstrap_ci,
    fdr_updates,
    mcnemar_exact,
    metric_fn,
    paired_delta_ci,
    paired_test,
    permutation_test,
)


def test_mcnemar_exact_on_fixed_table() -> None:
    # 10 pairs only the baseline got right, 2 only the new model, 30 both, 8 neither
    base = [True] * 10 + [False] * 2 + [True] * 30 + [False] * 8
    new = [False] * 10 + [True] * 2 + [True] * 30 + [False] * 8
    b, c, p = mcnemar_exact(new, base)
    assert (b, c) == (10, 2)
    # two-sided exact binomial: 2 * (C(12,10) + C(12,11) + C(12,12)) / 2**12
    assert p == pytest.approx(2 * (66 + 12 + 1) / 4096)
    assert mcnemar_exact(base, base)[2] == 1.0


def test_bootstrap_interval_of_two_examples_spans_every_resample() -> None:
    # one right, one wrong: resampled accuracy is 0 (1/4), 0.5 (1/2) or 1 (1/4), so the
    # 2.5th and 97.5th percentiles are 0 and 1
    assert bootstrap_ci([1, 0], [1, 1], "accuracy") == (0.0, 1.0)


def test_bootstrap_interval_of_a_constant_is_a_point() -> None:
    assert bootstrap_ci([1, 1, 1], [1, 1, 1], "accuracy") == (1.0, 1.0)


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded() -> None:
    labels = np.zeros(400, dtype=int)
    preds = np.r_[np.zeros(320, dtype=int), np.ones(80, dtype=int)]  # accuracy 0.8
    low, high = bootstrap_ci(preds, labels, "accuracy")
    half = 1.96 * np.sqrt(0.8 * 0.2 / 400)  # 0.0392
    assert low == pytest.approx(0.8 - half, abs=0.01)
    assert high == pytest.approx(0.8 + half, abs=0.01)
    assert bootstrap_ci(preds, labels, "accuracy") == (low, high)


def test_delta_interval_of_two_examples_spans_every_resample() -> None:
    # the new model fixes example 1, both get example 2 right: per-example gains 1 and 0, so a
    # resampled delta is 0 (1/4), 0.5 (1/2) or 1 (1/4)
    assert paired_delta_ci([1, 1], [0, 1], [1, 1], "accuracy") == (0.0, 1.0)
    assert paired_delta_ci([0, 1], [0, 1], [1, 1], "accuracy") == (0.0, 0.0)


def test_delta_interval_resamples_examples_for_both_models_at_once() -> None:
    """Base right on 320 of 400, new right on those and 20 more: paired, the delta's spread is
    that of 20 gains in 400 examples, 1.96 * sqrt(0.05 * 0.95 / 400) = 0.0214 either side;
    resampled independently it would be about 0.055."""
    labels = np.zeros(400, dtype=int)
    base = np.r_[np.zeros(320, dtype=int), np.ones(80, dtype=int)]
    new = np.r_[np.zeros(340, dtype=int), np.ones(60, dtype=int)]
    low, high = paired_delta_ci(new, base, labels, "accuracy")
    half = 1.96 * np.sqrt(0.05 * 0.95 / 400)
    assert low == pytest.approx(0.05 - half, abs=0.006)
    assert high == pytest.approx(0.05 + half, abs=0.006)
    assert paired_delta_ci(new, base, labels, "accuracy") == (low, high)  # seeded


@pytest.mark.parametrize(("name", "reference"), [("matthews_correlation", matthews_corrcoef),
                                                 ("f1", f1_score)])
def test_vectorised_metrics_match_sklearn(name, reference) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    preds = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    assert float(metric_fn(name)(preds, labels)) == pytest.approx(reference(labels, preds))


def test_permutation_test_on_accuracy_is_the_exact_sign_test() -> None:
    # 4 discordant examples all favour the new model, 2 concordant. Of the 2**6 within-example
    # swaps, |delta| reaches the observed 4/6 when the 4 discordant signs agree (2 ways) times
    # any swap of the 2 concordant pairs (4 ways): p = 8/64 = 0.125 = McNemar's 2 * 0.5**4
    labels = [1, 1, 1, 1, 1, 1]
    new = [1, 1, 1, 1, 1, 1]
    base = [0, 0, 0, 0, 1, 1]
    assert permutation_test(new, base, labels, "accuracy") == pytest.approx(0.125)
    assert mcnemar_exact(np.equal(new, labels), np.equal(base, labels))[2] == pytest.approx(0.125)


def test_permutation_test_on_pearson_enumerates_every_swap() -> None:
    labels = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    new = np.array([1.1, 2.2, 2.9, 4.2, 4.8])
    base = np.array([2.0, 1.0, 4.0, 3.0, 5.0])

    def r(x: np.ndarray) -> float:
        return float(np.corrcoef(x, labels)[0, 1])

    observed = r(new) - r(base)
    deltas = []
    for swap in itertools.product([False, True], repeat=5):
        mask = np.array(swap)
        deltas.append(r(np.where(mask, base, new)) - r(np.where(mask, new, base)))
    by_hand = np.mean(np.abs(deltas) >= abs(observed) - 1e-12)  # symmetric: two-sided
    assert 0 < by_hand < 1
    assert permutation_test(new, base, labels, "pearson") == pytest.approx(by_hand)


def test_paired_test_picks_mcnemar_for_accuracy_and_permutation_otherwise() -> None:
    labels = [0, 1, 0, 1]
    assert paired_test([0, 1, 0, 1], [0, 1, 1, 1], labels, "accuracy").test == "mcnemar-exact"
    test = paired_test([0, 1, 0, 1], [0, 1, 1, 1], labels, "matthews_correlation")
    assert test.test == "permutation" and test.delta > 0
    assert paired_test(labels, labels, labels, "pearson").p_value == 1.0


def test_benjamini_hochberg_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04, 0.20 against k/4 * 0.05 = 0.0125, 0.025, 0.0375, 0.05:
    # only the first is below its line, and no later one is
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.20]) == [True, False, False, False]
    # 0.01, 0.02 under 0.025 (k=2): both discoveries although 0.02 > 0.0125
    assert benjamini_hochberg([0.02, 0.01, 0.5]) == [True, True, False]
    assert benjamini_hochberg([]) == []


def _rec(variant: str, batch: int, p: float | None, **kw) -> Record:
    return Record(run_id="r", model="m", task="mrpc", method=variant, variant=variant,
                  provider="cpu", batch_size=batch, seq_len=128, status="ok",
                  delta_p_value=p, **kw)


def test_fdr_counts_one_test_per_variant_not_per_timing_shape() -> None:
    records = [_rec("baseline", 1, None), _rec("a", 1, 0.02), _rec("a", 32, 0.02),
               _rec("b", 1, 0.03), _rec("b", 32, 0.03), _rec("c", 1, 0.9)]
    updated = fdr_updates(records)
    verdict = {(r.variant, r.batch_size): r.delta_significant for r in updated}
    # three tests (a, b, c): 0.02 <= 0.0167 fails, 0.03 <= 0.0333 passes, so a and b are
    # discoveries; counting shapes (five tests) would have changed the thresholds
    assert verdict == {("a", 1): True, ("a", 32): True, ("b", 1): True, ("b", 32): True,
                       ("c", 1): False}
    again = [r for r in records if r.delta_p_value is None] + updated
    assert fdr_updates(again) == []  # already annotated: nothing to append
