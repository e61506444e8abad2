"""OpenVINO vs onnxruntime on MiniLM-L6 (CPU): fp32, bf16, fp16; paired speed-ups, logit
agreement, harness overhead on the OpenVINO backend, and OpenVINO's per-node counters.

Run:  python benchmarks/bench_openvino.py [--rounds 10] [--threads 2] [--profile]
      [--ovep DIR]   # also time onnxruntime's OpenVINO EP (onnxruntime-ep-openvino in DIR)
The model is the packaged all-MiniLM-L6-v2 with a fresh (seeded) classification head, exported
the way the pipeline exports; speed does not depend on fine-tuning. Every harness variant is
built and run the way a suite runs it (harness.timing.make_runner, the bf16/fp16 methods), so
the figures are the harness's own. Variants run interleaved (A, B, C, A, B, C, ...; `--block`
runs each, the first dropped) so machine load hits them alike; a speed-up is the median over
aligned runs of (onnxruntime fp32 time / variant time).
Issue targets at batch 32 x seq 128: OpenVINO bf16 >= 2.2x onnxruntime fp32; harness overhead
on the OpenVINO backend <= 1 % over a bare `request.infer(feed)` loop.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from harness.methods.precision import PrecisionStep
from harness.optimize import optimize_fp32
from harness.schema import TimingSpec
from harness.timing import make_runner
from harness.timing.env import cpu_info
from harness.timing.loop import measure

BASELINE = "ort-fp32"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_int8 import export_minilm  # noqa: E402  (the same export as the int8 benchmark)


def build(work: Path, spec: TimingSpec, ovep: Path | None) -> dict[str, Any]:
    """name -> a step factory `f(feed) -> callable`, and the runners behind them."""
    src, tok = export_minilm(work / "export")
    opt = work / "fp32-opt.onnx"
    optimize_fp32(src, opt, num_heads=0, hidden_size=0)
    files = {p: PrecisionStep(p).apply(src, work / p, _ctx(work)) for p in ("bf16", "fp16")}
    runners: dict[str, Any] = {BASELINE: make_runner(opt, "cpu", spec),
                               "ov-fp32": make_runner(opt, "openvino", spec)}
    for p, path in files.items():
        runners[f"ov-{p}"] = make_runner(path, "openvino", spec)
    runners["ort-fp16-graph"] = _ort_fp16(opt, work, spec)
    if ovep is not None:
        runners |= _ovep_sessions(ovep, src, spec.intra_op_threads or 0)
    return {"runners": runners, "tokenizer": tok, "files": {"fp32": opt, **files}}


def _ctx(work: Path) -> Any:
    from harness.methods.base import MethodContext
    from harness.schema import FinetuneSpec
    from harness.tasks.spec import get_task

    return MethodContext(task=get_task("mrpc"), finetune=FinetuneSpec(), workdir=work)


def _ort_fp16(opt: Path, work: Path, spec: TimingSpec) -> Any:
    """onnxruntime on the graph converted to fp16 (io kept fp32): does its CPU gain from it?"""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = work / "fp16-graph.onnx"
    onnx.save(convert_float_to_float16(onnx.load(str(opt)), keep_io_types=True), str(path))
    return make_runner(path, "cpu", spec)


class _OrtSessionStep:
    """An onnxruntime session (here: with the OpenVINO EP) with run() and step()."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feed)

    def step(self, feed: dict[str, np.ndarray]) -> Any:
        return lambda: self.session.run(None, feed)


def _ovep_sessions(site: Path, src: Path, threads: int) -> dict[str, Any]:
    """onnxruntime-ep-openvino (a plugin EP; installed with --target into `site`). Its
    `precision` option is ignored on this CPU, so the precision goes in through load_config."""
    import json

    import onnxruntime as ort

    sys.path.insert(0, str(site))
    import onnxruntime_ep_openvino as ep

    ort.register_execution_provider_library("openvino_ep", ep.get_library_path())
    devices = [d for d in ort.get_ep_devices()
               if d.ep_name == ep.get_ep_name() and d.ep_metadata.get("ov_device") == "CPU"]
    out = {}
    for name, hint in (("ovep-fp32", "f32"), ("ovep-bf16", "bf16")):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        config = {"CPU": {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                          **({"INFERENCE_NUM_THREADS": threads} if threads else {})}}
        opts.add_provider_for_devices(devices[:1], {"load_config": json.dumps(config)})
        out[name] = _OrtSessionStep(ort.InferenceSession(str(src), opts))
    return out


def timing(runners: dict[str, Any], feed: dict[str, np.ndarray], rounds: int, block: int
           ) -> dict[str, list[float]]:
    steps = {k: r.step(feed) for k, r in runners.items()}
    for step in steps.values():
        step()
        step()
    out: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for k, step in steps.items():
            for i in range(block):
                t = time.perf_counter()
                step()
                if i:
                    out[k].append(time.perf_counter() - t)
    return out


def agreement(runners: dict[str, Any], tok: Any, n: int) -> dict[str, dict[str, float]]:
    """Logits on n MRPC-like sentence pairs (the tokenizer's own text) vs onnxruntime fp32."""
    from harness.tasks import load_split

    glue = Path(os.environ.get("HARNESS_GLUE_DIR", Path(__file__).resolve().parents[2]
                               / "shared" / "glue"))
    dev = load_split("mrpc", "dev", data_dir=glue, source="local").take(n, 0)
    enc = tok(dev.text_a, dev.text_b, padding=True, truncation=True, max_length=128,
              return_tensors="np")
    feed = {k: np.asarray(v, np.int64) for k, v in enc.items()}
    logits = {k: np.asarray(r.run(feed)[0], np.float32) for k, r in runners.items()}
    ref = logits[BASELINE]
    sd = float(np.std(ref[:, 1] - ref[:, 0]))
    return {k: {"agree": float(np.mean(v.argmax(1) == ref.argmax(1))),
                "max_abs": float(np.abs(v - ref).max()),
                "err_over_sd": float(np.abs(v - ref).mean() / sd)} for k, v in logits.items()}


