"""A/A pairs and injected slowdowns: does `harness compare` stay quiet, and does it notice?

    python benchmarks/latency_aa.py [--suite benchmarks/suites/latency-aa.yaml]
        [--results-dir results/aa] [--pairs 3] [--slowdowns 0.03,0.05,0.10]

1. one run to fill the cache (not counted), then `--pairs` pairs of warm reruns back to back;
   per pair: share of records whose p50 moved by at most 3%, share of non-baseline records
   whose speedup moved by at most 3%, and the exit code of `harness compare` at
   latency_ms_p50:5% in both directions (target: >= 90%, >= 90%, 0 and 0);
2. per slowdown fraction f, a run with HARNESS_TEST_SLOWDOWN=f (the `test-slowdown` variants
   get work costing about f of the model; the other variants are unchanged) compared with the
   last A/A run: which cells are flagged (target: every `test-slowdown` cell at f = 0.10, no
   other cell), and the size of the slowdown as measured within the slow run's own rounds.
3. the between-run noise of variants beside their baseline estimated from all A/A runs
   (`harness compare --run-noise` takes it; the default was measured this way), and the
   last run compared with all the others, as the nightly workflow compares (target: exit 0);
4. calibration: every A/A run compared with all the others (leave one out) and with its pair
   alone; the shares of variant p-values below 0.05 and 0.01 should be about 5% and 1% (more:
   the test allows too little noise and false alarms follow; fewer: it is conservative and
   loses power), and how many of those comparisons flagged a regression.

`--stored TAG` skips the runs and analyses the stored A/A runs `TAG-aa*` of --results-dir.

The suite's `test-slowdown` method is the plugin in benchmarks/slowdown_plugin (put on
PYTHONPATH here). Any suite works for step 1 (e.g. suites/quick.yaml, with --slowdowns '').
Prints the machine's load before each run: figures taken on a busy machine are not
representative.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "benchmarks" / "slowdown_plugin"
THRESHOLD = "latency_ms_p50:5%"
CLOSE = 0.03


def env(fraction: float) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), str(PLUGIN), os.environ.get("PYTHONPATH"))
                           if p)
    return os.environ | {"PYTHONPATH": path, "HARNESS_TEST_SLOWDOWN": str(fraction),
                         "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                         "TRANSFORMERS_OFFLINE": "1"}


def harness(*args: str, fraction: float = 0.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True, env=env(fraction), cwd=ROOT)


def run(suite: Path, results: Path, run_id: str, fraction: float = 0.0) -> Path:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    res = harness("run", str(suite), "--results-dir", str(results), "--run-id", run_id,
                  fraction=fraction)
    wall = time.perf_counter() - start
    print(f"run {run_id}: exit {res.returncode}, {wall:.0f}s wall, load before {load:.2f}, "
          f"after {os.getloadavg()[0]:.2f}", flush=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)
    return results / "runs" / run_id


def records(run_dir: Path) -> dict[tuple, dict]:
    rows = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()
            if line.strip()]
    return {(r["model"], r["task"], r["variant"], r["provider"], r["batch_size"], r["seq_len"]): r
            for r in rows if r["status"] == "ok"}


def moved(a: dict[tuple, dict], b: dict[tuple, dict], field: str) -> np.ndarray:
    """|b / a - 1| of a field over the records both runs have it for."""
    pairs = [(a[k].get(field), b[k].get(field)) for k in a if k in b]
    return np.array([abs(y / x - 1) for x, y in pairs if x and y])


MAX_LOAD = ["--max-load", "0.5"]  # set from the command line


def section(text: str, title: str) -> list[str]:
    """The table rows of a Markdown section of `harness compare`'s output."""
    if f"## {title}" not in text:
        return []
    part = text.split(f"## {title}")[1].split("\n## ")[0]
    return [line for line in part.splitlines() if line.startswith("|")][2:]


def compare(new: Path, *bases: Path) -> tuple[int, list[str]]:
    """Exit code of `harness compare` at THRESHOLD and the flagged rows; prints how many
    cells it left untested beyond the threshold, by reason."""
    args = [a for b in bases for a in ("--baseline", str(b))]
    res = harness("compare", str(new), *args, "--threshold", THRESHOLD, *MAX_LOAD)
    untested = section(res.stdout, "Beyond a threshold but untested")
    if untested:
        why = Counter(row.strip("| ").rsplit("|", 1)[-1].split(":")[0].split("(")[0].strip()
                      for row in untested)
        print(f"  {new.name}: {len(untested)} cells beyond the threshold but untested: "
              + "; ".join(f"{n} {reason}" for reason, n in why.most_common()))
    return res.returncode, section(res.stdout, "Regressions")


def run_noise(*runs: Path) -> str:
    """`harness compare`'s estimates from `runs` of the between-run sd beside the baseline,
    and of the baselines' absolute latency per provider (the machine noise)."""
    from harness.compare import estimate_machine_noise, estimate_run_noise
    from harness.store import RECORDS, load_records

    loaded = [{r.key: r for r in load_records(d / RECORDS)} for d in runs]
    found = estimate_run_noise(loaded, 50)
    machine = estimate_machine_noise(loaded, 50)
    return ((f"{found.sd:.2%} ({found.source})" if found else "too few cells to estimate")
            + "; machine noise " + (", ".join(f"{p} {n.sd:.2%}" for p, n in machine.items())
                                    or "too few baseline cells to estimate"))


