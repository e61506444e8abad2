"""Shared fixtures: a tiny BERT built in the test, tiny GLUE-format data."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness.tasks import TaskData

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = REPO.parent / "shared" / "glue"

WORDS = ("the a an is was not good bad movie film great terrible it this that he she they "
         "said says company shares percent year new one two three man woman dog cat sat on "
         "mat and or but very quite really yes no").split()


def make_tiny_bert(path: Path, num_labels: int = 2, layers: int = 2, hidden: int = 32,
                   heads: int = 4, intermediate: int = 64, seed: int = 0) -> Path:
    """Save a tiny random BertForSequenceClassification with a word-level vocab to `path`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = list(dict.fromkeys([*specials, *WORDS, *"abcdefghijklmnopqrstuvwxyz.,'"]))
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=128, num_labels=num_labels,
                        problem_type="regression" if num_labels == 1 else None)
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def export_tiny_onnx(model_dir: Path, path: Path) -> Path:
    """A saved model exported with torch.onnx.export: opset 17, dynamic batch and seq."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    ones = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(model, (ones, ones, torch.zeros_like(ones)), str(path),
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                    "token_type_ids": axes, "logits": {0: "batch"}})
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2-label BERT saved as a local model directory (loadable by the Auto classes)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_tiny_glue(root: Path, n_train: int = 48, n_dev: int = 24) -> Path:
    """MRPC and RTE in the canonical glue_data layout (BOM header for MRPC), seeded."""
    import random

    rng = random.Random(0)

    def sent() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))

    for split, n in (("train", n_train), ("dev", n_dev)):
        (root / "MRPC").mkdir(parents=True, exist_ok=True)
        rows = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        rows += [f"{rng.randint(0, 1)}\t{i}\t{i + 1000}\t{sent()}\t{sent()}" for i in range(n)]
        (root / "MRPC" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        (root / "RTE").mkdir(parents=True, exist_ok=True)
        rows = ["index\tsentence1\tsentence2\tlabel"]
        labels = ("entailment", "not_entailment")
        rows += [f"{i}\t{sent()}\t{sent()}\t{rng.choice(labels)}" for i in range(n)]
        (root / "RTE" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def shared_glue() -> Path:
    if not (SHARED_GLUE / "MRPC" / "dev.tsv").exists():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE}")
    return SHARED_GLUE


TINY_SUITE = """
name: tiny
data_dir: {glue}
models: [{model}]
tasks: [mrpc]
methods: {methods}
finetune: {{epochs: 1, batch_size: 8, max_seq_len: 32, max_train_samples: 32}}
timing: {{batch_sizes: [1, 4], seq_lens: [32], warmup: 1, min_iterations: 3, min_seconds: 0.0}}
"""


def suite_file(tmp_path: Path, glue: Path, model: Path, methods: str = "[baseline]") -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(TINY_SUITE.format(glue=glue, model=model, methods=methods))
    return path


def toy_sst2(n: int = 32, seed: int = 0) -> TaskData:
    """Separable sentiment: label 1 sentences say 'good great', label 0 'bad terrible'."""
    import numpy as np

    from harness.tasks.spec import TaskData

    filler = "the a it this that he she they said".split()
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    texts = [" ".join([*rng.choice(filler, 3), "good great" if y else "bad terrible"])
             for y in labels]
    return TaskData("sst2", "train", texts, None, labels.astype(np.int64))


@pytest.fixture(scope="session")
def tiny_onnx(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT exported to ONNX (dynamic batch and sequence, at most 128 positions)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 8, dtype=torch.long)
    path = tmp_path_factory.mktemp("tiny-onnx") / "model.onnx"
    torch.onnx.export(model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                      input_names=names, output_names=["logits"], opset_version=17,
                      dynamic_axes={n: {0: "batch", 1: "seq"} for n in names}, dynamo=False)
    return path


# --- GLUE-format files (task loaders, MNLI runs) -------------------------------------
BOM = "\ufeff"
MNLI_TRAIN_HEAD = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
                   "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label").split()
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD[:-1] + "label2 label3 label4 label5 gold_label".split()


def write_tsv(root: Path, task_dir: str, name: str, rows: list[list[str]], bom: bool = False) -> Path:
    (root / task_dir).mkdir(parents=True, exist_ok=True)
    text = "\n".join("\t".join(r) for r in rows) + "\n"
    path = root / task_dir / name
    path.write_text((BOM if bom else "") + text, encoding="utf-8")
    return path


def mnli_row(i: int, s1: str, s2: str, labels: list[str]) -> list[str]:
    return [str(i), "31193", f"{i}n", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", s1, s2,
            *labels]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def headless_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium (skips the test when it is not installed)."""
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True,
                          timeout=180, check=True)
