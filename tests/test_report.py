"""report.html: escaping, self-containment, and a render in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.publish.html import write_report
from harness.records import Record

EVIL = "<script>alert(1)</script>"
MANIFEST = {"suite": "demo", "run_id": "20250101T000000Z", "git_sha": "abc1234",
            "machine": "fp-x86-8c", "started_at": "2025-01-01T00:00:00Z",
            "finished_at": "2025-01-01T00:30:00Z"}


def rec(variant: str = "baseline", *, model: str = "m", task: str = "sst2",
        metric: float | None = 0.9, p50: float | None = 10.0, status: str = "ok",
        **extra: object) -> Record:
    fields = dict(
        run_id="r1", model=model, task=task, method=variant.split("(")[0], variant=variant,
        provider="cpu", batch_size=1, seq_len=128, status=status, metric_name="accuracy",
        metric_value=metric, latency_ms_p50=p50, onnx_bytes=90_000_000,
        onnx_zip_bytes=80_000_000, params=22_000_000, nonzero_params=22_000_000)
    return Record(**(fields | extra))


def records() -> list[Record]:
    return [
        rec(), rec("int8-dynamic", metric=0.885, p50=4.0, onnx_bytes=23_000_000,
                   onnx_zip_bytes=18_000_000),
        rec("prune-unstructured(sparsity=0.8)", metric=0.86, p50=9.5, onnx_zip_bytes=30_000_000),
        rec(model=EVIL, metric=0.8, p50=3.0),
        rec(task="mrpc", metric=0.82, p50=11.0), rec("int8-dynamic", task="mrpc", p50=5.0,
                                                      metric=0.81, unstable=True),
        rec("distill", status="failed", metric=None, p50=None, stage="train",
            error=f"CUDA out of memory <b>{EVIL}</b>"),
        rec("prune-structured(heads=0.5)", task="mrpc", status="skipped", metric=None,
            p50=None, stage="compress", error="no attention heads to prune"),
    ]


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_report(records(), tmp_path, MANIFEST)


def test_text_is_escaped(report: Path) -> None:
    html = report.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert EVIL not in html
    assert "<script" not in html.lower()  # the report has no scripts at all
    assert "&lt;b&gt;" in html  # the error message's markup is text too


def test_manifest_and_failures_shown(report: Path) -> None:
    html = report.read_text()
    for value in ("demo", "20250101T000000Z", "abc1234", "fp-x86-8c", "2025-01-01T00:30:00Z"):
        assert value in html
    assert "no attention heads to prune" in html and "CUDA out of memory" in html
    assert ">6 ok<" in html and ">1 failed<" in html and ">1 skipped<" in html


def test_self_contained(report: Path) -> None:
    html = report.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html.lower()
    sources = re.findall(r"""<img[^>]*\ssrc=['"]([^'"]*)""", html)
    assert len(sources) == 4  # sst2 and mrpc scatters, speedup, size
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_report_without_ok_rows(tmp_path: Path) -> None:
    failed = [rec(status="failed", metric=None, p50=None, error="broken")]
    html = write_report(failed, tmp_path, {}).read_text()
    assert "<img" not in html and "broken" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _headless(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True,
                          timeout=180, check=True)


def test_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = _headless(tmp_path, "--dump-dom", report.as_uri()).stdout
    assert "<table>" in dom and "int8-dynamic" in dom and "Failed and skipped cells" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom  # stayed text after parsing
    assert "<script>" not in dom
    shot = tmp_path / "shot.png"
    _headless(tmp_path, "--hide-scrollbars", "--window-size=1400,2400",
              f"--screenshot={shot}", report.as_uri())
    assert shot.stat().st_size > 10_000
