"""Collate records into leaderboards: deltas against the baseline, Pareto fronts, GLUE score."""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd

from harness.records import BASELINE, Record

log = logging.getLogger(__name__)

CELL = ["model", "task", "variant", "provider", "batch_size", "seq_len"]
BASE_KEY = ["model", "task", "provider", "batch_size", "seq_len"]
FRONT_KEY = ["task", "provider", "batch_size", "seq_len"]
SHAPE_KEY = ["model", "task", "batch_size", "seq_len"]
REFERENCE_PROVIDER = "cpu"  # `speedup_vs_cpu` compares other providers' rows with its baseline
_TABLE_DROP = ("samples_ms", "round_sizes", "round_order", "env", "session", "method_params")
_MB = 1e6
# columns the per-task sections leave out (in the heading, or in the CSV only)
SECTION_DROP = ("task", "metric_name", "metric_provider", "method", "onnx_bytes", "error",
                "stage", "speedup_ci_low", "speedup_ci_high")
ALWAYS_SHOWN = {*CELL, "metric", "latency_p50_ms", "pareto", "status"}
# shown inside the metric and Δ metric cells, not as columns of their own
FOLDED = ("metric_ci_low", "metric_ci_high", "delta_significant")
NOT_SIGNIFICANT = "n.s."
UNCERTAINTY_NOTE = (
    "[low, high] is the metric's 95% bootstrap interval over dev examples, for this trained "
    "model (retraining with another seed moves a score more: docs/baselines.md); p (Δ) is the "
    "paired test of the delta against the baseline on the same examples (exact McNemar for "
    "accuracy, paired permutation otherwise); a Δ marked n.s. is not significant after "
    "Benjamini-Hochberg (FDR 5%) over the run's (model, task, variant) tests.")

# leaderboard column -> header shown in Markdown and HTML tables
DISPLAY = {
    "model": "model", "task": "task", "variant": "variant", "provider": "provider",
    "batch_size": "batch", "seq_len": "seq", "precision": "precision",
    "metric_name": "metric name", "metric_provider": "metric by", "metric": "metric",
    "metric_delta": "Δ metric", "latency_p50_ms": "p50 ms", "latency_p90_ms": "p90 ms",
    "speedup": "speedup ×", "speedup_vs_cpu": "× cpu baseline",
    "throughput_per_s": "items/s", "params": "params",
    "nonzero_params": "nonzero", "onnx_mb": "ONNX MB", "onnx_zip_mb": "zip MB",
    "size_ratio": "size ×", "gflops_per_s": "GFLOP/s", "efficiency": "efficiency",
    "unstable": "unstable", "pareto": "Pareto", "status": "status",
    "glue_score": "GLUE score", "n_tasks": "n tasks", "delta_p": "p (Δ)",
}
# the columns of leaderboard(), in order
COLUMNS = [
    *CELL, "precision", "metric_name", "metric_provider", "metric", "metric_ci_low",
    "metric_ci_high", "metric_delta", "delta_p", "delta_significant", "latency_p50_ms",
    "latency_p90_ms", "speedup", "speedup_ci_low", "speedup_ci_high", "speedup_vs_cpu",
    "throughput_per_s", "params", "nonzero_params", "onnx_mb", "onnx_zip_mb", "size_ratio",
    "gflops_per_s", "efficiency", "unstable", "pareto", "status", "method",
    "onnx_bytes", "error", "stage",
]


def records_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One flat row per record; raw samples, env and session dicts are left out."""
    fields = [f for f in Record.model_fields if f not in _TABLE_DROP]
    rows = [r.model_dump(exclude=set(_TABLE_DROP)) for r in records]
    df = pd.DataFrame(rows, columns=fields)
    if df.empty:
        return df
    df["variant"] = df["variant"].where(df["variant"].astype(bool), df["method"])
    df["notes"] = df["notes"].map(lambda notes: "; ".join(notes))
    return df


def _is_baseline(df: pd.DataFrame) -> pd.Series:
    return (df["method"] == BASELINE) | (df["variant"] == BASELINE)


def _ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    num, den = num.astype("float64"), den.astype("float64")
    return num / den.where(den > 0)


def leaderboard(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with absolute numbers, columns relative to the baseline, Pareto flag."""
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df = df.drop_duplicates(CELL, keep="last")
    out = pd.DataFrame({c: df[c] for c in [*CELL, "method", "status", "precision",
                                           "metric_name", "metric_provider"]})
    out["metric"] = df["metric_value"].astype("float64") * 100
    out["metric_ci_low"] = df["metric_ci_low"].astype("float64") * 100
    out["metric_ci_high"] = df["metric_ci_high"].astype("float64") * 100
    out["delta_p"] = df["delta_p_value"].astype("float64")
    out["delta_significant"] = df["delta_significant"].astype("boolean")
    out["latency_p50_ms"] = df["latency_ms_p50"].astype("float64")
    out["latency_p90_ms"] = df["latency_ms_p90"].astype("float64")
    for col in ("throughput_per_s", "params", "nonzero_params", "gflops_per_s", "efficiency"):
        out[col] = df[col].astype("float64")
    out["onnx_mb"] = df["onnx_bytes"].astype("float64") / _MB
    out["onnx_zip_mb"] = df["onnx_zip_bytes"].astype("float64") / _MB
    out["onnx_bytes"] = df["onnx_bytes"].astype("float64")
    out["unstable"] = df["unstable"].astype("boolean")
    out["error"], out["stage"] = df["error"], df["stage"]
    out["machine"] = df["machine"] if "machine" in df else None
    for col in ("speedup", "speedup_ci_low", "speedup_ci_high"):
        out[f"_rec_{col}"] = df[col].astype("float64") if col in df else np.nan
    out = _add_relative(out)
    out["pareto"] = pareto_front(out)
    out = out.assign(_base=~_is_baseline(out)).sort_values(
        [*FRONT_KEY, "model", "_base", "variant"], kind="stable")
    return out[COLUMNS].reset_index(drop=True)


