"""Run comparison: between-run latency tests, paired metric tests under FDR control, thresholds,
machine check."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import false_discovery_control, kstest, mannwhitneyu, ttest_ind
from scipy.stats import t as student_t

from harness.compare import (
    RUN_NOISE,
    RunNoise,
    compare_runs,
    estimate_machine_noise,
    estimate_run_noise,
    parse_threshold,
    to_markdown,
    welch_ratio,
)
from harness.errors import ConfigError, HarnessError
from harness.records import Record, split_rounds

THRESHOLDS = ["latency_ms_p50:5%", "metric:-0.5"]


def samples(scale: float = 1.0, seed: int = 0, n: int = 200) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(scale * (10.0 + rng.gamma(2.0, 0.25, n)))


def rounds(scale: float = 1.0, seed: int = 0, n_rounds: int = 5, per_round: int = 40,
           round_sd: float = 0.01) -> tuple[list[float], list[int]]:
    """Samples of `n_rounds` rounds whose levels vary by `round_sd` (log scale) between
    rounds, as a machine's speed does; flat samples and round sizes."""
    rng = np.random.default_rng(seed)
    flat: list[float] = []
    for _ in range(n_rounds):
        level = scale * float(np.exp(rng.normal(0, round_sd)))
        flat += list(level * (10.0 + rng.gamma(2.0, 0.1, per_round)))
    return flat, [per_round] * n_rounds


def rec(samples_ms: list[float], *, variant: str = "int8-dynamic", metric: float = 0.9,
        machine: str | None = "fp-a", status: str = "ok", task: str = "sst2",
        metric_name: str = "accuracy", sizes: list[int] | None = None, batch: int = 1
        ) -> Record:
    return Record(run_id="r", model="m", task=task, method=variant, variant=variant,
                  provider="cpu", batch_size=batch, seq_len=128, status=status,
                  metric_name=metric_name, metric_value=metric, samples_ms=samples_ms,
                  round_sizes=sizes or [],
                  latency_ms_p50=float(np.median(samples_ms)) if samples_ms else None,
                  machine=machine)


def rrec(scale: float = 1.0, seed: int = 0, **kw: object) -> Record:
    flat, sizes = rounds(scale, seed, **{k: kw.pop(k) for k in ("round_sd",) if k in kw})
    return rec(flat, sizes=sizes, **kw)  # type: ignore[arg-type]


def test_known_regression_is_detected() -> None:
    cmp = compare_runs([rrec(1.2, seed=2)], [rrec(seed=1)], thresholds=THRESHOLDS)
    test = cmp.cells[0].latency["latency_ms_p50"]
    assert test.estimate == pytest.approx(1.2, abs=0.03)
    assert test.low > 1.1 and test.significant and (test.n_new, test.n_base) == (5, 5)
    assert [(k[2], t) for k, t, _ in cmp.regressions] == [("int8-dynamic", "latency_ms_p50:5%")]
    assert "latency_ms_p50:5%" in to_markdown(cmp)


def test_identical_runs_are_not_flagged() -> None:
    same = rrec(seed=3)
    cmp = compare_runs([same], [same], thresholds=THRESHOLDS)
    test = cmp.cells[0].latency["latency_ms_p50"]
    assert test.estimate == pytest.approx(1.0) and test.low < 1.0 < test.high
    assert not test.significant and cmp.regressions == []


def test_many_samples_do_not_make_a_round_level_shift_significant() -> None:
    """Same code, 4,000 samples a run, rounds whose level varies by 3%: the runs differ by
    2%, which a test on samples calls significant; the test on rounds does not."""
    new, sizes = rounds(1.0, seed=12, per_round=800, round_sd=0.03)
    base, _ = rounds(1.0, seed=112, per_round=800, round_sd=0.03)
    assert mannwhitneyu(new, base).pvalue < 1e-6  # the sample-level view
    cmp = compare_runs([rec(new, sizes=sizes)], [rec(base, sizes=sizes)],
                       thresholds=["latency_ms_p50:1%"])
    test = cmp.cells[0].latency["latency_ms_p50"]
    assert test.estimate == pytest.approx(1.02, abs=0.005)
    assert test.low < 1.0 < test.high and not test.significant
    assert cmp.regressions == []


