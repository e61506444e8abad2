"""GitHub Markdown tables of a leaderboard: one section per task, GLUE score, failures."""
from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from harness.publish.fmt import display_table, task_heading
from harness.publish.tables import (
    SECTION_DROP,
    UNCERTAINTY_NOTE,
    failures,
    glue_score,
    leaderboard,
    records_frame,
)
from harness.records import Record

log = logging.getLogger(__name__)
_MAX_CELL = 300


def md_cell(text: str) -> str:
    """One table cell: a single line, no pipes, no raw HTML."""
    text = " ".join(str(text).split())
    if len(text) > _MAX_CELL:
        text = text[: _MAX_CELL - 1] + "…"
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|"))


def md_table(frame: pd.DataFrame) -> str:
    """A string frame as a GitHub pipe table, every cell escaped."""
    if frame.empty:
        return "_none_"
    clean = frame.map(md_cell)
    clean.columns = [md_cell(c) for c in frame.columns]
    return clean.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def render_markdown(lb: pd.DataFrame, glue: pd.DataFrame, fails: pd.DataFrame) -> str:
    """The whole leaderboard.md text."""
    parts = ["# Leaderboard", "",
             "metric in points (×100); Δ metric, speedup (baseline p50 / p50, paired over "
             "interleaved rounds) and size (ONNX bytes / baseline's) are relative to the "
             "baseline of the same model, task, provider, batch and sequence length; ★ marks "
             "the accuracy/latency Pareto front of each task and timing setting. Each row's "
             "metric is measured on the runtime and precision it is timed with "
             "(`metric_provider` in the CSV); × cpu baseline compares other providers' rows "
             "with the onnxruntime CPU baseline. " + UNCERTAINTY_NOTE, ""]
    for _, rows in lb.groupby("task", sort=True):
        shown = display_table(rows, SECTION_DROP, compact=True)
        parts += [f"## {md_cell(task_heading(rows))}", "", md_table(shown), ""]
    parts += ["## GLUE score", "",
              "Mean main metric (points) over the tasks listed; scores over different task "
              "sets are not comparable. MNLI counts once (matched).", "",
              md_table(display_table(glue)), ""]
    parts += ["## Failed and skipped cells", "", md_table(display_table(fails)), ""]
    return "\n".join(parts)


def write_tables(records: Iterable[Record], run_dir: Path) -> tuple[Path, Path]:
    """Write leaderboard.md (sections per task, GLUE score, failures) and leaderboard.csv."""
    df = records_frame(records)
    lb = leaderboard(df)
    csv_path, md_path = run_dir / "leaderboard.csv", run_dir / "leaderboard.md"
    lb.to_csv(csv_path, index=False)
    md_path.write_text(render_markdown(lb, glue_score(df), failures(df)), encoding="utf-8")
    log.info("wrote %s and %s (%d rows)", md_path, csv_path, len(lb))
    return md_path, csv_path