def overhead(runner: Any, feed: dict[str, np.ndarray], spec: TimingSpec, rounds: int,
             iterations: int) -> dict[str, tuple[float, list[float]]]:
    """Median over ABBA rounds of harness median / bare-loop median, for a bare loop of the
    harness's own call (`infer(feed, share_inputs=True)`) and of the default `infer(feed)`."""
    request = runner.compiled.create_infer_request()
    short = spec.model_copy(update={"warmup": 1, "min_iterations": iterations,
                                    "min_seconds": 0.0})
    bare = {"same call": lambda: request.infer(feed, share_inputs=True),
            "infer(feed)": lambda: request.infer(feed)}
    out = {}
    for label, call in bare.items():
        ratios = []
        for r in range(rounds):
            got = {}
            for which in ("harness", "bare") if r % 2 == 0 else ("bare", "harness"):
                if which == "harness":
                    got[which] = measure(runner, feed, short, batch_size=1,
                                         provider="openvino").stats.median
                else:
                    call()
                    samples = []
                    for _ in range(iterations):
                        t0 = time.perf_counter_ns()
                        call()
                        samples.append(time.perf_counter_ns() - t0)
                    got[which] = statistics.median(samples) / 1e6
            ratios.append(got["harness"] / got["bare"])
        out[label] = (statistics.median(ratios), ratios)
    return out


def profile(files: dict[str, Path], feed: dict[str, np.ndarray], spec: TimingSpec,
            runs: int = 3) -> None:
    """OpenVINO's own counters (PERF_COUNT): time per node type and per kernel, per precision."""
    import openvino as ov

    from harness.timing.openvino import compile_config

    core = ov.Core()
    for precision, path in files.items():
        compiled = core.compile_model(str(path), "CPU",
                                      compile_config(spec, precision) | {"PERF_COUNT": True})
        request = compiled.create_infer_request()
        by_type: Counter[str] = Counter()
        by_kernel: Counter[str] = Counter()
        for _ in range(runs + 1):
            request.infer(feed)
        for info in request.get_profiling_info():  # the last run
            us = info.real_time.total_seconds() * 1e6
            by_type[info.node_type] += us
            by_kernel[info.exec_type] += us
        total = sum(by_type.values())
        print(f"\nOpenVINO {precision}: {total / 1e3:.1f} ms in nodes (last run)")
        for label, counts in (("node type", by_type), ("kernel", by_kernel)):
            for name, us in counts.most_common(6):
                print(f"  {label:9s} {name:34s} {us / 1e3:8.1f} ms {100 * us / total:5.1f} %")


def report(times: dict[str, list[float]], agree: dict[str, dict[str, float]]) -> None:
    base = np.array(times[BASELINE])
    print(f"\n{'variant':16s} {'median ms':>9s} {'p25-p75':>11s} {'x paired':>8s} "
          f"{'agree':>6s} {'max|d|':>8s} {'err/sd':>7s}")
    for k, t in times.items():
        wall = np.array(t)
        q1, q3 = np.percentile(wall, [25, 75]) * 1e3
        a = agree.get(k, {})
        print(f"{k:16s} {statistics.median(t) * 1e3:9.1f} {q1:5.0f}-{q3:<5.0f} "
              f"{np.median(base / wall):8.2f} {a.get('agree', float('nan')):6.3f} "
              f"{a.get('max_abs', float('nan')):8.4f} {a.get('err_over_sd', float('nan')):7.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=3, help="runs per variant per round (>= 2)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--agree-n", type=int, default=128)
    ap.add_argument("--overhead-rounds", type=int, default=6, help="0: no overhead check")
    ap.add_argument("--ovep", type=Path, help="a folder with onnxruntime-ep-openvino in it")
    ap.add_argument("--profile", action="store_true", help="OpenVINO's per-node counters")
    ap.add_argument("--workdir", type=Path, help="keep the models here (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    spec = TimingSpec(intra_op_threads=args.threads)
    flags = {k: v for k, v in cpu_info()["flags"].items() if v}
    print(f"CPU {cpu_info()['model']}; flags {sorted(flags)}")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        built = build(work, spec, args.ovep)
        runners = built["runners"]
        for k, r in runners.items():
            if hasattr(r, "describe"):
                d = r.describe()
                print(f"{k:16s} precision {r.precision:5s} "
                      f"{d.get('inference_precision_hint', d.get('ort_providers'))}")
        agree = agreement(runners, built["tokenizer"], args.agree_n)
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, built["tokenizer"].vocab_size, (args.batch, args.seq))
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                "token_type_ids": np.zeros_like(ids)}
        print(f"\nbatch {args.batch} x seq {args.seq}, {args.threads} threads, {args.rounds} "
              f"interleaved rounds of {args.block} runs, load before {os.getloadavg()[0]:.2f}")
        times = timing(runners, feed, args.rounds, max(args.block, 2))
        print(f"load after {os.getloadavg()[0]:.2f}")
        report(times, agree)
        for name in ("ov-fp32", "ov-bf16") if args.overhead_rounds else ():
            for label, (ratio, ratios) in overhead(runners[name], feed, spec,
                                                   args.overhead_rounds, 10).items():
                print(f"harness/bare median ratio on {name}, bare {label}: {ratio:.4f} "
                      f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
        if args.profile:
            profile(built["files"], feed, spec)


if __name__ == "__main__":
    main()
