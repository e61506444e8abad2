"""Timing engine: stats, sessions, paired inputs, loop, load flags, roofline, exports."""
from __future__ import annotations

import gc
import json
import math
import socket
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import WORDS, make_tiny_bert
from onnx import TensorProto, helper, numpy_helper

from harness.errors import HarnessError, SkipCell
from harness.publish.bench_json import benchmark_stats, write_pytest_benchmark_json
from harness.records import Record
from harness.schema import TimingSpec
from harness.timing import env as env_mod
from harness.timing import loop, roofline, time_file, time_onnx
from harness.timing import session as sess_mod
from harness.timing.env import environment, machine_fingerprint
from harness.timing.inputs import feed_for, make_inputs, random_inputs
from harness.timing.stats import Stats

FAST = TimingSpec(warmup=1, min_iterations=5, min_seconds=0.0, max_seconds=5.0)
B, S, H, I, LAYERS, LABELS = 2, 16, 32, 64, 2, 2


def bert_flops(b: int, s: int) -> float:
    """GEMM FLOPs of the tiny BERT by hand: Q,K,V,O; FFN; QK^T and PV; pooler; classifier."""
    t = b * s
    layer = 4 * 2 * t * H * H + 2 * 2 * t * H * I + 2 * 2 * b * s * s * H
    return LAYERS * layer + 2 * b * H * H + 2 * b * H * LABELS


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert"), layers=LAYERS, hidden=H,
                          intermediate=I, num_labels=LABELS)


@pytest.fixture(scope="module")
def bert_onnx(bert_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(bert_dir).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(B, S, dtype=torch.long)
    path = bert_dir / "model.onnx"
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                      input_names=names, output_names=["logits"], opset_version=17,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names}, dynamo=False)
    return path


