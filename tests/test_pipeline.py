"""The whole pipeline on a tiny BERT built in the test and tiny GLUE-format data."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MNLI_DEV_HEAD, MNLI_TRAIN_HEAD, mnli_row, suite_file, write_tsv

from harness.run import run_suite
from harness.schema import FinetuneSpec
from harness.stages.artifacts import train_precision
from harness.store import RunStore


def harness_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True)


def test_run_records_every_cell_and_resumes(tmp_path: Path, tiny_glue_dir: Path,
                                            tiny_bert_dir: Path) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, "[baseline, prune-structured]")
    summary = run_suite(suite, tmp_path / "results", "r1")
    records = RunStore(summary.run_dir).records()
    assert summary.exit_code == 0
    assert sorted((r.variant, r.batch_size) for r in records) == [
        ("baseline", 1), ("baseline", 4), ("prune-structured", 1), ("prune-structured", 4)]
    for r in records:
        assert r.status == "ok", r.error
        assert 0.0 <= r.metric_value <= 1.0 and r.metric_name == "accuracy" and r.f1 is not None
        assert r.n_eval == 24 and r.parity_agreement == 1.0 and r.parity_max_abs_diff < 1e-4
        assert r.n_timed >= 3 and len(r.samples_ms) == r.n_timed and r.latency_ms_p50 > 0
        assert r.onnx_bytes > 0 and r.params > 0 and r.machine and r.env
        # both variants timed together in 5 rotating rounds, samples kept per round
        assert len(r.round_sizes) == 5 and sum(r.round_sizes) == r.n_timed
        assert r.round_order[:2] == [["baseline", "prune-structured"],
                                     ["prune-structured", "baseline"]]
    pruned = next(r for r in records if r.variant == "prune-structured")
    base = next(r for r in records if r.variant == "baseline")
    assert base.speedup == pytest.approx(1.0) and pruned.speedup > 0
    assert pruned.speedup_ci_low <= pruned.speedup <= pruned.speedup_ci_high
    assert pruned.params < base.params and pruned.onnx_bytes < base.onnx_bytes
    for r in records:  # the precision 'auto' chose on this machine is recorded
        assert r.train_precision == train_precision(FinetuneSpec())
        assert r.metric_ci_low <= r.metric_value <= r.metric_ci_high
    assert base.delta_p_value is None and base.delta_significant is None
    assert 0 < pruned.delta_p_value <= 1 and pruned.delta_test == "mcnemar-exact"
    assert isinstance(pruned.delta_significant, bool)  # set by BH once every cell was run
    for name in ("leaderboard.md", "leaderboard.csv", "report.html", "benchmark.json",
                 "manifest.json", "suite.yaml"):
        assert (summary.run_dir / name).exists(), name
    assert json.loads((summary.run_dir / "manifest.json").read_text())["status_counts"] == {"ok": 4}

    lines = (summary.run_dir / "records.jsonl").read_text().splitlines()
    again = run_suite(suite, tmp_path / "results", "r1")  # resume: nothing redone
    assert (again.run_dir / "records.jsonl").read_text().splitlines() == lines


def test_failing_cell_is_recorded_and_run_goes_on(tmp_path: Path, tiny_glue_dir: Path,
                                                  tiny_bert_dir: Path) -> None:
    # Validation cannot know how many layers a model has, so a student that keeps layer 5 of
    # the 2-layer tiny BERT fails in its stage, not in validation.
    methods = "[baseline, {name: distill, layers: [5]}]"
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods)
    summary = run_suite(suite, tmp_path / "results", "r1")
    records = RunStore(summary.run_dir).records()
    statuses = {(r.variant, r.status) for r in records}
    assert ("baseline", "ok") in statuses
    failed = [r for r in records if r.status == "failed"]
    assert len(failed) == 2 and all(r.stage == "build" and r.error for r in failed)
    assert summary.exit_code == 1
    assert "failed" in (summary.run_dir / "leaderboard.md").read_text()
    res = harness_cli("run", str(suite), "--results-dir", str(tmp_path / "results"),
                      "--run-id", "r1")  # resume: the failed cell is retried, fails again
    assert res.returncode == 1, res.stderr[-2000:]
    assert "2 failed" in res.stdout


def test_missing_task_data_is_skipped(tmp_path: Path, tiny_glue_dir: Path,
                                      tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir).read_text()
    path = tmp_path / "s.yaml"
    path.write_text(suite.replace("tasks: [mrpc]", "tasks: [cola]"))
    summary = run_suite(path, tmp_path / "results", "r1")
    (rec, *_) = RunStore(summary.run_dir).records()
    assert rec.status == "skipped" and "CoLA" in rec.error and summary.exit_code == 0


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, tiny_glue_dir: Path,
                                              tiny_bert_dir: Path) -> None:
    text = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir).read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("epochs: 1", "epochs: -1"))
    res = harness_cli("run", str(bad), "--results-dir", str(tmp_path / "results"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {bad}: finetune.epochs: Input should be greater than 0"
    assert not (tmp_path / "results").exists()
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace(f"data_dir: {tiny_glue_dir}", "data_dir: /no/such/dir"))
    res = harness_cli("run", str(missing), "--results-dir", str(tmp_path / "results"))
    assert res.returncode == 2 and "/no/such/dir" in res.stderr
    assert not (tmp_path / "results").exists()


def test_mnli_records_matched_and_mismatched_accuracy(tmp_path: Path, tiny_bert_dir: Path) -> None:
    labels = ["entailment", "neutral", "contradiction"]
    train = [mnli_row(i, f"premise {i}", f"hypothesis {i}", [labels[i % 3]] * 2) for i in range(12)]
    write_tsv(tmp_path, "MNLI", "train.tsv", [MNLI_TRAIN_HEAD, *train])
    # matched: every example 'entailment'; mismatched: every example 'contradiction', so a model
    # that predicts one class everywhere scores 1 on one split and 0 on the other
    for name, gold in (("dev_matched.tsv", "entailment"), ("dev_mismatched.tsv", "contradiction")):
        rows = [mnli_row(i, "same premise", "same hypothesis", [gold] * 6) for i in range(4)]
        write_tsv(tmp_path, "MNLI", name, [MNLI_DEV_HEAD, *rows])
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
name: mnli
data_dir: {tmp_path}
models: [{tiny_bert_dir}]
tasks: [mnli]
finetune: {{epochs: 1, batch_size: 4, max_seq_len: 16}}
timing: {{batch_sizes: [1], seq_lens: [16], warmup: 0, min_iterations: 2, min_seconds: 0.0}}
""")
    summary = run_suite(suite, tmp_path / "results", "m1")
    (record,) = RunStore(summary.run_dir).records()
    assert record.status == "ok", record.error
    assert record.n_eval == 4
    # identical inputs: one predicted class for all, so the two accuracies are 1-and-0 or 0-and-0
    assert {record.accuracy, record.accuracy_mismatched} in ({0.0, 1.0}, {0.0})
    assert record.accuracy_mismatched is not None


