"""Is a question about the workspace as a whole? Judged by its shape: no subject words of its own, only words
for the project ("code", "repo", its name) or the big picture ("overview", "start", "architecture")."""

import re
from dataclasses import dataclass

from app.ask.tokens import STOPWORDS

# What a question about the workspace as a whole speaks of: the project itself, or the big picture of it.
_SCOPE_WORDS_TEXT = """
    project projects code codebase repo repos repository repositories library lib package packages app
    application program software tool system workspace source sources everything whole entire file files
    """
_SCOPE_WORDS = frozenset(_SCOPE_WORDS_TEXT.split())
_PICTURE_WORDS_TEXT = """
    overview overall summary summarize summarise intro introduction start started starting begin beginning
    architecture structure structured organized organised organization organisation layout purpose about
    tour walkthrough big picture high level main entry entrypoint entrypoints point points components
    parts pieces basics gist idea general generally readme docs documentation newcomer onboard onboarding
    goal goals
    """
_PICTURE_WORDS = frozenset(_PICTURE_WORDS_TEXT.split())
_PRONOUNS = frozenset({"it", "this", "here"})
# Verbs and fillers that carry no subject of their own in such a question.
_FILLER_WORDS_TEXT = """
    give me tell show explain describe understand please can could should would i do does did doing work
    works working worked run runs running use used using usage read reading look looking need know want
    first quick quickly brief briefly short going on really basically get getting new help what whats how
    where which why is are was the a an of for in to go goes fit fits together top
    """
_FILLER_WORDS = frozenset(_FILLER_WORDS_TEXT.split())
_GENERAL = _SCOPE_WORDS | _PICTURE_WORDS | _PRONOUNS | _FILLER_WORDS | STOPWORDS
WORD_RE = re.compile(r"[A-Za-z0-9]+")
# When ranking found nothing at all, a question about the project with at most this many words of its own
# ("What's the raison d'être of this repo?") still gets the overview.
UNMATCHED_OWN_WORDS = 1
MAX_NAME_WORDS = 2  # a project named in two words ("commander js")


@dataclass(frozen=True)
class QuestionShape:
    """What a question speaks of: its own subject words, the project, the big picture, or just "it"."""

    own: tuple[str, ...]
    scope: bool
    picture: bool
    pronoun: bool


def question_shape(question: str) -> QuestionShape:
    """Sort the question's words into its own subject, the project, the big picture and pronouns."""
    words = [word.lower() for word in WORD_RE.findall(question)]
    own = tuple(word for word in words if len(word) > 1 and not word.isdigit() and word not in _GENERAL)
    return QuestionShape(
        own=own,
        scope=any(word in _SCOPE_WORDS for word in words),
        picture=any(word in _PICTURE_WORDS for word in words),
        pronoun=any(word in _PRONOUNS for word in words),
    )


def is_broad(question: str, names: frozenset[str] = frozenset(), matched: bool = True) -> bool:
    """True for a question about the whole workspace, with no subject of its own besides the project's ``names``.

    When ranking ``matched`` nothing, a question about the project may have one word of its own too.
    """
    shape = question_shape(question)
    own = [word for word in shape.own if word not in names]
    scope = shape.scope or len(own) < len(shape.own)  # naming the project speaks of it as a whole
    if not own:
        return scope or shape.picture or shape.pronoun
    return not matched and (scope or shape.picture) and len(own) <= UNMATCHED_OWN_WORDS
