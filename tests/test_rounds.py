"""Interleaved rounds: order, per-round samples, paired speedups, the ORT group timer."""
from __future__ import annotations

import math
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import stats as sps

from harness.records import Record, split_rounds
from harness.schema import TimingSpec
from harness.timing import make_session
from harness.timing import rounds as rounds_mod
from harness.timing.group import time_group
from harness.timing.rounds import (
    Rounds,
    Slice,
    log_ratio_ci,
    paired_speedup,
    round_cv,
    round_orders,
    time_rounds,
)

SPEC = TimingSpec(warmup=2, rounds=4, min_iterations=8, min_seconds=0.0, max_seconds=5.0,
                  turn_seconds=None)
TURNS = SPEC.model_copy(update={"turn_seconds": 1e-9})  # every run outlasts LONG_RUN turns


def test_rotate_order_starts_each_round_with_the_next_variant() -> None:
    assert round_orders(["a", "b", "c"], 4) == [["a", "b", "c"], ["b", "c", "a"],
                                               ["c", "a", "b"], ["a", "b", "c"]]


def test_shuffle_order_is_a_seeded_permutation_per_round() -> None:
    names = [f"v{i}" for i in range(6)]
    first = round_orders(names, 10, "shuffle", seed=3)
    assert first == round_orders(names, 10, "shuffle", seed=3)
    assert first != round_orders(names, 10, "shuffle", seed=4)
    assert all(sorted(r) == names for r in first) and len({tuple(r) for r in first}) > 1


def test_slice_is_a_share_of_the_spec() -> None:
    spec = TimingSpec(rounds=4, min_iterations=10, min_seconds=2.0, max_seconds=20.0)
    assert Slice.of(spec) == Slice(3, 0.5, 5.0)


def test_rounds_interleave_in_the_recorded_order() -> None:
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("base", "int8", "prune")}
    result = time_rounds(steps, SPEC)
    assert result.order == round_orders(list(steps), 4)
    per_slice = rounds_mod.SLICE_WARMUP + 2  # warm-up run + ceil(8 / 4) timed runs
    expected = [n for n in result.order[0] for _ in range(SPEC.warmup)]
    expected += [n for order in result.order for n in order for _ in range(per_slice)]
    assert calls == expected
    counter = iter(range(100))
    marked = time_rounds(steps, SPEC, mark=lambda: next(counter))
    assert marked.marks == [0, 1, 2, 3, 4]  # before each round and after the last
    for name in steps:  # raw samples kept per round
        assert result.sizes(name) == [2, 2, 2, 2]
        assert len(result.flat(name)) == 8 and all(x >= 0 for x in result.flat(name))
        assert result.stopped_by[name] == ["criteria met"] * 4


def test_turns_of_long_runs_take_each_slice_at_once_as_slices_do() -> None:
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("base", "int8", "prune")}
    result = time_rounds(steps, TURNS)  # 1 ns turns: every run outlasts LONG_RUN turns
    slices: list[str] = []
    sliced = {name: (lambda name=name: slices.append(name)) for name in steps}
    time_rounds(sliced, SPEC)
    assert calls == slices and result.order == round_orders(list(steps), 4)
    for name in steps:
        assert result.sizes(name) == [2, 2, 2, 2]
        assert result.stopped_by[name] == ["criteria met"] * 4


