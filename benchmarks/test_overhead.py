"""Harness timing overhead: its measured median vs a bare `session.run` loop (onnxruntime)
or `request.infer(feed)` loop (OpenVINO), interleaved.

Run explicitly: python -m pytest benchmarks/test_overhead.py -m benchmark -s
Targets (GitHub issues "Latency numbers that hold up" and "OpenVINO and bf16"): median ratio
<= 1.01 on each backend.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
from pathlib import Path

import onnxruntime as ort
import pytest

from harness.schema import TimingSpec
from harness.timing.inputs import feed_for, random_inputs
from harness.timing.loop import measure

ROOT = Path(__file__).resolve().parents[1]
ROUNDS, ITERATIONS, BATCH = 12, 100, 1
TARGET = 1.01


def _make_tiny_bert():  # the tests' model builder, without putting tests/ on sys.path
    spec = importlib.util.spec_from_file_location("_harness_tests_conftest",
                                                  ROOT / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_bert


SIZES = {  # name: (layers, hidden, intermediate, seq)
    "tiny": (2, 32, 64, 16),  # ~0.1 ms a run: any per-call overhead shows here
    "small": (4, 128, 512, 128),  # a few ms a run
}


@pytest.fixture(scope="module", params=sorted(SIZES))
def bert_onnx(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, int]:
    import torch
    from transformers import AutoModelForSequenceClassification

    layers, hidden, intermediate, seq = SIZES[request.param]
    path = _make_tiny_bert()(tmp_path_factory.mktemp(request.param), layers=layers,
                             hidden=hidden, heads=4, intermediate=intermediate)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(BATCH, seq, dtype=torch.long)
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                      str(path / "model.onnx"), input_names=names, output_names=["logits"],
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names}, opset_version=17,
                      dynamo=False)
    return path / "model.onnx", seq


def bare_median_ms(call, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1e6


def interleaved_ratio(harness_ms, bare_ms) -> tuple[float, list[float], list[float], list[float]]:
    """Median over ROUNDS of harness median / bare median, in ABBA order so drift in machine
    load hits both sides alike."""
    ratios, harness, bare = [], [], []
    for r in range(ROUNDS):
        for which in ("harness", "bare") if r % 2 == 0 else ("bare", "harness"):
            (harness if which == "harness" else bare).append(
                harness_ms() if which == "harness" else bare_ms())
        ratios.append(harness[-1] / bare[-1])
    return statistics.median(ratios), ratios, harness, bare


def _report(benchmark, label: str, ratio: float, ratios: list[float], harness_ms: list[float],
            bare_ms: list[float]) -> None:
    benchmark.extra_info.update(ratio=ratio, ratios=ratios, harness_ms=harness_ms,
                                bare_ms=bare_ms)
    print(f"\n{label}: harness/bare median ratio {ratio:.4f} over {ROUNDS} interleaved rounds "
          f"of {ITERATIONS} runs; harness median {statistics.median(harness_ms):.4f} ms, "
          f"bare {statistics.median(bare_ms):.4f} ms; per round: "
          + ", ".join(f"{x:.3f}" for x in ratios))


@pytest.mark.benchmark
def test_harness_median_matches_bare_loop(bert_onnx: tuple[Path, int], benchmark) -> None:
    path, seq = bert_onnx
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = feed_for(session, random_inputs(BATCH, seq, 0, 50))
    spec = TimingSpec(warmup=0, min_iterations=ITERATIONS, min_seconds=0.0)
    for _ in range(20):
        session.run(None, feed)
    ratio, *runs = interleaved_ratio(
        lambda: measure(session, feed, spec, batch_size=BATCH, provider="cpu").stats.median,
        lambda: bare_median_ms(lambda: session.run(None, feed), ITERATIONS))
    benchmark.pedantic(session.run, args=(None, feed), rounds=50, warmup_rounds=5)
    _report(benchmark, f"{path.parent.name} seq {seq}", ratio, *runs)
    assert ratio <= TARGET


@pytest.mark.benchmark
def test_openvino_harness_median_matches_bare_loop(bert_onnx: tuple[Path, int], benchmark
                                                   ) -> None:
    """The OpenVINO backend against a bare loop of the same call, `request.infer(feed,
    share_inputs=True)` (the default `infer(feed)` adds an input copy the harness leaves out)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from harness.timing import make_runner

    path, seq = bert_onnx
    spec = TimingSpec(warmup=0, min_iterations=ITERATIONS, min_seconds=0.0)
    runner = make_runner(path, "openvino", spec)
    feed = feed_for(runner, random_inputs(BATCH, seq, 0, 50))
    request = runner.compiled.create_infer_request()
    for _ in range(20):
        request.infer(feed, share_inputs=True)
    ratio, *runs = interleaved_ratio(
        lambda: measure(runner, feed, spec, batch_size=BATCH, provider="openvino").stats.median,
        lambda: bare_median_ms(lambda: request.infer(feed, share_inputs=True), ITERATIONS))
    benchmark.pedantic(request.infer, args=(feed,), kwargs={"share_inputs": True}, rounds=50,
                       warmup_rounds=5)
    _report(benchmark, f"openvino {path.parent.name} seq {seq}", ratio, *runs)
    assert ratio <= TARGET
