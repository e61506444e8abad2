"""`harness compare`'s Markdown: what was tested and how, the regressions, the untested
cells and every cell's row."""
from __future__ import annotations

import pandas as pd

from harness.compare.comparison import CellComparison, Comparison
from harness.compare.latency import PROBE_TOLERANCE
from harness.compare.noise import NoiseTable
from harness.compare.values import key_cols
from harness.publish.markdown import md_table

ONE_BASELINE_NOTE = (
    "**One baseline run:** a variant's latency beside its baseline also moves between runs "
    "(up to ~10% at batch 1 in docs/timing.md's A/A pairs), which one run's rounds cannot "
    "show: its tests allow for the run noise below, a value measured elsewhere or, where "
    "larger, the spread of all cells between these two runs; baseline cells are untested. "
    "Give --baseline two or more times to have it estimated from your runs before acting on "
    "a latency regression.")


def cell_row(cell: CellComparison) -> dict[str, object]:
    """One cell's row of the 'All cells' table (and of the site's comparison page)."""
    t = cell.latency.get("latency_ms_p50")
    p = "–" if cell.metric_p is None else f"{cell.metric_p:.3g}"
    mq = "–" if cell.metric_q is None else f"{cell.metric_q:.3g}"
    mci = "–" if cell.metric_ci is None else f"{cell.metric_ci[0]:+.2f} to {cell.metric_ci[1]:+.2f}"
    tested = t is not None and t.tested
    return key_cols(cell.key) | {
        "p50 new/base": f"{t.estimate:.3f}×" if t else "–",
        "basis": t.basis if t else "–",
        "95% CI": f"{t.low:.3f}–{t.high:.3f}" if tested
        else f"– (untested: {t.note or '< 2 rounds'})" if t else "–",
        "q": f"{t.q:.2g}" if tested else "–",
        "rounds": f"{t.n_new} vs {t.n_base}" if t else "–",
        "latency": ("slower" if t.estimate > 1 else "faster") if tested and t.significant
        else "–",
        "Δ metric (points)": "–" if cell.metric_delta is None else f"{cell.metric_delta:+.2f}",
        "Δ 95% CI": mci, "test": cell.metric_test or "–", "p": p, "q (metric)": mq,
    }


def _noise_text(field_name: str, table: NoiseTable) -> str:
    groups = [f"{p} batch {b} {n.sd:.1%} ({n.source})"
              for (p, b), n in sorted(table.groups.items()) if n != table.pooled]
    pooled = f"{table.pooled.sd:.1%} ({table.pooled.source})"
    return f"{field_name} " + (", ".join([*groups, f"other cells {pooled}"]) if groups else pooled)


def to_markdown(cmp: Comparison) -> str:
    """The comparison as `harness compare` prints it."""
    runs = "the baseline run" if cmp.n_baselines == 1 else f"{cmp.n_baselines} baseline runs"
    lines = [f"# Comparison with {runs}", "",
             f"{len(cmp.cells)} cells compared; {len(cmp.only_new)} only in this run, "
             f"{len(cmp.only_baseline)} only in the baseline. Thresholds: "
             f"{', '.join(t.text for t in cmp.thresholds) or 'none'}. Latency: ratio of the "
             "per-round values (geometric means) — for a variant, of its per-round latency "
             "relative to its group's baseline in the same rounds ('vs baseline'), so the "
             "machine's speed between runs cancels; a baseline's absolute latency is tested "
             "only against several baseline runs, allowing for how far its runtime's "
             "baselines moved between them, and while the reference workload moved by "
             f"at most {PROBE_TOLERANCE:.0%} —, 95% Welch interval between rounds and runs, "
             "q = Benjamini-Hochberg adjusted p over all cells; a regression is significant "
             "(q < 0.05) and beyond its threshold"
             + (" and beyond the baseline runs' spread" if cmp.n_baselines > 1 else "")
             + ". The metric is tested once per model, task and variant on the same dev "
             "examples (exact McNemar for accuracy, else a paired permutation test), with a "
             "paired-bootstrap 95% interval of the delta; its q adjusts the metric tests' p "
             "among themselves, and a metric regression needs q < 0.05; 'unpaired' metric "
             "deltas are not tested.", ""]
    if cmp.machine_note:
        lines += [f"**Warning:** {cmp.machine_note}.", ""]
    if cmp.settings_note:
        lines += [f"**Note:** {cmp.settings_note}.", ""]
    if cmp.n_baselines == 1:
        lines += [ONE_BASELINE_NOTE, ""]
    if cmp.run_noise:
        lines += ["Run noise allowed for in variant tests (between-run sd beside the baseline): "
                  + "; ".join(_noise_text(f, t) for f, t in cmp.run_noise.items()) + ".", ""]
    machine = [f"{f} {n.sd:.1%} ({n.source})" for f, by in cmp.machine_noise.items()
               for n in by.values()]
    if machine:
        lines += ["Machine noise allowed for in baselines' absolute tests (between-run sd of "
                  "their latency): " + "; ".join(machine) + ".", ""]
    regs = pd.DataFrame([key_cols(k) | {"threshold": t, "change": why}
                         for k, t, why in cmp.regressions])
    lines += ["## Regressions", "", md_table(regs.astype(str)), ""]
    if cmp.broken:
        broken = pd.DataFrame([key_cols(k) for k in cmp.broken]).astype(str)
        lines += ["## Cells that failed in this run but not in the baseline", "",
                  md_table(broken), ""]
    if cmp.untested:
        untested = pd.DataFrame(cmp.why_untested())
        lines += ["## Beyond a threshold but untested", "", md_table(untested.astype(str)), ""]
    cells = pd.DataFrame([cell_row(c) for c in cmp.cells])
    lines += ["## All cells", "", md_table(cells.astype(str)), ""]
    return "\n".join(lines)
