"""The site's page frame: strict CSP, inline CSS, one inline script allowed by its hash.

Pages read fine without the script (tables, inline SVG, the browser's own tooltips); the
script only adds drag-to-zoom on trend charts. Every text goes through `escape`; `Html`
marks the few strings that are already markup built here.
"""
from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Sequence
from html import escape

from harness.publish.html import CSS

_CSS = CSS + """
main{padding-top:16px}h3{margin-top:26px}nav{margin:8px 0 4px}
th,td{text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}th{position:static}
.slower,.worse{color:#a4161a;font-weight:600}.faster,.better{color:#17692c;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:12px}
figure{padding:6px}
svg.trend{width:100%;height:auto;display:block;user-select:none}
svg .bg{fill:#fff}svg .grid{stroke:#eceef1}svg .line{fill:none;stroke:#1f77b4;
 stroke-width:1.6;vector-effect:non-scaling-stroke}
svg .pt{stroke:#1f77b4;stroke-width:7;stroke-linecap:round;vector-effect:non-scaling-stroke}
svg .pt.u{stroke:#e69f00}svg .pt:hover{stroke:#d62728;stroke-width:11}
svg .ci{stroke:#7aaed6;stroke-width:2;vector-effect:non-scaling-stroke}
svg .level{stroke:#555;stroke-dasharray:5 3;stroke-width:1;vector-effect:non-scaling-stroke}
svg .cp{stroke:#d62728;stroke-width:1.5;stroke-dasharray:4 3;vector-effect:non-scaling-stroke}
svg .brush{fill:#1f77b4;fill-opacity:.12}
svg text{font-size:11px;fill:#444}svg .title{font-size:12.5px;font-weight:600;fill:#222}
svg .yt{text-anchor:end}svg .xt{text-anchor:middle;font-size:10px}
svg .cpl{fill:#d62728;text-anchor:middle;font-size:10.5px;font-weight:600}
svg .yl,svg .xl{text-anchor:middle}svg .zh{display:none}.js svg .zh{display:inline}
details{margin:6px 0 0}summary{cursor:pointer;color:#333;font-size:12.5px}
"""
# drag across a chart to zoom into those runs, double-click to see them all again
_SCRIPT = """
document.documentElement.classList.add('js');
document.querySelectorAll('svg.trend').forEach(function (svg) {
  var plot = svg.querySelector('svg.plot'), n = +svg.dataset.n, left = +svg.dataset.left,
      width = +svg.dataset.width, height = plot.viewBox.baseVal.height,
      view = [-0.5, Math.max(n, 1)], start = null, brush = null;
  function run(evt) {
    var box = svg.getBoundingClientRect(), px = (evt.clientX - box.left) *
      svg.viewBox.baseVal.width / box.width - left;
    return view[0] + Math.max(0, Math.min(width, px)) / width * view[1];
  }
  function show(x0, span) {
    view = [x0, span];
    plot.setAttribute('viewBox', x0 + ' 0 ' + span + ' ' + height);
    svg.querySelectorAll('[data-i]').forEach(function (t) {
      var i = +t.dataset.i;
      t.setAttribute('x', left + (i - x0) / span * width);
      t.style.display = i < x0 || i > x0 + span ? 'none' : '';
    });
  }
  svg.addEventListener('mousedown', function (e) {
    start = run(e);
    brush = document.createElementNS(svg.namespaceURI, 'rect');
    brush.setAttribute('class', 'brush'); brush.setAttribute('y', 0);
    brush.setAttribute('height', height); plot.appendChild(brush);
    e.preventDefault();
  });
  svg.addEventListener('mousemove', function (e) {
    if (start === null) return;
    var x = run(e);
    brush.setAttribute('x', Math.min(start, x)); brush.setAttribute('width', Math.abs(x - start));
  });
  window.addEventListener('mouseup', function (e) {
    if (start === null) return;
    var x = run(e);
    if (Math.abs(x - start) >= 0.5) show(Math.min(start, x), Math.abs(x - start));
    brush.remove(); start = null;
  });
  svg.addEventListener('dblclick', function () { show(-0.5, Math.max(n, 1)); });
});
"""
_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
CSP = (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       f"script-src 'sha256-{_HASH}'")


class Html(str):
    """Markup built by the site itself: inserted as is, never escaped again."""


def text(value: object) -> str:
    """Escaped text, or the markup itself for Html."""
    if isinstance(value, Html):
        return str(value)
    return escape("–" if value is None else str(value))


def link(href: str, label: object) -> Html:
    return Html(f"<a href='{escape(href)}'>{text(label)}</a>")


def slug(value: str) -> str:
    """A file or anchor name: letters, digits, dot, dash and underscore only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_") or "_"


def table(header: Sequence[str], rows: Iterable[Sequence[object]],
          numeric: Iterable[str] = ()) -> str:
    """An HTML table; every cell escaped unless it is Html."""
    rows = list(rows)
    if not rows:
        return "<p class='note'>none</p>"
    num = set(numeric)
    cls = ["n" if h in num else "" for h in header]
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='{c}'>{text(v)}</td>" for v, c in zip(row, cls))
                   + "</tr>" for row in rows)
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
            f"</table></div>")


def badges(counts: dict[str, object]) -> Html:
    """Status counts as the report shows them."""
    spans = "".join(f"<span class='c-{escape(s)}'>{escape(str(n))} {escape(s)}</span>"
                    for s, n in counts.items())
    return Html(f"<span class='counts'>{spans}</span>")


def page(title: str, body: Iterable[str], nav: Sequence[tuple[str, str]] = ()) -> str:
    """A whole self-contained page; `nav` holds (href, label) pairs."""
    links = "".join(str(link(href, label)) for href, label in nav)
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<nav>{links}</nav>" if links else "", f"<h1>{escape(title)}</h1>", *body,
        f"</main><script>{_SCRIPT}</script></body></html>", ""])
