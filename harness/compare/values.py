"""What the comparison's tests read from records: a latency statistic per interleaved round,
absolute or relative to the group's baseline timed in the same rounds."""
from __future__ import annotations

import numpy as np

from harness.records import BASELINE, Record
from harness.timing.rounds import round_stat

Key = tuple[str, str, str, str, int, int]
# latency field -> the statistic of the raw samples it names (a percentile, or the mean)
LATENCY_STATS: dict[str, float | str] = {
    "latency_ms_p50": 50, "latency_ms_p90": 90, "latency_ms_p95": 95, "latency_ms_p99": 99,
    "latency_ms_mean": "mean", "latency_ms_min": 0,
}


def round_values(record: Record, stat: float | str) -> np.ndarray:
    """The statistic of each round of a record's samples (one value before rounds)."""
    return round_stat(record.rounds_ms, stat)


def relative_values(record: Record, anchor: Record, stat: float | str) -> np.ndarray | None:
    """Per-round statistic of `record` over its group baseline's (`anchor`) in the same rounds;
    None when the two were not timed in the same rounds."""
    if len(record.round_sizes) < 2 or len(record.round_sizes) != len(anchor.round_sizes):
        return None
    return round_values(record, stat) / round_values(anchor, stat)


def group_anchors(key: Key, new: dict[Key, Record], bases: list[dict[Key, Record]]
                  ) -> tuple[Record, list[Record]] | None:
    """The group baseline's records (new run, baseline runs) for a variant's cell, when every
    run has it timed; None for a baseline cell or when one is missing."""
    if key[2] == BASELINE:
        return None
    anchor = (*key[:2], BASELINE, *key[3:])
    runs = [new, *bases]
    if not all(anchor in r and r[anchor].status == "ok" for r in runs):
        return None
    return new[anchor], [b[anchor] for b in bases]


def key_cols(key: tuple) -> dict[str, object]:
    """A cell's key as named table columns ('–' where a metric key stops at the variant)."""
    cols = dict.fromkeys(("model", "task", "variant", "provider", "batch", "seq"), "–")
    return cols | dict(zip(cols, key))
