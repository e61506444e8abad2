"""The one error family the user can act on; the CLI catches it once and exits 2."""
from __future__ import annotations


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
