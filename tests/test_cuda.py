"""CUDA paths on a real GPU: the CUDA execution provider, IO binding, GPU memory, int8 on
CUDA, fine-tuning and distillation on the GPU, and one cell timed on both providers.

Every test here is marked `cuda` (left out of the default run) and skips, with the reason,
where torch sees no GPU or onnxruntime has no CUDA execution provider.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import suite_file, toy_sst2

from harness.errors import SkipCell
from harness.schema import FinetuneSpec, TimingSpec
from harness.timing import loop, time_onnx
from harness.timing.inputs import random_inputs
from harness.timing.placement import ATOL, RTOL, device_check
from harness.timing.session import make_session

pytestmark = pytest.mark.cuda
needs_torch_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                                     reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
needs_ort_cuda = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-gpu: CUDAExecutionProvider is not among onnxruntime's providers")
needs_gpu = [needs_torch_gpu, needs_ort_cuda]
FAST = TimingSpec(warmup=2, min_iterations=10, min_seconds=0.0, max_seconds=10.0)
B, S = 4, 16


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    ids = torch.ones(2, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(path), input_names=names,
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names})
    return path


def feed() -> dict[str, np.ndarray]:
    return random_inputs(B, S, 0, 50)


@needs_ort_cuda
@needs_torch_gpu
def test_fp32_on_cuda_runs_on_the_gpu_and_matches_cpu(tiny_onnx: Path) -> None:
    session = make_session(tiny_onnx, "cuda", FAST)
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    assert session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    checked = device_check(tiny_onnx, "cuda", FAST, feed(), session)
    ops = checked["placement"]["ops"]
    assert all(set(by_ep) == {"CUDAExecutionProvider"} for op, by_ep in ops.items()
               if "MatMul" in op or "Gemm" in op), ops
    agree = checked["cpu_agreement"]
    assert agree["max_abs_diff"] <= ATOL + RTOL and agree["argmax_agreement"] == 1.0


@needs_ort_cuda
@needs_torch_gpu
def test_io_binding_keeps_inputs_and_outputs_on_the_gpu(tiny_onnx: Path) -> None:
    session = make_session(tiny_onnx, "cuda", FAST)
    step = loop.cuda_runner(session, feed())
    step()
    bound = step.keep_alive  # type: ignore[attr-defined]
    assert all(v.device_name() == "cuda" for v in bound.values())
    fields = time_onnx(tiny_onnx, "cuda", FAST, feed(), B)
    measurement = fields["session"]["measurement"]
    assert measurement["io_binding"] and fields["latency_ms_p50"] > 0
    assert fields["n_timed"] >= FAST.min_iterations
    # GPU memory: this process's share where nvidia-smi shows our pid, else the device's total
    assert fields["gpu_mem_mb"] is not None or measurement["gpu_used_mb_all_processes"] > 0


@needs_ort_cuda
@needs_torch_gpu
def test_int8_dynamic_on_cuda_is_skipped_with_reason_or_matches_cpu(tiny_onnx: Path,
                                                                    tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = tmp_path / "int8.onnx"
    quantize_dynamic(str(tiny_onnx), str(q), weight_type=QuantType.QInt8)
    try:
        fields = time_onnx(q, "cuda", FAST, feed(), B)
    except SkipCell as exc:
        assert "ran on the CPU" in str(exc) and "MatMulInteger" in str(exc)
        return
    assert fields["session"]["cpu_agreement"]["max_abs_diff"] <= ATOL + RTOL


@needs_torch_gpu
def test_finetune_and_distill_on_the_gpu(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.methods.distill import KDLoss
    from harness.stages.artifacts import train_device
    from harness.tasks.spec import get_task
    from harness.train import finetune, predict

    assert train_device() == "cuda"
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    student = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).to("cuda")
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).to("cuda")
    data, task = toy_sst2(64), get_task("sst2")
    spec = FinetuneSpec(epochs=5, lr=5e-3, batch_size=8, max_seq_len=32, warmup_ratio=0.1)
    log = finetune(teacher, tok, data, spec, task, log_every=8)
    assert next(teacher.parameters()).is_cuda and log.final_loss < log.loss_curve[0]
    assert (predict(teacher, tok, data, 32).argmax(1) == data.labels).mean() == 1.0
    kd = finetune(student, tok, data, FinetuneSpec(epochs=1, batch_size=16, max_seq_len=32),
                  task, teacher=teacher, kd=KDLoss(alpha_cos=1.0))
    assert kd.steps == 4 and np.isfinite(kd.mean_loss) and next(student.parameters()).is_cuda


@needs_ort_cuda
@needs_torch_gpu
def test_cell_on_cpu_and_cuda_is_ok_and_agrees(tmp_path: Path, tiny_glue_dir: Path,
                                              tiny_bert_dir: Path) -> None:
    from harness.run import run_suite
    from harness.store import RunStore

    path = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, "[baseline, int8-dynamic]")
    path.write_text(path.read_text().replace("timing: {", "timing: {providers: [cpu, cuda], "))
    summary = run_suite(path, tmp_path / "results", "r1")
    records = RunStore(summary.run_dir).records()
    assert len(records) == 8 and summary.exit_code == 0
    for r in records:
        if r.variant == "baseline" or r.provider == "cpu":
            assert r.status == "ok", r.error
        else:  # int8 on CUDA: timed only when its products ran on the GPU
            assert r.status == "ok" or "ran on the CPU" in (r.error or ""), r.error
        if r.provider == "cuda" and r.status == "ok":
            assert r.session["ort_providers"][0] == "CUDAExecutionProvider"
            assert r.session["cpu_agreement"]["max_abs_diff"] <= ATOL + RTOL
            assert r.session["measurement"]["io_binding"]