def matmul_model(path: Path, n_cols: int = 7, k: int = 5) -> Path:
    """Y = A @ W with A: (batch, seq) as a rank-2 graph input and W: (k, n_cols)."""
    w = numpy_helper.from_array(np.ones((k, n_cols), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["batch", "seq"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", n_cols])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ---- stats -------------------------------------------------------------------------------

def test_stats_by_hand() -> None:
    st = Stats.from_samples([1, 2, 3, 4, 100])
    assert (st.n, st.min, st.max, st.mean, st.median) == (5, 1, 100, 22, 3)
    assert (st.q1, st.q3, st.iqr, st.mad) == (2, 4, 2, 1)
    assert st.stdev == pytest.approx(math.sqrt(7610 / 4))
    assert (st.p90, st.p95, st.p99) == pytest.approx((61.6, 80.8, 96.16))
    assert st.cv == pytest.approx(math.sqrt(7610 / 4) / 22)
    assert st.throughput(4) == pytest.approx(4000 / 3)


def test_stats_record_fields_are_record_fields() -> None:
    fields = Stats.from_samples([2.0, 2.0, 4.0]).to_record_fields(batch_size=8)
    assert set(fields) == {"latency_ms_p50", "latency_ms_p90", "latency_ms_p95",
                           "latency_ms_p99", "latency_ms_mean", "latency_ms_min",
                           "latency_ms_stdev", "latency_ms_iqr", "latency_ms_mad",
                           "latency_cv", "n_timed", "throughput_per_s"}
    assert fields["throughput_per_s"] == pytest.approx(4000.0)
    Record(run_id="r", model="m", task="t", method="baseline", provider="cpu", batch_size=8,
           seq_len=1, status="ok", **fields)
    assert Stats.from_samples([5.0]).stdev == 0.0
    with pytest.raises(ValueError):
        Stats.from_samples([])


# ---- stability and load -------------------------------------------------------------------

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait guest guest_nice")


def fake_probe(busy: float, idle: float, own: float) -> loop.Probe:
    return loop.Probe([CpuTimes(busy, 0, 0, idle, 0, 0, 0)] * 2, own)


def test_load_between_subtracts_own_cpu() -> None:
    # each core: 1 s elapsed, 0.8 s busy; this process used 0.4 s of the 1.6 busy seconds
    others, per_core = loop.load_between(fake_probe(10, 10, 5), fake_probe(10.8, 10.2, 5.4))
    assert others == pytest.approx(0.6)
    assert per_core == [0.8, 0.8]
    # 0.05 s of wall time on 2 cores is too few clock ticks to tell whose load it was
    assert loop.load_between(fake_probe(1, 1, 0), fake_probe(1.04, 1.01, 0))[0] is None


def test_judge_flags_high_cv_and_foreign_load() -> None:
    spec = TimingSpec(unstable_cv=0.1, unstable_load=0.5)
    steady = Stats.from_samples([10.0, 10.1, 9.9, 10.0])
    noisy = Stats.from_samples([10.0, 30.0, 5.0, 12.0])
    assert loop.judge(steady, 0.1, spec) == (False, None)
    unstable, reason = loop.judge(noisy, 0.1, spec)
    assert unstable and reason.startswith("cv ")
    unstable, reason = loop.judge(steady, 0.9, spec)
    assert unstable and "other processes" in reason and "cv" not in reason


def test_measure_flags_mocked_load(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(matmul_model(tmp_path / "mm.onnx")),
                                   providers=["CPUExecutionProvider"])
    probes = iter([fake_probe(10, 10, 0), fake_probe(10.95, 10.05, 0.0)])
    with mock.patch.object(loop, "probe", lambda: next(probes)):
        m = loop.measure(session, {"A": np.ones((2, 5), np.float32)}, FAST, batch_size=2,
                         provider="cpu")
    assert m.unstable and "other processes kept 0.95" in m.unstable_reason
    assert m.details["others_load"] == pytest.approx(0.95)


# ---- loop ---------------------------------------------------------------------------------

def test_timed_loop_counts_warmup_and_min_iterations() -> None:
    calls, gc_states = [], []

    def step() -> None:
        calls.append(1)
        gc_states.append(gc.isenabled())

    spec = TimingSpec(warmup=3, min_iterations=40, min_seconds=0.0)
    samples, why = loop.timed_loop(step, spec)
    assert (len(samples), len(calls), why) == (40, 43, "criteria met")
    assert gc_states[:3] == [True] * 3 and not any(gc_states[3:])
    assert gc.isenabled()
    assert all(isinstance(s, int) for s in samples)


def test_timed_loop_samples_are_nanoseconds_of_the_step_itself() -> None:
    def step() -> None:  # a step that cannot take less than 2 ms
        end = time.perf_counter_ns() + 2_000_000
        while time.perf_counter_ns() < end:
            pass

    samples, _ = loop.timed_loop(step, TimingSpec(warmup=0, min_iterations=5, min_seconds=0.0))
    assert len(samples) == 5 and min(samples) >= 2_000_000


def test_measure_respects_min_seconds_and_max_seconds(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(matmul_model(tmp_path / "mm.onnx")),
                                   providers=["CPUExecutionProvider"])
    feed = {"A": np.ones((2, 5), np.float32)}
    spec = TimingSpec(warmup=0, min_iterations=1, min_seconds=0.2)
    m = loop.measure(session, feed, spec, batch_size=2, provider="cpu")
    assert m.details["seconds"] >= 0.2 and m.stats.n > 1
    assert m.details["stopped_by"] == "criteria met"
    capped = TimingSpec(warmup=0, min_iterations=10**9, min_seconds=0.0, max_seconds=0.1)
    m = loop.measure(session, feed, capped, batch_size=2, provider="cpu")
    assert m.details["stopped_by"] == "max_seconds" and m.stats.n < 10**9
    assert len(m.samples_ms) == m.stats.n and m.peak_rss_mb > 0 and m.gpu_mem_mb is None


def test_cuda_path_uses_io_binding_with_mocks(monkeypatch: pytest.MonkeyPatch) -> None:
    binding = mock.MagicMock()
    fake = mock.MagicMock()
    fake.io_binding.return_value = binding
    fake.get_outputs.return_value = [mock.Mock(name="out")]
    fake.get_outputs.return_value[0].name = "logits"
    devices = []
    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy",
                        lambda arr, dev, idx: devices.append(dev) or ("ov", arr.shape))
    monkeypatch.setattr(loop, "gpu_mem_mb", lambda pid=None: 123.0)
    feed = {"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    m = loop.measure(fake, feed, FAST, batch_size=1, provider="cuda")
    assert devices == ["cuda", "cuda"]
    assert binding.bind_ortvalue_input.call_count == 2
    binding.bind_output.assert_called_once_with("logits", "cuda", 0)
    binding.synchronize_inputs.assert_called_once()
    runs = fake.run_with_iobinding.call_count
    assert runs == FAST.warmup + m.stats.n == binding.synchronize_outputs.call_count
    fake.run.assert_not_called()
    assert m.gpu_mem_mb == 123.0 and m.details["io_binding"]


# ---- sessions -----------------------------------------------------------------------------

def test_session_options_follow_spec() -> None:
    spec = TimingSpec(intra_op_threads=2, inter_op_threads=1, graph_optimization="basic",
                      execution_mode="parallel")
    opts = sess_mod.session_options(spec)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert opts.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert sess_mod.session_options(TimingSpec()).intra_op_num_threads == 0


def test_sessions_stop_spinning_after_each_run_by_default() -> None:
    """A group keeps every variant's session open: threads left spinning by the last
    variant would hold the cores while the next one runs (docs/timing.md)."""
    key = "session.force_spinning_stop"
    assert sess_mod.session_options(TimingSpec()).get_session_config_entry(key) == "1"
    off = sess_mod.session_options(TimingSpec(stop_spinning_after_run=False))
    with pytest.raises(RuntimeError, match="does not have configuration"):
        off.get_session_config_entry(key)  # ORT's default: spin on after a run


def test_provider_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = matmul_model(tmp_path / "mm.onnx")
    cpu = sess_mod.make_session(path, "cpu", FAST)
    assert cpu.get_providers() == ["CPUExecutionProvider"]
    info = sess_mod.describe_session(cpu, "cpu", FAST)
    assert info["onnxruntime"] == ort.__version__ and info["graph_optimization"] == "all"
    assert info["stop_spinning_after_run"] is True
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(SkipCell, match="CUDA execution provider not available"):
        sess_mod.make_session(path, "cuda", FAST)
    with pytest.raises(ValueError):
        sess_mod.make_session(path, "tpu", FAST)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    broken = mock.Mock(side_effect=RuntimeError("libcublasLt.so.12: cannot open (CUDA EP)"))
    monkeypatch.setattr(ort, "InferenceSession", broken)
    with pytest.raises(SkipCell, match="libcublasLt"):
        sess_mod.make_session(path, "cuda", FAST)


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="a real CUDA provider is present")
def test_cuda_listed_but_session_falls_back_is_skipped(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(SkipCell, match="fell back to CPUExecutionProvider"):
        sess_mod.make_session(matmul_model(tmp_path / "mm.onnx"), "cuda", FAST)


@pytest.mark.cuda
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu and a GPU")
def test_time_onnx_on_cuda(bert_onnx: Path) -> None:
    fields = time_onnx(bert_onnx, "cuda", FAST, random_inputs(B, S, 0, 50), B)
    assert fields["session"]["ort_providers"][0] == "CUDAExecutionProvider"
    assert fields["n_timed"] >= FAST.min_iterations and fields["latency_ms_p50"] > 0


# ---- inputs -------------------------------------------------------------------------------

def test_paired_inputs_are_identical_for_a_seed(bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_dir)
    a = [" ".join(WORDS[i:i + 2 + i % 7]) for i in range(20)]  # some longer than 12 tokens
    b = [" ".join(WORDS[-i - 3:]) for i in range(20)]
    first = make_inputs(tok, a, b, batch_size=4, seq_len=12, seed=7)
    again = make_inputs(tok, a, b, batch_size=4, seq_len=12, seed=7)
    other = make_inputs(tok, a, b, batch_size=4, seq_len=12, seed=8)
    assert set(first) == {"input_ids", "attention_mask", "token_type_ids"}
    for k, v in first.items():
        assert v.dtype == np.int64 and v.shape == (4, 12)
        np.testing.assert_array_equal(v, again[k])
    assert not np.array_equal(first["input_ids"], other["input_ids"])
    single = make_inputs(tok, a, None, batch_size=3, seq_len=40, seed=7)
    assert single["input_ids"].shape == (3, 40) and not single["token_type_ids"].any()


def test_feed_for_keeps_declared_inputs() -> None:
    arg = namedtuple("Arg", "name type")
    session = mock.Mock()
    session.get_inputs.return_value = [arg("input_ids", "tensor(int32)"),
                                       arg("attention_mask", "tensor(int64)")]
    feed = feed_for(session, random_inputs(2, 3, 0, 10))
    assert list(feed) == ["input_ids", "attention_mask"]
    assert feed["input_ids"].dtype == np.int32 and feed["attention_mask"].dtype == np.int64
    session.get_inputs.return_value = [arg("pixel_values", "tensor(float)")]
    with pytest.raises(HarnessError, match="pixel_values"):
        feed_for(session, random_inputs(2, 3, 0, 10))


# ---- roofline -----------------------------------------------------------------------------

def test_model_flops_of_one_matmul(tmp_path: Path) -> None:
    path = matmul_model(tmp_path / "mm.onnx", n_cols=7, k=5)
    assert roofline.model_flops(path, 3, 5) == 2 * 3 * 7 * 5


def test_model_flops_of_tiny_bert_float_fused_and_int8(bert_onnx: Path, tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    assert roofline.model_flops(bert_onnx, B, S) == bert_flops(B, S)
    assert roofline.model_flops(bert_onnx, 4, 8) == bert_flops(4, 8)
    fused = tmp_path / "fused.onnx"
    optimize_model(str(bert_onnx), model_type="bert", num_heads=4,
                   hidden_size=H).save_model_to_file(str(fused))
    assert "Attention" in {n.op_type for n in onnx.load(str(fused)).graph.node}
    assert roofline.model_flops(fused, B, S) == bert_flops(B, S)
    quant = tmp_path / "int8.onnx"
    quantize_dynamic(str(fused), str(quant), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    count = roofline.count_flops(onnx.load(str(quant)), B, S)
    attention_products = LAYERS * 2 * 2 * B * S * S * H  # QK^T and PV stay float in QAttention
    assert (count.float_flops, count.int8_flops) == (attention_products,
                                                    bert_flops(B, S) - attention_products)
    assert count.uncounted == []


class _Calibration:
    """Random calibration batches for onnxruntime's quantize_static."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def qdq_matmul(path: Path, m: int = 256, k: int = 512, n: int = 512) -> Path:
    """A static QDQ int8 model of one (m, k) x (k, n) MatMul, as int8-static makes them."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    fp32 = path.with_suffix(".fp32.onnx")
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"])], "mm",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(fp32))
    feeds = [{"A": rng.standard_normal((m, k)).astype(np.float32)} for _ in range(4)]
    quantize_static(str(fp32), str(path), _Calibration(feeds), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["MatMul"])
    return path


def test_static_qdq_matmuls_are_int8_work_and_efficiency_is_at_most_one(tmp_path: Path,
                                                                        bert_onnx: Path) -> None:
    path = qdq_matmul(tmp_path / "qdq.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    count = roofline.count_flops(onnx.load(str(path)), 256, 512)
    assert (count.float_flops, count.int8_flops) == (0.0, 2.0 * 256 * 512 * 512)
    fields = time_onnx(path, "cpu", FAST, {"A": np.ones((256, 512), np.float32)}, 1)
    assert fields["session"]["roofline"]["int8_flops"] == count.int8_flops
    assert 0 < fields["efficiency"] <= 1.0
    # a static QDQ BERT: every MatMul, the attention products too, is int8; the Gemm head not
    from onnxruntime.quantization import QuantFormat, quantize_static

    bert_qdq = tmp_path / "bert_qdq.onnx"
    rng = np.random.default_rng(0)
    feeds = [{"input_ids": rng.integers(0, 50, (B, S)), "attention_mask": np.ones((B, S), int),
              "token_type_ids": np.zeros((B, S), int)} for _ in range(2)]
    quantize_static(str(bert_onnx), str(bert_qdq), _Calibration(feeds),
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"])
    count = roofline.count_flops(onnx.load(str(bert_qdq)), B, S)
    head = 2 * B * H * H + 2 * B * H * LABELS  # pooler and classifier: Gemm, float
    assert (count.float_flops, count.int8_flops) == (head, bert_flops(B, S) - head)


def test_gemm_peak_and_efficiency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(roofline.PEAK_SHAPE, "cpu", 128)
    monkeypatch.setattr(roofline, "PEAK_SECONDS", 0.05)
    monkeypatch.setattr(roofline, "_PEAKS", {})
    peaks = roofline.gemm_peak_gflops("cpu", FAST)
    assert peaks["fp32"] > 0 and peaks["int8"] > 0 and peaks["gemm"] == [128] * 3
    assert roofline.gemm_peak_gflops("cpu", FAST) == peaks  # cached
    count = roofline.FlopCount(float_flops=1e9, int8_flops=2e9)
    fields = roofline.roofline_fields(count, 30.0, {"fp32": 100.0, "int8": 400.0})
    assert fields["flops"] == 3e9
    assert fields["gflops_per_s"] == pytest.approx(100.0)
    assert fields["efficiency"] == pytest.approx((0.01 + 0.005) / 0.03)
    assert roofline.roofline_fields(count, 30.0, {"fp32": 100.0, "int8": None})["efficiency"] is None
    # faster than the peak: the peak is understated, so no efficiency rather than one above 1
    assert roofline.roofline_fields(count, 30.0, {"fp32": 10.0, "int8": 40.0})["efficiency"] is None


def _count_peak_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []
    measure_peak = roofline._measure_peak

    def counted(kind: str, *args: object, **kwargs: object) -> tuple[float | None, float | None]:
        runs.append(kind)
        return measure_peak(kind, *args, **kwargs)

    monkeypatch.setattr(roofline, "_measure_peak", counted)
    monkeypatch.setitem(roofline.PEAK_SHAPE, "cpu", 128)
    # long enough for the foreign-load window (harness.timing.loop.MIN_LOAD_WINDOW_S)
    monkeypatch.setattr(roofline, "PEAK_SECONDS", 0.3)
    monkeypatch.setattr(roofline, "_PEAKS", {})
    return runs


def test_a_stored_gemm_peak_is_reused_by_the_next_run(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _count_peak_runs(monkeypatch)
    quiet = FAST.model_copy(update={"unstable_load": 1.0})  # whatever else runs here
    first = roofline.gemm_peak_gflops("cpu", quiet, store=tmp_path)
    assert runs == ["fp32", "int8"] and len(list(tmp_path.glob("*.json"))) == 1
    monkeypatch.setattr(roofline, "_PEAKS", {})  # a new process on the same machine
    assert roofline.gemm_peak_gflops("cpu", quiet, store=tmp_path) == first
    assert runs == ["fp32", "int8"]  # not measured again
    other = quiet.model_copy(update={"intra_op_threads": 1})  # other settings: own peak
    roofline.gemm_peak_gflops("cpu", other, store=tmp_path)
    assert len(runs) == 4 and len(list(tmp_path.glob("*.json"))) == 2


def test_a_gemm_peak_measured_under_load_is_not_stored(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _count_peak_runs(monkeypatch)
    monkeypatch.setattr(roofline, "_measure_peak", lambda kind, *a, **k: (runs.append(kind)
                                                                         or (100.0, 0.9)))
    roofline.gemm_peak_gflops("cpu", FAST, store=tmp_path)
    assert not list(tmp_path.glob("*.json"))  # 0.9 of the CPU was someone else's


def test_an_unreadable_stored_gemm_peak_is_measured_again(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    runs = _count_peak_runs(monkeypatch)
    quiet = FAST.model_copy(update={"unstable_load": 1.0})
    roofline.gemm_peak_gflops("cpu", quiet, store=tmp_path)
    (stored,) = tmp_path.glob("*.json")
    stored.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(roofline, "_PEAKS", {})
    peaks = roofline.gemm_peak_gflops("cpu", quiet, store=tmp_path)
    assert runs == ["fp32", "int8"] * 2 and peaks["fp32"] > 0
    assert json.loads(stored.read_text(encoding="utf-8"))["fp32"] == peaks["fp32"]


# ---- end to end ---------------------------------------------------------------------------

def test_time_onnx_fields_make_a_record(bert_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(roofline.PEAK_SHAPE, "cpu", 128)
    monkeypatch.setattr(roofline, "PEAK_SECONDS", 0.05)
    fields = time_onnx(bert_onnx, "cpu", FAST, random_inputs(B, S, 0, 50), B)
    rec = Record(run_id="r", model="tiny", task="mrpc", method="baseline", provider="cpu",
                 batch_size=B, seq_len=S, status="ok", **fields)
    assert rec.n_timed >= FAST.min_iterations == 5 and len(rec.samples_ms) == rec.n_timed
    assert rec.flops == bert_flops(B, S) and rec.efficiency > 0
    assert rec.session["measurement"]["warmup"] == 1 and rec.load_avg is not None


def test_time_file_states_random_inputs(bert_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(roofline.PEAK_SHAPE, "cpu", 128)
    monkeypatch.setattr(roofline, "PEAK_SECONDS", 0.05)
    out = time_file(bert_onnx, "cpu", 1, 8, FAST)
    assert "random token ids" in out["inputs"] and "below 76" in out["inputs"]
    assert out["latency_ms_p50"] > 0 and out["seq_len"] == 8


# ---- pytest-benchmark export and environment ----------------------------------------------

@pytest.mark.parametrize("data", [[3.0], [1.0, 2.0], [5, 1, 4, 2, 3], [1, 2, 3, 4, 5, 6, 90],
                                  [2, 2, 3, 1, 8, 2, 2, 2, 9]])
def test_benchmark_stats_match_pytest_benchmark(data: list[float]) -> None:
    from pytest_benchmark.stats import Stats as PBStats

    ref = PBStats()
    for d in data:
        ref.update(d)
    ours = benchmark_stats(data)
    for key, value in ref.as_dict().items():
        expected = value if isinstance(value, str) else pytest.approx(value)
        assert ours[key] == expected, key


def test_pytest_benchmark_json_loads_with_its_reader(tmp_path: Path) -> None:
    from pytest_benchmark.storage.file import FileStorage

    common = dict(run_id="r1", model="tiny", task="mrpc", provider="cpu", seq_len=128)
    records = [
        Record(method="baseline", batch_size=1, status="ok", samples_ms=[1.0, 1.2, 1.1, 5.0],
               **common),
        Record(method="int8-dynamic", batch_size=1, status="ok", samples_ms=[0.5, 0.6, 0.55],
               **common),
        Record(method="prune", batch_size=1, status="skipped", error="no", **common),
    ]
    out = tmp_path / "store" / "0001_harness.json"
    assert write_pytest_benchmark_json(records, out) == 2
    warnings: list[str] = []
    logger = mock.Mock(warning=lambda text, **kw: warnings.append(text))
    loaded = list(FileStorage(tmp_path / "store", logger=logger).load(str(out)))
    assert not warnings and len(loaded) == 1
    benches = loaded[0][1]["benchmarks"]
    assert [b["params"]["method"] for b in benches] == ["baseline", "int8-dynamic"]
    assert benches[0]["stats"]["data"] == [0.001, 0.0012, 0.0011, 0.005]  # seconds
    assert benches[0]["stats"]["median"] == pytest.approx(0.00115)
    csv = tmp_path / "cmp"
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out),
                           "--csv", str(csv)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "cmp.csv").read_text()
    assert "baseline[tiny-mrpc-cpu-b1-s128]" in table and "int8-dynamic" in table
    assert json.loads(out.read_text())["machine_info"]["harness_machine"] == machine_fingerprint()


def test_environment_and_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    env = environment()
    for key in ("python", "harness", "torch", "transformers", "onnxruntime", "onnx", "optimum",
                "cpu", "cores_logical", "memory_gb", "hostname", "git_sha", "cpu_flags"):
        assert key in env, key
    assert env["onnxruntime"] == env["onnxruntime_imported"] == ort.__version__
    fp = machine_fingerprint()
    assert len(fp) == 12 and set(fp) <= set("0123456789abcdef")
    assert machine_fingerprint() == fp  # stable
    static = env_mod._static_environment
    monkeypatch.setattr(env_mod, "_static_environment", lambda: static() | {"cpu": "Other CPU"})
    assert machine_fingerprint() != fp  # another CPU model is another machine
    monkeypatch.setattr(env_mod, "_static_environment", static)
    env_mod._static_environment.cache_clear()
    monkeypatch.setattr(socket, "gethostname", lambda: "renamed-node")
    assert environment()["hostname"] == "renamed-node"
    assert machine_fingerprint() == fp
    env_mod._static_environment.cache_clear()
