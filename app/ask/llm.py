"""Optional answers from an OpenAI-compatible chat-completions endpoint, over the standard library."""

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

log = logging.getLogger("askgate.ask")

_MAX_REPLY_BYTES = 4 * 1024 * 1024
_SNIPPET_LINES = 80
_SNIPPET_CHARS = 6000

SYSTEM_PROMPT = (
    "You answer questions about a code workspace. Use only the numbered sources given; they are excerpts "
    "of files with their paths and line ranges, some with what calls them and what they call. Name the "
    "files, symbols and line ranges you rely on, and say how they connect when that helps. If "
    "the sources do not answer the question, say so. Be concise: a short paragraph, then details only if "
    "needed."
)


@dataclass(frozen=True)
class LLMSettings:
    """Where the model is.

    ``base_url`` is the OpenAI-style base including any ``/v1``, e.g. ``http://localhost:11434/v1``;
    ``/chat/completions`` is appended to it. ``timeout`` bounds connecting and each read, in seconds.
    """

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or returned
    timeout: float = 60.0

    @property
    def enabled(self) -> bool:
        return bool(self.base_url and self.model)

    @property
    def endpoint(self) -> str:
        return (self.base_url or "").rstrip("/") + "/chat/completions"

    @property
    def public_url(self) -> str:
        """``base_url`` without credentials, query or fragment, safe to show and log."""
        parts = urllib.parse.urlsplit(self.base_url or "")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:
            port = None
        netloc = f"{host}:{port}" if port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class LLMUnavailable(Exception):
    """The model gave no usable answer; ``reason`` is safe to show (no key, no reply body)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Following a redirect would resend the Authorization header to wherever it points.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def build_messages(question: str, sources: list) -> list[dict]:
    """The system prompt and one user message carrying the question and the numbered sources."""
    blocks = []
    for number, source in enumerate(sources, 1):
        label = f" ({source.symbol})" if source.symbol else ""
        snippet = "\n".join(source.snippet.splitlines()[:_SNIPPET_LINES])[:_SNIPPET_CHARS]
        blocks.append(
            f"[{number}] {source.path} lines {source.start_line}-{source.end_line}{label}\n"
            f"{_graph_lines(source)}```\n{snippet}\n```"
        )
    user = f"Question: {question}\n\nSources:\n\n" + "\n\n".join(blocks)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _graph_lines(source) -> str:
    """ "Called by: …" and "Calls: …" lines, so the model can say how the sources connect."""
    lines = ""
    for label, items in (("Called by", getattr(source, "callers", ())), ("Calls", getattr(source, "callees", ()))):
        if items:
            lines += (
                f"{label}: " + ", ".join(f"{item['symbol']} ({item['path']}:{item['line']})" for item in items) + "\n"
            )
    return lines


def chat_completion(settings: LLMSettings, messages: list[dict]) -> str:
    """POST the messages and return ``choices[0].message.content``, or raise LLMUnavailable."""
    body = json.dumps({"model": settings.model, "messages": messages, "temperature": 0.2}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    if urllib.parse.urlsplit(settings.endpoint).scheme not in ("http", "https"):
        raise LLMUnavailable("its base URL is not an http:// or https:// URL")
    # The scheme was just checked, so no file:// or custom-scheme URL reaches urllib.
    request = urllib.request.Request(settings.endpoint, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener.open(request, timeout=settings.timeout) as response:
            raw = response.read(_MAX_REPLY_BYTES)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise LLMUnavailable(f"it answered HTTP {exc.code}") from None
    except TimeoutError:
        raise LLMUnavailable(f"timed out after {settings.timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise LLMUnavailable(f"timed out after {settings.timeout:g} s") from None
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise LLMUnavailable(f"connection failed ({reason})") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise LLMUnavailable(f"connection failed ({type(exc).__name__})") from None
    return _content(raw)


def _content(raw: bytes) -> str:
    try:
        content = json.loads(raw)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content.strip():
        raise LLMUnavailable("its reply was not a valid chat completion")
    return content.strip()


def answer_with_llm(settings: LLMSettings, question: str, sources: list) -> str:
    """Ask the model; failures are logged (without the key) and re-raised as LLMUnavailable."""
    try:
        return chat_completion(settings, build_messages(question, sources))
    except LLMUnavailable as exc:
        log.warning("language model at %s unusable: %s", settings.public_url, exc.reason)
        raise
