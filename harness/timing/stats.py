"""Summary statistics of raw latency samples (milliseconds); the samples are kept too."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stats:
    """Order statistics and spread of latency samples in ms.

    Percentiles (median, q1, q3, p90, p95, p99) use numpy's default linear interpolation;
    `stdev` is the sample standard deviation (n - 1); `mad` is the median absolute deviation
    from the median (unscaled); `cv` is stdev / mean.
    """

    n: int
    min: float
    max: float
    mean: float
    median: float
    stdev: float
    q1: float
    q3: float
    iqr: float
    mad: float
    p90: float
    p95: float
    p99: float
    cv: float

    @classmethod
    def from_samples(cls, samples_ms: Any) -> Stats:
        """Summarise a non-empty sequence of latencies in milliseconds."""
        x = np.asarray(samples_ms, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise ValueError("Stats needs a non-empty 1-D sequence of samples")
        q1, median, q3, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
        mean = float(x.mean())
        stdev = float(x.std(ddof=1)) if x.size > 1 else 0.0
        return cls(
            n=int(x.size), min=float(x.min()), max=float(x.max()), mean=mean,
            median=float(median), stdev=stdev, q1=float(q1), q3=float(q3),
            iqr=float(q3 - q1), mad=float(np.median(np.abs(x - median))),
            p90=float(p90), p95=float(p95), p99=float(p99),
            cv=stdev / mean if mean > 0 else math.inf,
        )

    def throughput(self, batch_size: int) -> float:
        """Items per second at the median latency."""
        return batch_size * 1000.0 / self.median if self.median > 0 else math.inf

    def to_record_fields(self, batch_size: int) -> dict[str, Any]:
        """The latency fields of `harness.records.Record`, by their names."""
        return {
            "latency_ms_p50": self.median,
            "latency_ms_p90": self.p90,
            "latency_ms_p95": self.p95,
            "latency_ms_p99": self.p99,
            "latency_ms_mean": self.mean,
            "latency_ms_min": self.min,
            "latency_ms_stdev": self.stdev,
            "latency_ms_iqr": self.iqr,
            "latency_ms_mad": self.mad,
            "latency_cv": self.cv,
            "n_timed": self.n,
            "throughput_per_s": self.throughput(batch_size),
        }
