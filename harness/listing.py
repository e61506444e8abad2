"""`harness list {tasks,models,methods}` as plain text tables."""
from __future__ import annotations

from typing import Any

import pandas as pd


def _table(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "(none)"


def tasks() -> str:
    from harness.tasks import TASKS, available_splits, resolve_data_dir

    data_dir = resolve_data_dir(None)
    rows = [{"task": t.name, "inputs": " + ".join(t.text_columns),
             "labels": ", ".join(t.label_names) or "score (regression)",
             "metrics": ", ".join(t.metrics), "main": t.main_metric,
             "local data": ", ".join(available_splits(t.name, data_dir)) if data_dir else "-"}
            for t in TASKS.values()]
    return f"GLUE data directory: {data_dir or 'not found (set HARNESS_GLUE_DIR)'}\n" + _table(rows)


def models() -> str:
    from harness.models import describe_models

    footer = ("\nAny Hugging Face hub id (org/name) or local model directory also works "
              "(needs the hub for ids).")
    return _table(describe_models()) + footer


def methods() -> str:
    from harness.methods import METHODS

    rows = []
    for name, info in METHODS.items():
        params = ", ".join(f"{k}={f.default!r}" for k, f in info.params.model_fields.items())
        rows.append({"method": name, "level": info.level, "parameters (defaults)": params or "-",
                     "summary": info.summary})
    return _table(rows)


def render(what: str) -> str:
    return {"tasks": tasks, "models": models, "methods": methods}[what]()