def _add_relative(out: pd.DataFrame) -> pd.DataFrame:
    """metric delta (points), speedup, size ratio (bytes / baseline's).

    The speedup is the record's own, paired over the interleaved rounds it shared with its
    baseline (with its 95% interval); records without one (timed before rounds) get baseline
    p50 / p50, and only when both timings come from the same machine fingerprint (records
    timed on other nodes of a cluster get none)."""
    base = out[_is_baseline(out) & (out["status"] == "ok")]
    cols = [*BASE_KEY, "metric", "latency_p50_ms", "onnx_bytes", "machine"]
    base = base[cols].drop_duplicates(BASE_KEY)
    base = base.rename(columns={"metric": "_bm", "latency_p50_ms": "_bp50", "onnx_bytes": "_bb",
                                "machine": "_bmachine"})
    merged = out.merge(base, on=BASE_KEY, how="left")
    merged.index = out.index
    same_machine = merged["_bmachine"].fillna("") == merged["machine"].fillna("")
    out["metric_delta"] = merged["metric"] - merged["_bm"]
    unpaired = _ratio(merged["_bp50"], merged["latency_p50_ms"]).where(same_machine)
    paired = out["_rec_speedup"].notna()
    out["speedup"] = out["_rec_speedup"].where(paired, unpaired)
    out["speedup_ci_low"] = out.pop("_rec_speedup_ci_low")
    out["speedup_ci_high"] = out.pop("_rec_speedup_ci_high")
    out = out.drop(columns="_rec_speedup")
    out["speedup_vs_cpu"] = _speedup_vs_cpu(out, base)
    out["size_ratio"] = _ratio(merged["onnx_bytes"], merged["_bb"])
    ok = out["status"] == "ok"
    for col in ("metric_delta", "delta_p", "speedup", "speedup_ci_low", "speedup_ci_high",
                "speedup_vs_cpu", "size_ratio"):
        out.loc[~ok, col] = np.nan
    return out


def _speedup_vs_cpu(out: pd.DataFrame, base: pd.DataFrame) -> pd.Series:
    """Other providers' rows against the onnxruntime CPU baseline of the same model, task,
    shape and machine (e.g. OpenVINO bf16 vs onnxruntime fp32); empty on the CPU's rows."""
    ref = base[base["provider"] == REFERENCE_PROVIDER][[*SHAPE_KEY, "_bp50", "_bmachine"]]
    merged = out.merge(ref, on=SHAPE_KEY, how="left")
    merged.index = out.index
    usable = ((merged["_bmachine"].fillna("") == merged["machine"].fillna(""))
              & (out["provider"] != REFERENCE_PROVIDER))
    return _ratio(merged["_bp50"], merged["latency_p50_ms"]).where(usable)


def pareto_front(lb: pd.DataFrame) -> pd.Series:
    """True for ok rows no other ok row beats on both metric (higher) and p50 (lower).

    Fronts are per (task, provider, batch size, sequence length), across models and variants.
    """
    flags = pd.Series(False, index=lb.index)
    usable = lb[(lb["status"] == "ok") & lb["metric"].notna() & lb["latency_p50_ms"].notna()]
    for _, group in usable.groupby(FRONT_KEY, sort=False):
        metric = group["metric"].to_numpy()
        p50 = group["latency_p50_ms"].to_numpy()
        for idx, m, t in zip(group.index, metric, p50):
            dominated = (metric >= m) & (p50 <= t) & ((metric > m) | (p50 < t))
            flags[idx] = not dominated.any()
    return flags


def _glue_task(task: str, split: object) -> str | None:
    """MNLI counts once, with its matched dev set; mismatched rows are left out."""
    key = task.replace("-", "").replace("_", "").lower()
    if key in ("mnlimm", "mnlimismatched") or (
            key.startswith("mnli") and isinstance(split, str) and "mismatched" in split):
        return None
    return "mnli" if key in ("mnlim", "mnlimatched") else task


def glue_score(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, variant, metric runtime): mean main metric (points) over the tasks with ok
    rows, and which. Rows measured on different runtimes (onnxruntime fp32, OpenVINO bf16)
    can differ, so each runtime gets its own score."""
    cols = ["model", "variant", "metric_provider", "glue_score", "n_tasks", "tasks"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    points = (df["metric_value"].astype("float64") * 100 if "metric_value" in df
              else df["metric"].astype("float64"))
    split = df["eval_split"] if "eval_split" in df else pd.Series(None, index=df.index)
    runtime = df["metric_provider"] if "metric_provider" in df else pd.Series(None, index=df.index)
    rows = pd.DataFrame({
        "model": df["model"], "variant": df["variant"], "points": points,
        "metric_provider": runtime.fillna("–"),
        "task": [_glue_task(t, s) for t, s in zip(df["task"], split)],
    })
    rows = rows[(df["status"] == "ok") & rows["points"].notna() & rows["task"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    # on one runtime the metric does not depend on batch or sequence length: one per task
    keys = ["model", "variant", "metric_provider"]
    per_task = rows.groupby([*keys, "task"], sort=True)["points"].first()
    grouped = per_task.reset_index().groupby(keys, sort=True)
    out = grouped.agg(glue_score=("points", "mean"), n_tasks=("task", "size"),
                      tasks=("task", lambda t: ", ".join(sorted(t))))
    return out.reset_index()[cols]


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """The failed and skipped cells with the stage and reason."""
    cols = [*CELL, "status", "stage", "error"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    return df.loc[df["status"] != "ok", cols].reset_index(drop=True)
