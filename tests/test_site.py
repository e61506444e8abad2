"""The trend site: change points, pages from a store, escaping, a render in headless Chromium."""
from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import headless_chromium

from harness.records import Record
from harness.site import build_site
from harness.site.changepoints import detect
from harness.store import RunStore

EVIL = "<script>alert(1)</script>"
NOISE = 0.03  # night-to-night latency noise (3%)


def nights(seed: int, n: int, step_at: int | None = None, step: float = 1.10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = 20.0 * np.exp(rng.normal(0, NOISE, n))
    if step_at is not None:
        values[step_at:] *= step
    return values


@pytest.mark.parametrize("seed", range(10))
def test_a_10_percent_step_after_20_nights_is_found_within_two_nights(seed: int) -> None:
    (found,) = detect(nights(seed, 40, step_at=20), log_scale=True, floor=0.005)
    assert abs(found.index - 20) <= 2
    assert found.relative == pytest.approx(0.10, abs=0.04)


@pytest.mark.parametrize("seed", range(10))
def test_pure_noise_and_a_single_noisy_night_give_none(seed: int) -> None:
    series = nights(100 + seed, 30)
    assert detect(series, log_scale=True, floor=0.005) == []
    series[10 + seed] *= 1.5  # one bad night
    assert detect(series, log_scale=True, floor=0.005) == []


def test_constant_series_and_short_series() -> None:
    flat = [80.0] * 12
    assert detect(flat, log_scale=False, floor=0.1) == []
    (moved,) = detect(flat[:6] + [78.0] * 6, log_scale=False, floor=0.1)
    assert moved.index == 6 and moved.after - moved.before == pytest.approx(-2.0)
    assert detect([1.0, 2.0, 3.0], log_scale=True, floor=0.005) == []
    assert detect([float("nan")] * 10, log_scale=True, floor=0.005) == []


def _record(run: str, variant: str, p50: float, seed: int, **extra: object) -> Record:
    samples = (np.random.default_rng(seed).normal(p50, p50 * 0.01, 60)).tolist()
    fields = dict(run_id=run, model=EVIL, task="mrpc", method=variant, variant=variant,
                  provider="cpu", batch_size=1, seq_len=128, status="ok",
                  metric_name="accuracy", metric_value=0.8, n_eval=400,
                  latency_ms_p50=float(np.median(samples)), samples_ms=samples, machine="fp",
                  onnx_bytes=1000, params=10)
    return Record(**(fields | extra))


def write_history(root: Path, n_runs: int = 12, step_at: int = 6) -> None:
    """n_runs nightly runs a day apart; int8's latency steps up 30% from run step_at on."""
    for night in range(n_runs):
        run = f"night-{night:02d}"
        store = RunStore.open(root, run)
        noise = 1 + 0.01 * np.sin(night)
        store.append(_record(run, "baseline", 20.0 * noise, night))
        slow = 1.3 if night >= step_at else 1.0
        store.append(_record(run, "int8-dynamic", 10.0 * noise * slow, 100 + night,
                             unstable=night == n_runs - 1))
        store.append(_record(run, "distill", 0.0, night, status="failed", metric_value=None,
                             latency_ms_p50=None, samples_ms=[], error=f"boom {EVIL}"))
        store.update_manifest(run_id=run, suite=f"nightly {EVIL}", git_sha=f"sha{night:02d}{EVIL}",
                              machine="fp", started=f"2025-01-{night + 1:02d}T02:00:00+00:00")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    write_history(root)
    out = root / "site"
    build_site(root, out)
    return out


def test_pages_and_links(site: Path) -> None:
    index = (site / "index.html").read_text()
    trend = (site / "trend" / "mrpc.html").read_text()
    assert "href='trend/mrpc.html'" in index and "href='runs/night-11/report.html'" not in index
    compare = site / "compare" / "night-11__vs__night-04.html"  # a week before the latest
    assert compare.exists() and (site / "compare" / "night-11__vs__night-04.md").exists()
    assert "href='compare/night-11__vs__night-04.html'" in index
    assert "Welch intervals of the ratio between rounds and runs" in compare.read_text()
    week = index.split("id='week'")[1].split("id='changes'")[0]
    assert "int8-dynamic" in week and "slower" in week and "baseline" not in week
    assert "timing flagged unstable: do not trust" in week  # int8 in the latest run
    assert trend.count("<svg class='trend'") == 4  # baseline and int8: latency and metric
    assert "No ok record in any run" in trend and "boom &lt;script&gt;" in trend  # distill
    assert "night-03 · 2025-01-04T02:00 · git sha03" in trend  # hover text of a point
    changes = index.split("id='changes'")[1].split("id='leaderboard'")[0]
    assert "int8-dynamic" in changes and "night-06" in changes
    assert re.search(r"ms \(\+(29|30)\.\d%\)", changes)  # the 30% step
    assert "class='cp'" in trend and "75.80–83.63" in trend  # Wilson: 320 of 400 right


def test_intervals_prefer_the_records_own() -> None:
    from harness.publish.intervals import latency_interval, metric_interval

    row = {"metric_value": 0.8, "metric_name": "accuracy", "n_eval": 400,
           "metric_ci_low": 0.78, "metric_ci_high": 0.82, "samples_ms": [1.0] * 3}
    assert metric_interval(row) == pytest.approx((78.0, 82.0, "bootstrap"))
    assert metric_interval({**row, "metric_ci_low": None})[2] == "Wilson"
    assert metric_interval({"metric_value": 0.5, "metric_name": "pearson"})[2] == ""
    assert latency_interval(row) == (None, None)  # three samples cannot bound a median
    low, high = latency_interval({"samples_ms": list(range(1, 101))})
    assert low < 50.5 < high


def test_text_is_escaped_and_nothing_loads(site: Path) -> None:
    for page in site.rglob("*.html"):
        if page.parent.parent.name == "runs":
            continue  # copied run reports: tests/test_report.py checks them
        html = page.read_text()
        assert EVIL not in html, page
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
        assert "http://" not in html and "https://" not in html and "<link" not in html
        assert html.count("<script") == 1
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (site / "index.html").read_text()


def test_csp_allows_only_the_inline_script(site: Path) -> None:
    html = (site / "trend" / "mrpc.html").read_text()
    csp = re.search(r"Content-Security-Policy' content=\"([^\"]+)\"", html).group(1)
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "unsafe-eval" not in csp and "script-src 'unsafe-inline'" not in csp


def test_renders_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    page = (site / "trend" / "mrpc.html").as_uri()
    dom = headless_chromium(tmp_path, "--dump-dom", page).stdout
    assert 'class="js"' in dom  # the script ran under the CSP
    assert "<svg class=\"trend\"" in dom and "class=\"cp\"" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and EVIL not in dom
    index = headless_chromium(tmp_path, "--dump-dom", (site / "index.html").as_uri()).stdout
    assert "Since last week" in index and "int8-dynamic" in index
    shot = tmp_path / "trend.png"
    headless_chromium(tmp_path, "--hide-scrollbars", "--window-size=1400,1600",
                      f"--screenshot={shot}", page)
    assert shot.stat().st_size > 20_000


def test_site_command(tmp_path: Path) -> None:
    write_history(tmp_path, n_runs=3, step_at=9)
    res = subprocess.run([sys.executable, "-m", "harness.cli_main", "site", "--results-dir",
                          str(tmp_path), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "from 3 runs" in res.stdout and (tmp_path / "out" / "index.html").exists()
    index = (tmp_path / "out" / "index.html").read_text()
    assert "compared with the oldest run" in index  # no run is a week older
    bad = subprocess.run([sys.executable, "-m", "harness.cli_main", "site", "--results-dir",
                          str(tmp_path), "--threshold", "latency:5"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
