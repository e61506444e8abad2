"""The `harness` command line; user errors (HarnessError) are caught once, here."""
from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.errors import ConfigError, HarnessError

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


def _results_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: --results-dir is not a directory")
    return path


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
        force: Annotated[bool, typer.Option(
            "--force", help="Resume a run even though its suite file changed.")] = False,
        ) -> None:
    """Run (or resume) a suite; exit 1 if any cell failed."""
    from harness.store import check_run_id

    if run_id is not None:
        check_run_id(run_id)  # before the heavy imports below
    from harness.run import run_suite

    summary = run_suite(suite, _results_dir(results_dir), run_id, use_cache=not no_cache,
                        executor=executor, address=address, force=force, isolate=True)
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
            baseline: Annotated[list[Path], typer.Option(
                help="A run to compare against (repeatable: several runs of the baseline "
                     "code make their spread the noise floor).")],
            threshold: Annotated[list[str] | None, typer.Option(
                help="e.g. latency_ms_p50:5% or metric:-0.5 (repeatable).")] = None,
            force: Annotated[bool, typer.Option(help="Compare across machines.")] = False,
            output: Annotated[Path | None, typer.Option(help="Write Markdown here.")] = None,
            max_load: Annotated[float, typer.Option(
                help="Leave latency untested where other processes used more of the CPU "
                     "while timing.")] = 0.5,
            run_noise: Annotated[float | None, typer.Option(
                help="Between-run sd (%) of a variant's latency beside its baseline, allowed "
                     "for in its test (default: estimated from several --baseline runs, "
                     "else 1.5, measured on the development VM, or the spread between the "
                     "run and its one baseline where larger).", min=0.0)] = None,
            ) -> None:
    """Per-cell latency ratio and metric delta with confidence; exit 1 on a regression."""
    from harness.compare import compare_run_dirs, to_markdown

    if output is not None and output.is_dir():
        raise ConfigError(f"{output}: --output is a directory; give a file name")
    result = compare_run_dirs(run_dir, baseline, thresholds=threshold or [], force=force,
                              max_load=max_load,
                              run_noise=None if run_noise is None else run_noise / 100)
    text = to_markdown(result)
    if output:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{output}: cannot write --output ({exc.strerror})") from None
    typer.echo(text)
    raise typer.Exit(1 if result.regressions else 0)


@app.command()
def history(results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS,
            rebuild: Annotated[bool, typer.Option(
                "--rebuild", help="Re-import every run directory into the results store.")] = False,
            ) -> None:
    """List past runs with their status counts, from the results store."""
    from harness.history import history_frame

    frame = history_frame(_results_dir(results_dir), rebuild=rebuild)
    typer.echo(frame.to_markdown(index=False) if len(frame) else "no runs")


@app.command()
def query(sql: Annotated[str, typer.Argument(help="One SELECT over the tables records and runs.")],
          results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS,
          fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
          ) -> None:
    """Run a read-only SQL query over the results store and print the rows."""
    from harness.query import render, run_query
    from harness.results_store import ResultsStore

    if fmt not in ("table", "csv", "json"):
        raise ConfigError(f"query: --format '{fmt}' is not one of table, csv, json")
    store = ResultsStore(results_dir)
    changed, gone = store.stale()
    if changed or gone:
        log.warning("the store is behind %d run directories: `harness history` imports them",
                    len(changed) + len(gone))
    typer.echo(render(run_query(store, sql), fmt))  # type: ignore[arg-type]


@app.command()
def site(results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS,
         out: Annotated[Path, typer.Option(help="Folder to write the site to.")] = Path("site"),
         threshold: Annotated[list[str] | None, typer.Option(
             help="'since last week' thresholds, e.g. latency_ms_p50:5% (repeatable).")] = None,
         ) -> None:
    """Write a static trend site (index, leaderboard, one trend page per task) from the store."""
    from harness.site import build_site

    result = build_site(results_dir, out, thresholds=threshold or None)
    typer.echo(f"site: {len(result.pages)} pages from {result.n_runs} runs in "
               f"{result.seconds:.1f}s: {out / 'index.html'}")


