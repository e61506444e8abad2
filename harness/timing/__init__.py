"""Latency of ONNX models: runners (onnxruntime, OpenVINO), paired inputs, loop, stats, roofline."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from harness import precision as prec
from harness.errors import ConfigError, first_line
from harness.schema import TimingSpec
from harness.timing.backend import PROVIDERS, as_runner, make_runner
from harness.timing.base import Runner
from harness.timing.group import time_group
from harness.timing.inputs import describe_inputs, feed_for, make_inputs, random_inputs
from harness.timing.loop import Measurement, measure
from harness.timing.placement import device_check
from harness.timing.roofline import (
    FlopCount,
    count_flops,
    gemm_peak_gflops,
    model_flops,
    roofline_fields,
)
from harness.timing.session import make_session
from harness.timing.stats import Stats

log = logging.getLogger(__name__)

__all__ = ["PROVIDERS", "Measurement", "Runner", "Stats", "describe_inputs", "device_check",
           "feed_for", "gemm_peak_gflops", "make_inputs", "make_runner", "make_session",
           "measure", "model_flops", "roofline_of", "time_file", "time_group", "time_onnx"]


def _seq_len(inputs: Mapping[str, np.ndarray]) -> int:
    arr = inputs.get("input_ids", next(iter(inputs.values())))
    return int(arr.shape[1])


def time_onnx(onnx_path: str | Path, provider: str, spec: TimingSpec,
              feed_inputs: Mapping[str, np.ndarray], batch_size: int, *,
              roofline: bool = True, flops: FlopCount | None = None,
              session: ort.InferenceSession | Runner | None = None,
              checked: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time one ONNX model on one provider; returns Record fields.

    Fields: the latency statistics, samples_ms, unstable(_reason), load_avg, peak_rss_mb,
    gpu_mem_mb, precision, session (settings and how the loop ended) and, with `roofline`,
    flops, gflops_per_s and efficiency (`flops`: a count made earlier, else counted here).
    Raises SkipCell when the provider is unavailable or keeps heavy ops on the CPU, ValueError
    when a GPU session's outputs differ from the CPU's. A runner made by `make_runner` (or an
    onnxruntime session) for this file and provider may be passed to time several shapes
    without rebuilding it, with `checked`, what `device_check` returned for it.
    """
    owned = session is None
    runner = make_runner(onnx_path, provider, spec) if owned else as_runner(session, provider,
                                                                            spec)
    feed = feed_for(runner, feed_inputs)
    if checked is None:
        checked = device_check(onnx_path, provider, spec, feed, runner)
    m = measure(runner, feed, spec, batch_size=batch_size, provider=provider)
    fields = m.record_fields()
    fields["precision"] = runner.precision
    fields["session"] = {**runner.describe(), **checked, "measurement": m.details}
    if owned:
        del runner  # its thread pool must not compete with the peak GEMM measurement
    if roofline:
        fields.update(roofline_of(onnx_path, provider, spec, batch_size, _seq_len(feed_inputs),
                                  fields, flops))
    return fields


def roofline_of(onnx_path: str | Path, provider: str, spec: TimingSpec, batch_size: int,
                seq_len: int, fields: dict[str, Any], count: FlopCount | None,
                peak_store: Path | None = None) -> dict[str, Any]:
    """flops / gflops_per_s / efficiency at the p50 in `fields` (whose session entry gets the
    peaks; float FLOPs against the float peak at the `precision` in `fields`; peaks kept in
    `peak_store`, see gemm_peak_gflops); a failure here is noted, never loses the timing."""
    try:
        if count is None:
            count = count_flops(onnx.load(str(onnx_path), load_external_data=False),
                                batch_size, seq_len)
        peaks = gemm_peak_gflops(provider, spec, fields.get("precision") or prec.DEFAULT,
                                 peak_store)
    except Exception as exc:  # noqa: BLE001 - the latency above is still valid
        log.warning("roofline for %s failed: %s", onnx_path, exc)
        fields["session"]["roofline"] = {"error": f"{type(exc).__name__}: {exc}"}
        return {}
    fields["session"]["roofline"] = {"peak_gflops": peaks, "float_flops": count.float_flops,
                                     "int8_flops": count.int8_flops,
                                     "uncounted": count.uncounted}
    return roofline_fields(count, fields["latency_ms_p50"], peaks)


def vocab_size(model: onnx.ModelProto, default: int = 2) -> int:
    """Rows of the word-embedding table that input_ids index, or `default` if not found."""
    inits = {i.name: i for i in model.graph.initializer}
    ids = {"input_ids"}
    for node in model.graph.node:  # topological order: casts of input_ids come first
        if node.op_type == "Cast" and node.input[0] in ids:
            ids.add(node.output[0])
        elif node.op_type == "Gather" and node.input[1] in ids and node.input[0] in inits:
            return int(inits[node.input[0]].dims[0])
        elif (node.op_type.endswith("EmbedLayerNormalization") and node.input[0] in ids
              and node.input[2] in inits):
            return int(inits[node.input[2]].dims[0])
    return default


def read_onnx(path: Path) -> onnx.ModelProto:
    """An ONNX file that passes onnx's checker (weights inline), or ConfigError naming it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf and checker errors alike: not a model
        raise ConfigError(f"{path}: not an ONNX model ({first_line(exc, 200)})") from None
    if not model.graph.node:
        raise ConfigError(f"{path}: not an ONNX model (no graph)")
    return model


def max_positions(model: onnx.ModelProto) -> int | None:
    """Rows of a BERT-style position-embedding table: the longest sequence the model takes."""
    for init in model.graph.initializer:
        if init.name.endswith("position_embeddings.weight") and init.dims:
            return int(init.dims[0])
    return None


def time_file(onnx_path: str | Path, provider: str, batch_size: int, seq_len: int,
              spec: TimingSpec, tokenizer: Any = None, texts_a: Sequence[str] | None = None,
              texts_b: Sequence[str] | None = None) -> dict[str, Any]:
    """Time an ONNX file for `harness time`: tokenized `texts_a`/`texts_b` when a tokenizer
    and texts are given, otherwise seeded random token ids (said in the `inputs` field)."""
    model = read_onnx(Path(onnx_path))
    limit = max_positions(model)
    if limit is not None and seq_len > limit:
        raise ConfigError(f"--seq-len {seq_len}: the model takes at most {limit} positions")
    if tokenizer is not None and texts_a:
        inputs = make_inputs(tokenizer, texts_a, texts_b, batch_size, seq_len, spec.seed)
        described = describe_inputs(batch_size, seq_len, spec.seed, source="given")
    else:
        vocab = getattr(tokenizer, "vocab_size", None) or vocab_size(model)
        inputs = random_inputs(batch_size, seq_len, spec.seed, vocab)
        described = describe_inputs(batch_size, seq_len, spec.seed, source="random")
        described += f"; ids below {vocab}"
    fields = time_onnx(onnx_path, provider, spec, inputs, batch_size)
    return {"model": str(onnx_path), "provider": provider, "batch_size": batch_size,
            "seq_len": seq_len, "inputs": described, **fields}
