"""fp32 graph optimization and the int8 methods, on a tiny BERT exported in the test."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import export_tiny_onnx

from harness.errors import ConfigError, DataError
from harness.methods.base import METHODS, MethodContext
from harness.methods.quantize import Int8DynamicParams, Int8StaticParams, int8_dynamic, int8_static
from harness.optimize import op_counts, optimize_fp32, residual_add_to_sum
from harness.schema import FinetuneSpec
from harness.tasks.spec import TaskData, get_task

WORDS = "the a movie film good bad great not very it was is and but one two dog cat".split()


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tiny_bert_dir, tmp_path_factory.mktemp("onnx") / "model.onnx")


def _feeds(n: int = 64, seq: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 45, (n, seq))
    mask = np.ones((n, seq), np.int64)
    for i in range(n):  # right padding, left padding and holes
        cut = int(rng.integers(4, seq))
        if i % 3 == 0:
            mask[i, cut:] = 0
        elif i % 3 == 1:
            mask[i, : seq - cut] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def _logits(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]


def _ctx(tmp_path: Path, tiny_bert_dir: Path, with_data: bool = True) -> MethodContext:
    from transformers import AutoTokenizer

    data = TaskData("mrpc", "train", _sentences(40, 1), _sentences(40, 2),
                    np.arange(40) % 2)
    return MethodContext(task=get_task("mrpc"), finetune=FinetuneSpec(max_seq_len=32),
                         workdir=tmp_path, tokenizer=AutoTokenizer.from_pretrained(tiny_bert_dir),
                         load_train=(lambda: data) if with_data else None)


def _assert_close_to_fp32(got: np.ndarray, ref: np.ndarray) -> None:
    """Logit errors well under the spread of the fp32 decision margins; predictions agree."""
    margin = ref[:, 1] - ref[:, 0]
    assert np.abs(got - ref).max() < 0.3 * margin.std()
    assert np.mean(got.argmax(-1) == ref.argmax(-1)) >= 0.9


def test_optimize_fp32_fuses_and_preserves_outputs(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "opt.onnx"
    info = optimize_fp32(tiny_onnx, out, num_heads=4, hidden_size=32)
    assert info["fusions"]["Attention"] == 2
    assert info["fusions"]["EmbedLayerNormalization"] == 1
    assert info["residual_add_to_sum"] == 4  # two per layer
    assert info["nodes_after"] < info["nodes_before"]
    ops = op_counts(out)
    assert "SkipLayerNormalization" not in ops and ops["Sum"] == 4
    feeds = _feeds()
    diff = np.abs(_logits(out, feeds) - _logits(tiny_onnx, feeds)).max()
    assert diff < 1e-4  # also with left padding and holes in the mask


def test_optimize_fp32_auto_detects_heads(tiny_onnx: Path, tmp_path: Path) -> None:
    info = optimize_fp32(tiny_onnx, tmp_path / "opt.onnx", num_heads=0, hidden_size=0)
    assert info["fusions"]["Attention"] == 2


def test_optimize_fp32_levels(tiny_onnx: Path, tmp_path: Path) -> None:
    info = optimize_fp32(tiny_onnx, tmp_path / "none.onnx", num_heads=4, hidden_size=32,
                         level="none")
    assert (tmp_path / "none.onnx").read_bytes() == tiny_onnx.read_bytes()
    assert info["fusions"] == {}
    optimize_fp32(tiny_onnx, tmp_path / "basic.onnx", num_heads=4, hidden_size=32, level="basic")
    assert "Attention" not in op_counts(tmp_path / "basic.onnx")
    with pytest.raises(ConfigError, match="unknown fp32 optimization level"):
        optimize_fp32(tiny_onnx, tmp_path / "x.onnx", num_heads=4, hidden_size=32, level="max")


def test_residual_add_to_sum_leaves_bias_adds() -> None:
    from onnx import TensorProto, helper, numpy_helper

    f = helper.make_tensor_value_info
    w = numpy_helper.from_array(np.ones(4, np.float32), "w")
    nodes = [helper.make_node("Add", ["a", "b"], ["r"]),
             helper.make_node("LayerNormalization", ["r", "w", "w"], ["y1"]),
             helper.make_node("Add", ["y1", "w"], ["bias"]),
             helper.make_node("LayerNormalization", ["bias", "w", "w"], ["y2"])]
    graph = helper.make_graph(nodes, "g", [f("a", TensorProto.FLOAT, [2, 4]),
                                           f("b", TensorProto.FLOAT, [2, 4])],
                              [f("y2", TensorProto.FLOAT, [2, 4])], [w])
    model = helper.make_model(graph)
    assert residual_add_to_sum(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Sum", "LayerNormalization", "Add",
                                                      "LayerNormalization"]


def test_methods_are_registered() -> None:
    assert METHODS.get("int8-dynamic").level == "onnx"
    assert METHODS.get("int8-static").params is Int8StaticParams


def test_dynamic_params_reject_unknown_op_types() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="Softmax"):
        Int8DynamicParams(op_types=["Softmax"])


@pytest.mark.parametrize("params", [Int8DynamicParams(),
                                    Int8DynamicParams(optimize=False, per_channel=False)])
def test_int8_dynamic(params: Int8DynamicParams, tiny_onnx: Path, tiny_bert_dir: Path,
                      tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tiny_bert_dir)
    out = int8_dynamic(params).apply(tiny_onnx, tmp_path / "out", ctx)
    assert out.parent == tmp_path / "out" and out.exists()
    ops = op_counts(out)
    assert ops["MatMulInteger"] > 0 and ops["DynamicQuantizeLinear"] > 0
    if params.optimize:
        assert ops["QAttention"] == 2 and ops["FastGelu"] == 2
        assert ops["MatMul"] == 2  # pooler and classifier stay fp32 (Gemm -> MatMul + Add)
        assert any("fused graph" in n for n in ctx.notes)
    feeds = _feeds()
    _assert_close_to_fp32(_logits(out, feeds), _logits(tiny_onnx, feeds))


@pytest.mark.parametrize("params,expect", [
    (Int8StaticParams(calibration_samples=16), {"QuantizeLinear", "DequantizeLinear"}),
    (Int8StaticParams(calibration_samples=16, quant_format="qoperator", method="percentile",
                      per_channel=False), {"QLinearMatMul"}),
    (Int8StaticParams(calibration_samples=16, optimize=False), {"QuantizeLinear"}),
])
def test_int8_static(params: Int8StaticParams, expect: set[str], tiny_onnx: Path,
                     tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    ctx = _ctx(tmp_path, tiny_bert_dir)
    out = int8_static(params).apply(tiny_onnx, Path("out"), ctx)
    assert os.listdir(work) == ["out"]  # no calibration leftovers in the cwd
    assert Path.cwd() == work
    assert out.is_absolute() and out.parent == work / "out"
    ops = Counter(op_counts(out))
    assert expect <= set(ops)
    assert "on 16 train examples" in ctx.notes[-1]
    if params.optimize:
        feeds = _feeds()
        _assert_close_to_fp32(_logits(out, feeds), _logits(tiny_onnx, feeds))


def test_int8_static_without_data_raises(tiny_onnx: Path, tiny_bert_dir: Path,
                                         tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tiny_bert_dir, with_data=False)
    with pytest.raises(DataError, match="int8-static: no calibration data for task mrpc"):
        int8_static(Int8StaticParams()).apply(tiny_onnx, tmp_path / "out", ctx)
    assert not (tmp_path / "out").exists()


def test_entropy_calibration_is_not_minmax(tiny_onnx: Path, tiny_bert_dir: Path,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    """onnxruntime's own entropy settings reproduce min-max ranges; ours must not."""
    import onnx
    from onnx import numpy_helper

    from harness.methods import quantize

    monkeypatch.setattr(quantize, "ENTROPY_BINS", 1024)  # the KL search is slow in Python

    def scales(method: str) -> dict[str, float]:
        params = Int8StaticParams(calibration_samples=16, method=method, per_channel=False)
        out = int8_static(params).apply(tiny_onnx, tmp_path / method,
                                        _ctx(tmp_path, tiny_bert_dir))
        inits = onnx.load(str(out)).graph.initializer
        return {t.name: float(numpy_helper.to_array(t)) for t in inits
                if t.name.endswith("_scale")}

    minmax, entropy = scales("minmax"), scales("entropy")
    assert minmax.keys() == entropy.keys()
    assert any(abs(entropy[k] - minmax[k]) > 1e-3 * minmax[k] for k in minmax)