export_app = typer.Typer(no_args_is_help=True, help="Send a run's results to other tools.")
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow(run_dir: Path,
                  tracking_uri: Annotated[str | None, typer.Option(
                      help="Default: MLFLOW_TRACKING_URI, else ./mlruns.")] = None,
                  experiment: Annotated[str | None, typer.Option(
                      help="Experiment name (default: the suite's name).")] = None,
                  ) -> None:
    """Log one MLflow run per cell of RUN_DIR (needs the `mlflow` extra); idempotent."""
    from harness.export_mlflow import export_run

    result = export_run(run_dir, tracking_uri=tracking_uri, experiment=experiment)
    typer.echo(f"mlflow: {result.created} runs created, {result.updated} updated in "
               f"experiment '{result.experiment}' at {result.tracking_uri}")


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
    from pydantic import ValidationError

    from harness.errors import SkipCell, first_line
    from harness.schema import TimingSpec
    from harness.timing import time_file

    if not model.is_file():
        raise ConfigError(f"{model}: no such ONNX file")
    try:
        spec = TimingSpec(providers=[provider], batch_sizes=[batch_size], seq_lens=[seq_len],
                          min_iterations=min_iterations, min_seconds=min_seconds, warmup=warmup,
                          intra_op_threads=threads)
    except ValidationError as exc:
        raise ConfigError("\n".join(_option_errors(exc))) from None
    try:
        result = time_file(model, provider, batch_size, seq_len, spec)
    except SkipCell as exc:  # the provider cannot run here
        raise ConfigError(f"--provider {provider}: {exc}") from None
    except Exception as exc:
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        raise ConfigError(f"{model}: onnxruntime cannot run it at batch {batch_size} x "
                          f"seq {seq_len}: {first_line(exc)}") from None
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    for key, value in result.items():
        if key != "samples_ms":
            typer.echo(f"{key:20s} {value}")


_OPTIONS = {"providers": "--provider", "batch_sizes": "--batch-size", "seq_lens": "--seq-len",
            "intra_op_threads": "--threads"}


def _option_errors(exc: Exception) -> list[str]:
    """A TimingSpec ValidationError as one line per option, named as on the command line."""
    lines = []
    for err in exc.errors():  # type: ignore[attr-defined]
        field = str(err["loc"][0]) if err["loc"] else ""
        name = _OPTIONS.get(field, "--" + field.replace("_", "-"))
        lines.append(f"{name}: {err['msg']}")
    return lines


@app.command("cache-prune")
def cache_prune(older_than_days: Annotated[float, typer.Option(min=0)] = 30.0,
                results_dir: Annotated[Path, typer.Option()] = DEFAULT_RESULTS) -> None:
    """Delete cached artifacts not used for N days."""
    from harness.cache import ArtifactCache

    removed = ArtifactCache(_results_dir(results_dir) / "cache").prune(older_than_days)
    temporary = sum(p.name.endswith(".tmp") for p in removed)
    typer.echo(f"removed {len(removed) - temporary} artifacts not used for {older_than_days:g} "
               f"days and {temporary} folders of interrupted builds")


class Interrupted(BaseException):
    """SIGINT or SIGTERM: unwinds the run (locks released, temporary files removed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _click_exception() -> type[Exception]:
    """ClickException of the click that typer parses with (typer 0.2x vendors its own copy)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Entry point: user errors print one line per problem and exit 2."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code instead of raising it
    except HarnessError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        print(f"aborted ({exc})", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except _click_exception() as exc:  # usage errors: unknown command, bad option value
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.info_name}: " if ctx is not None and ctx.parent is not None else ""
        message = exc.format_message()  # type: ignore[attr-defined]
        print(f"error: {where}{message} (see --help)", file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
