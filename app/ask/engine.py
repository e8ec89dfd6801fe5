"""Answer a question about a workspace: validate, refresh the index, search, then phrase an answer."""

import re
from pathlib import Path

from app.ask.errors import EmptyWorkspace, InvalidQuestion
from app.ask.index import update_index
from app.ask.llm import LLMSettings, LLMUnavailable, answer_with_llm
from app.ask.overview import overview_for
from app.ask.ranking import Source, search
from app.ask.workspaces import workspace_dir

MAX_QUESTION_CHARS = 2000
MIN_TOP_K, MAX_TOP_K = 1, 20
_ALSO_SEE = 2

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
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidQuestion(f"question must be at most {MAX_QUESTION_CHARS} characters")
    return question


def validate_top_k(top_k: object) -> int:
    """``top_k`` itself if it is an int (not a bool) in range, else InvalidQuestion."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not MIN_TOP_K <= top_k <= MAX_TOP_K:
        raise InvalidQuestion(f"top_k must be an integer from {MIN_TOP_K} to {MAX_TOP_K}")
    return top_k


def ask(
    root: Path,
    workspace_id: str,
    question: str,
    top_k: int = 5,
    llm: LLMSettings | None = None,
) -> dict:
    """Answer ``question`` from the workspace's code; the result has the fixed API shape.

    Checks run in this order: workspace (WorkspaceNotFound), question and top_k (InvalidQuestion),
    content (EmptyWorkspace). A question about the workspace as a whole ("How does this code work?")
    gets an overview of it instead of ranked chunks. A question matching nothing is not an error: it
    gets an answer saying so and no sources, and the language model is not consulted.
    """
    workspace_dir(root, workspace_id)
    question = validate_question(question)
    top_k = validate_top_k(top_k)
    if update_index(root, workspace_id).chunks == 0:
        raise EmptyWorkspace()
    sources = search(root, workspace_id, question, top_k)
    answer, engine = extractive_answer(sources), "extractive"
    if (broad := overview_for(root, workspace_id, question, bool(sources), top_k)) is not None:
        answer, sources = broad.answer, broad.sources
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


def extractive_answer(sources: list[Source]) -> str:
    """A short paragraph naming the best sources and what their documentation says they do."""
    if not sources:
        return NO_MATCH_ANSWER
    best = sources[0]
    answer = f"The most relevant code is {_where(best)}"
    answer += f": {_first_sentence(best.doc)}" if best.doc else "."
    others = []
    for source in sources[1 : 1 + _ALSO_SEE]:
        item = _where(source)
        if source.doc:
            item += f" — {_first_sentence(source.doc).rstrip('.')}"
        others.append(item)
    if others:
        answer += " Also see " + "; ".join(others) + "."
    return answer
