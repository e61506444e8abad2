"""Compare a run with one or more baseline runs, cell by cell, with thresholds.

Latency: the unit is a round (docs/timing.md), not a sample. Each record keeps its raw samples
per interleaved round; a statistic (p50, p90, ...) is taken per round, and the new run's
per-round values are compared with the baseline runs' by a Welch t-test on their logs, giving
the ratio new / baseline with a 95% interval between rounds and runs. The machine's speed moves
between runs by more than the effects compared (5-15% for a whole group on the development VM,
docs/timing.md), and every variant of a group moves with it: so a variant is tested on its
latency *relative to its group's baseline in the same rounds* (the per-round ratio its speedup
is made of), where that shift cancels; what is left of the machine's between-run movement in
that ratio (a group's rounds share one stretch of time, so one run's rounds cannot show it)
enters the test as a run-level variance: estimated from the baseline runs when there are
several, else the RUN_NOISE measured on the development VM (or --run-noise). A baseline cell
has nothing beside it to cancel the shift: it is tested on its absolute latency only against
several baseline runs (whose spread shows how far the machine moves between runs; one run's
rounds cannot), allowing for the between-run variance of its provider's baselines estimated
from those runs (the machine noise: OpenVINO's baselines can drift between runs while the
reference workload does not), and while the fixed reference workload timed at each round
boundary moved by at most PROBE_TOLERANCE between the runs; it is untested otherwise (a variant
whose baseline is missing gets the absolute test under the reference's gate alone). p-values
across all cells are adjusted with Benjamini-Hochberg (false discovery rate 5%); a regression is
a change both significant and beyond its threshold. With several baseline runs, the spread
between them is a noise floor: a change smaller than it is not a regression.

Metric: delta in points, tested once per (model, task, variant) on per-example predictions when
both runs have them with the same tests as the leaderboard (harness.significance: exact McNemar
where the metric is accuracy, a paired permutation test otherwise), with a paired-bootstrap 95%
interval over dev examples; otherwise reported unpaired. The metric tests' p-values are
adjusted with Benjamini-Hochberg among themselves (another family than latency's), as the
leaderboard adjusts a run's deltas; a metric regression is significant at q < 5%.
"""
from __future__ import annotations

from harness.compare.comparison import CellComparison, Comparison, compare_runs, metric_detail
from harness.compare.latency import LatencyTest, welch_ratio
from harness.compare.noise import (
    RUN_NOISE,
    RunNoise,
    between_run_sd,
    estimate_machine_noise,
    estimate_run_noise,
)
from harness.compare.report import cell_row, to_markdown
from harness.compare.run_dirs import compare_run_dirs
from harness.compare.thresholds import DEFAULT_THRESHOLDS, Threshold, parse_threshold

__all__ = [
    "DEFAULT_THRESHOLDS", "RUN_NOISE", "CellComparison", "Comparison", "LatencyTest", "RunNoise",
    "Threshold", "between_run_sd", "cell_row", "compare_run_dirs", "compare_runs",
    "estimate_machine_noise", "estimate_run_noise", "metric_detail", "parse_threshold",
    "to_markdown", "welch_ratio",
]