def _turns(spec: TimingSpec, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
           ) -> tuple[list[str], Rounds]:
    """Calls of 1-ms steps, with "|" where the timed part of each turn starts."""
    calls: list[str] = []
    timed = rounds_mod.time_until

    def mark_then_time(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append("|")
        return timed(*args, **kwargs)

    def step(name: str) -> None:
        calls.append(name)
        time.sleep(0.001)

    monkeypatch.setattr(rounds_mod, "time_until", mark_then_time)
    return calls, time_rounds({n: (lambda n=n: step(n)) for n in names}, spec,
                              mark=lambda: calls.append("R"))  # "R": a round starts or ends


def test_short_runs_take_turns_in_a_fresh_seeded_order_each_cycle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TURNS.model_copy(update={"turn_seconds": 0.005, "rounds": 2, "warmup": 0,
                                    "min_iterations": 2, "min_seconds": 0.03})
    names = ("a", "b", "c")
    calls, result = _turns(spec, names, monkeypatch)
    starts = [i for i, c in enumerate(calls) if c == "|"]
    assert all(calls[i - 1] == calls[i + 1] for i in starts)  # an untimed run of the same variant
    rounds = "".join(calls).strip("R").split("R")
    assert len(rounds) == 2
    for r, done in enumerate(rounds):
        turns = [done[i + 1] for i, c in enumerate(done) if c == "|"]
        cycles = [turns[i:i + 3] for i in range(0, len(turns), 3)]
        assert len(cycles) >= 2  # 5 ms turns, 15 ms of timed runs each a round
        assert cycles == list(islice(rounds_mod.cycle_orders(result.order[r], spec.seed, r),
                                     len(cycles)))
    assert all(sum(r) >= 15 for name in names for r in result.samples_ms[name])
    assert result.stopped_by == {n: ["criteria met"] * 2 for n in names}


def test_turns_stop_at_the_rounds_max_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TURNS.model_copy(update={"turn_seconds": 0.002, "rounds": 1, "warmup": 0,
                                    "min_seconds": 0.02, "max_seconds": 0.02,
                                    "min_iterations": 10_000})
    _, result = _turns(spec, ("a", "b"), monkeypatch)
    assert result.stopped_by == {"a": ["max_seconds"], "b": ["max_seconds"]}
    assert 0.04 <= result.seconds < 1.0  # max_seconds (0.02) per variant, two variants


def test_cycle_orders_are_seeded_per_round_and_balance_who_runs_after_whom() -> None:
    names = ["a", "b", "c", "d"]
    def take(seed: int, r: int) -> list[list[str]]:
        return list(islice(rounds_mod.cycle_orders(names, seed, r), 400))

    cycles = take(0, 0)
    assert cycles[0] == names and all(sorted(c) == names for c in cycles)
    assert cycles == take(0, 0) and cycles != take(0, 1) and cycles != take(1, 0)
    after = Counter((c[i], c[i + 1]) for c in cycles for i in range(3))
    assert set(after) == {(x, y) for x in names for y in names if x != y}
    assert min(after.values()) > 0.6 * max(after.values())  # no fixed neighbour, unlike a rotation


def test_split_rounds_round_trips_and_checks_sizes() -> None:
    assert split_rounds([1.0, 2.0, 3.0], [2, 1]) == [[1.0, 2.0], [3.0]]
    assert split_rounds([1.0, 2.0], []) == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="add up to 2"):
        split_rounds([1.0, 2.0, 3.0], [1, 1])
    with pytest.raises(ValueError, match="round_sizes"):
        Record(run_id="r", model="m", task="t", method="b", provider="cpu", batch_size=1,
               seq_len=8, status="ok", samples_ms=[1.0, 2.0], round_sizes=[3])


def test_paired_speedup_ignores_a_mode_flip_between_rounds() -> None:
    """The machine runs 1.6x slower in rounds 2 and 4: separate medians move, ratios do not."""
    rng = np.random.default_rng(0)
    mode = [1.0, 1.6, 1.0, 1.6, 1.0]
    base = [list(m * 10.0 * (1 + rng.normal(0, 0.002, 50))) for m in mode]
    fast = [list(m * 5.0 * (1 + rng.normal(0, 0.002, 50))) for m in mode]
    ci = paired_speedup(base, fast)
    assert ci.estimate == pytest.approx(2.0, rel=0.005) and ci.n == 5
    assert ci.low < ci.estimate < ci.high and ci.high / ci.low < 1.01
    # unpaired, a variant timed only in slow rounds would look 1.6x slower than it is
    unpaired = np.median(base[0]) / np.median(fast[1])
    assert unpaired == pytest.approx(1.25, rel=0.01)
    assert round_cv(base) > 0.2 > round_cv([r[:10] for r in base[::2]])


