"""What does switching between open sessions cost, per spinning setting?

    python benchmarks/switch_cost.py A.onnx B.onnx [C.onnx ...] [--batch 1] [--seq 128]
        [--cycles 200] [--runs 6]

A timing group keeps every variant's onnxruntime session open and runs them in turn. For
each setting below, sessions of all the files are made with it; then, `--cycles` times, each
file (in a rotating order) runs `--runs` times back to back, timed one by one with the
harness's own step and loop. Printed per setting and file: the median time of the 1st, 2nd,
... run after a switch, and the median of the same session run alone (a second, at least 6
runs; the first not counted). A setting under which the runs after a switch are slower than
the session alone lets one session's threads slow the next (docs/timing.md, "Stale spinning
between sessions"); the harness discards one run per slice (`SLICE_WARMUP`), so only the
first column may be slow.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness.schema import TimingSpec
from harness.timing.inputs import feed_for, random_inputs
from harness.timing.loop import cpu_runner, time_until
from harness.timing.session import make_session

SETTINGS = {  # name -> TimingSpec fields changed from the harness's default
    "spin after run (onnxruntime's default)": {"stop_spinning_after_run": False},
    "stop spinning after run (harness default)": {},
    "no spinning": {"allow_spinning": False},
}


def measure(paths: list[Path], spec: TimingSpec, batch: int, seq: int, cycles: int, runs: int
            ) -> dict[str, tuple[np.ndarray, float]]:
    """file name -> (median ms of run k after a switch, k = 1..runs; median ms alone)."""
    inputs = random_inputs(batch, seq, 0, 1000)
    steps = {}
    for path in paths:
        session = make_session(path, "cpu", spec)
        steps[path.name] = cpu_runner(session, feed_for(session, inputs))
    for step in steps.values():
        for _ in range(3):
            step()
    names = list(steps)
    after: dict[str, list[list[int]]] = {n: [] for n in names}
    for cycle in range(cycles):
        for name in names[cycle % len(names):] + names[:cycle % len(names)]:
            after[name].append(time_until(steps[name], runs, 0.0, 3600.0)[0])
    out = {}
    for name, step in steps.items():
        alone, _ = time_until(step, 6, 1.0, 3600.0)
        out[name] = (np.median(np.array(after[name]), axis=0) / 1e6,
                     float(np.median(alone[1:])) / 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    print(f"batch {args.batch} seq {args.seq}, {args.cycles} cycles")
    print("| setting | file | ms of run 1, 2, ... after a switch (median) | ms alone |\n"
          "|---|---|---|---|")
    for label, change in SETTINGS.items():
        found = measure(args.models, TimingSpec(**change), args.batch, args.seq, args.cycles,
                        args.runs)
        for name, (after, alone) in found.items():
            print(f"| {label} | {name} | {', '.join(f'{x:.2f}' for x in after)} | {alone:.2f} |")


if __name__ == "__main__":
    main()
