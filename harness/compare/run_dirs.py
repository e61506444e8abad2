"""Compare run directories: their records, and the stored dev predictions the metric tests pair."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.compare.comparison import Comparison, compare_runs
from harness.compare.latency import MAX_LOAD
from harness.compare.thresholds import DEFAULT_THRESHOLDS
from harness.errors import HarnessError, first_line
from harness.records import Record, resolve_stored_path


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise HarnessError(f"{path}: not a .npy file ({first_line(exc)})") from None


def _load_predictions(new: Record, base: Record, new_root: Path, base_root: Path
                      ) -> tuple | None:
    """(pred_new, pred_base, labels) from the records' stored dev predictions, if both exist.

    Paths in records are relative to each run's results directory. Runs evaluated on other
    dev examples cannot be paired: that is an error, never a broadcast.
    """
    paths = [resolve_stored_path(r.predictions_path, root)
             for r, root in ((new, new_root), (base, base_root))]
    if not all(p is not None and p.exists() for p in paths):
        return None
    labels = [p.with_name("labels_dev.npy") for p in paths]  # type: ignore[union-attr]
    if not all(p.exists() for p in labels):
        return None
    pred_new, pred_base = (_load_npy(p) for p in paths)  # type: ignore[arg-type]
    y_new, y_base = (_load_npy(p) for p in labels)
    digests = {new.eval_digest, base.eval_digest}
    if (len(pred_new) != len(pred_base) or len(y_new) != len(y_base)
            or not np.array_equal(y_new, y_base) or (None not in digests and len(digests) > 1)):
        raise HarnessError(
            f"{'/'.join(map(str, new.key))}: the runs are not comparable: evaluated on "
            f"different dev examples ({len(y_new)} here, {len(y_base)} in the baseline; "
            "check max_eval_samples, seed and the data)")
    if len(pred_new) != len(y_new):
        raise HarnessError(f"{paths[0]}: {len(pred_new)} predictions for {len(y_new)} labels")
    return pred_new, pred_base, y_new


def compare_run_dirs(run_dir: Path, baseline_dirs: Path | Sequence[Path], *,
                     thresholds: list[str], force: bool = False,
                     max_load: float = MAX_LOAD, run_noise: float | None = None
                     ) -> Comparison:
    """Compare a run directory with one or more baseline run directories, pairing metric
    tests on the stored predictions of the run and the first baseline."""
    from harness.store import RECORDS, load_records

    dirs = [baseline_dirs] if isinstance(baseline_dirs, Path) else list(baseline_dirs)
    new = load_records(run_dir / RECORDS)
    bases = [load_records(d / RECORDS) for d in dirs]
    first = {r.key: r for r in bases[0]} if bases else {}
    roots = run_dir.resolve().parents[1], dirs[0].resolve().parents[1]  # <results>/runs/<id>
    predictions = {r.key: p for r in new if r.key in first and r.status == "ok"
                   and first[r.key].status == "ok"
                   if (p := _load_predictions(r, first[r.key], *roots)) is not None}
    return compare_runs(new, *bases, thresholds=thresholds or DEFAULT_THRESHOLDS,
                        force=force, predictions=predictions, max_load=max_load,
                        run_noise=run_noise)
