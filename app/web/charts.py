"""Usage charts as inline SVG, drawn on the server: no chart library, no script, nothing fetched.

Shapes are filled with ``currentColor`` or the theme's CSS variables (static/app.css), so a chart follows the
light and dark themes; each has a ``<title>`` and an ``aria-label`` saying what it shows in words.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from app.usage import OUTCOMES

# Drawn bottom-up in this order; the colours are the theme's (see .chart-* in static/app.css).
SERIES_CLASSES = {name: f"chart-{name.replace('_', '-')}" for name in OUTCOMES}
OUTCOME_LABELS = {"ok": "OK", "client_error": "client errors", "rate_limited": "rate limited", "denied": "denied"}
OUTCOME_TITLES = {name: label[:1].upper() + label[1:] for name, label in OUTCOME_LABELS.items()}  # column headings


def total(row: dict) -> int:
    return sum(row[name] for name in OUTCOMES)


def sparkline(series: list[dict], label: str) -> Markup:
    """One bar per period, as high as its requests: a row's glance at the last 7 days."""
    values = [total(row) for row in series]
    peak = max(values, default=0)
    text = f"{label}: {sum(values):,} requests in the last 7 days" + (f", at most {peak:,} in an hour" if peak else "")
    height = 24
    bars = []
    if peak:
        for x, value in enumerate(values):
            if value:
                h = max(1.0, value / peak * height)
                bars.append(f"M{x} {height}V{height - h:.2f}h1V{height}z")
    path = f'<path d="{"".join(bars)}" fill="currentColor"/>' if bars else ""
    return Markup(  # noqa: S704 - every text in it is escaped; the rest is numbers
        f'<svg class="spark" viewBox="0 0 {len(values)} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(text)}"><title>{escape(text)}</title>'
        f'<line x1="0" y1="{height - 0.5}" x2="{len(values)}" y2="{height - 0.5}" class="chart-axis"/>'
        f"{path}</svg>"
    )


def bar_chart(series: list[dict], label: str, outcomes: tuple[str, ...] = OUTCOMES) -> Markup:
    """Stacked bars by outcome, one per period, with the peak marked: the key page's and the admin's chart."""
    width, height, top = len(series) * 10, 160, 14
    peak = max((sum(row[name] for name in outcomes) for row in series), default=0)
    scale = (height - top) / peak if peak else 0
    shapes = []
    for i, row in enumerate(series):
        y = float(height)
        for name in outcomes:
            if row[name]:
                h = row[name] * scale
                y -= h
                shapes.append(
                    f'<rect x="{i * 10 + 1}" y="{y:.2f}" width="8" height="{h:.2f}" class="{SERIES_CLASSES[name]}">'
                    f"<title>{escape(row['start'])}: {row[name]:,} {OUTCOME_LABELS[name]}</title></rect>"
                )
    sums = {name: sum(row[name] for row in series) for name in outcomes}
    parts = ", ".join(f"{sums[name]:,} {OUTCOME_LABELS[name]}" for name in outcomes)
    text = f"{label}: {parts}" + (f"; the busiest period had {peak:,}" if peak else "; no requests")
    return Markup(  # noqa: S704 - every text in it is escaped; the rest is numbers
        f'<svg class="chart" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(text)}"><title>{escape(text)}</title>'
        f'<line x1="0" y1="{top}" x2="{width}" y2="{top}" class="chart-grid"/>'
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" class="chart-axis"/>'
        f"{''.join(shapes)}</svg>"
    )


def figure(series: list[dict], label: str, span: str) -> dict:
    """All that ``usage_chart`` (templates/_usage.html) draws: the chart of ``series`` (titled ``label`` and
    ``span``), its scale, legend and table."""
    return {
        "chart": bar_chart(series, f"{label} in {span}"),
        "series": series,
        "peak": max(total(row) for row in series),
        "span": span,
        "labels": OUTCOME_LABELS,
        "titles": OUTCOME_TITLES,
        "classes": SERIES_CLASSES,
    }