def test_zipped_size_is_computed_once_per_artifact(tmp_path: Path, tiny_glue_dir: Path,
                                                   tiny_bert_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Compressing each ONNX file for its zip size took a quarter of a warm quick rerun; a
    second run of the same suite reads the size from the cache."""
    import zlib

    import harness.stages as stages

    calls: list[Path] = []
    real = stages.zipped_size
    monkeypatch.setattr(stages, "zipped_size", lambda p: calls.append(p) or real(p))
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, "[baseline, int8-dynamic]")
    first = RunStore(run_suite(suite, tmp_path / "results", "r1").run_dir).records()
    assert len(calls) == 2  # one per variant's file, not per shape
    second = RunStore(run_suite(suite, tmp_path / "results", "r2").run_dir).records()
    assert len(calls) == 2
    sizes = {r.variant: r.onnx_zip_bytes for r in first}
    assert {r.variant: r.onnx_zip_bytes for r in second} == sizes
    assert sorted(sizes.values()) == sorted(len(zlib.compress(p.read_bytes(), 6)) for p in calls)


def test_every_built_in_method_runs_on_a_pair_pooling_baseline(tmp_path: Path,
                                                                 tiny_glue_dir: Path,
                                                                 tiny_bert_dir: Path) -> None:
    methods = ("[baseline, int8-dynamic, int8-static, prune-structured, "
               "{name: prune-unstructured, sparsity: 0.5}, distill]")
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir, methods)
    suite.write_text(suite.read_text().replace("finetune: {", "finetune: {pooling: pair, ")
                     .replace("batch_sizes: [1, 4]", "batch_sizes: [4]"))
    summary = run_suite(suite, tmp_path / "results", "r1")
    records = RunStore(summary.run_dir).records()
    assert summary.exit_code == 0 and len(records) == 6
    for r in records:  # exported, optimized or quantized, each graph agrees with its torch model
        assert r.status == "ok", (r.variant, r.error)
        assert r.parity_agreement is None or r.parity_agreement >= 0.9, (r.variant, r.parity_agreement)
        if not r.variant.startswith("int8"):  # float graphs, the ORT-optimized baseline too
            assert r.parity_max_abs_diff < 1e-4, (r.variant, r.parity_max_abs_diff)
