"""Rendering of stored records: Markdown tables, the HTML report and its plots."""
from __future__ import annotations

from harness.report.html import render_html, write_report
from harness.report.markdown import render_markdown

__all__ = ["render_html", "render_markdown", "write_report"]
