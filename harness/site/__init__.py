"""A static trend site from the results store: `harness site --out SITE/`."""
from __future__ import annotations

from harness.site.build import SiteResult, build_site

__all__ = ["SiteResult", "build_site"]
