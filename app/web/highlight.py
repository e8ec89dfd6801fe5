"""Server-side code highlighting with Pygments (CSS classes only, so the CSP needs no inline styles)."""

from __future__ import annotations

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

CSS_CLASS = "highlight"


def highlight_source(path: str, code: str, first_line: int = 1) -> Markup:
    """HTML for ``code`` from ``path``, numbered from ``first_line``; Pygments escapes the code."""
    try:
        lexer = get_lexer_for_filename(path, stripnl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False)
    formatter = HtmlFormatter(cssclass=CSS_CLASS, linenos="table", linenostart=max(1, first_line), wrapcode=True)
    return Markup(highlight(code, lexer, formatter))  # noqa: S704  (Pygments output, code escaped)


def stylesheet(style: str = "friendly") -> str:
    return HtmlFormatter(style=style).get_style_defs(f".{CSS_CLASS}")
