"""Whole slices or turns: which way of taking a round gives steadier per-round ratios?

    python benchmarks/turns.py BASE.onnx VARIANT.onnx [VARIANT.onnx ...] [--batch 1]
        [--seq 128] [--blocks 12] [--slice 0.2] [--turns 0.025[,0.05,...]]

Every file gets an onnxruntime session, and the first file a second one (`twin`, an A/A
variant: its ratio to the first is 1 by construction). Then `--blocks` times, in a seeded
order per block, the same group is timed with the harness's `time_rounds` in each mode:
5 rounds of `--slice` seconds per variant, taken as whole slices (`turn_seconds: None`, the
harness before the thirteenth session) or in turns of each of the `--turns` lengths (seconds,
comma-separated; 0.025 is the default now).
Printed per mode and variant: the ratio to the first file (geometric mean over all rounds),
the sd of its per-round log ratio (what a record's speedup interval is made of), the sd of
the 5-round means between blocks (what moves a group's speedup from one timing to the next:
the run noise `compare` allows for) and each variant's median latency (turns add an untimed
run per turn; a mode that timed runs straight after a switch would read slower here).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from harness.schema import TimingSpec
from harness.timing.backend import make_runner
from harness.timing.inputs import feed_for, random_inputs
from harness.timing.rounds import round_stat, time_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--slice", type=float, default=0.2, help="seconds per variant a round")
    parser.add_argument("--turns", default="0.025",
                        help="seconds per turn; several, comma-separated, are timed side by side")
    args = parser.parse_args()
    rounds = 5
    modes: dict[str, float | None] = {"slices": None}
    modes |= {f"turns of {float(t) * 1000:g} ms": float(t) for t in args.turns.split(",")}
    specs = {m: TimingSpec(warmup=2, rounds=rounds, min_iterations=rounds * 2,
                           min_seconds=args.slice * rounds, max_seconds=60.0, turn_seconds=t)
             for m, t in modes.items()}
    inputs = random_inputs(args.batch, args.seq, 0, 1000)
    paths = {"base": args.files[0], "twin": args.files[0]}
    paths |= {f"{i}:{p.stem}": p for i, p in enumerate(args.files[1:], 1)}
    runners = {n: make_runner(p, "cpu", specs["slices"]) for n, p in paths.items()}
    steps = {n: r.step(feed_for(r, inputs)) for n, r in runners.items()}
    per_round: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    rng = np.random.default_rng(0)
    for block in range(args.blocks):
        for i in rng.permutation(len(modes)):
            mode = list(modes)[i]
            start = time.perf_counter()
            got = time_rounds(steps, specs[mode])
            seconds[mode].append(time.perf_counter() - start)
            meds = {n: round_stat(got.samples_ms[n]) for n in steps}
            per_round[mode] += [{n: float(meds[n][r]) for n in steps} | {"block": block}
                                for r in range(rounds)]
    for mode, rows in per_round.items():
        print(f"{mode}: {len(rows)} rounds, {np.mean(seconds[mode]):.1f} s a group")
        blocks = np.array([r["block"] for r in rows])
        for name in list(steps)[1:]:
            lr = np.log([r[name] / r["base"] for r in rows])
            means = [lr[blocks == b].mean() for b in range(args.blocks)]
            print(f"  {name:24s} ratio {np.exp(lr.mean()):.3f}  per-round sd {lr.std(ddof=1):.3f}"
                  f"  5-round-mean sd {np.std(means, ddof=1):.3f}")
        print("  median ms: " + ", ".join(f"{n} {np.median([r[n] for r in rows]):.2f}"
                                         for n in steps))


if __name__ == "__main__":
    main()
