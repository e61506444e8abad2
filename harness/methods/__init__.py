"""Compression methods. Importing this package registers the built-ins lazily (no torch)."""
from __future__ import annotations

from harness.methods.base import MethodContext, MethodInfo, MethodParams, method
from harness.methods.catalog import METHODS

__all__ = ["METHODS", "MethodContext", "MethodInfo", "MethodParams", "method"]