def test_small_significant_slowdown_below_threshold_is_not_flagged() -> None:
    cmp = compare_runs([rrec(1.03, seed=4, round_sd=0.002)], [rrec(seed=5, round_sd=0.002)],
                       thresholds=THRESHOLDS)
    assert cmp.cells[0].latency["latency_ms_p50"].significant
    assert cmp.regressions == []


def test_other_percentile_threshold_tests_that_statistic() -> None:
    base, sizes = rounds(seed=6)
    new, _ = rounds(seed=7)
    # the slowest tenth of every round 1.5x slower: p99 moves, p50 does not
    tail = [x * 1.5 if x > np.percentile(r, 90) else x
            for r in split_rounds(new, sizes) for x in r]
    cmp = compare_runs([rec(tail, sizes=sizes)], [rec(base, sizes=sizes)],
                       thresholds=["latency_ms_p99:10%"])
    assert set(cmp.cells[0].latency) == {"latency_ms_p50", "latency_ms_p99"}
    assert [t for _, t, _ in cmp.regressions] == ["latency_ms_p99:10%"]


def test_fdr_control_across_cells() -> None:
    """20 A/A cells: some raw p-values fall below 0.05 by chance; after Benjamini-Hochberg
    none is a regression (threshold 0%: significance alone decides)."""
    new = [rrec(seed=100 + i, variant=f"v{i}") for i in range(20)]
    base = [rrec(seed=200 + i, variant=f"v{i}") for i in range(20)]
    cmp = compare_runs(new, base, thresholds=["latency_ms_p50:0%"])
    tests = [c.latency["latency_ms_p50"] for c in cmp.cells]
    p = np.array([t.p for t in tests])
    assert (p < 0.05).any()
    assert np.allclose([t.q for t in tests], false_discovery_control(p))
    assert all(t.q >= t.p for t in tests) and cmp.regressions == []
    slow = [rrec(1.2, seed=100 + i, variant=f"v{i}") if i < 3 else r for i, r in enumerate(new)]
    flagged = compare_runs(slow, base, thresholds=["latency_ms_p50:0%"]).regressions
    assert sorted(k[2] for k, _, _ in flagged) == ["v0", "v1", "v2"]


def test_several_baselines_make_their_spread_the_noise_floor() -> None:
    a, b = rrec(seed=8, round_sd=0.003), rrec(1.08, seed=9, round_sd=0.003)
    new = rrec(1.06, seed=10, round_sd=0.003)
    assert compare_runs([new], [a], thresholds=THRESHOLDS).regressions  # one baseline: flagged
    cmp = compare_runs([new], [a], [b], thresholds=THRESHOLDS)
    test = cmp.cells[0].latency["latency_ms_p50"]
    assert test.floor == pytest.approx(8.0, abs=1.0) and test.n_base == 10
    assert cmp.regressions == [] and "2 baseline runs" in to_markdown(cmp)
    slower = compare_runs([rrec(1.25, seed=11)], [a], [b], thresholds=THRESHOLDS)
    assert len(slower.regressions) == 1


def test_one_round_records_are_untested() -> None:
    """Records from before rounds: one round a side cannot tell run-to-run noise."""
    cmp = compare_runs([rec(samples(1.2, seed=1))], [rec(samples(seed=2))],
                       thresholds=THRESHOLDS)
    assert cmp.regressions == [] and [t for _, t in cmp.untested] == ["latency_ms_p50:5%"]


def test_paired_metric_drop_is_a_regression() -> None:
    labels = np.array([0, 1] * 100)
    base_pred = labels.copy()
    new_pred = labels.copy()
    new_pred[:30] = 1 - new_pred[:30]  # 30 new errors, none fixed
    key = rec([]).key
    cmp = compare_runs([rec([], metric=0.85)], [rec([], metric=1.0)], thresholds=THRESHOLDS,
                       predictions={key: (new_pred, base_pred, labels)})
    cell = cmp.cells[0]
    assert cell.metric_test == "mcnemar-exact" and cell.metric_p < 1e-6
    assert cell.metric_delta == pytest.approx(-15.0)
    assert [t for _, t, _ in cmp.regressions] == ["metric:-0.5"]


