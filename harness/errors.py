"""The one error family the user can act on; the CLI catches it once and exits 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Something the user can fix: bad suite, missing data, unknown name."""


class ConfigError(HarnessError):
    """A suite file or option is invalid."""


class DataError(HarnessError):
    """Task data is missing or malformed."""


class ModelError(HarnessError):
    """A model cannot be found or loaded."""


class UnknownNameError(HarnessError):
    """A registry lookup failed."""


class SchemaError(HarnessError):
    """A stored record has a schema version this harness cannot read."""


class SkipCell(Exception):
    """Raised inside a stage to record the cell as `skipped` with a reason."""


def did_you_mean(name: str, known: Iterable[str], fallback: str | None = None) -> str:
    """'Did you mean: a, b?' for close names, else `fallback` or the list of known names."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        return f"Did you mean: {', '.join(close)}?"
    return fallback if fallback is not None else f"Known: {', '.join(known)}."


def one_line(exc: BaseException) -> str:
    """An exception as one line: user errors as they are, others prefixed with their type."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, DataError | SkipCell) else f"{type(exc).__name__}: {text}"
