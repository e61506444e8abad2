"""The same cache key gives the same model whatever the cache held before (real MiniLM-L3)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from harness.cache import ArtifactCache
from harness.plan import load_suite, plan
from harness.stages import Stages

pytestmark = pytest.mark.e2e

SUITE = {"name": "repro", "models": ["minilm-l3"], "tasks": ["rte"],
         "finetune": {"epochs": 1, "batch_size": 8, "max_seq_len": 32, "max_train_samples": 16,
                      "max_eval_samples": 16}}


def test_cold_and_warm_cache_give_bit_identical_weights_and_metrics(
        tmp_path: Path, shared_glue: Path) -> None:
    from safetensors.torch import load_file

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    suite, pipelines = load_suite(path)
    (cell,) = plan(suite, pipelines)
    cold = Stages(suite, ArtifactCache(tmp_path / "cold"), shared_glue)
    cold_built = cold.build(cell)  # converts minilm-l3 first, then fine-tunes
    warm_root = tmp_path / "warm"  # holds the converted model only
    shutil.copytree(tmp_path / "cold" / "models", warm_root / "models")
    warm_built = Stages(suite, ArtifactCache(warm_root), shared_glue).build(cell)

    assert warm_built.key == cold_built.key
    tuned = [d for root in (tmp_path / "cold", warm_root)
             for d in (root / "finetune").iterdir() if not d.name.startswith(".")]
    weights = [load_file(d / "model" / "model.safetensors") for d in tuned]
    assert len(weights) == 2 and weights[0].keys() == weights[1].keys()
    assert all(weights[0][k].equal(weights[1][k]) for k in weights[0])
    logs = [ArtifactCache(d.parents[1]).info(d)["train_log"] for d in tuned]
    assert logs[0]["loss_curve"] == logs[1]["loss_curve"]
    for field in ("metric_value", "accuracy", "n_eval", "parity_max_abs_diff"):
        assert cold_built.fields("cpu")[field] == warm_built.fields("cpu")[field], field