def test_regression_task_uses_permutation_test_and_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 300)
    good, bad = labels + rng.normal(0, 0.3, 300), labels + rng.normal(0, 2.0, 300)
    key = rec([], task="stsb").key
    cmp = compare_runs([rec([], task="stsb", metric_name="pearson", metric=0.8)],
                       [rec([], task="stsb", metric_name="pearson", metric=0.95)],
                       thresholds=THRESHOLDS, predictions={key: (bad, good, labels)})
    cell = cmp.cells[0]
    assert cell.metric_test == "permutation" and cell.metric_p < 0.01
    observed = (np.corrcoef(bad, labels)[0, 1] - np.corrcoef(good, labels)[0, 1]) * 100
    assert cell.metric_ci is not None and cell.metric_ci[0] < observed < cell.metric_ci[1] < 0
    assert [t for _, t, _ in cmp.regressions] == ["metric:-0.5"]
    assert f"{cell.metric_ci[0]:+.2f} to {cell.metric_ci[1]:+.2f}" in to_markdown(cmp)


def test_metric_regressions_are_controlled_for_false_discoveries() -> None:
    """Exact McNemar with 6 new errors and none fixed: p = 2 / 2^6 = 0.03125, a drop of 3
    points. Alone it is a regression; beside two unchanged variants (p = 1) its BH q is
    0.03125 * 3 / 1 = 0.094, not significant."""
    labels = np.ones(200, dtype=int)
    worse = labels.copy()
    worse[:6] = 0

    def run(variants: list[str]) -> object:
        new = [rec([], variant=v, metric=0.97 if v == "a" else 1.0) for v in variants]
        preds = {r.key: (worse if r.variant == "a" else labels, labels, labels) for r in new}
        return compare_runs(new, [rec([], variant=v, metric=1.0) for v in variants],
                            thresholds=["metric:-0.5"], predictions=preds)

    alone = run(["a"])
    assert alone.cells[0].metric_p == pytest.approx(0.03125)
    assert alone.cells[0].metric_q == pytest.approx(0.03125)
    assert [k for k, _, _ in alone.regressions] == [("m", "sst2", "a")]
    three = run(["a", "b", "c"])
    assert [c.metric_q for c in three.cells] == pytest.approx([0.09375, 1.0, 1.0])
    assert three.regressions == []


def test_unpaired_metric_drop_is_reported_not_flagged() -> None:
    same = samples(seed=10)
    cmp = compare_runs([rec(same, metric=0.80)], [rec(same, metric=0.90)],
                       thresholds=THRESHOLDS)
    assert cmp.cells[0].metric_test == "unpaired"
    assert cmp.regressions == []
    assert [t for _, t in cmp.untested] == ["metric:-0.5"]
    assert "unpaired" in to_markdown(cmp) and "-10.00" in to_markdown(cmp)


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
    assert len(cmp.cells) == 1 and "fp-new" in to_markdown(cmp)


def test_changed_timing_settings_are_named_in_the_report() -> None:
    """A baseline timed with other session settings (an older harness, another spinning
    setting) is compared, and the report says which settings differ and in how many cells."""
    timed = {"allow_spinning": True, "measurement": {"rounds": 5}}
    old = rrec(seed=1).model_copy(update={"session": timed})
    new = rrec(seed=2).model_copy(update={"session": timed | {"stop_spinning_after_run": True,
                                                              "measurement": {"rounds": 6}}})
    cmp = compare_runs([new], [old], thresholds=THRESHOLDS)
    assert cmp.settings_note == ("timing settings differ from the baseline (stop_spinning_after_"
                                 "run: None there, True here, in 1 cells): a latency change in "
                                 "those cells may be theirs")
    assert "**Note:** timing settings differ" in to_markdown(cmp)
    same = compare_runs([old.model_copy(update={"session": timed | {"measurement": {}}})],
                        [old], thresholds=THRESHOLDS)
    assert same.settings_note is None and "**Note:**" not in to_markdown(same)
    turns = new.model_copy(update={"session": timed | {"measurement": {"turn_seconds": 0.025}}})
    assert compare_runs([turns], [old], thresholds=THRESHOLDS).settings_note == (
        "timing settings differ from the baseline (turn_seconds: None there, 0.025 here, in 1 "
        "cells): a latency change in those cells may be theirs")  # whole slices before turns


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


