"""Compute roofline: GEMM FLOPs of a model at a shape, and the GEMM peak its runtime reaches here.

Counted: every MatMul-family node (MatMul, FusedMatMul, MatMulInteger, MatMulIntegerToFloat,
DynamicQuantizeMatMul, QLinearMatMul) and Gemm/QGemm/FusedGemm as 2*M*N*K, as int8 work for
the integer ops and for QDQ MatMul/Gemm (both operands from DequantizeLinear); ORT's fused
Attention/QAttention as their QKV projection plus the two attention products (QK^T, PV);
MultiHeadAttention as the two attention products. Not counted: elementwise ops, softmax,
normalisations, activations, embeddings (small next to the GEMMs in a BERT encoder).
Shapes come from onnxruntime's symbolic shape inference with the inputs fixed to (batch, seq).
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from harness import precision as prec
from harness.cache import content_key
from harness.clock import now
from harness.schema import TimingSpec
from harness.store import write_json_atomic
from harness.timing.backend import make_runner
from harness.timing.loop import measure

log = logging.getLogger(__name__)

MATMUL_OPS = {"MatMul", "FusedMatMul", "MatMulInteger", "MatMulIntegerToFloat",
              "DynamicQuantizeMatMul", "QLinearMatMul"}
GEMM_OPS = {"Gemm", "QGemm", "FusedGemm"}
ATTENTION_OPS = {"Attention", "QAttention", "MultiHeadAttention"}
INT8_OPS = {"MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul",
            "QGemm", "QAttention"}
PEAK_SHAPE = {"cpu": 1024, "cuda": 4096}  # square GEMM side used for the peak
PEAK_SECONDS = 0.5  # time spent on each peak GEMM (best run counts)
PEAK_METHOD = "2"  # bump when _peak_graph or _measure_peak changes: stored peaks go stale
_PEAKS: dict[tuple[Any, ...], dict[str, Any]] = {}


@dataclass
class FlopCount:
    """GEMM FLOPs split by precision, and the GEMM-like nodes that could not be counted."""

    float_flops: float = 0.0
    int8_flops: float = 0.0
    uncounted: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.float_flops + self.int8_flops


def _shape_of(vi: onnx.ValueInfoProto) -> list[Any]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]


def _symbolic_shapes(model: onnx.ModelProto) -> dict[str, list[Any]]:
    """Shapes from ORT's symbolic shape inference (knows its fused contrib ops), extended to
    the quantized ones it lacks. Imported lazily: onnxruntime.tools imports torch."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_attribute

    class ShapeInference(SymbolicShapeInference):
        def __init__(self) -> None:
            super().__init__(int_max=2**31 - 1, auto_merge=True, guess_output_rank=False,
                             verbose=0)
            self.dispatcher_.setdefault("QAttention", self.infer_qattention)
            self.dispatcher_.setdefault("QEmbedLayerNormalization",
                                        self._infer_EmbedLayerNormalization)
            for op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
                self.dispatcher_.setdefault(op, self.infer_float_matmul)

        def infer_qattention(self, node: onnx.NodeProto) -> None:
            shape, weight = self._get_shape(node, 0), self._get_shape(node, 1)
            sizes = get_attribute(node, "qkv_hidden_sizes")
            out = sizes[2] if sizes else weight[1] // 3
            self.known_vi_[node.output[0]].CopyFrom(helper.make_tensor_value_info(
                node.output[0], TensorProto.FLOAT, [*shape[:-1], out]))

        def infer_float_matmul(self, node: onnx.NodeProto) -> None:
            self._compute_matmul_shape(node, TensorProto.FLOAT)

    inference = ShapeInference()
    inference._preprocess(model)
    while inference.run_:
        inference._infer_impl()
    return {name: _shape_of(vi) for name, vi in inference.known_vi_.items()}


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def fix_input_shapes(model: onnx.ModelProto, batch: int, seq: int) -> None:
    """Set symbolic dims of rank-2 graph inputs to (batch, seq); fixed dims stay as they are."""
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in inits or len(dims) != 2:
            continue
        for dim, value in zip(dims, (batch, seq), strict=True):
            if not dim.HasField("dim_value"):
                dim.dim_value = value


