"""Checks of a finished suite run that had `cuda` among its providers (see docs/gpu.md).

Run:  python benchmarks/gpu_checks.py RESULTS_DIR RUN_ID [--out checks.json]
after `harness run suites/gpu.yaml --results-dir RESULTS_DIR --run-id RUN_ID` on a GPU machine.
Every cell is rebuilt from the run's cache (nothing is retrained), then:
1. dev-set logits of each cell's ONNX file through the CPU and the CUDA execution provider:
   largest difference, prediction agreement and the metric on both;
2. IO binding vs a plain `session.run` loop on CUDA, interleaved rounds of the same loop,
   to show what the host-device copies add to a timed run;
3. seconds of each fine-tune, pruning recovery and distillation build, from the cache.
Prints one JSON document.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from harness.cache import ArtifactCache
from harness.evaluation import evaluate_logits, predictions_from_logits
from harness.export import encode_batch
from harness.plan import load_suite, plan
from harness.schema import TimingSpec
from harness.stages import Stages
from harness.tasks import get_task, resolve_data_dir
from harness.timing.inputs import feed_for, make_inputs
from harness.timing.loop import cpu_runner, cuda_runner, timed_loop
from harness.timing.session import make_session

SPEC = TimingSpec(warmup=10, min_iterations=50, min_seconds=0.5, max_seconds=10)


def dev_logits(session: ort.InferenceSession, tokenizer: Any, data: Any, max_len: int,
               batch_size: int = 32) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    out = [session.run(None, encode_batch(tokenizer, data, s, s + batch_size, max_len, names))[0]
           for s in range(0, len(data), batch_size)]
    return np.concatenate(out).astype(np.float64)


def compare_providers(stages: Stages, cell: Any, built: Any) -> dict[str, Any]:
    """CPU vs CUDA on the whole dev set, same ONNX file."""
    spec, data = get_task(cell.task), stages.split(cell.task, "dev")
    tok, max_len = built.tokenizer(), stages.ctx.suite.finetune.max_seq_len
    logits = {p: dev_logits(make_session(built.onnx_path, p, stages.ctx.suite.timing), tok, data,
                            max_len) for p in ("cpu", "cuda")}
    diff = np.abs(logits["cuda"] - logits["cpu"])
    preds = {p: predictions_from_logits(spec, v) for p, v in logits.items()}
    return {"n": len(data), "max_abs_diff": float(diff.max()),
            "max_rel_diff": float((diff / np.maximum(np.abs(logits["cpu"]), 1e-6)).max()),
            "prediction_agreement": float(np.mean(preds["cpu"] == preds["cuda"])),
            "metric_cpu": evaluate_logits(spec, data, logits["cpu"].astype(np.float32)),
            "metric_cuda": evaluate_logits(spec, data, logits["cuda"].astype(np.float32))}


def io_binding_effect(stages: Stages, cell: Any, built: Any, batch: int, seq: int,
                      rounds: int = 3) -> dict[str, Any]:
    """Median ms of the bound loop (what the harness times) and of session.run with numpy."""
    dev = stages.split(cell.task, "dev")
    session = make_session(built.onnx_path, "cuda", stages.ctx.suite.timing)
    feed = feed_for(session, make_inputs(built.tokenizer(), dev.text_a, dev.text_b, batch, seq,
                                         0))
    steps = {"io_binding": cuda_runner(session, feed), "session_run": cpu_runner(session, feed)}
    medians: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for name, step in steps.items():
            samples, _ = timed_loop(step, SPEC)
            medians[name].append(statistics.median(samples) / 1e6)
    bound, plain = (statistics.median(medians[k]) for k in ("io_binding", "session_run"))
    input_bytes = sum(v.nbytes for v in feed.values())
    return {"batch": batch, "seq": seq, "io_binding_ms": round(bound, 4),
            "session_run_ms": round(plain, 4), "difference_ms": round(plain - bound, 4),
            "rounds_ms": medians, "input_bytes": input_bytes}


def build_seconds(cache: ArtifactCache) -> list[dict[str, Any]]:
    """Wall seconds of every fine-tune and torch-method build, with the training loop's own."""
    rows = []
    for stage in ("finetune", "torch"):
        for meta_path in sorted((cache.root / stage).glob("*/artifact.json")):
            meta = json.loads(meta_path.read_text())
            info = meta.get("info", {})
            rows.append({"stage": stage, "key": meta["key"][:12],
                         "build_seconds": meta.get("seconds"),
                         "train_seconds": (info.get("train_log") or {}).get("seconds"),
                         "train_examples": info.get("train_examples"),
                         "notes": info.get("notes")})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("run_id")
    args = parser.parse_args()
    run_dir = args.results_dir / "runs" / args.run_id
    suite, pipelines = load_suite(run_dir / "suite.yaml")
    cache = ArtifactCache(args.results_dir.resolve() / "cache")
    stages = Stages(suite, cache, resolve_data_dir(suite.data_dir))
    out: dict[str, Any] = {"providers": ort.get_available_providers(), "cells": []}
    records = [json.loads(line) for line in (run_dir / "records.jsonl").open()]
    finished = {(r["model"], r["task"], r["variant"]) for r in records if r["status"] == "ok"}
    for cell in plan(suite, pipelines):
        if (cell.model, cell.task, cell.pipeline.label) not in finished:
            continue  # never built (or failed): nothing cached to check
        row: dict[str, Any] = {"cell": cell.label}
        try:
            built = stages.build(cell)
            row["onnx"] = built.onnx_path.name
            row["cpu_vs_cuda"] = compare_providers(stages, cell, built)
            if cell.pipeline.label == "baseline":
                row["io_binding"] = [io_binding_effect(stages, cell, built, b, s)
                                     for b in suite.timing.batch_sizes
                                     for s in suite.timing.seq_lens]
        except Exception as exc:  # noqa: BLE001 - report and go on to the next cell
            row["error"] = f"{type(exc).__name__}: {exc}"
        out["cells"].append(row)
    out["build_seconds"] = build_seconds(cache)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
