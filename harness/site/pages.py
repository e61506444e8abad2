"""The site's pages: index (runs, since last week, latest leaderboard), trends, comparisons."""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.compare import cell_row
from harness.publish.fmt import display_table, task_heading
from harness.publish.tables import SECTION_DROP, leaderboard
from harness.results_store import STATUSES
from harness.site import svg
from harness.site.html import Html, badges, link, page, slug, table
from harness.site.html import text as _esc
from harness.site.trends import CellSeries
from harness.site.weekly import Weekly

KEY_HEADER = ["model", "task", "variant", "provider", "batch", "seq"]


def task_file(task: str) -> str:
    return f"trend/{slug(task)}.html"


def compare_file(weekly: Weekly) -> str:
    return f"compare/{slug(weekly.latest)}__vs__{slug(str(weekly.baseline))}"


def _short(sha: object) -> str:
    return str(sha)[:10] if sha else "–"


def _num(value: object, digits: int = 2) -> str:
    return "–" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def _flag(value: object) -> bool:
    """True for a set flag; None and NaN (field absent in older records) are False."""
    return value is not None and not pd.isna(value) and bool(value)  # type: ignore[arg-type]


def _interval(low: object, high: object) -> str:
    return "–" if low is None or high is None or pd.isna(low) or pd.isna(high) else (
        f"{float(low):.2f}–{float(high):.2f}")  # type: ignore[arg-type]


# ---- index -------------------------------------------------------------------------------

def _runs_table(runs: pd.DataFrame, reports: set[str]) -> str:
    rows = []
    for _, r in runs.iloc[::-1].iterrows():
        run = str(r["run_id"])
        name = link(f"runs/{slug(run)}/report.html", run) if run in reports else run
        counts = {s: int(r[s]) if pd.notna(r[s]) else 0 for s in STATUSES}
        rows.append([name, r["suite"], r["started"], r["finished"], _short(r["git_sha"]),
                     r["machine"], badges(counts)])
    return table(["run", "suite", "started", "finished", "git sha", "machine", "cells"], rows)


def _weekly_section(weekly: Weekly | None, pages: dict[str, str]) -> list[str]:
    out = ["<h2 id='week'>Since last week</h2>"]
    if weekly is None:
        return out + ["<p class='note'>no runs</p>"]
    if weekly.baseline is None or weekly.comparison is None:
        return out + [f"<p class='note'>{_esc(weekly.note)}</p>"]
    target = compare_file(weekly)
    thresholds = ", ".join(t.text for t in weekly.comparison.thresholds)
    out.append(f"<p class='note'>Latest run {_esc(weekly.latest)} against "
               f"{_esc(weekly.baseline)}: cells beyond a threshold ({_esc(thresholds)}) either "
               f"way, significant where the run has samples or predictions to test. "
               f"{_esc(weekly.note)} Full comparison: {link(target + '.html', 'HTML')}, "
               f"{link(target + '.md', 'Markdown')}.</p>")
    rows = [[_cell_link(c.key, pages), *c.key[1:], c.what, c.change,
             Html(f"<span class='{c.direction}'>{c.direction}</span>"),
             "timing flagged unstable: do not trust" if c.key in weekly.unstable
             and c.what != "metric" else ""] for c in weekly.changes]
    return out + [table([*KEY_HEADER, "measure", "change", "direction", "note"], rows)]


def _cell_link(key: tuple, pages: dict[str, str]) -> Html | str:
    """The model name, linking to the cell's section on its task's trend page."""
    if key[1] not in pages:
        return str(key[0])
    return link(f"{pages[key[1]]}#{cell_anchor(key)}", key[0])


def cell_anchor(key: tuple) -> str:
    return slug("|".join(map(str, key)))


def _leaderboard(latest: pd.DataFrame) -> list[str]:
    lb = leaderboard(latest)
    out = []
    for _, rows in lb.groupby("task", sort=True):
        shown = display_table(rows, SECTION_DROP, compact=True)
        out += [f"<h3>{_esc(task_heading(rows))}</h3>",
                table(list(shown.columns), shown.itertuples(index=False))]
    return out or ["<p class='note'>no records</p>"]