def test_metric_is_tested_once_per_variant_not_per_shape() -> None:
    labels = np.array([0, 1] * 100)
    new_pred = labels.copy()
    new_pred[:30] = 1 - new_pred[:30]
    new = [rec([], metric=0.85, batch=b) for b in (1, 32)]
    base = [rec([], metric=1.0, batch=b) for b in (1, 32)]
    preds = {r.key: (new_pred, labels, labels) for r in new}
    cmp = compare_runs(new, base, thresholds=THRESHOLDS, predictions=preds)
    assert [c.metric_test for c in cmp.cells] == ["mcnemar-exact", None]
    assert cmp.regressions == [(("m", "sst2", "int8-dynamic"), "metric:-0.5", cmp.regressions[0][2])]
    assert "| –" in to_markdown(cmp)


def test_cells_timed_under_load_are_untested_not_regressions() -> None:
    slow, base = rrec(1.5, seed=12), rrec(seed=13)
    assert compare_runs([slow], [base], thresholds=THRESHOLDS).regressions
    slow.others_load = 0.9  # other processes kept 90% of the CPU busy during this run
    cmp = compare_runs([slow], [base], thresholds=THRESHOLDS)
    test = cmp.cells[0].latency["latency_ms_p50"]
    assert not test.tested and test.note == "timed under load"
    assert cmp.regressions == [] and [t for _, t in cmp.untested] == ["latency_ms_p50:5%"]
    assert "timed under load" in to_markdown(cmp)
    assert compare_runs([slow], [base], thresholds=THRESHOLDS, max_load=0.95).regressions


def test_metric_is_tested_once_per_runtime_of_a_variant() -> None:
    """A variant timed on the CPU and on OpenVINO has a metric from each runtime: both tested."""
    labels = np.array([0, 1] * 100)
    new_pred = labels.copy()
    new_pred[:30] = 1 - new_pred[:30]
    shapes = [("cpu", 1), ("cpu", 32), ("openvino", 1)]
    new = [rec([], metric=0.85, batch=b).model_copy(update={"provider": p, "metric_provider": p})
           for p, b in shapes]
    base = [rec([], metric=1.0, batch=b).model_copy(update={"provider": p, "metric_provider": p})
            for p, b in shapes]
    preds = {r.key: (new_pred, labels, labels) for r in new}
    cmp = compare_runs(new, base, thresholds=THRESHOLDS, predictions=preds)
    tested = [(c.key[3], c.metric_test) for c in cmp.cells]
    assert tested == [("cpu", "mcnemar-exact"), ("cpu", None), ("openvino", "mcnemar-exact")]


def group(scale: float, seed: int, slow_variant: float = 1.0, reference: float = 0.2,
          round_sd: float = 0.02) -> list[Record]:
    """A baseline and a variant timed in the same 5 rounds of one run: the rounds share the
    machine's speed (`scale` x a per-round level); the variant is 0.5 of the baseline x
    `slow_variant`; the reference workload took `reference` ms at each round boundary."""
    rng = np.random.default_rng(seed)
    levels = scale * np.exp(rng.normal(0, round_sd, 5))
    out = []
    for variant, factor in (("baseline", 1.0), ("int8-dynamic", 0.5 * slow_variant)):
        flat = [float(lv * factor * (10 + x)) for lv in levels for x in rng.gamma(2, 0.1, 40)]
        r = rec(flat, sizes=[40] * 5, variant=variant)
        out.append(r.model_copy(update={
            "session": {"measurement": {"reference_ms": [reference * scale] * 6}}}))
    return out


def _flagged(cmp) -> set[str]:
    return {k[2] for k, _, _ in cmp.regressions}


