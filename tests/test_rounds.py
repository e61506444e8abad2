"""Interleaved rounds: order, per-round samples, paired speedups, the ORT group timer."""
from __future__ import annotations

import math
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
    Slice,
    log_ratio_ci,
    paired_speedup,
    round_cv,
    round_orders,
    time_rounds,
)

SPEC = TimingSpec(warmup=2, rounds=4, min_iterations=8, min_seconds=0.0, max_seconds=5.0)


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


def test_time_group_gives_paired_fields_per_variant(tmp_path: Path) -> None:
    spec = TimingSpec(warmup=1, rounds=3, min_iterations=6, min_seconds=0.0, max_seconds=5.0,
                      intra_op_threads=1)
    # 256-wide: each MatMul's work, not the per-call overhead, sets the time (at 64 wide a
    # busy moment once brought the 8-to-1 ratio down to 1.14)
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
        assert got["session"]["allow_spinning"] is True
        measured = got["session"]["measurement"]
        assert len(measured["round_others_load"]) == len(measured["round_steal"]) == 3
        assert len(measured["reference_ms"]) == 4 and min(measured["reference_ms"]) > 0
        Record(run_id="r", model="m", task="t", method=name, provider="cpu", batch_size=16,
               seq_len=64, status="ok", **got)  # every field is a record field
    assert fields["baseline"]["speedup"] == pytest.approx(1.0)
    small = fields["small"]
    assert small["speedup"] > 1.5 and small["speedup_ci_low"] <= small["speedup"]
    assert small["speedup"] <= small["speedup_ci_high"]
