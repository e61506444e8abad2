"""The OpenVINO backend, the bf16/fp16 precision methods and per-runtime evaluation."""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import export_tiny_onnx

from harness import precision as prec
from harness.errors import SkipCell
from harness.records import SCHEMA_VERSION, Record, migrate, resolve_stored_path
from harness.schema import TimingSpec
from harness.timing import device_check, make_runner, random_inputs, time_group, time_onnx
from harness.timing import openvino as ov_backend
from harness.timing.env import cpu_info

needs_openvino = pytest.mark.skipif(
    find_spec("openvino") is None,
    reason="the openvino extra is not installed: pip install 'harness[openvino]'")
FAST = TimingSpec(warmup=1, min_iterations=5, min_seconds=0.0, intra_op_threads=1)
B, S = 2, 16


def cpu_has_bf16() -> bool:
    """Hardware bf16 as OpenVINO's CPU plugin wants it (AVX512-BF16 or AMX), per the flags."""
    flags = cpu_info()["flags"]
    return bool(flags.get("avx512_bf16") or flags.get("amx_bf16"))


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tiny_bert_dir, tmp_path_factory.mktemp("onnx") / "model.onnx")


def marked(src: Path, dst: Path, precision: str) -> Path:
    model = onnx.load(str(src))
    prec.mark(model, precision)
    onnx.save(model, str(dst))
    return dst