def _known(shape: list[Any] | None) -> bool:
    return bool(shape) and all(isinstance(d, int) and d > 0 for d in shape)


def node_flops(node: onnx.NodeProto, shape_of: dict[str, list[Any]],
               dequantized: frozenset[str] = frozenset()) -> tuple[float, float] | None:
    """(float, int8) FLOPs of one node (0 for non-GEMM ops); None when shapes are unknown.

    QAttention runs its QKV projection in int8 and the attention products in float. A MatMul
    or Gemm whose two operands both come out of DequantizeLinear (`dequantized`: those
    tensors) is a QDQ pair that onnxruntime runs as an int8 kernel (MatMulIntegerToFloat,
    QLinearMatMul, QGemm): int8 work.
    """
    op = node.op_type
    if op not in MATMUL_OPS | GEMM_OPS | ATTENTION_OPS:
        return 0.0, 0.0
    a, out = shape_of.get(node.input[0]), shape_of.get(node.output[0])
    if op in MATMUL_OPS or op in GEMM_OPS:
        if not (_known(a) and _known(out)):
            return None
        trans = _attr(node, "transA", 0) if op != "MatMul" else 0
        k = a[-2] if trans and len(a) >= 2 else a[-1]
        flops = 2.0 * math.prod(out) * k
        qdq = len(node.input) >= 2 and all(i in dequantized for i in node.input[:2])
        return (0.0, flops) if op in INT8_OPS or qdq else (flops, 0.0)
    if op in ("Attention", "QAttention"):
        weight = shape_of.get(node.input[1])
        if not (_known(a) and _known(weight) and len(a) == 3):
            return None
        b, s, hidden_in = a
        q, _, v = _attr(node, "qkv_hidden_sizes") or [weight[1] // 3] * 3
        projection, products = 2.0 * b * s * hidden_in * weight[1], 2.0 * b * s * s * (q + v)
        return (products, projection) if op == "QAttention" else (projection + products, 0.0)
    if op == "MultiHeadAttention":
        key = shape_of.get(node.input[1]) if len(node.input) > 1 else None
        if not (_known(a) and _known(key) and len(a) == 3 and len(key) == 3):
            return None
        value = shape_of.get(node.input[2]) if len(node.input) > 2 else None
        hv = value[-1] if _known(value) and len(value) == 3 else a[-1]
        return 2.0 * a[0] * a[1] * key[1] * (a[-1] + hv), 0.0


def count_flops(model: onnx.ModelProto, batch: int, seq: int) -> FlopCount:
    """GEMM FLOPs of `model` for inputs of shape (batch, seq); see the module docstring."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    fix_input_shapes(model, batch, seq)
    try:
        shape_of = _symbolic_shapes(model)
    except Exception as exc:  # noqa: BLE001 - third-party inference; count what we can
        log.warning("symbolic shape inference failed (%s); falling back to onnx's", exc)
        inferred = onnx.shape_inference.infer_shapes(model)
        vis = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
        shape_of = {vi.name: _shape_of(vi) for vi in vis}
    for init in model.graph.initializer:
        shape_of[init.name] = list(init.dims)
    count = FlopCount()
    dequantized = frozenset(o for n in model.graph.node if n.op_type == "DequantizeLinear"
                            for o in n.output)
    for node in model.graph.node:
        flops = node_flops(node, shape_of, dequantized)
        if flops is None:
            count.uncounted.append(f"{node.op_type}({node.name})")
        else:
            count.float_flops += flops[0]
            count.int8_flops += flops[1]
    if count.uncounted:
        log.warning("FLOPs not counted for %d node(s): %s", len(count.uncounted),
                    ", ".join(count.uncounted[:5]))
    return count


def model_flops(onnx_path: str | Path, batch: int, seq: int) -> float:
    """Total GEMM FLOPs (float + int8) of one inference at (batch, seq)."""
    return count_flops(onnx.load(str(onnx_path), load_external_data=False), batch, seq).total


def _peak_graph(kind: str, n: int, provider: str) -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "fp32":
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        nodes = [helper.make_node("MatMul", ["A", "B"], ["Y"])]
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [b]
        feed = rng.standard_normal((n, n), dtype=np.float32)
    elif provider == "openvino":
        return _qdq_peak_graph(n, rng)
    else:  # what ORT's dynamic int8 path runs: u8 activations x s8 weights (s8 x s8 on CUDA)
        a_np = np.int8 if provider == "cuda" else np.uint8
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        a_zp = numpy_helper.from_array(np.array(0, dtype=a_np), "a_zp")
        b_zp = numpy_helper.from_array(np.array(0, dtype=np.int8), "b_zp")
        nodes = [helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])]
        a_type = helper.np_dtype_to_tensor_dtype(np.dtype(a_np))
        y_type, inits = TensorProto.INT32, [b, a_zp, b_zp]
        feed = rng.integers(0, 128, (n, n)).astype(a_np)
    return _one_input_model(nodes, kind, n, a_type, y_type, inits), feed


def _qdq_peak_graph(n: int, rng: np.random.Generator) -> tuple[onnx.ModelProto, np.ndarray]:
    """A static QDQ MatMul (u8 activations quantized in the graph, s8 weights), the form
    int8-static files take. OpenVINO runs it as an int8 GEMM; it runs a bare MatMulInteger
    without one (measured: 146 GOP/s against 1112 for this graph), which put OpenVINO's
    int8-static rows at 2-3x their "peak" before."""
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B"),
             numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
             numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "b_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["A", "a_scale", "a_zp"], ["Aq"]),
             helper.make_node("DequantizeLinear", ["Aq", "a_scale", "a_zp"], ["Ad"]),
             helper.make_node("DequantizeLinear", ["B", "b_scale", "b_zp"], ["Bd"]),
             helper.make_node("MatMul", ["Ad", "Bd"], ["Y"])]
    model = _one_input_model(nodes, "int8", n, TensorProto.FLOAT, TensorProto.FLOAT, inits)
    return model, rng.standard_normal((n, n), dtype=np.float32)


def _one_input_model(nodes: list[onnx.NodeProto], kind: str, n: int, a_type: int, y_type: int,
                     inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, f"peak_{kind}",
                              [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _measure_peak(kind: str, provider: str, spec: TimingSpec, precision: str = "fp32"
                  ) -> tuple[float | None, float | None]:
    """(best GFLOP/s, share of the CPU other processes used meanwhile); a float GEMM runs at
    `precision` where the runtime honours it (OpenVINO)."""
    n = PEAK_SHAPE.get(provider, 1024)
    model, a = _peak_graph(kind, n, provider)
    if kind == "fp32" and precision != prec.DEFAULT:
        prec.mark(model, precision)
    short = spec.model_copy(update={"warmup": 5, "min_iterations": 20,
                                    "min_seconds": PEAK_SECONDS, "max_seconds": 10.0})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"peak_{kind}.onnx"
        onnx.save(model, str(path))
        try:
            runner = make_runner(path, provider, short)
        except Exception as exc:  # noqa: BLE001 - e.g. no int8 kernel on this provider
            log.warning("no %s GEMM peak on %s: %s", kind, provider, exc)
            return None, None
        m = measure(runner, {"A": a}, short, batch_size=1, provider=provider)
    return 2.0 * n**3 / (m.stats.min / 1e3) / 1e9, m.others_load


def gemm_peak_gflops(provider: str, spec: TimingSpec, precision: str = "fp32",
                     store: Path | None = None) -> dict[str, Any]:
    """Best GFLOP/s (GOP/s for int8) of one large square GEMM on the provider's runtime with
    the spec's threads, float MatMul and int8 MatMulInteger (OpenVINO: a static QDQ MatMul,
    which it runs as an int8 GEMM); measured once per process and settings. "float" is the
    float peak at `precision` ("fp32" keeps the fp32 one).

    With `store` (a folder), a peak measured while other processes left the CPU alone is kept
    there under this machine's fingerprint, runtime versions and settings, and later runs on
    the same machine reuse it: the peak is the machine's, and a run need not pay for it again.
    """
    key = (provider, spec.intra_op_threads, spec.inter_op_threads, spec.graph_optimization,
           spec.execution_mode, precision)
    if key not in _PEAKS:
        path = None if store is None else store / f"{_stored_name(key)}.json"
        _PEAKS[key] = _read_peak(path) or _new_peak(key, spec, path)
    return dict(_PEAKS[key])


def _new_peak(key: tuple[Any, ...], spec: TimingSpec, path: Path | None) -> dict[str, Any]:
    provider, precision = key[0], key[-1]
    n = PEAK_SHAPE.get(provider, 1024)
    (fp, load_fp), (int8, load_int8) = (_measure_peak(kind, provider, spec, precision)
                                        for kind in ("fp32", "int8"))
    peak = {"float": fp, "float_precision": precision,
            "fp32": fp if precision == "fp32" else None, "int8": int8,
            "gemm": [n, n, n], "provider": provider,
            "others_load": [load_fp, load_int8],  # high: the peak is understated
            "measured_at": now()}
    log.info("GEMM peak on %s: %s", provider, peak)
    quiet = all(load is not None and load <= spec.unstable_load for load in (load_fp, load_int8))
    if path is not None and quiet and fp is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, peak)
    return peak


def _read_peak(path: Path | None) -> dict[str, Any] | None:
    """The stored peak at `path`, or None when there is none or it cannot be read."""
    if path is None or not path.exists():
        return None
    try:
        peak = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("ignoring the stored GEMM peak %s: %s", path.name, exc)
        return None
    if not isinstance(peak, dict) or not isinstance(peak.get("float"), (int, float)):
        log.warning("ignoring the stored GEMM peak %s: no float peak in it", path.name)
        return None
    return peak


def _stored_name(key: tuple[Any, ...]) -> str:
    """File name of a peak: the machine, the runtimes' versions, the settings, the method."""
    from harness.timing.env import cpu_info, machine_fingerprint, package_versions

    return content_key("gemm-peak", PEAK_METHOD,
                       {"machine": machine_fingerprint(), "cpu_flags": cpu_info()["flags"],
                        "versions": package_versions(),
                        "settings": list(key), "shape": PEAK_SHAPE.get(key[0], 1024),
                        "seconds": PEAK_SECONDS})


