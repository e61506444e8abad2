"""Do consecutive rounds of one group share the machine's mode? If so, a group's mean ratio
moves between runs by more than its rounds' spread says, and rounds spread apart in time
(e.g. one shape's rounds alternating with another's) would average over more modes
(docs/timing.md, "Fifteenth session": tried in the harness, and not kept).

    python benchmarks/round_spacing.py BASE.onnx VARIANT.onnx [VARIANT.onnx ...] [--batch 1]
        [--seconds 420] [--out series.json]

Times the group (the first file, a second session of it as an A/A twin, the other files)
with the harness's `time_rounds` and the default 25 ms turns, 5 rounds at a time, again and
again for `--seconds`, and keeps every round's median. Printed per variant, for the log
ratio to the first file: its per-round sd, what a mean of 5 independent rounds would spread
(sd / sqrt 5), the sd of the means of 5 consecutive rounds (one timing of the group, as a
run takes it) and of 5 rounds taken one from each of 5 timings `stride` timings apart (rounds
seconds apart, as when other shapes' rounds lie between them), and the autocorrelation of
consecutive timings' means.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from harness.schema import TimingSpec
from harness.timing.backend import make_runner
from harness.timing.inputs import feed_for, random_inputs
from harness.timing.rounds import round_stat, time_rounds

ROUNDS = 5


def series(files: list[Path], batch: int, seconds: float) -> list[dict[str, float]]:
    """Every round's median per variant, in the order taken, with its timing's index."""
    spec = TimingSpec(warmup=2, rounds=ROUNDS, min_iterations=5, min_seconds=0.5,
                      max_seconds=20.0, turn_seconds=0.025)
    inputs = random_inputs(batch, 128, 0, 1000)
    paths = {"base": files[0], "twin": files[0]} | {f"{i}:{p.stem}": p
                                                    for i, p in enumerate(files[1:], 1)}
    steps = {n: (r := make_runner(p, "cpu", spec)).step(feed_for(r, inputs))
             for n, p in paths.items()}
    rows: list[dict[str, float]] = []
    start, timing = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        meds = {n: round_stat(x) for n, x in time_rounds(steps, spec).samples_ms.items()}
        rows += [{"timing": timing} | {n: float(meds[n][r]) for n in steps}
                 for r in range(ROUNDS)]
        timing += 1
    return rows


def report(rows: list[dict[str, float]], seconds_per_timing: float) -> None:
    n = int(rows[-1]["timing"]) + 1
    print(f"{n} timings of {ROUNDS} rounds, one every {seconds_per_timing:.1f} s")
    for name in [k for k in rows[0] if k not in ("timing", "base")]:
        x = np.log([r[name] / r["base"] for r in rows]).reshape(n, ROUNDS)
        means = x.mean(axis=1)
        print(f"  {name}: ratio {np.exp(x.mean()):.3f}, per-round sd {x.std(ddof=1):.3f}, "
              f"independent 5-mean {x.std(ddof=1) / np.sqrt(ROUNDS):.4f}, "
              f"consecutive 5-mean sd {means.std(ddof=1):.4f}")
        for stride in (1, 2, 4, 8):
            if (ROUNDS - 1) * stride >= n - 2:
                break
            spread = [x[[b + k * stride for k in range(ROUNDS)], range(ROUNDS)].mean()
                      for b in range(n - (ROUNDS - 1) * stride)]
            print(f"    one round from each of 5 timings {stride} apart: sd {np.std(spread, ddof=1):.4f}")
        c = means - means.mean()
        print("    autocorrelation of timings' means, lag 1 / 2: "
              + " / ".join(f"{np.sum(c[:-lag] * c[lag:]) / np.sum(c * c):+.2f}" for lag in (1, 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=420.0)
    parser.add_argument("--out", type=Path, help="keep the series as JSON")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = series(args.files, args.batch, args.seconds)
    if args.out:
        args.out.write_text(json.dumps(rows))
    report(rows, (time.perf_counter() - start) / (rows[-1]["timing"] + 1))


if __name__ == "__main__":
    main()
