"""Compression methods; importing this package registers every built-in method."""
from __future__ import annotations

import importlib
import logging

from harness.methods import distill, precision, prune  # noqa: F401  (register on import)
from harness.methods.base import METHODS, MethodContext, MethodInfo, MethodParams, method

log = logging.getLogger(__name__)

try:
    importlib.import_module("harness.methods.quantize")
except ModuleNotFoundError as exc:  # until quantize.py lands; its own import errors still raise
    if exc.name != "harness.methods.quantize":
        raise
    log.debug("quantization methods unavailable: %s", exc)

__all__ = ["METHODS", "MethodContext", "MethodInfo", "MethodParams", "method"]