def roofline_fields(count: FlopCount, latency_ms: float, peaks: dict[str, Any]
                    ) -> dict[str, float | None]:
    """Record fields: flops, achieved GFLOP/s, and efficiency = ideal time / measured time,
    where the ideal time runs float FLOPs at the float peak (fp32, or the precision the row
    ran in) and int8 FLOPs at the int8 peak. An efficiency above 1 means the peak was
    understated (e.g. measured under load), so it is left out (None), never published."""
    seconds = latency_ms / 1e3
    if count.total <= 0 or seconds <= 0:
        return {"flops": count.total or None, "gflops_per_s": None, "efficiency": None}
    ideal = 0.0
    float_peak = peaks.get("float", peaks.get("fp32"))
    for flops, peak in ((count.float_flops, float_peak), (count.int8_flops, peaks.get("int8"))):
        if flops > 0:
            if not peak:
                return {"flops": count.total, "gflops_per_s": count.total / seconds / 1e9,
                        "efficiency": None}
            ideal += flops / (peak * 1e9)
    efficiency = ideal / seconds
    if efficiency > 1.0:  # faster than its peak: the peak is understated, not the row fast
        log.warning("efficiency %.2f > 1: the GEMM peak %s is below what the model reached; "
                    "efficiency left out", efficiency, peaks)
        efficiency = None
    return {"flops": count.total, "gflops_per_s": count.total / seconds / 1e9,
            "efficiency": efficiency}
