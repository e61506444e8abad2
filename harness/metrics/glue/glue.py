"""GLUE metric as a local `evaluate` module, for use without the Hugging Face hub.

Reproduces the hub's `evaluate-metric/glue` module (github.com/huggingface/evaluate,
metrics/glue/glue.py, Apache-2.0): same config names, same input features (int64, float32 for
stsb), same outputs computed with the same sklearn/scipy functions. Load it with
`evaluate.load("<path to this folder>", "mrpc")`. The file is copied into the `evaluate`
modules cache on load, so it must stay self-contained (no `harness` imports).
"""
from __future__ import annotations

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer
          and Bowman, Samuel R.},
  note={In the Proceedings of ICLR.},
  year={2019}
}
"""

_DESCRIPTION = """\
GLUE, the General Language Understanding Evaluation benchmark (https://gluebenchmark.com/):
the official metric of each GLUE task. Offline copy of the hub's `glue` metric.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids (int), or scores (float) for stsb.
    references: gold class ids (int), or scores (float) for stsb.
Returns, depending on the config:
    cola: {"matthews_correlation"}
    stsb: {"pearson", "spearmanr"}
    mrpc, qqp: {"accuracy", "f1"} (f1 of class 1)
    sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, hans: {"accuracy"}
Example:
    >>> metric = evaluate.load("harness/metrics/glue", "mrpc")
    >>> metric.compute(predictions=[0, 1], references=[0, 1])
    {'accuracy': 1.0, 'f1': 1.0}
"""

CONFIGS = ("sst2", "mnli", "mnli_mismatched", "mnli_matched", "cola", "stsb", "mrpc", "qqp",
           "qnli", "rte", "wnli", "hans")
_ACCURACY_ONLY = ("sst2", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli", "hans")


def simple_accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float((preds == labels).mean())


def acc_and_f1(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": simple_accuracy(preds, labels),
            "f1": float(f1_score(y_true=labels, y_pred=preds))}


def pearson_and_spearman(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"pearson": float(pearsonr(preds, labels)[0]),
            "spearmanr": float(spearmanr(preds, labels)[0])}


def _config_error() -> KeyError:
    return KeyError("You should supply a configuration name selected in "
                    f"{list(CONFIGS)}")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    """The GLUE metric; the config name selects the task."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CONFIGS:
            raise _config_error()
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype),
                                        "references": datasets.Value(dtype)}),
            codebase_urls=[],
            reference_urls=[],
            format="numpy",
        )

    def _compute(self, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return pearson_and_spearman(predictions, references)
        if self.config_name in ("mrpc", "qqp"):
            return acc_and_f1(predictions, references)
        if self.config_name in _ACCURACY_ONLY:
            return {"accuracy": simple_accuracy(predictions, references)}
        raise _config_error()