def test_a_machine_wide_shift_flags_no_variant_and_leaves_the_baseline_untested() -> None:
    """The whole group 10% slower, the reference workload too: the machine moved, not the
    code. The variant, tested relative to its baseline in the same rounds, is not flagged;
    the baseline's absolute latency is untested (a test on absolute rounds flags both)."""
    cmp = compare_runs(group(1.10, seed=1), group(1.0, seed=2), thresholds=THRESHOLDS)
    cells = {c.key[2]: c.latency["latency_ms_p50"] for c in cmp.cells}
    assert cells["int8-dynamic"].basis == "vs baseline" and cells["int8-dynamic"].tested
    assert cells["int8-dynamic"].estimate == pytest.approx(1.0, abs=0.02)
    assert cells["baseline"].estimate == pytest.approx(1.10, abs=0.03)
    assert not cells["baseline"].tested and "reference workload off by 10%" in cells["baseline"].note
    assert _flagged(cmp) == set()
    assert ("m", "sst2", "baseline", "cpu", 1, 128) in {k for k, _ in cmp.untested}
    two = compare_runs(group(1.10, seed=1), group(1.0, seed=2), group(1.0, seed=7),
                       thresholds=THRESHOLDS)  # two baseline runs: the reference still gates
    base = next(c.latency["latency_ms_p50"] for c in two.cells if c.key[2] == "baseline")
    assert not base.tested and base.note.startswith("machine speed moved")


def test_a_variant_slower_beside_its_baseline_is_flagged_whatever_the_machine_did() -> None:
    cmp = compare_runs(group(0.93, seed=3, slow_variant=1.10), group(1.0, seed=4),
                       thresholds=THRESHOLDS)
    assert _flagged(cmp) == {"int8-dynamic"}
    why = next(w for k, _, w in cmp.regressions if k[2] == "int8-dynamic")
    assert "relative to its baseline" in why


def baselines(drift: dict[str, float], seed: int, slow: dict[str, float] | None = None,
              n_cells: int = 8, round_sd: float = 0.01) -> list[Record]:
    """One run's baseline cells: `n_cells` tasks per provider, each timed in 5 rounds; each
    cell's latency moves by N(0, drift[provider]) (log scale) a run, the provider's runtime
    drifting while the reference workload (the same in every run) does not; a task named in
    `slow` is that much slower in this run."""
    rng = np.random.default_rng(seed)
    out = []
    for provider, sd in drift.items():
        for i in range(n_cells):
            task = f"t{i}"
            level = np.exp(rng.normal(0, sd)) * (slow or {}).get(task, 1.0)
            flat = [float(level * lv * (10 + x)) for lv in np.exp(rng.normal(0, round_sd, 5))
                    for x in rng.gamma(2, 0.05, 40)]
            r = rec(flat, sizes=[40] * 5, variant="baseline", task=task)
            out.append(r.model_copy(update={
                "provider": provider,
                "session": {"measurement": {"reference_ms": [0.2] * 6}}}))
    return out


def test_a_slower_baseline_is_flagged_against_several_steady_baseline_runs() -> None:
    """Same reference workload time in every run: against two baseline runs the baseline's
    absolute latency is tested, allowing for how far the baselines moved between them; against
    one it is untested, since one run's rounds say nothing of how far the machine moves between
    runs (the A/A pairs of docs/timing.md)."""
    steady = {"cpu": 0.005}
    new = baselines(steady, seed=5, slow={"t0": 1.10})
    cmp = compare_runs(new, baselines(steady, seed=6), baselines(steady, seed=8),
                       thresholds=THRESHOLDS)
    assert {k[1] for k, _, _ in cmp.regressions} == {"t0"}
    one = compare_runs(new, baselines(steady, seed=6), thresholds=THRESHOLDS)
    assert _flagged(one) == set()
    assert "**One baseline run:**" in to_markdown(one)
    assert "**One baseline run:**" not in to_markdown(cmp)
    base = next(c.latency["latency_ms_p50"] for c in one.cells if c.key[2] == "baseline")
    assert not base.tested and base.note.startswith("one baseline run")


def test_machine_noise_is_estimated_per_provider_from_the_baselines() -> None:
    runs = [{r.key: r for r in baselines({"cpu": 0.0, "openvino": 0.04}, seed=s)}
            for s in range(3)]
    found = estimate_machine_noise(runs, 50)
    assert found["cpu"].sd == pytest.approx(0.0, abs=0.006)
    assert found["openvino"].sd == pytest.approx(0.04, abs=0.02)
    assert "3 baseline runs (24 openvino baseline cell pairs)" in found["openvino"].source
    few = [{r.key: r for r in baselines({"cpu": 0.0}, seed=s, n_cells=2)} for s in range(3)]
    assert estimate_machine_noise(few, 50) == {}  # 6 pairs: too few to estimate


