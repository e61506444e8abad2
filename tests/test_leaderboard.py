"""Leaderboard collation on hand-built records: relative columns, Pareto fronts, GLUE score."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.publish.markdown import write_tables
from harness.publish.tables import glue_score, leaderboard, records_frame
from harness.records import Record


def rec(variant: str = "baseline", *, model: str = "m", task: str = "sst2",
        metric: float | None = 0.9, p50: float | None = 10.0, onnx: int = 100_000_000,
        provider: str = "cpu", status: str = "ok", **extra: object) -> Record:
    fields = dict(
        run_id="r1", model=model, task=task, method=variant.split("(")[0], variant=variant,
        provider=provider, batch_size=1, seq_len=128, status=status,
        metric_name="accuracy", metric_value=metric, latency_ms_p50=p50,
        latency_ms_p90=None if p50 is None else p50 * 1.2, onnx_bytes=onnx,
        onnx_zip_bytes=onnx // 2, params=1000, nonzero_params=1000,
        samples_ms=[1.0, 2.0], env={"cpu": "x"})
    return Record(**(fields | extra))


def row(lb: pd.DataFrame, variant: str, **match: object) -> pd.Series:
    sel = lb["variant"] == variant
    for col, value in match.items():
        sel &= lb[col] == value
    assert sel.sum() == 1, (variant, match)
    return lb[sel].iloc[0]


def test_records_frame_is_flat_without_samples_or_env() -> None:
    df = records_frame([rec(), rec("int8-dynamic", notes=["a", "b"])])
    assert "samples_ms" not in df and "env" not in df
    assert list(df["notes"]) == ["", "a; b"]


def test_variant_falls_back_to_method() -> None:
    r = rec().model_copy(update={"variant": "", "method": "baseline"})
    assert records_frame([r])["variant"].tolist() == ["baseline"]


def test_relative_columns_against_same_setting_baseline() -> None:
    records = [
        rec(metric=0.90, p50=10.0, onnx=100_000_000),
        rec("int8-dynamic", metric=0.88, p50=5.0, onnx=25_000_000),
        rec("prune(sparsity=0.5)", metric=0.915, p50=8.0),
        rec("distill", status="failed", metric=None, p50=None, error="boom"),
        rec("int8-dynamic", provider="cuda", p50=1.0),  # no cuda baseline
    ]
    lb = leaderboard(records_frame(records))
    int8 = row(lb, "int8-dynamic", provider="cpu")
    assert int8["speedup"] == pytest.approx(2.0)
    assert int8["metric"] == pytest.approx(88.0)
    assert int8["metric_delta"] == pytest.approx(-2.0)
    assert int8["size_ratio"] == pytest.approx(0.25)
    assert int8["onnx_mb"] == pytest.approx(25.0)
    assert row(lb, "prune(sparsity=0.5)")["metric_delta"] == pytest.approx(1.5)
    assert row(lb, "prune(sparsity=0.5)")["speedup"] == pytest.approx(1.25)
    base = row(lb, "baseline")
    assert (base["speedup"], base["metric_delta"], base["size_ratio"]) == (1.0, 0.0, 1.0)
    assert math.isnan(row(lb, "distill")["speedup"])
    assert math.isnan(row(lb, "int8-dynamic", provider="cuda")["speedup"])
    assert lb["variant"].iloc[0] == "baseline"  # baseline first within its setting


def test_failed_baseline_gives_no_relative_columns() -> None:
    lb = leaderboard(records_frame([rec(status="failed", metric=None, p50=None),
                                    rec("int8-dynamic", p50=5.0)]))
    assert math.isnan(row(lb, "int8-dynamic")["speedup"])


def test_pareto_front_membership() -> None:
    records = [
        rec("a", metric=0.90, p50=10.0),   # best metric: front
        rec("b", metric=0.88, p50=5.0),    # fastest: front
        rec("c", metric=0.85, p50=9.0),    # worse and slower than b
        rec("d", metric=0.88, p50=6.0),    # same metric as b, slower
        rec("e", metric=0.89, p50=7.0),    # between a and b: front
        rec("f", status="failed", metric=None, p50=None),
        rec("g", metric=0.50, p50=1.0, task="rte"),  # alone in its task: front
        rec("h", metric=0.99, p50=0.5, provider="cuda"),  # other provider, own front
    ]
    lb = leaderboard(records_frame(records))
    front = set(lb.loc[lb["pareto"], "variant"])
    assert front == {"a", "b", "e", "g", "h"}


def test_glue_score_means_and_coverage() -> None:
    records = [
        rec(task="sst2", metric=0.90), rec(task="sst2", metric=0.90, provider="cuda"),
        rec(task="mrpc", metric=0.80),
        rec(task="mnli", metric=0.70, eval_split="validation_matched"),
        rec(task="mnli", metric=0.10, eval_split="validation_mismatched", seq_len=64),
        rec(task="mnli-mm", metric=0.20),
        rec(task="cola", status="failed", metric=None, p50=None),
        rec("int8-dynamic", task="sst2", metric=0.86),
    ]
    glue = glue_score(records_frame(records)).set_index("variant")
    assert glue.loc["baseline", "glue_score"] == pytest.approx(80.0)
    assert glue.loc["baseline", "n_tasks"] == 3
    assert glue.loc["baseline", "tasks"] == "mnli, mrpc, sst2"
    assert glue.loc["int8-dynamic", "glue_score"] == pytest.approx(86.0)
    assert glue.loc["int8-dynamic", "tasks"] == "sst2"


def test_glue_score_accepts_leaderboard_frame() -> None:
    df = records_frame([rec(task="sst2", metric=0.9), rec(task="rte", metric=0.6)])
    assert glue_score(leaderboard(df))["glue_score"].tolist() == pytest.approx([75.0])


def test_write_tables_sections_and_csv(tmp_path) -> None:
    records = [rec(task="sst2"), rec("int8-dynamic", task="sst2", p50=5.0),
               rec(task="rte", metric=0.6),
               rec("distill", task="rte", status="skipped", metric=None, p50=None,
                   stage="compress", error="needs | a teacher")]
    md_path, csv_path = write_tables(records, tmp_path)
    md = md_path.read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## rte · accuracy", "## sst2 · accuracy", "## GLUE score",
                        "## Failed and skipped cells"]
    assert "needs \\| a teacher" in md  # pipes escaped inside a cell
    csv = pd.read_csv(csv_path)
    assert len(csv) == 4
    assert {"metric_delta", "speedup", "size_ratio", "pareto"} <= set(csv.columns)
    assert csv.loc[csv["variant"] == "int8-dynamic", "speedup"].item() == pytest.approx(2.0)


def test_empty_records() -> None:
    df = records_frame([])
    assert leaderboard(df).empty and glue_score(df).empty


def test_history_and_all_records(tmp_path) -> None:
    import json

    from harness.history import all_records, history_frame
    from harness.store import RunStore

    first = RunStore.open(tmp_path, "run1")
    for r in (rec(), rec("int8-dynamic", status="failed", metric=None, p50=None)):
        first.append(r.model_copy(update={"run_id": "run1"}))
    (first.dir / "manifest.json").write_text(json.dumps(  # written before schema_version 1
        {"run_id": "run1", "suite": "demo", "git_sha": "abc", "machine": "fp",
         "started_at": "2025-01-01T00:00:00Z", "counts": {"ok": 1, "failed": 1}}))
    second = RunStore.open(tmp_path, "run2")  # crashed: no manifest counts, a v1 record
    legacy = rec().model_dump() | {"schema_version": 1, "run_id": "run2", "samples": [3.0]}
    del legacy["samples_ms"], legacy["variant"]
    second.records_path.write_text(json.dumps(legacy) + "\n")
    hist = history_frame(tmp_path).set_index("run_id")
    assert hist.loc["run1", ["suite", "git_sha", "ok", "failed", "skipped"]].tolist() == [
        "demo", "abc", 1, 1, 0]  # the missing count is counted from the records
    assert hist.loc["run2", ["ok", "failed", "skipped"]].tolist() == [1, 0, 0]
    records = all_records(tmp_path)
    assert sorted(records["run_dir"]) == ["run1", "run1", "run2"]
    assert records.loc[records["run_dir"] == "run2", "variant"].item() == "baseline"


def test_speedup_needs_the_same_machine() -> None:
    records = [rec(p50=10.0, machine="node-a"), rec("int8-dynamic", p50=5.0, machine="node-b"),
               rec("distill", p50=5.0, machine="node-a")]
    lb = leaderboard(records_frame(records))
    assert pd.isna(row(lb, "int8-dynamic")["speedup"])
    assert row(lb, "int8-dynamic")["metric_delta"] == pytest.approx(0.0)
    assert row(lb, "distill")["speedup"] == pytest.approx(2.0)


def test_tables_show_the_interval_and_mark_a_non_significant_delta(tmp_path) -> None:
    records = [
        rec(metric=0.80, metric_ci_low=0.76, metric_ci_high=0.84),
        rec("int8-dynamic", metric=0.795, metric_ci_low=0.755, metric_ci_high=0.835,
            delta_p_value=0.62, delta_test="mcnemar-exact", delta_significant=False),
        rec("prune(sparsity=0.9)", metric=0.70, metric_ci_low=0.655, metric_ci_high=0.745,
            delta_p_value=1e-5, delta_test="mcnemar-exact", delta_significant=True),
    ]
    lb = leaderboard(records_frame(records))
    assert row(lb, "baseline")["metric_ci_low"] == pytest.approx(76.0)
    md_path, csv_path = write_tables(records, tmp_path)
    section = md_path.read_text().split("## GLUE score")[0]
    table = [line for line in section.splitlines() if line.startswith("| m")]
    by_variant = {line.split("|")[2].strip(): line for line in table}
    assert "80.00 [76.00, 84.00]" in by_variant["baseline"]
    assert "-0.50 n.s." in by_variant["int8-dynamic"]
    assert "-10.00 n.s." not in by_variant["prune(sparsity=0.9)"]
    assert "-10.00" in by_variant["prune(sparsity=0.9)"]
    assert "n.s." in md_path.read_text().split("\n\n")[1]  # the note says what n.s. means
    csv = pd.read_csv(csv_path)
    assert csv.loc[csv["variant"] == "int8-dynamic", "delta_significant"].item() == False  # noqa: E712


def test_openvino_rows_against_their_own_and_the_cpu_baseline() -> None:
    ov = {"provider": "openvino", "metric_provider": "openvino"}
    records = [
        rec(metric=0.80, p50=300.0, precision="fp32", metric_provider="cpu"),
        rec(metric=0.80, p50=250.0, precision="fp32", **ov),
        rec("bf16", metric=0.81, p50=75.0, precision="bf16", **ov),
        rec("bf16", status="skipped", metric=None, p50=None, error="no bf16 on cpu"),
    ]
    lb = leaderboard(records_frame(records))
    bf16 = row(lb, "bf16", provider="openvino")
    assert bf16["speedup"] == pytest.approx(250 / 75)  # against OpenVINO's fp32 baseline
    assert bf16["speedup_vs_cpu"] == pytest.approx(4.0)  # against onnxruntime's fp32 baseline
    assert bf16["metric_delta"] == pytest.approx(1.0)
    assert (bf16["precision"], bf16["metric_provider"]) == ("bf16", "openvino")
    assert row(lb, "baseline", provider="openvino")["speedup_vs_cpu"] == pytest.approx(1.2)
    assert math.isnan(row(lb, "baseline", provider="cpu")["speedup_vs_cpu"])
    assert math.isnan(row(lb, "bf16", provider="cpu")["speedup_vs_cpu"])
    glue = glue_score(records_frame(records)).set_index(["variant", "metric_provider"])
    assert glue.loc[("bf16", "openvino"), "glue_score"] == pytest.approx(81.0)
    assert glue.loc[("baseline", "cpu"), "glue_score"] == pytest.approx(80.0)
