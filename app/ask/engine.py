"""Answer a question about a workspace: validate, refresh the index, search, then phrase an answer."""

import re
from pathlib import Path

from app.ask import callgraph
from app.ask.errors import EmptyWorkspace, InvalidQuestion
from app.ask.index import update_index
from app.ask.indexjobs import wait_until_indexed
from app.ask.llm import LLMSettings, LLMUnavailable, answer_with_llm
from app.ask.overview import overview_for
from app.ask.ranking import Source, search
from app.ask.workspaces import workspace_dir
from app.inputs import QUESTION_MAX, TOP_K_DEFAULT, TOP_K_MAX, TOP_K_MIN

_ALSO_SEE = 2
_NAMED = 3  # callers or callees named in the answer's text; the sources list up to callgraph.MAX_NEIGHBOURS

NO_MATCH_ANSWER = (
    "Nothing in this workspace matched the question. Try rephrasing it with words that would appear in "
    "the code, such as the names of functions, classes, files or error messages you expect."
)


def validate_question(question: object) -> str:
    """The stripped question, or InvalidQuestion saying what is wrong with it."""
    if not isinstance(question, str):
        raise InvalidQuestion("question must be a string")
    question = question.strip()
    if not question:
        raise InvalidQuestion("question must not be empty")
    if len(question) > QUESTION_MAX:
        raise InvalidQuestion(f"question must be at most {QUESTION_MAX} characters")
    return question


def validate_top_k(top_k: object) -> int:
    """``top_k`` itself if it is an int (not a bool) in range, else InvalidQuestion."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not TOP_K_MIN <= top_k <= TOP_K_MAX:
        raise InvalidQuestion(f"top_k must be an integer from {TOP_K_MIN} to {TOP_K_MAX}")
    return top_k


def ask(
    root: Path,
    workspace_id: str,
    question: str,
    top_k: int = TOP_K_DEFAULT,
    llm: LLMSettings | None = None,
    index_wait: float | None = None,
) -> dict:
    """Answer ``question`` from the workspace's code; the result has the fixed API shape.

    Checks run in this order: workspace (WorkspaceNotFound), question and top_k (InvalidQuestion),
    content (EmptyWorkspace). A question about the workspace as a whole ("How does this code work?")
    gets an overview of it instead of ranked chunks. A question matching nothing is not an error: it
    gets an answer saying so and no sources, and the language model is not consulted.

    With ``index_wait`` (seconds), a first index is built in the background and waited for that long
    (IndexNotReady after it); without, the question builds it itself.
    """
    workspace_dir(root, workspace_id)
    question = validate_question(question)
    top_k = validate_top_k(top_k)
    if index_wait is not None:
        wait_until_indexed(root, workspace_id, index_wait)
    if update_index(root, workspace_id).chunks == 0:
        raise EmptyWorkspace()
    sources = callgraph.connect(root, workspace_id, search(root, workspace_id, question, top_k))
    answer, engine = extractive_answer(sources), "extractive"
    if (broad := overview_for(root, workspace_id, question, bool(sources), top_k)) is not None:
        answer, sources = broad.answer, callgraph.connect(root, workspace_id, broad.sources)
    if llm is not None and llm.enabled and sources:
        try:
            answer, engine = answer_with_llm(llm, question, sources), "llm"
        except LLMUnavailable as exc:
            answer += (
                f"\n\n(The language model at {llm.public_url} could not be used: {exc.reason}. "
                "This is the offline answer.)"
            )
    return {
        "workspaceId": workspace_id,
        "question": question,
        "answer": answer,
        "sources": [source.to_dict() for source in sources],
        "engine": engine,
    }


def _where(source: Source) -> str:
    lines = f"lines {source.start_line}–{source.end_line}"
    if source.symbol:
        return f"`{source.symbol}` in {source.path} ({lines})"
    return f"{source.path} ({lines})"


_RST_ROLE = re.compile(r":[\w:.-]+:`~?([^`]+)`")
_RST_LITERAL = re.compile(r"``(.+?)``")


def _first_sentence(doc: str, limit: int = 240) -> str:
    """The doc's first sentence, with reStructuredText markup reduced to plain backticks."""
    doc = _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(r"`\1`", doc))
    match = re.match(r"(.+?[.!?])(?:\s|$)", doc)
    sentence = match.group(1) if match else doc
    if len(sentence) > limit:
        sentence = sentence[: limit - 1].rsplit(" ", 1)[0] + "…"
    return sentence if sentence.endswith((".", "!", "?", "…")) else sentence + "."


def _names(items: tuple[dict, ...]) -> str:
    """ "`a`", "`a` and `b`", "`a`, `b`, `c` and others": the first few symbols of a callers/callees list."""
    names = [f"`{item['symbol']}`" for item in items[:_NAMED]]
    if len(items) > _NAMED:
        return ", ".join(names) + " and others"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _connections(source: Source) -> str:
    """How a source sits in the call graph, as a sentence about "it"; empty when nothing is known."""
    if source.callers and source.callees:
        return f" It is called by {_names(source.callers)}, and calls {_names(source.callees)}."
    if source.callers:
        return f" It is called by {_names(source.callers)}."
    if source.callees:
        return f" It calls {_names(source.callees)}."
    return ""


def _calls(caller: Source, callee: Source) -> bool:
    def same(item: dict, source: Source) -> bool:
        return item["path"] == source.path and item["symbol"] == source.symbol

    return any(same(item, callee) for item in caller.callees) or any(same(item, caller) for item in callee.callers)


def _relation(source: Source, best: Source) -> str:
    """ ", which calls `best`" when two sources of one answer call each other, else empty."""
    if not best.symbol or not source.symbol:
        return ""
    if _calls(source, best):
        return f", which calls `{best.symbol}`"
    if _calls(best, source):
        return f", which `{best.symbol}` calls"
    return ""


def extractive_answer(sources: list[Source]) -> str:
    """A short paragraph naming the best sources, what their documentation says they do, and how they
    connect: what calls the best one, what it calls, and which of the others call it or are called."""
    if not sources:
        return NO_MATCH_ANSWER
    best = sources[0]
    answer = f"The most relevant code is {_where(best)}"
    answer += f": {_first_sentence(best.doc)}" if best.doc else "."
    answer += _connections(best)
    others = []
    for source in sources[1 : 1 + _ALSO_SEE]:
        item = _where(source) + _relation(source, best)
        if source.doc:
            item += f" — {_first_sentence(source.doc).rstrip('.')}"
        others.append(item)
    if others:
        answer += " Also see " + "; ".join(others) + "."
    return answer