def test_a_drifting_runtime_raises_no_false_alarm_on_its_baselines() -> None:
    """OpenVINO's baselines moving by 4% a run while the reference workload stays put (the
    tenth session's false alarm): each of six A/A runs against the five others flags nothing,
    its baseline p-values are not crowded below 0.05 (without the machine noise, half of them
    are); a baseline 25% slower is still flagged."""
    runs = [baselines({"cpu": 0.005, "openvino": 0.04}, seed=20 + i) for i in range(6)]
    ps, flagged = [], set()
    for i, run in enumerate(runs):
        cmp = compare_runs(run, *(r for j, r in enumerate(runs) if j != i), thresholds=THRESHOLDS)
        assert cmp.machine_noise["latency_ms_p50"]["openvino"].sd > 0.02
        ps += [c.latency["latency_ms_p50"].p for c in cmp.cells if c.key[3] == "openvino"]
        flagged |= {k for k, _, _ in cmp.regressions}
    assert len(ps) == 48 and all(np.isfinite(ps))
    assert flagged == set() and (np.array(ps) < 0.05).mean() < 0.15
    pooled = [welch_ratio(round_values_of(run, "openvino", "t0"),
                          [round_values_of(r, "openvino", "t0") for r in runs[1:]]).p
              for run in runs[:1]]
    assert pooled[0] < 0.05  # the rounds alone call the drift significant
    slow = baselines({"cpu": 0.005, "openvino": 0.04}, seed=20, slow={"t3": 1.25})
    cmp = compare_runs(slow, *runs[1:], thresholds=THRESHOLDS)
    assert {(k[1], k[3]) for k, _, _ in cmp.regressions} >= {("t3", "cpu"), ("t3", "openvino")}
    assert "openvino baseline cell pairs" in to_markdown(cmp)


def round_values_of(run: list[Record], provider: str, task: str) -> np.ndarray:
    r = next(r for r in run if r.provider == provider and r.task == task)
    return np.array([np.median(x) for x in r.rounds_ms])


def test_baselines_too_few_to_estimate_their_noise_are_untested() -> None:
    runs = [baselines({"cpu": 0.005}, seed=s, n_cells=2) for s in range(3)]
    cmp = compare_runs(runs[0], runs[1], runs[2], thresholds=THRESHOLDS)
    notes = {c.latency["latency_ms_p50"].note for c in cmp.cells}
    assert notes == {"too few cpu baselines in the baseline runs to estimate how far their "
                     "latency moves between runs (fewer than 8 cell pairs)"}


def test_run_noise_widens_the_welch_test_as_computed_by_hand() -> None:
    """Welch on the logs with the run noise added to each side's variance of the mean:
    once for the new run, 1/k times for the pooled mean of k baseline runs."""
    new, base = [1.10, 1.12, 1.08, 1.11, 1.09], [1.00, 1.02, 0.99, 1.01, 0.98]
    plain = welch_ratio(new, [base])
    a, b = np.log(new), np.log(base)
    assert plain.p == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 5
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 4)
    for k in (1, 2):  # the same five baseline rounds, as one run or split into two
        se = np.sqrt(va + vb + 0.03 ** 2 * (1 + 1 / k))
        got = welch_ratio(new, [base[:3], base[3:]] if k == 2 else [base], 0.03)
        assert got.p == pytest.approx(2 * student_t.sf((a.mean() - b.mean()) / se, df))
        assert got.run_noise == 0.03 and got.p > plain.p
        half = student_t.ppf(0.975, df) * se
        assert np.log(got.high) - np.log(got.low) == pytest.approx(2 * half)


def many_variants(offsets: dict[str, float], seed: int, round_sd: float = 0.01) -> list[Record]:
    """One group (baseline + variants) timed in the same 5 rounds; each variant is 0.5 of
    the baseline times exp(its offset): a run-level move beside the baseline."""
    rng = np.random.default_rng(seed)
    levels = np.exp(rng.normal(0, round_sd, 5))
    out = []
    for variant, offset in {"baseline": None, **offsets}.items():
        factor = 1.0 if offset is None else 0.5 * float(np.exp(offset))
        flat = [float(lv * factor * (10 + x)) for lv in levels for x in rng.gamma(2, 0.05, 40)]
        out.append(rec(flat, sizes=[40] * 5, variant=variant))
    return out


