"""One self-contained report.html: inline CSS, PNG data URIs, every piece of text escaped."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from harness.publish import plots
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
from harness.results_store import STATUSES, run_summary

log = logging.getLogger(__name__)

REPORT = "report.html"
# no scripts, no fetches: only inline styles and data: images may load
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
# the report's stylesheet; the trend site (harness.site) builds on it
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
 background:#f6f7f9}
main{max-width:1600px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;
 padding-bottom:4px}h3{font-size:15px;margin:20px 0 6px}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:12px 0}
dl.meta dt{color:#666}dl.meta dd{margin:0;font-family:ui-monospace,Menlo,monospace}
.counts span{display:inline-block;padding:1px 8px;border-radius:10px;margin-right:6px;
 font-weight:600}
.c-ok{background:#e3f4e6;color:#17692c}.c-failed{background:#fde5e5;color:#a4161a}
.c-skipped{background:#fff3d6;color:#8a5a00}
.scroll{overflow-x:auto;background:#fff;border:1px solid #e2e4e8;border-radius:6px}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #eef0f3;text-align:right;white-space:nowrap}
th{background:#f0f2f5;position:sticky;top:0}
td.t,th.t,th.err{text-align:left}td.err{white-space:pre-wrap;text-align:left;max-width:640px}
tr.front td{background:#fff8e1}tr.failed td{color:#a4161a}tr.skipped td{color:#8a5a00}
tr.unstable td:first-child{border-left:3px solid #e69f00}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #e2e4e8;border-radius:6px;padding:8px}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:12px;color:#555}
p.note{color:#555;font-size:12.5px;margin:4px 0 10px}nav a{margin-right:12px}
"""
_TEXT_COLS = {"model", "variant", "provider", "metric name", "status", "stage", "tasks", "task"}


def _table(shown: pd.DataFrame, classes: Iterable[str] | None = None) -> str:
    """A display frame (strings) as an HTML table; every header and cell escaped."""
    if shown.empty:
        return "<p class='note'>none</p>"
    cls = [("t" if c in _TEXT_COLS else "err" if c == "error" else "") for c in shown.columns]
    head = "".join(f"<th class='{k}'>{escape(str(c))}</th>" for c, k in zip(shown.columns, cls))
    body = []
    for row_class, values in zip(classes or [""] * len(shown), shown.itertuples(index=False)):
        cells = "".join(f"<td class='{k}'>{escape(str(v))}</td>" for v, k in zip(values, cls))
        body.append(f"<tr class='{row_class}'>{cells}</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _row_classes(rows: pd.DataFrame) -> list[str]:
    out = []
    for status, front, unstable in zip(rows["status"], rows["pareto"], rows["unstable"]):
        names = [status if status != "ok" else ""]
        names += ["front"] if bool(front) else []
        names += ["unstable"] if unstable is not pd.NA and bool(unstable) else []
        out.append(" ".join(n for n in names if n))
    return out


def _metadata(manifest: dict[str, Any], records: list[Record]) -> str:
    info = run_summary(manifest)
    counts = Counter(r.status for r in records)
    items = [("suite", info["suite"]), ("run id", info["run_id"]), ("git sha", info["git_sha"]),
             ("machine", info["machine"]), ("started", info["started"]),
             ("finished", info["finished"])]
    rows = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v if v is not None else '–'))}</dd>"
                   for k, v in items)
    badges = "".join(f"<span class='c-{s}'>{counts.get(s, 0)} {s}</span>" for s in STATUSES)
    return f"<dl class='meta'>{rows}<dt>cells</dt><dd class='counts'>{badges}</dd></dl>"


def _figure(uri: str, caption: str) -> str:
    cap = escape(caption)
    return f"<figure><img src='{escape(uri)}' alt='{cap}'><figcaption>{cap}</figcaption></figure>"


def _plots(lb: pd.DataFrame) -> str:
    scatters = plots.accuracy_latency(lb)
    parts = ["<h2 id='plots'>Plots</h2>",
             "<p class='note'>Accuracy against latency per task and timing setting; the dashed "
             "line joins the Pareto front (circled).</p>",
             "<div class='grid'>",
             *(_figure(uri, f"metric vs latency: {title}") for title, uri in scatters), "</div>"]
    summary = [(plots.speedup_by_method(lb), "speedup over the baseline per method"),
               (plots.size_by_method(lb), "size relative to the baseline per method")]
    parts += ["<div class='grid'>", *(_figure(u, c) for u, c in summary if u), "</div>"]
    return "\n".join(parts) if scatters or any(u for u, _ in summary) else ""


def _tables(lb: pd.DataFrame, glue: pd.DataFrame, fails: pd.DataFrame) -> str:
    parts = ["<h2 id='leaderboard'>Leaderboard</h2>",
             "<p class='note'>metric in points (×100). Δ metric, speedup (baseline p50 / p50, "
             "paired over interleaved rounds) and size × (ONNX bytes / baseline's) are "
             "relative to the baseline of the same model, task, provider, batch and sequence "
             "length. Highlighted rows (★) are on the Pareto front; an orange edge marks "
             "unstable timings. Each row's metric is measured on the runtime and precision it "
             "is timed with; × cpu baseline compares other providers' rows with the "
             "onnxruntime CPU baseline. "
             f"{escape(UNCERTAINTY_NOTE)}</p>"]
    for _, rows in lb.groupby("task", sort=True):
        shown = display_table(rows, SECTION_DROP, compact=True)
        parts += [f"<h3>{escape(task_heading(rows))}</h3>", _table(shown, _row_classes(rows))]
    parts += ["<h2 id='glue'>GLUE score</h2>",
              "<p class='note'>Mean main metric (points) over the tasks listed; scores over "
              "different task sets are not comparable. MNLI counts once (matched).</p>",
              _table(display_table(glue)),
              "<h2 id='failures'>Failed and skipped cells</h2>",
              _table(display_table(fails), [str(s) for s in fails["status"]])]
    return "\n".join(parts)


def render_html(records: list[Record], manifest: dict[str, Any]) -> str:
    """The report page as one string."""
    df = records_frame(records)
    lb = leaderboard(df)
    suite = run_summary(manifest)["suite"] or "harness"
    title = f"{suite} · benchmark report"
    nav = ("<nav><a href='#plots'>plots</a><a href='#leaderboard'>leaderboard</a>"
           "<a href='#glue'>GLUE score</a><a href='#failures'>failed and skipped</a></nav>")
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>", _metadata(manifest, records), nav,
        _plots(lb), _tables(lb, glue_score(df), failures(df)),
        "</main></body></html>", ""])


def write_report(records: Iterable[Record], run_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write run_dir/report.html and return its path."""
    records = list(records)
    path = run_dir / REPORT
    path.write_text(render_html(records, manifest), encoding="utf-8")
    log.info("wrote %s", path)
    return path
