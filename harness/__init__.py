"""harness: benchmark and evaluate compressed NLP models on GLUE."""
from __future__ import annotations

__version__ = "0.1.0"