def feeds(n: int = 8, seq: int = S, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ids with right and left padding, so masking is exercised too."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 45, (n, seq))
    mask = np.ones((n, seq), np.int64)
    mask[::2, seq // 2:] = 0
    mask[1::4, : seq // 4] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


# precision marker and onnxruntime -------------------------------------------------------
def test_precision_marker_round_trip(tiny_onnx: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    meta = {p.key: p.value for p in model.metadata_props}
    assert prec.requested(meta) == "fp32"  # no entry: fp32
    prec.mark(model, "bf16")
    prec.mark(model, "fp16")  # replaces, never duplicates
    entries = [p for p in model.metadata_props if p.key == prec.PRECISION_KEY]
    assert [e.value for e in entries] == ["fp16"]
    with pytest.raises(ValueError, match="int4"):
        prec.mark(model, "int4")
    with pytest.raises(ValueError, match="expected one of"):
        prec.requested({prec.PRECISION_KEY: "fp8"})


def test_onnxruntime_refuses_a_reduced_precision_file(tiny_onnx: Path, tmp_path: Path) -> None:
    runner = make_runner(tiny_onnx, "cpu", FAST)
    assert runner.precision == "fp32" and runner.describe()["precision"] == "fp32"
    with pytest.raises(SkipCell, match=r"bf16 needs a runtime .* providers: \[openvino\]"):
        make_runner(marked(tiny_onnx, tmp_path / "m.onnx", "bf16"), "cpu", FAST)


def test_provider_names(tiny_onnx: Path) -> None:
    assert TimingSpec(providers=["cpu", "openvino"]).providers == ["cpu", "openvino"]
    with pytest.raises(ValueError, match="unknown provider 'tpu'"):
        make_runner(tiny_onnx, "tpu", FAST)


def test_missing_openvino_is_a_skip(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_openvino() -> None:
        raise ModuleNotFoundError("No module named 'openvino'", name="openvino")

    monkeypatch.setattr(ov_backend, "_core", no_openvino)
    with pytest.raises(SkipCell, match=r"openvino not installed: pip install 'harness\[openvino\]'"):
        make_runner(tiny_onnx, "openvino", FAST)


@pytest.mark.parametrize("version", [2, 4])
def test_older_records_migrate_with_their_runtime(version: int) -> None:
    old = {"schema_version": version, "run_id": "r", "model": "m", "task": "mrpc",
           "method": "baseline", "provider": "cpu", "batch_size": 1, "seq_len": 8,
           "status": "ok", "metric_value": 0.7}
    rec = Record.model_validate(migrate(old))
    assert (rec.metric_provider, rec.precision) == ("cpu", "fp32")
    assert rec.schema_version == SCHEMA_VERSION == 5
    failed = migrate(old | {"status": "failed", "metric_value": None})
    assert "metric_provider" not in failed and "precision" not in failed


# OpenVINO ---------------------------------------------------------------------------------
@needs_openvino
def test_openvino_fp32_logits_match_onnxruntime(tiny_onnx: Path, tmp_path: Path) -> None:
    from harness.optimize import optimize_fp32

    fused = tmp_path / "fused.onnx"  # onnxruntime's contrib ops: OpenVINO reads them too
    optimize_fp32(tiny_onnx, fused, num_heads=0, hidden_size=0)
    feed = feeds()
    ref = make_runner(tiny_onnx, "cpu", FAST).run(feed)[0]
    for path in (tiny_onnx, fused):
        runner = make_runner(path, "openvino", FAST)
        got = runner.run(feed)[0]
        assert runner.precision == "fp32"
        assert runner.describe()["inference_precision_hint"] == "f32"
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@needs_openvino
def test_graph_openvino_cannot_read_is_a_skip(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("NoSuchOp", ["A"], ["Y"], domain="com.microsoft")
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(SkipCell, match="no conversion for com.microsoft.NoSuchOp"):
        make_runner(tmp_path / "m.onnx", "openvino", FAST)


@needs_openvino
def test_time_onnx_on_openvino_makes_a_record(tiny_onnx: Path) -> None:
    fields = time_onnx(tiny_onnx, "openvino", FAST, random_inputs(B, S, 0, 50), B)
    session = fields["session"]
    assert fields["precision"] == "fp32" and fields["n_timed"] >= 5
    assert len(fields["samples_ms"]) == fields["n_timed"] and fields["latency_ms_p50"] > 0
    assert session["provider"] == "openvino" and session["inference_num_threads"] == 1
    assert session["measurement"]["stopped_by"] == "criteria met"
    assert session["roofline"]["peak_gflops"]["provider"] == "openvino"
    rec = Record(run_id="r", model="m", task="mrpc", method="baseline", provider="openvino",
                 batch_size=B, seq_len=S, status="ok", **fields)
    assert rec.precision == "fp32"


@needs_openvino
def test_openvino_int8_peak_is_its_int8_gemm_so_static_qdq_efficiency_is_at_most_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_timing import qdq_matmul

    from harness.timing import roofline

    monkeypatch.setitem(roofline.PEAK_SHAPE, "openvino", 512)
    monkeypatch.setattr(roofline, "_PEAKS", {})
    # 16 rows against the peak GEMM's 512, so the file runs well below the peak's efficiency
    # (0.31-0.55 on a noisy AVX2 VM): at the peak's own shape the ratio is 1 up to noise and
    # was above 1 (left out) when the machine's speed moved between the two measurements
    path = qdq_matmul(tmp_path / "qdq.onnx", 16, 512, 512)
    fields = time_onnx(path, "openvino", FAST, {"A": np.ones((16, 512), np.float32)}, 1)
    peaks = fields["session"]["roofline"]["peak_gflops"]
    # a bare MatMulInteger ran slower than the fp32 GEMM on OpenVINO: no int8 kernel behind
    # it. Where the CPU has an int8 dot product the QDQ GEMM beats fp32; without one (an
    # AVX2-only AMD EPYC: 70 against 78 GOP/s) it need not, and only the bound is checked.
    flags = cpu_info()["flags"]
    if any(flags.get(f) for f in ("avx512_vnni", "avx_vnni", "amx_int8")):
        assert peaks["int8"] > peaks["fp32"]
    assert fields["session"]["roofline"]["int8_flops"] == 2.0 * 16 * 512 * 512
    assert 0 < fields["efficiency"] <= 1.0


@needs_openvino
def test_openvino_runners_are_timed_in_rounds_against_their_baseline(tiny_onnx: Path,
                                                                     tmp_path: Path) -> None:
    spec = TimingSpec(warmup=1, rounds=3, min_iterations=6, min_seconds=0.0, max_seconds=5.0,
                      intra_op_threads=1, turn_seconds=None)  # whole slices: two runs a round
    copy = marked(tiny_onnx, tmp_path / "copy.onnx", "fp32")
    runners = {"baseline": make_runner(tiny_onnx, "openvino", spec),
               "copy": make_runner(copy, "openvino", spec)}
    feed = random_inputs(B, S, 0, 50)
    assert device_check(tiny_onnx, "openvino", spec, feed, runners["baseline"]) == {}
    fields = time_group(runners, "openvino", spec, {k: feed for k in runners}, B,
                        baseline="baseline")
    for name, got in fields.items():
        assert got["round_sizes"] == [2, 2, 2] and got["precision"] == "fp32"
        assert got["session"]["provider"] == "openvino"
        assert got["session"]["inference_precision_hint"] == "f32"
        measured = got["session"]["measurement"]
        assert measured["group"] == ["baseline", "copy"] and len(measured["reference_ms"]) == 4
        Record(run_id="r", model="m", task="t", method=name, provider="openvino", batch_size=B,
               seq_len=S, status="ok", **got)
    assert fields["copy"]["speedup"] > 0 and fields["copy"]["speedup_ci_low"] is not None


@needs_openvino
def test_a_runner_timed_at_one_batch_size_runs_a_larger_one(tiny_onnx: Path) -> None:
    """Timing binds its inputs without a copy; a later, larger batch on the same runner must not
    be refused for the smaller array still bound (a cold quick run failed so at batch 32)."""
    runner = make_runner(tiny_onnx, "openvino", FAST)
    small, large = feeds(1), feeds(8)
    step = runner.step(small)
    step()
    out = runner.run(large)
    again = runner.step(large)
    again()
    step()  # the small step still runs after the large one
    assert out[0].shape[0] == 8 and np.allclose(out[0], runner.run(large)[0], atol=1e-5)


@needs_openvino
def test_bf16_runs_in_bf16_or_is_skipped_with_the_reason(tiny_onnx: Path, tmp_path: Path
                                                         ) -> None:
    path = marked(tiny_onnx, tmp_path / "bf16.onnx", "bf16")
    if not cpu_has_bf16():
        with pytest.raises(SkipCell, match="bf16 asked for, but its CPU plugin runs f32"):
            make_runner(path, "openvino", FAST)
        return
    feed = feeds()
    fp32 = make_runner(tiny_onnx, "openvino", FAST).run(feed)[0]
    runner = make_runner(path, "openvino", FAST)
    got = runner.run(feed)[0]
    assert runner.precision == "bf16"
    assert runner.describe()["inference_precision_hint"] == "bf16"
    assert not np.array_equal(got, fp32)  # it really ran in another precision
    np.testing.assert_allclose(got, fp32, atol=0.05)


BF16_SUITE = """
name: ov
data_dir: {glue}
models: [{model}]
tasks: [mrpc]
methods: [baseline, bf16]
finetune: {{epochs: 1, batch_size: 8, max_seq_len: 32, max_train_samples: 32}}
timing: {{providers: [cpu, openvino], batch_sizes: [2], seq_lens: [32], warmup: 1,
         min_iterations: 3, min_seconds: 0.0, intra_op_threads: 1}}
"""


@needs_openvino
def test_suite_rows_carry_the_metric_of_their_own_runtime(tmp_path: Path, tiny_glue_dir: Path,
                                                           tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    from harness.cache import ArtifactCache
    from harness.evaluation import onnx_logits
    from harness.metrics import compute_metrics
    from harness.run import run_suite
    from harness.store import RunStore
    from harness.tasks import get_task, load_split

    suite = tmp_path / "suite.yaml"
    suite.write_text(BF16_SUITE.format(glue=tiny_glue_dir, model=tiny_bert_dir))
    summary = run_suite(suite, tmp_path / "results", "r1")
    rows = {(r.variant, r.provider): r for r in RunStore(summary.run_dir).records()}
    assert summary.exit_code == 0 and len(rows) == 4
    for (_, provider), r in rows.items():
        assert r.provider == provider
        if r.status == "ok":
            assert r.session["provider"] == provider and r.metric_provider == provider
    for provider in ("cpu", "openvino"):
        base = rows["baseline", provider]
        assert base.status == "ok" and base.precision == "fp32", base.error
        assert base.round_sizes and len(base.round_sizes) == 5  # timed in rounds
        assert base.metric_ci_low is not None and base.metric_ci_high is not None
    skipped = rows["bf16", "cpu"]
    assert skipped.status == "skipped" and skipped.stage == "evaluate"
    assert "providers: [openvino]" in skipped.error and skipped.metric_value is None

    bf16 = rows["bf16", "openvino"]
    if not cpu_has_bf16():
        assert bf16.status == "skipped" and "runs f32" in bf16.error
        return
    assert bf16.status == "ok" and bf16.precision == "bf16", bf16.error
    assert bf16.session["inference_precision_hint"] == "bf16"
    # paired with OpenVINO's fp32 baseline in the same rounds; tested against its predictions
    assert bf16.session["measurement"]["group"] == ["baseline", "bf16"]
    assert bf16.speedup is not None and bf16.speedup_ci_low is not None
    assert bf16.delta_p_value is not None and bf16.delta_significant is not None
    # the stored dev logits are those of an independent bf16 run, not of an fp32 one
    dev = load_split("mrpc", "dev", data_dir=tiny_glue_dir, source="local")
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    onnx_dir = ArtifactCache(tmp_path / "results" / "cache").path("onnx", bf16.artifact_key)
    bf16_file = onnx_dir / "model.bf16.onnx"
    ours = onnx_logits(bf16_file, tok, dev, 32, runner=make_runner(bf16_file, "openvino", FAST))
    fp32 = onnx_logits(bf16_file, tok, dev, 32)  # onnxruntime CPU ignores the hint: fp32
    preds_path = resolve_stored_path(bf16.predictions_path, tmp_path / "results")
    stored = np.load(preds_path.with_name("logits_dev.npy"))
    np.testing.assert_allclose(stored, ours, rtol=0, atol=1e-6)
    assert np.abs(stored - fp32).max() > 1e-5
    preds = np.load(preds_path)
    assert bf16.metric_value == compute_metrics(get_task("mrpc"), preds, dev.labels)["accuracy"]
    assert bf16.predictions_path != rows["baseline", "openvino"].predictions_path
    board = (summary.run_dir / "leaderboard.csv").read_text()
    assert "precision" in board.splitlines()[0] and ",bf16," in board