def test_log_ratio_ci_is_a_t_interval_on_logs() -> None:
    ratios = np.array([1.9, 2.0, 2.1, 2.05, 1.95])
    logs = np.log(ratios)
    ci = log_ratio_ci(logs)
    half = sps.t.ppf(0.975, 4) * logs.std(ddof=1) / math.sqrt(5)
    assert ci.estimate == pytest.approx(math.exp(logs.mean()))
    assert (ci.low, ci.high) == pytest.approx((math.exp(logs.mean() - half),
                                               math.exp(logs.mean() + half)))
    one = log_ratio_ci([math.log(2.0)])
    assert one.estimate == pytest.approx(2.0) and math.isnan(one.low) and one.n == 1


def matmul_chain(path: Path, depth: int, n: int = 64) -> Path:
    """`depth` chained n x n MatMuls: work proportional to depth."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "A"
    for i in range(depth):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((n, n)) / n).astype(np.float32), f"W{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"W{i}"], [f"Y{i}"]))
        x = f"Y{i}"
    graph = helper.make_graph(nodes, "chain",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["b", n])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["b", n])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("turn_seconds", [None, 1e-9])  # slices; 1 ns turns (long runs)
def test_time_group_gives_paired_fields_per_variant(tmp_path: Path,
                                                    turn_seconds: float | None) -> None:
    spec = TimingSpec(warmup=1, rounds=3, min_iterations=6, min_seconds=0.0, max_seconds=5.0,
                      intra_op_threads=1, turn_seconds=turn_seconds)
    paths = {"baseline": matmul_chain(tmp_path / "big.onnx", 8, n=256),
             "small": matmul_chain(tmp_path / "small.onnx", 1, n=256)}
    sessions = {k: make_session(p, "cpu", spec) for k, p in paths.items()}
    feed = {"A": np.ones((16, 256), np.float32)}
    fields = time_group(sessions, "cpu", spec, {k: feed for k in sessions}, 16,
                        baseline="baseline")
    for name, got in fields.items():
        assert got["round_sizes"] == [2, 2, 2] and len(got["samples_ms"]) == got["n_timed"] == 6
        assert got["round_order"] == round_orders(["baseline", "small"], 3)
        assert got["session"]["measurement"]["rounds"] == 3
        assert got["session"]["measurement"]["turn_seconds"] == turn_seconds
        assert got["session"]["allow_spinning"] is True
        measured = got["session"]["measurement"]
        assert len(measured["round_others_load"]) == len(measured["round_steal"]) == 3
        assert len(measured["reference_ms"]) == 4 and min(measured["reference_ms"]) > 0
        Record(run_id="r", model="m", task="t", method=name, provider="cpu", batch_size=16,
               seq_len=64, status="ok", **got)  # every field is a record field
    assert fields["baseline"]["speedup"] == pytest.approx(1.0)
    # the speedup is the paired estimate over the stored rounds, beside its baseline's same
    # rounds (how fast the 1-MatMul chain really is is a benchmark's question, not a test's)
    small, base = fields["small"], fields["baseline"]
    paired = paired_speedup(split_rounds(base["samples_ms"], base["round_sizes"]),
                            split_rounds(small["samples_ms"], small["round_sizes"]))
    # (records keep samples to 0.1 µs, a few per mille of a 20-µs run, which the interval's
    # t quantile with 2 degrees of freedom widens)
    assert small["speedup"] == pytest.approx(paired.estimate, rel=1e-2)
    assert small["speedup_ci_low"] == pytest.approx(paired.low, rel=1e-2)
    assert small["speedup_ci_low"] <= small["speedup"] <= small["speedup_ci_high"]
