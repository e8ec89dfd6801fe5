"""An answer as HTML: the Ask page's fragment, shared by the API (a session asking for text/html) and the pages.

Code is highlighted server-side with Pygments (CSS classes only, so the CSP needs no inline styles).
"""

from __future__ import annotations

from flask import render_template, request
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


def render_result(result: dict) -> str:
    """The answer as an HTML fragment for the Ask page, sources highlighted server-side."""
    sources = [
        dict(source, html=highlight_source(source["path"], source["snippet"], source["start_line"]))
        for source in result["sources"]
    ]
    return render_template("_ask_result.html", result=result, sources=sources, api_url=request.host_url + "api/ask")