def _changepoint_list(series: Sequence[CellSeries], pages: dict[str, str]) -> str:
    rows = []
    for s in series:
        for what, cps in (("p50 latency", s.latency_cps), ("metric", s.metric_cps)):
            for cp in cps:
                run = s.table.loc[s.table["run_index"] == cp.index].iloc[0]
                change = (f"{cp.before:.2f} → {cp.after:.2f} ms ({cp.relative * 100:+.1f}%)"
                          if what == "p50 latency" else
                          f"{cp.before:.2f} → {cp.after:.2f} points")
                rows.append([_cell_link(s.key, pages), *s.key[1:], what, run["run_id"],
                             _short(run["git_sha"]), change])
    return table([*KEY_HEADER, "measure", "from run", "git sha", "change"], rows)


def index_page(runs: pd.DataFrame, latest: pd.DataFrame, weekly: Weekly | None,
               series: Sequence[CellSeries], pages: dict[str, str], reports: set[str],
               store_note: str) -> str:
    """index.html: runs with status counts, since last week, change points, latest board."""
    suites = ", ".join(sorted({str(s) for s in runs["suite"].dropna()})) or "harness"
    latest_id = str(runs["run_id"].iloc[-1]) if len(runs) else None
    nav = [("#week", "since last week"), ("#changes", "change points"),
           ("#leaderboard", "latest leaderboard"), ("#runs", "runs"),
           *((href, f"trend: {task}") for task, href in sorted(pages.items()))]
    report = (f" Full report: {link(f'runs/{slug(latest_id)}/report.html', 'report.html')}."
              if latest_id in reports else "")
    body = [f"<p class='note'>{len(runs)} runs; {_esc(store_note)}</p>",
            *_weekly_section(weekly, pages),
            "<h2 id='changes'>Change points</h2>",
            "<p class='note'>Where a cell's p50 latency or metric moved to a new level and "
            "stayed there (at least three runs on each side; PELT with a robust cost).</p>",
            _changepoint_list(series, pages),
            "<h2 id='leaderboard'>Latest leaderboard</h2>",
            f"<p class='note'>Run {_esc(latest_id)}. Metric in points; speedup and Δ against "
            f"the baseline of the same model, task and shape.{report}</p>",
            *_leaderboard(latest),
            "<h2 id='runs'>Runs</h2>", _runs_table(runs, reports)]
    return page(f"{suites} · nightly history", body, nav)


# ---- trend pages -------------------------------------------------------------------------

def _tip(row: pd.Series, value: str) -> str:
    return (f"{row['run_id']} · {str(row['started'] or '')[:16]} · git {_short(row['git_sha'])}"
            f"\n{value}")


def _latency_text(r: pd.Series) -> str:
    unstable = " · timing flagged unstable" if _flag(r.get("unstable")) else ""
    return f"p50 {_num(r['p50'])} ms (95% CI {_interval(r['p50_low'], r['p50_high'])}){unstable}"


def _charts(s: CellSeries, n_runs: int, labels: Sequence[str]) -> str:
    t = s.table
    lat = [svg.Point(int(r["run_index"]), None if pd.isna(r["p50"]) else float(r["p50"]),
                     r["p50_low"], r["p50_high"], _tip(r, _latency_text(r)),
                     _flag(r.get("unstable")))
           for _, r in t.iterrows()]
    met = [svg.Point(int(r["run_index"]), None if pd.isna(r["metric"]) else float(r["metric"]),
                     r["metric_low"], r["metric_high"],
                     _tip(r, f"{s.metric_name} {_num(r['metric'])} (95% CI "
                             f"{_interval(r['metric_low'], r['metric_high'])})"))
           for _, r in t.iterrows()]
    lat_marks = [svg.Mark(c.index, f"{c.relative * 100:+.1f}%") for c in s.latency_cps]
    met_marks = [svg.Mark(c.index, f"{c.after - c.before:+.2f}") for c in s.metric_cps]
    return ("<div class='charts'><figure>" +
            svg.chart(lat, n_runs=n_runs, x_labels=labels, y_label="p50 latency (ms)",
                      marks=lat_marks, levels=_levels(s.latency_cps, t),
                      title="p50 latency, ms (lower is better)") + "</figure><figure>" +
            svg.chart(met, n_runs=n_runs, x_labels=labels, y_label=f"{s.metric_name} (points)",
                      marks=met_marks, levels=_levels(s.metric_cps, t),
                      title=f"{s.metric_name or 'metric'}, points (higher is better)") +
            "</figure></div>")


