"""Usage and input errors through the CLI in a subprocess: one line on stderr, exit 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import suite_file

from harness.records import Record
from harness.store import RunStore


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli_main", *args],
                          capture_output=True, text=True, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, no traceback, and the message names what is wrong."""
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])
    assert "Traceback" not in res.stderr and "─" not in res.stderr, res.stderr[-3000:]
    for needle in needles:
        assert needle in res.stderr, res.stderr[-3000:]


@pytest.mark.parametrize("args, needle", [
    (["frobnicate"], "No such command"),
    (["run"], "run: Missing argument 'suite'"),
    (["time", "x.onnx", "--batch-size", "abc"], "time: Invalid value for '--batch-size'"),
    (["cache-prune", "--older-than-days", "-1"], "older-than-days"),
])
def test_usage_errors_exit_2_without_traceback(args: list[str], needle: str) -> None:
    assert_one_line_error(cli(*args), needle)


@pytest.mark.parametrize("run_id", ["../../../x", "/abs/x", "..", ".", "a/b", "x" * 300, "",
                                    "-rf", "a b", "é"])
def test_unsafe_run_id_is_refused(tmp_path: Path, tiny_glue_dir: Path, tiny_bert_dir: Path,
                                  run_id: str) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir)
    work = tmp_path / "deep" / "er" / "cwd"
    work.mkdir(parents=True)
    res = cli("run", str(suite), "--results-dir", "results", f"--run-id={run_id}", cwd=work)
    assert_one_line_error(res, "--run-id")
    assert len(res.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "suite.yaml"]
    assert not (work / "results").exists()


def write_run(results: Path, run_id: str, preds: np.ndarray | None = None,
              labels: np.ndarray | None = None, digest: str | None = None) -> Path:
    """A run with one ok cell; `preds`/`labels` stored in the results' cache as a run would."""
    store = RunStore.open(results, run_id)
    fields: dict = {}
    if preds is not None:
        where = results / "cache" / "evaluate" / run_id
        where.mkdir(parents=True)
        np.save(where / "predictions_dev.npy", preds)
        np.save(where / "labels_dev.npy", labels)
        fields = {"predictions_path": f"cache/evaluate/{run_id}/predictions_dev.npy",
                  "eval_digest": digest, "n_eval": len(preds)}
    samples = list(np.random.default_rng(0).normal(10, 0.1, 50))
    store.append(Record(run_id=run_id, model="m", task="rte", method="baseline",
                        variant="baseline", provider="cpu", batch_size=1, seq_len=128,
                        status="ok", metric_name="accuracy", metric_value=0.6, machine="fp",
                        latency_ms_p50=float(np.median(samples)), samples_ms=samples, **fields))
    store.update_manifest(run_id=run_id, suite="s")
    return store.dir


