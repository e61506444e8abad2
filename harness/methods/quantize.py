"""ONNX-level int8 quantization: dynamic and static (calibrated), tuned for the CPU EP.

Recipe (measured on MiniLM-L6, batch 32 x seq 128, see benchmarks/bench_int8.py):
- dynamic quantizes the fused graph from `harness.optimize` (QAttention, QEmbedLayerNormalization,
  MatMulInteger with per-channel weights; Add+LayerNorm kept out of the slow SkipLayerNorm
  kernel; FastGelu); the classification head (Gemm) stays fp32: it costs nothing and is
  the most error-sensitive part.
- static cannot calibrate the outputs of fused contrib ops, so it quantizes the unfused
  graph, MatMul only, u8 activations / s8 weights (the VNNI path), without quantizing the
  MatMul outputs, so ORT runs them as MatMulIntegerToFloat with no requantize round trip.
  onnxruntime's default QDQ recipe (s8 activations, every op) leaves half the MatMuls in
  fp32 and adds ~440 Q/DQ nodes: slower than the optimized fp32 graph on this CPU.
- "entropy" really runs KL calibration (onnxruntime's own settings silently equal min-max);
  it clips BERT's LayerNorm outliers and loses much accuracy on MiniLM: prefer min-max.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from harness.encode import encode_batch
from harness.errors import DataError
from harness.methods.base import MethodContext
from harness.methods.params import Int8DynamicParams, Int8StaticParams
from harness.optimize import op_counts, optimize_fp32, residual_add_to_sum

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8
ENTROPY_BINS = 2048  # histogram bins; 256 quantized bins (uint8)
INT8_OPS = frozenset({"MatMulInteger", "DynamicQuantizeLinear", "QAttention", "QLinearMatMul",
                      "QEmbedLayerNormalization", "QuantizeLinear", "DequantizeLinear",
                      "DynamicQuantizeMatMul", "MatMulIntegerToFloat"})


def int8_dynamic(params: Int8DynamicParams) -> DynamicInt8Step:
    """Dynamic int8 quantization (weights int8, activations quantized at run time)."""
    return DynamicInt8Step(params)


def int8_static(params: Int8StaticParams) -> StaticInt8Step:
    """Static int8 quantization calibrated on the task's training split."""
    return StaticInt8Step(params)


