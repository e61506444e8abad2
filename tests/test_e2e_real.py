"""Real end-to-end runs: the packaged MiniLM-L6 on a slice of the real MRPC data."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from harness.run import run_suite
from harness.store import RunStore

pytestmark = pytest.mark.e2e

SUITE = """
name: real-slice
data_dir: {glue}
models: [minilm-l6]
tasks: [mrpc]
methods: [baseline, int8-dynamic]
finetune: {{epochs: 1, batch_size: 16, max_seq_len: 128, max_train_samples: 64,
           max_eval_samples: 48}}
timing: {{batch_sizes: [1], seq_lens: [128], warmup: 2, min_iterations: 5, min_seconds: 0.2}}
"""


def test_packaged_l6_on_real_mrpc(tmp_path: Path, shared_glue: Path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.format(glue=shared_glue))
    summary = run_suite(suite, tmp_path / "results", "real")
    records = {r.variant: r for r in RunStore(summary.run_dir).records()}
    assert summary.exit_code == 0, [r.error for r in records.values()]
    base, int8 = records["baseline"], records["int8-dynamic"]
    for r in (base, int8):
        assert r.status == "ok" and r.n_eval == 48 and r.metric_name == "accuracy"
        assert 0.0 < r.metric_value <= 1.0 and r.f1 is not None
        assert r.latency_ms_p50 > 0 and r.n_timed >= 5
    assert base.parity_agreement >= 0.95 and base.parity_max_abs_diff < 1e-3
    assert base.params > 20_000_000  # 22.7M: the real 6-layer MiniLM, not a stand-in
    assert int8.onnx_bytes < 0.4 * base.onnx_bytes
    onnx_files = sorted((tmp_path / "results" / "cache" / "onnx").rglob("*.onnx"))
    ops = {n.op_type for f in onnx_files for n in onnx.load(f).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "DynamicQuantizeLinear"}