def aa_runs(n_runs: int, sd: float, n_variants: int = 30, seed: int = 0) -> list[list[Record]]:
    """Runs of the same code whose variants move beside their baseline by N(0, sd) a run."""
    rng = np.random.default_rng(seed)
    return [many_variants({f"v{i}": float(rng.normal(0, sd)) for i in range(n_variants)},
                          seed=seed * 100 + r) for r in range(n_runs)]


@pytest.mark.parametrize("sd", [0.0, 0.03])
def test_run_noise_is_estimated_from_several_baseline_runs(sd: float) -> None:
    runs = aa_runs(3, sd, seed=int(sd * 100) + 1)
    found = estimate_run_noise([{r.key: r for r in run} for run in runs], 50)
    assert found is not None and "3 baseline runs (90 cell pairs)" in found.source
    assert found.sd == pytest.approx(sd, abs=0.008)
    assert estimate_run_noise([{r.key: r for r in runs[0]}], 50) is None  # no pair of runs


def test_single_baseline_uses_the_default_run_noise_and_several_their_own() -> None:
    quiet = aa_runs(2, 0.0, seed=4)
    one = compare_runs(quiet[0], quiet[1], thresholds=THRESHOLDS)
    assert one.run_noise["latency_ms_p50"].pooled.sd == RUN_NOISE
    assert f"latency_ms_p50 {RUN_NOISE:.1%} (default" in to_markdown(one)
    runs = aa_runs(3, 0.03, seed=4)
    noisy = compare_runs(runs[0], runs[1], thresholds=THRESHOLDS)  # a noisier machine
    assert noisy.run_noise["latency_ms_p50"].pooled.sd == pytest.approx(0.03, abs=0.015)
    assert ("estimated from this run and the baseline run (30 cell pairs), above the default"
            in to_markdown(noisy))
    several = compare_runs(runs[0], runs[1], runs[2], thresholds=THRESHOLDS)
    assert several.run_noise["latency_ms_p50"].pooled.sd == pytest.approx(0.03, abs=0.01)
    assert "estimated from 2 baseline runs" in to_markdown(several)
    given = compare_runs(runs[0], runs[1], runs[2], thresholds=THRESHOLDS, run_noise=0.05)
    assert given.run_noise["latency_ms_p50"].pooled == RunNoise(0.05, "given")
    test = next(c.latency["latency_ms_p50"] for c in given.cells if c.key[2] == "v0")
    assert test.basis == "vs baseline" and test.run_noise == 0.05


def test_a_run_level_move_beside_the_baseline_is_not_a_regression_when_allowed_for() -> None:
    """A variant 8% slower beside its baseline in one run only, with tight rounds: the
    rounds alone call it a regression; allowing for 3% run noise (measured from A/A runs
    of this machine) does not. A 25% slowdown is flagged either way."""
    new = many_variants({"v": 0.08, "w": float(np.log(1.25))}, seed=11)
    base = many_variants({"v": 0.0, "w": 0.0}, seed=12)
    assert _flagged(compare_runs(new, base, thresholds=THRESHOLDS, run_noise=0.0)) == {"v", "w"}
    assert _flagged(compare_runs(new, base, thresholds=THRESHOLDS, run_noise=0.03)) == {"w"}


def test_aa_variant_pvalues_are_calibrated_when_run_noise_is_estimated() -> None:
    """Each of six A/A runs (variants move beside their baseline by N(0, 3%) a run, tighter
    rounds) against the five others, as benchmarks/latency_aa.py checks the real ones: the
    variant p-values are about uniform. Without the run-noise term nearly all would be
    below 0.05; with twice the noise nearly none below 0.2."""
    runs = aa_runs(6, 0.03, seed=7)

    def pvalues(**kw: object) -> np.ndarray:
        ps = []
        for i, run in enumerate(runs):
            cmp = compare_runs(run, *(r for j, r in enumerate(runs) if j != i),
                               thresholds=THRESHOLDS, **kw)
            ps += [c.latency["latency_ms_p50"].p for c in cmp.cells if c.key[2] != "baseline"]
        return np.array(ps)

    p = pvalues()
    assert len(p) == 180
    assert (p < 0.05).mean() <= 0.12 and 0.1 <= (p < 0.2).mean() <= 0.32
    assert kstest(p, "uniform").pvalue > 0.01
    assert (pvalues(run_noise=0.0) < 0.05).mean() > 0.5
    assert (pvalues(run_noise=0.06) < 0.2).mean() < 0.1


