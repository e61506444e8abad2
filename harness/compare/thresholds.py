"""Thresholds: how large a change must be, beyond significance, to count as a regression."""
from __future__ import annotations

import re
from dataclasses import dataclass

from harness.compare.values import LATENCY_STATS
from harness.errors import ConfigError

DEFAULT_THRESHOLDS = ["latency_ms_p50:5%", "metric:-0.5"]
_THRESHOLD = re.compile(r"^(\w+):([+-]?\d+(?:\.\d*)?)(%?)$")


@dataclass(frozen=True)
class Threshold:
    """`latency_ms_p50:5%` (slowdown beyond 5%) or `metric:-0.5` (drop beyond 0.5 points)."""

    text: str
    field: str
    limit: float  # percent slowdown for latency, points dropped (positive) for the metric


def parse_threshold(text: str) -> Threshold:
    """A threshold from its text; a ConfigError naming the accepted forms otherwise."""
    match = _THRESHOLD.match(text.strip())
    name, value, pct = match.groups() if match else (None, "0", "")
    if name in LATENCY_STATS and pct and float(value) >= 0:
        return Threshold(text, name, float(value))
    if name == "metric" and not pct and float(value) <= 0:
        return Threshold(text, name, -float(value))
    raise ConfigError(f"bad threshold '{text}': expected e.g. latency_ms_p50:5% or metric:-0.5 "
                      f"(latency fields: {', '.join(LATENCY_STATS)})")