class DynamicInt8Step:
    def __init__(self, params: Int8DynamicParams) -> None:
        self.params = params

    def apply(self, onnx_path: Path, out_dir: Path, ctx: MethodContext) -> Path:
        import onnx
        from onnxruntime.quantization import quantize_dynamic

        p = self.params
        out_dir.mkdir(parents=True, exist_ok=True)
        out = (out_dir / "model.int8-dynamic.onnx").resolve()
        src = Path(onnx_path).resolve()
        with _scratch_cwd() as tmp:
            if p.optimize:
                info = optimize_fp32(src, tmp / "fused.onnx", num_heads=0, hidden_size=0,
                                     gelu_approximation=p.fast_gelu)
                src = tmp / "fused.onnx"
                ctx.notes.append(f"int8-dynamic: quantized the fused graph {info['fusions']}"
                                 + (", FastGelu" if p.fast_gelu else ""))
            head = _head_nodes(src) if p.optimize else []
            quantize_dynamic(
                src, out, op_types_to_quantize=list(p.op_types) if p.op_types else None,
                per_channel=p.per_channel, reduce_range=p.reduce_range,
                nodes_to_exclude=head,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        if head:
            ctx.notes.append("int8-dynamic: classification head kept fp32")
        _check_quantized(out, "int8-dynamic")
        return out


class StaticInt8Step:
    def __init__(self, params: Int8StaticParams) -> None:
        self.params = params

    def apply(self, onnx_path: Path, out_dir: Path, ctx: MethodContext) -> Path:
        from onnxruntime.quantization import quant_pre_process, quantize_static

        data = _calibration_data(ctx, self.params.calibration_samples)
        out_dir.mkdir(parents=True, exist_ok=True)
        out = (out_dir / "model.int8-static.onnx").resolve()
        src = Path(onnx_path).resolve()
        _warn_if_fused(src, ctx)
        with _scratch_cwd() as tmp:
            if self.params.optimize:
                src = _rewrite_residuals(src, tmp / "residual-sum.onnx")
            quant_pre_process(str(src), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
            reader = CalibrationReader(tmp / "pre.onnx", ctx, data)
            opts = self._options(tmp / "pre.onnx")
            if self.params.method == "entropy":
                opts["calibration_cache_path"] = _entropy_ranges(tmp / "pre.onnx", reader, opts)
            quantize_static(tmp / "pre.onnx", out, reader, **opts)
        ctx.notes.append(f"int8-static: {self._describe(len(data))}")
        _check_quantized(out, "int8-static")
        return out

    def _options(self, model_path: Path) -> dict[str, Any]:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

        p = self.params
        calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[p.method]
        fmt = QuantFormat.QDQ if p.quant_format == "qdq" else QuantFormat.QOperator
        extra: dict[str, Any] = {}
        if p.method == "percentile":
            extra["CalibPercentile"] = p.percentile
        opts: dict[str, Any] = {"quant_format": fmt, "per_channel": p.per_channel,
                                "calibrate_method": calib}
        if p.optimize:
            extra |= {"OpTypesToExcludeOutputQuantization": ["MatMul"],
                      "MatMulConstBOnly": True}
            opts |= {"op_types_to_quantize": ["MatMul"],
                     "nodes_to_exclude": _head_nodes(model_path),
                     "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8}
        return opts | {"extra_options": extra}

    def _describe(self, n: int) -> str:
        p = self.params
        recipe = ("MatMul only, u8 activations, fp32 outputs and head" if p.optimize
                  else "onnxruntime defaults")
        chan = "per-channel" if p.per_channel else "per-tensor"
        return f"{p.quant_format} {p.method} on {n} train examples, {chan}, {recipe}"


class CalibrationReader:
    """A CalibrationDataReader: tokenized train examples, CALIBRATION_BATCH per batch."""

    def __init__(self, model_path: Path, ctx: MethodContext, data: Any) -> None:
        import onnx

        graph = onnx.load(str(model_path), load_external_data=False).graph
        names = [i.name for i in graph.input]
        max_len = ctx.finetune.max_seq_len
        self._batches: list[dict[str, np.ndarray]] = []
        for start in range(0, len(data), CALIBRATION_BATCH):
            self._batches.append(encode_batch(ctx.tokenizer, data, start,
                                              start + CALIBRATION_BATCH, max_len, names,
                                              padding="max_length"))
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


def _calibration_data(ctx: MethodContext, n: int) -> Any:
    name = ctx.task.name
    try:
        data = ctx.train_data()
    except DataError as exc:
        raise DataError(f"int8-static: no calibration data for task {name} ({exc})") from exc
    if len(data) == 0:
        raise DataError(f"int8-static: no calibration data for task {name} (empty train split)")
    if ctx.tokenizer is None:
        raise DataError(f"int8-static: no tokenizer to encode calibration data for {name}")
    return data.take(n, ctx.finetune.seed)


def _entropy_ranges(model_path: Path, reader: CalibrationReader, opts: dict[str, Any]) -> Path:
    """KL-entropy ranges from ENTROPY_BINS histogram bins, written as a calibration cache.

    quantize_static builds its entropy calibrator with 128 bins and 128 quantized bins, which
    leaves the KL search a single candidate (the full range): the same ranges as min-max.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    ops = opts.get("op_types_to_quantize") or sorted(set(QDQRegistry) | set(QLinearOpsRegistry))
    calibrator = create_calibrator(model_path, ops, str(model_path.parent / "entropy-aug.onnx"),
                                   CalibrationMethod.Entropy,
                                   extra_options={"num_bins": ENTROPY_BINS,
                                                  "num_quantized_bins": 256})
    calibrator.collect_data(reader)
    cache = model_path.parent / "entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    reader.rewind()
    return cache


def _rewrite_residuals(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    residual_add_to_sum(model)
    onnx.save(model, str(dst))
    return dst


def _warn_if_fused(path: Path, ctx: MethodContext) -> None:
    fused = sorted({"Attention", "BiasGelu", "EmbedLayerNormalization", "SkipLayerNormalization"}
                   & set(op_counts(path)))
    if fused:
        msg = f"int8-static: input graph has fused ops {fused} that calibration cannot see"
        log.warning("%s; pass the plain export", msg)
        ctx.notes.append(msg)


def _head_nodes(model_path: Path) -> list[str]:
    """Gemm nodes (pooler, classifier) and the MatMul names the quantizer gives them."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    gemms = [n.name for n in graph.node if n.op_type == "Gemm"]
    return gemms + [f"{g}_MatMul" for g in gemms]


def _check_quantized(path: Path, label: str) -> None:
    if not INT8_OPS & set(op_counts(path)):
        raise RuntimeError(f"{label}: nothing was quantized in {path.name}")


@contextmanager
def _scratch_cwd() -> Iterator[Path]:
    """A temporary working directory (onnxruntime's quantizers write files into the cwd)."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="harness-quant-") as tmp:
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)
