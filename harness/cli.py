"""The `harness` command line; user errors (HarnessError) are caught once, here."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.errors import ConfigError, HarnessError, SkipCell

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark compressed NLP models on GLUE: accuracy, latency, size.")
log = logging.getLogger("harness")
DEFAULT_RESULTS = Path("results")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("transformers", "optimum", "onnxruntime", "datasets", "urllib3", "filelock",
                  "matplotlib", "PIL", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def run(suite: Path,
        results_dir: Annotated[Path, typer.Option(help="Where runs/ and cache/ live.")] = DEFAULT_RESULTS,
        run_id: Annotated[str | None, typer.Option(help="Resume or name a run.")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Rebuild every artifact.")] = False,
        executor: Annotated[str | None, typer.Option(help="local or ray (default: the suite's).")] = None,
        address: Annotated[str | None, typer.Option(help="Ray cluster address.")] = None,
        ) -> None:
    """Run (or resume) a suite; exit 1 if any cell failed."""
    from harness.run import run_suite

    summary = run_suite(suite, results_dir, run_id, use_cache=not no_cache, executor=executor,
                        address=address)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
    typer.echo(f"run {summary.run_dir.name}: {counts} in {summary.wall_seconds:.0f}s")
    typer.echo(f"leaderboard: {summary.run_dir / 'leaderboard.md'}")
    typer.echo(f"report:      {summary.run_dir / 'report.html'}")
    raise typer.Exit(summary.exit_code)


@app.command()
def validate(suite: Path) -> None:
    """Check a suite file; every problem is printed as one line naming the field."""
    from harness.plan import check_suite

    parsed, pipelines, problems = check_suite(suite)
    if problems:
        raise ConfigError("\n".join(problems))
    assert parsed is not None
    cells = len(parsed.models) * len(parsed.tasks) * len(pipelines)
    typer.echo(f"{suite}: ok ({cells} cells: {len(parsed.models)} models x "
               f"{len(parsed.tasks)} tasks x {len(pipelines)} pipelines)")


@app.command("list")
def list_(what: Annotated[str, typer.Argument(help="tasks, models or methods")]) -> None:
    """List the known tasks, models or methods."""
    from harness.listing import render

    if what not in ("tasks", "models", "methods"):
        raise ConfigError(f"list: '{what}' is not one of tasks, models, methods")
    typer.echo(render(what))


@app.command()
def report(run_dir: Path) -> None:
    """Rebuild leaderboard.md/.csv, report.html and benchmark.json from a run's records."""
    from harness.publish import publish
    from harness.store import RECORDS, RunStore, load_records

    records = load_records(run_dir / RECORDS)  # a missing run is a one-line error
    written = publish(records, run_dir, RunStore(run_dir).manifest())
    for path in written:
        typer.echo(str(path))


@app.command()
def compare(run_dir: Path,
            baseline: Annotated[Path, typer.Option(help="The run to compare against.")],
            threshold: Annotated[list[str] | None, typer.Option(
                help="e.g. latency_ms_p50:5% or metric:-0.5 (repeatable).")] = None,
            force: Annotated[bool, typer.Option(help="Compare across machines.")] = False,
            output: Annotated[Path | None, typer.Option(help="Write Markdown here.")] = None,
            ) -> None:
    """Per-cell latency ratio and metric delta with confidence; exit 1 on a regression."""
    from harness.compare import compare_run_dirs

    result = compare_run_dirs(run_dir, baseline, thresholds=threshold or [], force=force)
    text = result.to_markdown()
    if output:
        output.write_text(text)
    typer.echo(text)
    raise typer.Exit(1 if result.regressions else 0)


@app.command()
def history(results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS) -> None:
    """List past runs with their status counts."""
    from harness.history import history_frame

    frame = history_frame(results_dir)
    typer.echo(frame.to_markdown(index=False) if len(frame) else "no runs")


@app.command()
def time(model: Path,
         provider: Annotated[str, typer.Option()] = "cpu",
         batch_size: Annotated[int, typer.Option()] = 1,
         seq_len: Annotated[int, typer.Option()] = 128,
         min_iterations: Annotated[int, typer.Option()] = 20,
         min_seconds: Annotated[float, typer.Option()] = 1.0,
         warmup: Annotated[int, typer.Option()] = 5,
         threads: Annotated[int | None, typer.Option(help="intra-op threads")] = None,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Time one ONNX file the way suites do and print the statistics."""
    from harness.schema import TimingSpec
    from harness.timing import time_file

    if not model.is_file():
        raise ConfigError(f"{model}: no such ONNX file")
    spec = TimingSpec(providers=[provider], batch_sizes=[batch_size], seq_lens=[seq_len],
                      min_iterations=min_iterations, min_seconds=min_seconds, warmup=warmup,
                      intra_op_threads=threads)
    try:
        result = time_file(model, provider, batch_size, seq_len, spec)
    except SkipCell as exc:  # the provider's runtime or device is not here
        raise ConfigError(f"--provider {provider}: {exc}") from None
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    for key, value in result.items():
        if key != "samples_ms":
            typer.echo(f"{key:20s} {value}")


@app.command("cache-prune")
def cache_prune(older_than_days: Annotated[float, typer.Option()] = 30.0,
                results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS) -> None:
    """Delete cached artifacts not used for N days."""
    from harness.cache import ArtifactCache

    removed = ArtifactCache(results_dir / "cache").prune(older_than_days)
    typer.echo(f"removed {len(removed)} artifacts")


def main() -> None:
    """Entry point: user errors print one line per problem and exit 2."""
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of raising it
    except HarnessError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
    sys.exit(code if isinstance(code, int) else 0)
