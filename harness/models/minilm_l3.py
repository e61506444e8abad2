"""Convert the packaged paraphrase-MiniLM-L3-v2 ONNX graph into a BertModel checkpoint once.

The ONNX export keeps BERT names on biases, LayerNorms and embeddings but stores each Linear
weight as an anonymous, transposed MatMul initializer (``onnx::MatMul_470``). Each one is named
by the graph: its MatMul feeds an Add with a named bias, and the MatMul's input must come from
the LayerNorm that BERT's structure says it reads. The result is checked with a strict
``load_state_dict`` and, in the tests, against onnxruntime on real sentences.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.cache import ArtifactCache
from harness.errors import ModelError
from harness.models.catalogue import file_sha256, l3_onnx_path, l6_model_dir

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto

log = logging.getLogger(__name__)

CONVERTER_VERSION = 1
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
_BERT_NAME = re.compile(r"(?:^|\.)((?:embeddings|encoder)\..+)$")


def converted_dir(cache_dir: Path, onnx_path: Path | None = None) -> Path:
    """Directory of the converted checkpoint under `cache_dir/models`, converting on first use.

    It is an artifact of the cache: its file hashes are checked on every use (a damaged or
    deleted file means a new conversion) and two processes converting at once build it once.
    """
    onnx_path = onnx_path or l3_onnx_path()
    key = f"minilm-l3-{file_sha256(onnx_path)[:16]}-v{CONVERTER_VERSION}"

    def build(out: Path) -> dict[str, str]:
        import torch

        with torch.random.fork_rng(devices=[]):  # model init must not move the caller's RNG
            convert(onnx_path, l6_model_dir(), out)
        return {"source": onnx_path.name}

    path, _ = ArtifactCache(cache_dir).get_or_build("models", key, build, f"convert {onnx_path.name}")
    return path


def convert(onnx_path: Path, tokenizer_dir: Path, out_dir: Path) -> None:
    """Write a safetensors BertModel (no pooler) plus `tokenizer_dir`'s tokenizer to `out_dir`."""
    import onnx
    import torch
    from transformers import BertConfig, BertModel

    graph = onnx.load(str(onnx_path)).graph
    state, config_kwargs = onnx_bert_weights(graph)
    config = BertConfig(**config_kwargs)
    model = BertModel(config, add_pooling_layer=False)
    tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(f"ONNX to BERT mapping incomplete for {onnx_path.name}: "
                         f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copy2(tokenizer_dir / name, out_dir / name)
    provenance = {"source": onnx_path.name, "onnx_sha256": file_sha256(onnx_path),
                  "converter_version": CONVERTER_VERSION, "tokenizer_from": str(tokenizer_dir)}
    (out_dir / "harness_conversion.json").write_text(json.dumps(provenance, indent=2))


def onnx_bert_weights(graph: GraphProto) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """BERT state dict (torch layout) and BertConfig kwargs read from an exported BERT graph."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    state = {m.group(1): v for k, v in inits.items() if (m := _BERT_NAME.search(k))}
    ln_out = {_bert_name(n.input[1]).rsplit(".", 1)[0]: n.output[0]
              for n in graph.node if n.op_type == "LayerNormalization"}
    linears: dict[str, NodeProto] = {}
    for node in graph.node:
        weight = node.input[1] if node.op_type == "MatMul" else ""
        if weight in inits and not _BERT_NAME.search(weight):
            name = _linear_name(node, consumers, inits)
            _check_linear_input(name, node, ln_out)
            linears[name] = node
            state[f"{name}.weight"] = inits[node.input[1]].T  # MatMul(x, W) == Linear with W.T
    used = {n.input[1] for n in linears.values()}
    leftover = [k for k, v in inits.items() if v.ndim == 2 and v.dtype.kind == "f"
                and k not in used and not _BERT_NAME.search(k)]
    if leftover:
        raise ModelError(f"unmapped 2-D ONNX initializers: {leftover}")
    query = linears.get("encoder.layer.0.attention.self.query")
    if query is None:
        raise ModelError("no query projection found for layer 0 in the ONNX graph")
    return state, _config_from_graph(graph, state, query, inits, producer, consumers)


def _bert_name(onnx_name: str) -> str:
    m = _BERT_NAME.search(onnx_name)
    if not m:
        raise ModelError(f"ONNX initializer '{onnx_name}' has no BERT parameter name")
    return m.group(1)


def _linear_name(matmul: NodeProto, consumers: dict[str, list[NodeProto]],
                 inits: dict[str, np.ndarray]) -> str:
    """`encoder.layer.N.x.y` for a MatMul whose single consumer adds a named bias."""
    users = consumers.get(matmul.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        raise ModelError(f"MatMul {matmul.name} is not followed by a bias Add")
    bias = [i for i in users[0].input if i in inits]
    if len(bias) != 1 or not _bert_name(bias[0]).endswith(".bias"):
        raise ModelError(f"MatMul {matmul.name} adds no named bias")
    name = _bert_name(bias[0])[: -len(".bias")]
    if matmul.name and name not in matmul.name.replace("/", "."):
        raise ModelError(f"MatMul {matmul.name} feeds bias of {name}: graph names disagree")
    return name


def _check_linear_input(name: str, matmul: NodeProto, ln_out: dict[str, str]) -> None:
    """Q/K/V read the previous LayerNorm; the intermediate reads the attention LayerNorm."""
    m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)", name)
    if not m:
        raise ModelError(f"unexpected linear layer {name}")
    layer, part = int(m.group(1)), m.group(2)
    if part.startswith("attention.self."):
        expected = (f"encoder.layer.{layer - 1}.output.LayerNorm" if layer
                    else "embeddings.LayerNorm")
    elif part == "intermediate.dense":
        expected = f"encoder.layer.{layer}.attention.output.LayerNorm"
    else:  # attention.output.dense and output.dense read reshaped context / activations
        return
    if ln_out.get(expected) != matmul.input[0]:
        raise ModelError(f"{name} does not read the output of {expected} in the ONNX graph")


def _const(name: str, producer: dict[str, NodeProto], inits: dict[str, np.ndarray]) -> np.ndarray:
    from onnx import numpy_helper

    if name in inits:
        return inits[name]
    node = producer.get(name)
    if node is None or node.op_type != "Constant":
        raise ModelError(f"ONNX value {name} is not a constant")
    return numpy_helper.to_array(node.attribute[0].t)


def _config_from_graph(graph: GraphProto, state: dict[str, np.ndarray], query: NodeProto,
                       inits: dict[str, np.ndarray], producer: dict[str, NodeProto],
                       consumers: dict[str, list[NodeProto]]) -> dict[str, object]:
    """BertConfig kwargs; heads come from the Reshape that splits the query projection."""
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    query_add = consumers[query.output[0]][0]
    reshape = next(n for n in consumers[query_add.output[0]] if n.op_type == "Reshape")
    shape_parts = producer[reshape.input[1]].input  # Concat(batch, seq, heads, head_dim)
    heads = int(_const(shape_parts[2], producer, inits).reshape(-1)[0])
    head_dim = int(_const(shape_parts[3], producer, inits).reshape(-1)[0])
    if heads * head_dim != hidden:
        raise ModelError(f"attention heads {heads} x {head_dim} != hidden {hidden}")
    if not any(n.op_type == "Erf" for n in graph.node):
        raise ModelError("ONNX graph has no Erf: activation is not BERT's exact gelu")
    eps = next(a.f for n in graph.node if n.op_type == "LayerNormalization"
               for a in n.attribute if a.name == "epsilon")
    return {
        "vocab_size": int(vocab), "hidden_size": int(hidden), "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": int(state["encoder.layer.0.intermediate.dense.bias"].shape[0]),
        "max_position_embeddings": int(state["embeddings.position_embeddings.weight"].shape[0]),
        "type_vocab_size": int(state["embeddings.token_type_embeddings.weight"].shape[0]),
        "hidden_act": "gelu", "layer_norm_eps": float(eps), "pad_token_id": 0,
    }

