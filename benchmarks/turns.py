"""Whole slices or turns, few rounds or many: which way of taking a group's rounds gives
steadier ratios?

    python benchmarks/turns.py BASE.onnx VARIANT.onnx [VARIANT.onnx ...] [--batch 1]
        [--seq 128] [--blocks 12] [--slice 0.2] [--turns 0.025[,0.05,...]] [--rounds 5[,10]]
        [--no-slices]

Every file gets an onnxruntime session, and the first file a second one (`twin`, an A/A
variant: its ratio to the first is 1 by construction). Then `--blocks` times, in a seeded
order per block, the same group is timed with the harness's `time_rounds` in each mode:
5 rounds of `--slice` seconds per variant, taken as whole slices (`turn_seconds: None`, the
harness before the thirteenth session) or in turns of each of the `--turns` lengths (seconds,
comma-separated; 0.025 is the default now). `--rounds 5,10` also splits the same seconds
into 10 rounds of half the length (every mode spends 5 x `--slice` seconds a variant).
Printed per mode and variant: the ratio to the first file (geometric mean over all rounds),
the sd of its per-round log ratio (what a record's speedup interval is made of), the sd of
a timing's mean between blocks (what moves a group's speedup from one timing to the next:
the run noise `compare` allows for) beside the standard error the timing's own rounds give
that mean (when it is smaller, the rounds understate the spread), and each variant's median
latency (turns add an untimed run per turn; a mode that timed runs straight after a switch
would read slower here).
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
    parser.add_argument("--rounds", default="5",
                        help="rounds a timing, comma-separated; the seconds stay 5 x --slice")
    parser.add_argument("--no-slices", action="store_true", help="time turns only")
    args = parser.parse_args()
    turns: dict[str, float | None] = {} if args.no_slices else {"slices": None}
    turns |= {f"turns of {float(t) * 1000:g} ms": float(t) for t in args.turns.split(",")}
    counts = [int(r) for r in args.rounds.split(",")]
    modes = {f"{label}, {r} rounds" if len(counts) > 1 else label: (t, r)
             for label, t in turns.items() for r in counts}
    specs = {m: TimingSpec(warmup=2, rounds=r, min_iterations=r * 2,
                           min_seconds=args.slice * 5, max_seconds=60.0, turn_seconds=t)
             for m, (t, r) in modes.items()}
    inputs = random_inputs(args.batch, args.seq, 0, 1000)
    paths = {"base": args.files[0], "twin": args.files[0]}
    paths |= {f"{i}:{p.stem}": p for i, p in enumerate(args.files[1:], 1)}
    runners = {n: make_runner(p, "cpu", next(iter(specs.values()))) for n, p in paths.items()}
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
                                for r in range(modes[mode][1])]
    for mode, rows in per_round.items():
        print(f"{mode}: {len(rows)} rounds, {np.mean(seconds[mode]):.1f} s a group")
        blocks = np.array([r["block"] for r in rows])
        for name in list(steps)[1:]:
            lr = np.log([r[name] / r["base"] for r in rows])
            per_block = [lr[blocks == b] for b in range(args.blocks)]
            means = [x.mean() for x in per_block]
            se = np.sqrt(np.mean([x.var(ddof=1) / len(x) for x in per_block]))
            print(f"  {name:24s} ratio {np.exp(lr.mean()):.3f}  per-round sd {lr.std(ddof=1):.3f}"
                  f"  timing-mean sd {np.std(means, ddof=1):.3f} (its rounds' se {se:.3f})")
        print("  median ms: " + ", ".join(f"{n} {np.median([r[n] for r in rows]):.2f}"
                                         for n in steps))


if __name__ == "__main__":
    main()
