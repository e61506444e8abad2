"""The offline GLUE metric module and compute_metrics, against hand-computed values."""
from __future__ import annotations

import math

import evaluate
import numpy as np
import pytest
from scipy.stats import pearsonr, rankdata, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

import harness.metrics as metrics
from harness.metrics import LOCAL_GLUE_METRIC, compute_metrics, main_metric, metric_source
from harness.tasks import TASKS, get_task

CONFIGS = ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_matched", "mnli_mismatched",
           "qnli", "rte", "wnli", "hans"]
EXPECTED_KEYS = {"cola": {"matthews_correlation"}, "stsb": {"pearson", "spearmanr"},
                 "mrpc": {"accuracy", "f1"}, "qqp": {"accuracy", "f1"}}


def _local(config: str) -> evaluate.EvaluationModule:
    return evaluate.load(str(LOCAL_GLUE_METRIC), config, keep_in_memory=True)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget loaded metrics and the hub probe result, so each test decides the route anew."""
    monkeypatch.setattr(metrics, "_loaded", {})
    monkeypatch.setattr(metrics, "_hub_ok", None)


@pytest.mark.parametrize("config", CONFIGS)
def test_local_module_loads_offline_with_hub_outputs(config: str) -> None:
    metric = _local(config)
    refs = [0.0, 1.0, 2.5, 4.0] if config == "stsb" else [0, 1, 1, 0]
    out = metric.compute(predictions=refs, references=refs)
    assert set(out) == EXPECTED_KEYS.get(config, {"accuracy"})
    assert all(type(v) is float and v == pytest.approx(1.0) for v in out.values())


def test_unknown_config_is_refused() -> None:
    with pytest.raises(KeyError, match="configuration name"):
        _local("squad")


def test_accuracy_by_hand() -> None:
    out = _local("sst2").compute(predictions=[1, 0, 1, 1], references=[1, 0, 0, 1])
    assert out == {"accuracy": 0.75}


def test_accuracy_and_f1_by_hand() -> None:
    preds, refs = [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0]
    tp, fp, fn = 2, 1, 1
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    out = _local("mrpc").compute(predictions=preds, references=refs)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["f1"] == pytest.approx(2 * precision * recall / (precision + recall))


def test_matthews_by_hand() -> None:
    preds = [1, 1, 1, 0, 0, 1, 0, 1, 1, 0]
    refs = [1, 0, 1, 0, 1, 1, 0, 1, 0, 0]
    tp, tn, fp, fn = 4, 3, 2, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    out = _local("cola").compute(predictions=preds, references=refs)
    assert out["matthews_correlation"] == pytest.approx(mcc)


def test_pearson_and_spearman_by_hand() -> None:
    preds = np.array([0.5, 1.0, 2.2, 3.9, 3.0, 4.8], dtype=np.float32)
    refs = np.array([0.0, 1.4, 2.0, 3.5, 4.0, 5.0], dtype=np.float32)
    out = _local("stsb").compute(predictions=preds, references=refs)
    assert out["pearson"] == pytest.approx(np.corrcoef(preds, refs)[0, 1], rel=1e-6)
    ranks = np.corrcoef(rankdata(preds), rankdata(refs))[0, 1]
    assert out["spearmanr"] == pytest.approx(ranks)


def test_identical_to_sklearn_and_scipy() -> None:
    rng = np.random.default_rng(0)
    refs, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert _local("cola").compute(predictions=preds, references=refs) == {
        "matthews_correlation": float(matthews_corrcoef(refs, preds))}
    assert _local("qqp").compute(predictions=preds, references=refs) == {
        "accuracy": float((preds == refs).mean()), "f1": float(f1_score(refs, preds))}
    s_refs = (rng.random(200) * 5).astype(np.float32)
    s_preds = (s_refs + rng.normal(0, 1, 200)).astype(np.float32)
    assert _local("stsb").compute(predictions=s_preds, references=s_refs) == {
        "pearson": float(pearsonr(s_preds, s_refs)[0]),
        "spearmanr": float(spearmanr(s_preds, s_refs)[0])}


def test_compute_metrics_offline_uses_local(fresh: None, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(1)
    for task in TASKS.values():
        if task.is_regression:
            refs = rng.random(50) * 5
            preds = refs + rng.normal(0, 0.5, 50)
        else:
            refs, preds = rng.integers(0, task.num_labels, 50), rng.integers(0, task.num_labels, 50)
        values = compute_metrics(task, preds, refs)
        assert set(values) == set(task.metrics)
        assert main_metric(task, values) == values[task.main_metric]
        assert metric_source(task) == "local"
    assert metric_source() == "local"


def test_compute_metrics_values_and_mnli_mismatched(fresh: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    mnli = get_task("mnli")
    values = compute_metrics(mnli, [0, 1, 2, 2], [0, 1, 2, 0], config="mnli_mismatched")
    assert values == {"accuracy": 0.75}
    assert compute_metrics(get_task("mrpc"), np.array([1.0, 0.0]), [1, 1]) == {
        "accuracy": 0.5, "f1": pytest.approx(2 / 3)}


def test_compute_metrics_rejects_bad_inputs(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rte = get_task("rte")
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics(rte, [0.3, 0.9], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        compute_metrics(rte, [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        compute_metrics(rte, [[0.1, 0.9]], [1])
    with pytest.raises(KeyError, match="accuracy"):
        main_metric(rte, {"f1": 1.0})


def test_hub_failure_falls_back_to_local(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    real_load, asked = evaluate.load, []

    def fake_load(path: str, *args: object, **kwargs: object) -> evaluate.EvaluationModule:
        asked.append(path)
        if path == metrics.HUB_GLUE_METRIC:
            raise ConnectionError("hub unreachable")
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(evaluate, "load", fake_load)
    assert compute_metrics(get_task("sst2"), [1, 0], [1, 1]) == {"accuracy": 0.5}
    assert metric_source() == "local" and metric_source(get_task("sst2")) == "local"
    compute_metrics(get_task("rte"), [1, 0], [1, 1])
    assert asked.count(metrics.HUB_GLUE_METRIC) == 1  # the hub is not asked again


def test_hub_route_when_online(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the hub reachable (simulated by serving the local script), the hub module is used."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    real_load, asked = evaluate.load, []

    def fake_load(path: str, *args: object, **kwargs: object) -> evaluate.EvaluationModule:
        asked.append(path)
        return real_load(str(LOCAL_GLUE_METRIC), *args, **kwargs)

    monkeypatch.setattr(evaluate, "load", fake_load)
    assert metric_source() == "hub"
    assert compute_metrics(get_task("cola"), [1, 0, 1], [1, 0, 0])["matthews_correlation"] == (
        pytest.approx(0.5))
    assert metric_source(get_task("cola")) == "hub"
    assert asked == [metrics.HUB_GLUE_METRIC] * 2  # sst2 probe, then cola; cached afterwards
    compute_metrics(get_task("cola"), [1, 0], [1, 0])
    assert len(asked) == 2


@pytest.mark.network
@pytest.mark.parametrize("config", ["cola", "mrpc", "stsb", "rte"])
def test_local_module_equals_hub_module(config: str) -> None:
    rng = np.random.default_rng(2)
    if config == "stsb":
        refs, preds = rng.random(100) * 5, rng.random(100) * 5
    else:
        refs, preds = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    hub = evaluate.load("evaluate-metric/glue", config, keep_in_memory=True)
    assert _local(config).compute(predictions=preds, references=refs) == hub.compute(
        predictions=preds, references=refs)
