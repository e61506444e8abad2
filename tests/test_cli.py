"""Exit codes of the CLI, through a subprocess as users see them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from harness.records import Record
from harness.store import RunStore


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True)


def write_run(root: Path, run_id: str, scale: float, seed: int = 0,
              slow_variant: str | None = None) -> Path:
    """A run of 3 variants x 2 batch sizes, 5 rounds each whose levels vary by 1% (as a
    machine's do); `slow_variant` is `scale` times slower, the rest as fast as ever."""
    store = RunStore.open(root, run_id)
    rng = np.random.default_rng(seed)
    for variant in ("baseline", "int8-dynamic", "int8-static"):
        for batch in (1, 32):
            factor = scale if slow_variant in (None, variant) else 1.0
            rounds = [rng.normal(10.0 * batch, 0.2, 40) * np.exp(rng.normal(0, 0.01)) * factor
                      for _ in range(5)]
            samples = np.concatenate(rounds).tolist()
            store.append(Record(run_id=run_id, model="m", task="mrpc", method=variant,
                                variant=variant, provider="cpu", batch_size=batch,
                                seq_len=128, status="ok", metric_name="accuracy",
                                metric_value=0.8, latency_ms_p50=float(np.median(samples)),
                                samples_ms=samples, round_sizes=[40] * 5, machine="fp"))
    return store.dir


def test_compare_exit_codes(tmp_path: Path) -> None:
    base = write_run(tmp_path, "base", 1.0, seed=1)
    same = write_run(tmp_path, "same", 1.0, seed=2)  # A/A: same code, another run
    slow = write_run(tmp_path, "slow", 1.1, seed=3, slow_variant="int8-static")
    res = cli("compare", str(same), "--baseline", str(base), "--threshold", "latency_ms_p50:5%")
    assert res.returncode == 0, res.stdout
    assert cli("compare", str(base), "--baseline", str(same)).returncode == 0
    res = cli("compare", str(slow), "--baseline", str(base), "--threshold", "latency_ms_p50:5%")
    assert res.returncode == 1 and "Regressions" in res.stdout
    flagged = res.stdout.split("## Regressions")[1].split("## All cells")[0]
    assert flagged.count("int8-static") == 2 and "int8-dynamic" not in flagged
    res = cli("compare", str(slow), "--baseline", str(base), "--baseline", str(same))
    assert res.returncode == 1 and "2 baseline runs" in res.stdout
    res = cli("compare", str(slow), "--baseline", str(base), "--run-noise", "20")
    assert res.returncode == 0 and "latency_ms_p50 20.0% (given)" in res.stdout
    res = cli("compare", str(slow), "--baseline", str(base), "--threshold", "latency:5")
    assert res.returncode == 2 and res.stderr.startswith("error: ")


def test_report_rebuilds_outputs(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", 1.0)
    res = cli("report", str(run))
    assert res.returncode == 0, res.stderr
    for name in ("leaderboard.md", "leaderboard.csv", "report.html", "benchmark.json"):
        assert (run / name).exists()
    assert cli("report", str(tmp_path / "nope")).returncode == 2


def test_history_and_usage_errors(tmp_path: Path) -> None:
    write_run(tmp_path, "r", 1.0)
    res = cli("history", "--results-dir", str(tmp_path))
    assert res.returncode == 0 and "| r " in res.stdout
    assert cli("list", "widgets").returncode == 2
    assert cli("time", str(tmp_path / "missing.onnx")).returncode == 2