def _no_values(s: CellSeries) -> str:
    last = s.table.iloc[-1]
    return (f"<p class='note'>No ok record in any run. Latest ({_esc(last['run_id'])}): "
            f"{_esc(last['status'])} at {_esc(last.get('stage'))}: {_esc(last.get('error'))}</p>")


def _levels(cps: Sequence, table_: pd.DataFrame) -> list[tuple[int, int, float]]:
    """Segment medians between change points, for the dashed level lines."""
    if not cps:
        return []
    ok = table_[table_["status"] == "ok"]["run_index"]
    bounds = [int(ok.min()), *(c.index for c in cps), int(ok.max()) + 1]
    values = [cps[0].before, *(c.after for c in cps)]
    return [(a, b - 1, v) for a, b, v in zip(bounds, bounds[1:], values)]


def _run_rows(s: CellSeries) -> str:
    rows = [[r["run_id"], str(r["started"] or "")[:19], _short(r["git_sha"]), r["machine"],
             r["status"], _num(r["p50"]), _interval(r["p50_low"], r["p50_high"]),
             _num(r["metric"]), _interval(r["metric_low"], r["metric_high"]),
             r["metric_ci_kind"] or "–", "yes" if _flag(r.get("unstable")) else ""]
            for _, r in s.table.iloc[::-1].iterrows()]
    return table(["run", "started", "git sha", "machine", "status", "p50 ms", "p50 95% CI",
                  "metric", "metric 95% CI", "CI", "unstable"], rows,
                 numeric=["p50 ms", "p50 95% CI", "metric", "metric 95% CI"])


def task_page(task: str, series: Sequence[CellSeries], runs: pd.DataFrame) -> str:
    """trend/<task>.html: per cell, p50 latency and metric across runs, change points."""
    labels = [str(r)[:16] for r in runs["run_id"]]
    models = sorted({s.key[0] for s in series})
    nav = [("../index.html", "index"), *((f"#{slug(m)}", m) for m in models)]
    body = ["<p class='note'>One section per model, variant and timing shape. Points are "
            "runs that produced an ok record (hover for run, git sha and interval); bars are "
            "95% intervals: for p50 from the order statistics of the run's samples, for the "
            "metric the record's bootstrap interval, or a Wilson interval of the accuracy. "
            "Red dashed lines mark change points, dashed grey lines the level of each "
            "segment; orange points are timings flagged unstable (noisy samples or a loaded "
            "machine).</p>"]
    for model in models:
        body.append(f"<h2 id='{slug(model)}'>{_esc(model)}</h2>")
        for s in (s for s in series if s.key[0] == model):
            body += [f"<h3 id='{cell_anchor(s.key)}'>{_esc(s.label)}</h3>",
                     _charts(s, len(runs), labels) if s.has_values else _no_values(s),
                     f"<details><summary>{len(s.table)} runs</summary>{_run_rows(s)}"
                     "</details>"]
    return page(f"{task} · trends", body, nav)


# ---- comparison page ---------------------------------------------------------------------

def compare_page(weekly: Weekly) -> str:
    """compare/<latest>__vs__<baseline>.html: `harness compare` of the two runs as tables."""
    cmp = weekly.comparison
    assert cmp is not None
    regressions = [[*k, t, why] for k, t, why in cmp.regressions]
    cells = pd.DataFrame([cell_row(c) for c in cmp.cells])
    body = [f"<p class='note'>{len(cmp.cells)} cells compared; {len(cmp.only_new)} only in "
            f"the latest run, {len(cmp.only_baseline)} only in the baseline. Thresholds: "
            f"{_esc(', '.join(t.text for t in cmp.thresholds))}. Latency intervals are 95% "
            "Welch intervals of the ratio between rounds and runs (docs/timing.md). "
            f"{_esc(cmp.machine_note or '')} {_esc(cmp.settings_note or '')}</p>",
            "<h2>Regressions</h2>", table([*KEY_HEADER, "threshold", "change"], regressions),
            "<h2>All cells</h2>",
            table(list(cells.columns), cells.astype(str).itertuples(index=False))]
    return page(f"{weekly.latest} vs {weekly.baseline}", body, [("../index.html", "index")])
