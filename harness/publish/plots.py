"""Report figures as PNG data URIs; matplotlib's object API with the Agg canvas, no pyplot state."""
from __future__ import annotations

import base64
import io
import logging

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.publish.tables import BASELINE, FRONT_KEY

log = logging.getLogger(__name__)

MAX_SCATTERS = 24
_DPI = 110


def _label(text: object, limit: int = 40) -> str:
    """Plain text for matplotlib: '$' would start mathtext."""
    text = str(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def data_uri(fig: Figure) -> str:
    """Render a figure to an embeddable PNG `data:` URI."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _geomean(values: pd.Series) -> float:
    values = values[values > 0].astype("float64")
    return float(np.exp(np.log(values).mean())) if len(values) else float("nan")


def accuracy_latency(lb: pd.DataFrame) -> list[tuple[str, str]]:
    """One scatter per (task, provider, batch, seq): metric vs p50, Pareto front as a step line."""
    ok = lb[(lb["status"] == "ok") & lb["metric"].notna() & lb["latency_p50_ms"].notna()]
    colors = {m: f"C{i % 10}" for i, m in enumerate(sorted(ok["model"].unique()))}
    figures = []
    for key, group in ok.groupby(FRONT_KEY, sort=True):
        if len(figures) == MAX_SCATTERS:
            log.warning("report shows the first %d accuracy/latency plots only", MAX_SCATTERS)
            break
        task, provider, batch, seq = key
        title = f"{task} · {provider} · batch {batch} · seq {seq}"
        figures.append((title, data_uri(_scatter(group, title, colors))))
    return figures


def _scatter(group: pd.DataFrame, title: str, colors: dict[str, str]) -> Figure:
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for model, rows in group.groupby("model", sort=True):
        ax.scatter(rows["latency_p50_ms"], rows["metric"], s=36, label=_label(model),
                   color=colors[model], zorder=3)
        for _, row in rows.iterrows():
            ax.annotate(_label(row["variant"], 28), (row["latency_p50_ms"], row["metric"]),
                        xytext=(4, 4), textcoords="offset points", fontsize=7, color="#444")
    front = group[group["pareto"]].sort_values("latency_p50_ms")
    if len(front):
        ax.step(front["latency_p50_ms"], front["metric"], where="post", color="#d62728",
                lw=1.2, ls="--", label="Pareto front", zorder=2)
        ax.scatter(front["latency_p50_ms"], front["metric"], s=110, facecolors="none",
                   edgecolors="#d62728", zorder=4)
    lat = group["latency_p50_ms"]
    if lat.max() > 10 * lat.min() > 0:
        ax.set_xscale("log")
    ax.set_xlabel("latency p50 (ms), lower is better")
    ax.set_ylabel(f"{_label(group['metric_name'].iloc[0])} (points), higher is better")
    ax.set_title(_label(title, 80), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def speedup_by_method(lb: pd.DataFrame) -> str | None:
    """Geometric-mean speedup over the baseline per variant and provider, cells as dots."""
    rows = lb[(lb["status"] == "ok") & (lb["variant"] != BASELINE) & lb["speedup"].notna()]
    if rows.empty:
        return None
    variants = sorted(rows["variant"].unique())
    providers = sorted(rows["provider"].unique())
    fig = Figure(figsize=(6.4, 0.9 + 0.45 * len(variants) * len(providers)))
    ax = fig.add_subplot()
    height = 0.8 / len(providers)
    labelled: set[str] = set()
    for j, provider in enumerate(providers):
        for i, variant in enumerate(variants):
            cells = rows[(rows["variant"] == variant) & (rows["provider"] == provider)]["speedup"]
            if cells.empty:
                continue
            y = i + (j - (len(providers) - 1) / 2) * height
            label = None if provider in labelled else _label(provider)
            labelled.add(provider)
            ax.barh(y, _geomean(cells), height=height * 0.9, color=f"C{j}", label=label)
            ax.scatter(cells, np.full(len(cells), y), s=10, color="black", zorder=3)
    ax.axvline(1.0, color="#888", lw=1)
    ax.set_yticks(range(len(variants)), [_label(v) for v in variants], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup × (baseline p50 / p50); bar: geometric mean, dots: cells")
    ax.set_title("Speedup over the baseline per method", fontsize=10)
    ax.legend(fontsize=7, title="provider", title_fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return data_uri(fig)


def size_by_method(lb: pd.DataFrame) -> str | None:
    """ONNX and zip-compressed size relative to the baseline's ONNX file, per variant."""
    rows = lb[(lb["status"] == "ok") & lb["size_ratio"].notna()]
    rows = rows.drop_duplicates(["model", "task", "variant"])
    if rows.empty:
        return None
    base_mb = rows["onnx_mb"] / rows["size_ratio"]
    rows = rows.assign(zip_ratio=rows["onnx_zip_mb"] / base_mb)
    variants = sorted(rows["variant"].unique(), key=lambda v: (v != BASELINE, v))
    onnx = [_geomean(rows.loc[rows["variant"] == v, "size_ratio"]) for v in variants]
    zipped = [_geomean(rows.loc[rows["variant"] == v, "zip_ratio"].dropna()) for v in variants]
    fig = Figure(figsize=(6.4, 0.9 + 0.5 * len(variants)))
    ax = fig.add_subplot()
    y = np.arange(len(variants))
    ax.barh(y - 0.2, onnx, height=0.38, color="C0", label="ONNX file")
    ax.barh(y + 0.2, zipped, height=0.38, color="C2", label="zip-compressed")
    ax.axvline(1.0, color="#888", lw=1)
    ax.set_yticks(y, [_label(v) for v in variants], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("size × baseline ONNX file (geometric mean over models and tasks)")
    ax.set_title("Model size per method", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(axis="x", alpha=0.3)
    return data_uri(fig)