def test_aa_pairs_on_a_noisy_machine_are_calibrated_against_one_baseline_run() -> None:
    """Pairs of A/A runs whose variants move beside their baseline by 5% a run (an AVX2-only
    AMD EPYC VM of the eleventh session: 3.3-5.6% per pair, docs/timing.md): against its pair
    alone the default run noise (1.5%) puts a third of the p-values under 0.05, the spread of
    the pair itself about 5%; one variant 50% slower is still flagged."""
    runs = aa_runs(8, 0.05, seed=9)

    def pvalues(**kw: object) -> np.ndarray:
        ps = []
        for i in range(0, 8, 2):
            for a, b in ((runs[i], runs[i + 1]), (runs[i + 1], runs[i])):
                cmp = compare_runs(a, b, thresholds=THRESHOLDS, **kw)
                ps += [c.latency["latency_ms_p50"].p for c in cmp.cells if c.key[2] != "baseline"]
        return np.array(ps)

    assert (pvalues(run_noise=RUN_NOISE) < 0.05).mean() > 0.25
    p = pvalues()
    assert len(p) == 240 and (p < 0.05).mean() <= 0.1
    slow = [r.model_copy(update={"samples_ms": [x * 1.5 for x in r.samples_ms]})
            if r.variant == "v3" else r for r in runs[1]]
    assert _flagged(compare_runs(slow, runs[0], thresholds=THRESHOLDS)) == {"v3"}


def two_shapes(sds: dict[int, float], seed: int, slow: float = 1.0) -> list[Record]:
    """One run: 24 variants at batch 1 and 24 at batch 32, each group with its baseline in
    the same rounds; a variant moves beside its baseline by N(0, sds[batch]) a run; every
    batch-32 variant is `slow` times slower."""
    rng = np.random.default_rng(seed)
    out = []
    for batch, sd in sds.items():
        offsets = {f"v{i}": float(rng.normal(0, sd)) + (np.log(slow) if batch == 32 else 0.0)
                   for i in range(24)}
        out += [r.model_copy(update={"batch_size": batch})
                for r in many_variants(offsets, seed=seed * 10 + batch)]
    return out


def test_run_noise_is_estimated_per_provider_and_batch_size() -> None:
    """Batch 1 moving 6% a run beside its baseline and batch 32 1% (onnxruntime on the
    eleventh session's VM): each group gets its own estimate. Four A/A runs, each against the
    three others, flag nothing; with the pooled estimate (about 2%: the MAD of the mixture)
    the batch-1 cells raise false alarms. Every batch-32 variant 6% slower is flagged in
    most cells (at most one batch-1 cell beside them: the false discovery rate's allowance)."""
    sds = {1: 0.06, 32: 0.01}
    runs = [two_shapes(sds, seed=30 + i) for i in range(4)]
    own, pooled = [], []
    for i, run in enumerate(runs):
        others = [r for j, r in enumerate(runs) if j != i]
        cmp = compare_runs(run, *others, thresholds=THRESHOLDS)
        own.append(len(cmp.regressions))
        pooled.append(len(compare_runs(run, *others, thresholds=THRESHOLDS,
                                       run_noise=cmp.run_noise["latency_ms_p50"].pooled.sd)
                          .regressions))
    assert own == [0, 0, 0, 0] and sum(pooled) >= 3
    cmp = compare_runs(two_shapes(sds, seed=40, slow=1.06), *runs[:3], thresholds=THRESHOLDS)
    table = cmp.run_noise["latency_ms_p50"]
    assert table.groups[("cpu", 1)].sd == pytest.approx(0.06, abs=0.025)
    assert table.groups[("cpu", 32)].sd == pytest.approx(0.01, abs=0.008)
    assert "cpu batch 32 " in to_markdown(cmp) and "other cells" in to_markdown(cmp)
    batches = [k[4] for k, _, _ in cmp.regressions]
    assert batches.count(32) >= 16 and batches.count(1) <= 1
    one = compare_runs(runs[3], runs[0], thresholds=THRESHOLDS)  # one baseline run
    assert one.run_noise["latency_ms_p50"].groups[("cpu", 1)].sd > 0.04
    assert one.regressions == []
