"""Per-cell series across runs from the results store, with intervals and change points."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.publish.intervals import latency_interval, metric_interval
from harness.publish.tables import CELL
from harness.site.changepoints import ChangePoint, detect

LATENCY_FLOOR = math.log(1.005)  # night-to-night latency noise assumed at least 0.5%
METRIC_FLOOR = 0.1  # points


@dataclass
class CellSeries:
    """One (model, task, variant, provider, batch, seq) across the runs, oldest first."""

    key: tuple
    table: pd.DataFrame  # one row per run that has a record of the cell
    latency_cps: list[ChangePoint] = field(default_factory=list)
    metric_cps: list[ChangePoint] = field(default_factory=list)

    @property
    def label(self) -> str:
        model, _, variant, provider, batch, seq = self.key
        return f"{model} · {variant} · {provider} · batch {batch} · seq {seq}"

    @property
    def has_values(self) -> bool:
        return bool(self.table["p50"].notna().any() or self.table["metric"].notna().any())

    @property
    def metric_name(self) -> str | None:
        names = self.table["metric_name"].dropna()
        return str(names.iloc[-1]) if len(names) else None


def _run_table(rows: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The cell's rows joined to run metadata and ordered by run, intervals added."""
    meta = runs[["run_id", "run_index", "started", "git_sha"]]
    table = rows.merge(meta, on="run_id", how="inner")  # the machine is the record's own
    table = table.sort_values("run_index").reset_index(drop=True)
    ok = table["status"] == "ok"
    lat = [latency_interval(r) if good else (None, None)
           for good, (_, r) in zip(ok, table.iterrows())]
    met = [metric_interval(r) if good else (None, None, "")
           for good, (_, r) in zip(ok, table.iterrows())]
    table["p50"] = table["latency_ms_p50"].where(ok)
    table["p50_low"], table["p50_high"] = [v[0] for v in lat], [v[1] for v in lat]
    table["metric"] = (table["metric_value"].astype("float64") * 100).where(ok)
    table["metric_low"], table["metric_high"] = [v[0] for v in met], [v[1] for v in met]
    table["metric_ci_kind"] = [v[2] for v in met]
    return table


def cell_series(records: pd.DataFrame, runs: pd.DataFrame) -> list[CellSeries]:
    """Every cell's series with its change points; runs must carry `run_index`."""
    out = []
    for key, rows in records.groupby(CELL, sort=True):
        table = _run_table(rows, runs)
        series = CellSeries(tuple(key), table)
        ok = table[table["status"] == "ok"]
        idx = ok["run_index"].to_numpy()
        series.latency_cps = _at_runs(detect(ok["p50"].to_numpy(float), log_scale=True,
                                             floor=LATENCY_FLOOR), idx)
        series.metric_cps = _at_runs(detect(ok["metric"].to_numpy(float), log_scale=False,
                                            floor=METRIC_FLOOR), idx)
        out.append(series)
    return out


def _at_runs(points: list[ChangePoint], run_index: np.ndarray) -> list[ChangePoint]:
    """Positions in the ok rows turned into run indices."""
    return [ChangePoint(int(run_index[p.index]), p.before, p.after) for p in points]