def test_report_with_damaged_manifest_writes_nothing(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r")
    (run / "manifest.json").write_text('{"schema_version": 1, "suite": ')
    assert_one_line_error(cli("report", str(run)), "manifest.json: not valid JSON")
    assert not (run / "leaderboard.md").exists() and not (run / "report.html").exists()
    (run / "manifest.json").write_text('["a list"]')
    assert_one_line_error(cli("report", str(run)), "manifest.json: not a JSON object")


@pytest.mark.parametrize("content, needle", [
    ("utf-16", "records.jsonl: not UTF-8 text"),
    ("[1, 2]\n", "records.jsonl:1: a record must be a JSON object"),
    ("42\n", "records.jsonl:1: a record must be a JSON object"),
])
def test_report_on_unreadable_records(tmp_path: Path, content: str, needle: str) -> None:
    run = write_run(tmp_path, "r")
    records = run / "records.jsonl"
    if content == "utf-16":
        records.write_bytes(records.read_text().encode("utf-16"))
    else:
        records.write_text(content)
    assert_one_line_error(cli("report", str(run)), needle)


def test_results_dir_that_is_a_file(tmp_path: Path, tiny_glue_dir: Path,
                                    tiny_bert_dir: Path) -> None:
    suite = suite_file(tmp_path, tiny_glue_dir, tiny_bert_dir)
    (tmp_path / "afile").write_text("x")
    res = cli("run", str(suite), "--results-dir", str(tmp_path / "afile"))
    assert_one_line_error(res, "afile: --results-dir is not a directory")
    assert_one_line_error(cli("history", "--results-dir", str(tmp_path / "afile")),
                          "afile: --results-dir is not a directory")
    assert_one_line_error(cli("cache-prune", "--results-dir", str(tmp_path / "afile")),
                          "afile: --results-dir is not a directory")


def test_compare_output_that_is_a_directory(tmp_path: Path) -> None:
    a, b = write_run(tmp_path, "a"), write_run(tmp_path, "b")
    res = cli("compare", str(a), "--baseline", str(b), "--output", str(tmp_path))
    assert_one_line_error(res, f"{tmp_path}: --output is a directory")


def test_compare_runs_on_different_dev_subsets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = write_run(tmp_path, "a", rng.integers(0, 2, 40), rng.integers(0, 2, 40), "d1")
    b = write_run(tmp_path, "b", rng.integers(0, 2, 32), rng.integers(0, 2, 32), "d2")
    res = cli("compare", str(a), "--baseline", str(b))
    assert_one_line_error(res, "not comparable", "40", "32")
    labels = rng.integers(0, 2, 40)  # same size, other examples
    c = write_run(tmp_path, "c", rng.integers(0, 2, 40), labels, "d3")
    assert_one_line_error(cli("compare", str(a), "--baseline", str(c)), "not comparable")
    same = write_run(tmp_path, "same", rng.integers(0, 2, 40),
                     np.load(a.parents[1] / "cache/evaluate/a/labels_dev.npy"), "d1")
    res = cli("compare", str(same), "--baseline", str(a))
    assert res.returncode in (0, 1) and "mcnemar" in res.stdout, res.stderr[-2000:]


def test_predictions_file_that_is_not_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    preds, labels = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    a = write_run(tmp_path, "a", preds, labels, "d1")
    b = write_run(tmp_path, "b", preds, labels, "d1")
    bad = tmp_path / "cache/evaluate/b/predictions_dev.npy"
    bad.write_text("not numpy")
    assert_one_line_error(cli("compare", str(a), "--baseline", str(b)),
                          "predictions_dev.npy: not a .npy file")


@pytest.mark.parametrize("content, needle", [
    (b"hello, this is text\n", "not an ONNX model"),
    (b"", "not an ONNX model"),
    ("half", "not an ONNX model"),
])
def test_time_on_files_that_are_not_onnx(tmp_path: Path, tiny_onnx: Path, content: bytes | str,
                                         needle: str) -> None:
    path = tmp_path / "model.onnx"
    data = tiny_onnx.read_bytes()
    path.write_bytes(data[: len(data) // 2] if content == "half" else content)
    assert_one_line_error(cli("time", str(path)), str(path), needle)


@pytest.mark.parametrize("args, needle", [
    (["--batch-size", "0"], "--batch-size"),
    (["--seq-len", "0"], "--seq-len"),
    (["--seq-len", "1000"], "--seq-len 1000: the model takes at most 128 positions"),
    (["--provider", "tpu"], "--provider"),
    (["--min-iterations", "0"], "--min-iterations"),
    (["--min-seconds", "nan"], "--min-seconds"),
])
def test_time_with_bad_options(tiny_onnx: Path, args: list[str], needle: str) -> None:
    assert_one_line_error(cli("time", str(tiny_onnx), "--min-seconds", "0", *args), needle)


def test_time_on_cuda_without_a_gpu(tiny_onnx: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA execution provider")
    assert_one_line_error(cli("time", str(tiny_onnx), "--provider", "cuda"),
                          "--provider cuda: CUDA execution provider not available")


def test_time_still_times(tiny_onnx: Path) -> None:
    res = cli("time", str(tiny_onnx), "--seq-len", "16", "--min-seconds", "0",
              "--min-iterations", "3", "--warmup", "1")
    assert res.returncode == 0 and "latency_ms_p50" in res.stdout, res.stderr[-2000:]


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_suite_file_that_is_not_utf8(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes("name: caf\u00e9\nmodels: [minilm-l6]\ntasks: [rte]\n".encode(encoding))
    assert_one_line_error(cli("validate", str(path)), f"{path}: not UTF-8 text")
