"""Which session setting, if any, removes the run-to-run swings of one model's latency?

    python benchmarks/timing_suspects.py MODEL.onnx [--batch 1] [--seq 128] [--rounds 20]
        [--seconds 0.3] [--threads 2]

Every suspect is a session of the same file with one setting changed from the harness's
default; all of them are timed in the same interleaved rounds (harness.timing.rounds), so a
change of the machine's speed hits them alike. Per suspect: p50 over all rounds, the spread
of its per-round p50s (cv, max/min) and its per-round ratio to the default session. A setting
that removed the swings would show a flat per-round p50 where the default's jumps.
Also printed per round: the share of CPU time stolen by the hypervisor and used by other
processes (the harness records both with every timing), and whether cpufreq is visible.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from harness.schema import TimingSpec
from harness.timing.inputs import feed_for, random_inputs
from harness.timing.loop import cpu_runner, load_between, probe, steal_between
from harness.timing.rounds import round_stat, time_rounds
from harness.timing.session import session_options


def suspects(threads: int) -> dict[str, dict]:
    """name -> changes to the default session (spec fields, options, config entries)."""
    return {
        "default": {},
        "default-again": {},  # made last: does creation order matter?
        "no-spinning": {"spec": {"allow_spinning": False}},
        "spin-after-run": {"spec": {"stop_spinning_after_run": False}},  # the old default
        "1-thread": {"spec": {"intra_op_threads": 1}},
        "pinned": {"config": {"session.intra_op_thread_affinities":
                              ";".join(str(i + 2) for i in range(threads - 1))}},
        "no-arena": {"attr": {"enable_cpu_mem_arena": False}},
        "no-mem-pattern": {"attr": {"enable_mem_pattern": False}},
        "denormal-as-zero": {"config": {"session.set_denormal_as_zero": "1"}},
        "inter-op-1": {"spec": {"inter_op_threads": 1}},
    }


def make(path: Path, base: TimingSpec, change: dict) -> ort.InferenceSession:
    opts = session_options(base.model_copy(update=change.get("spec", {})))
    for key, value in change.get("config", {}).items():
        opts.add_session_config_entry(key, value)
    for key, value in change.get("attr", {}).items():
        setattr(opts, key, value)
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.3, help="per suspect per round")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    base = TimingSpec(intra_op_threads=args.threads, warmup=5, rounds=args.rounds,
                      min_iterations=args.rounds, min_seconds=args.seconds * args.rounds,
                      max_seconds=10.0 * args.rounds, round_order="shuffle")
    todo = suspects(args.threads)
    order = [n for n in todo if n != "default-again"] + ["default-again"]
    sessions = {name: make(args.model, base, todo[name]) for name in order}
    inputs = random_inputs(args.batch, args.seq, 0, 1000)
    steps = {n: cpu_runner(s, feed_for(s, inputs)) for n, s in sessions.items()}
    result = time_rounds(steps, base, mark=probe)
    marks = list(zip(result.marks[:-1], result.marks[1:], strict=True))
    steal = [steal_between(a, b) for a, b in marks]
    others = [load_between(a, b)[0] for a, b in marks]
    default = round_stat(result.samples_ms["default"])
    print(f"{args.model.name} batch {args.batch} seq {args.seq}, {args.threads} threads, "
          f"{args.rounds} rounds, load {os.getloadavg()[0]:.2f}; cpufreq visible: "
          f"{Path('/sys/devices/system/cpu/cpu0/cpufreq').exists()}")
    print("| suspect | p50 ms | round p50 min–max | round cv | ratio to default per round "
          "(median, min–max) |\n|---|---|---|---|---|")
    for name in todo:
        per_round = round_stat(result.samples_ms[name])
        ratio = per_round / default
        print(f"| {name} | {np.median(result.flat(name)):.3f} | {per_round.min():.3f}–"
              f"{per_round.max():.3f} | {per_round.std(ddof=1) / per_round.mean():.3f} | "
              f"{np.median(ratio):.3f} ({ratio.min():.3f}–{ratio.max():.3f}) |")
    print("per round: default p50 ms, steal share, other processes' share")
    for i, (p, s, o) in enumerate(zip(default, steal, others, strict=True)):
        print(f"  round {i:2d}: {p:7.3f}  steal {s}  others {o}")


if __name__ == "__main__":
    main()