def aa(first: Path, second: Path) -> None:
    a, b = records(first), records(second)
    p50 = moved(a, b, "latency_ms_p50")
    non_base = {k: v for k, v in a.items() if k[2] != "baseline"}
    speed = moved(non_base, b, "speedup")
    forward, fwd_rows = compare(second, first)
    backward, bwd_rows = compare(first, second)
    print(f"A/A {first.name} -> {second.name}: p50 within 3%: {(p50 <= CLOSE).mean():.0%} "
          f"of {len(p50)} (median move {np.median(p50):.1%}, worst {p50.max():.1%}); "
          f"speedup within 3%: {(speed <= CLOSE).mean():.0%} of {len(speed)} "
          f"(median {np.median(speed):.1%}, worst {speed.max():.1%}); "
          f"compare exit {forward} / {backward} (reversed); run noise {run_noise(first, second)}")
    for row in fwd_rows + bwd_rows:
        print(f"  false alarm: {row}")


def pvalues(new: list, bases: list[list]) -> tuple[list[float], list[float], bool]:
    """p-values of the p50 tests of the variant cells (vs baseline) and of the baseline cells
    (absolute), and whether any cell was flagged."""
    from harness.compare import compare_runs

    cmp = compare_runs(new, *bases, thresholds=[THRESHOLD])
    tests = [(c.key, c.latency["latency_ms_p50"]) for c in cmp.cells
             if "latency_ms_p50" in c.latency]  # cells without samples have none
    return ([t.p for _, t in tests if t.tested and t.basis == "vs baseline"],
            [t.p for key, t in tests if t.tested and key[2] == "baseline"],
            bool(cmp.regressions))


def calibration(runs: list[Path]) -> None:
    """Leave-one-out and pairwise A/A comparisons: are the p-values uniform, those of the
    variants (relative to their baseline) and those of the baselines (absolute, tested only
    against several baseline runs)?"""
    from harness.store import RECORDS, load_records

    loaded = [load_records(d / RECORDS) for d in runs]
    pairs = [(i, i ^ 1) for i in range(len(runs) - len(runs) % 2)]
    for name, plan in (("against its pair", [(i, [j]) for i, j in pairs]),
                       ("against all the others", [(i, [j for j in range(len(runs)) if j != i])
                                                   for i in range(len(runs))])):
        var, base, flagged = [], [], 0
        for i, others in plan:
            v, b, hit = pvalues(loaded[i], [loaded[j] for j in others])
            var, base, flagged = var + v, base + b, flagged + hit
        shares = [f"{len(arr)} {kind} tests, p < 0.05: {(arr < 0.05).mean():.1%}, "
                  f"p < 0.01: {(arr < 0.01).mean():.1%}"
                  for kind, arr in (("variant", np.array(var)), ("baseline", np.array(base)))
                  if len(arr)]
        if shares:
            print(f"calibration, each A/A run {name} (expect 5% and 1%): "
                  + "; ".join(shares) + f"; {flagged} of {len(plan)} comparisons flagged "
                  "a regression")


def sensitivity(suite: Path, results: Path, reference: Path, fraction: float, tag: str
                ) -> None:
    slow = run(suite, results, f"{tag}-slow{fraction:g}", fraction)
    code, rows = compare(slow, reference)
    injected = [k for k in records(slow) if "test-slowdown" in k[2]]
    flagged = [k for k in injected if any(f"| {k[2]} " in r and f"| {k[4]} " in r for r in rows)]
    others = [r for r in rows if "test-slowdown" not in r]
    own = records(slow)
    sizes = [1 / own[k]["speedup"] - 1 for k in injected
             if k[2] == "test-slowdown" and own[k].get("speedup")]
    print(f"slowdown {fraction:.0%}: exit {code}; flagged {len(flagged)}/{len(injected)} "
          f"injected cells, {len(others)} other cells; measured size of the injected work "
          f"(test-slowdown vs baseline, same rounds): "
          f"{', '.join(f'{s:+.1%}' for s in sizes) or 'n/a'}")
    for row in rows:
        print(f"  {row}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "benchmarks/suites/latency-aa.yaml")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "results" / "aa")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--slowdowns", default="0.03,0.05,0.10")
    parser.add_argument("--tag", default=time.strftime("%m%d-%H%M"),
                        help="run ids start with it (a rerun on the same results dir)")
    parser.add_argument("--max-load", default="0.5",
                        help="passed to harness compare (1 tests even heavily loaded cells)")
    parser.add_argument("--stored", metavar="TAG",
                        help="only analyse the stored A/A runs TAG-aa* (no new runs)")
    args = parser.parse_args()
    MAX_LOAD[1] = args.max_load
    if args.stored:
        calibration(sorted((args.results_dir / "runs").glob(f"{args.stored}-aa*")))
        return
    print(f"machine: {os.cpu_count()} CPUs; suite {args.suite}", flush=True)
    tag = args.tag
    last = run(args.suite, args.results_dir, f"{tag}-fill")  # builds and caches everything
    warm = []
    for i in range(1, args.pairs + 1):
        first = run(args.suite, args.results_dir, f"{tag}-aa{i}a")
        last = run(args.suite, args.results_dir, f"{tag}-aa{i}b")
        aa(first, last)
        warm += [first, last]
    if len(warm) > 2:
        print(f"run noise over all {len(warm)} A/A runs: {run_noise(*warm)}")
        code, rows = compare(warm[-1], *warm[:-1])  # as the nightly compares: several nights
        print(f"A/A {warm[-1].name} against the {len(warm) - 1} runs before it: "
              f"compare exit {code}")
        for row in rows:
            print(f"  false alarm: {row}")
        calibration(warm)
    for fraction in [float(f) for f in args.slowdowns.split(",") if f.strip()]:
        sensitivity(args.suite, args.results_dir, last, fraction, tag)


if __name__ == "__main__":
    main()
