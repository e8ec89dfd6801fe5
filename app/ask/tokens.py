"""Code-aware terms shared by indexing and querying: identifier splitting, light stemming, stopwords."""

import functools
import re

import Stemmer

_WORD_RE = re.compile(r"\w+")
# "HTTPServer" -> HTTP, Server; "getSignature" -> get, Signature; "utf8" -> utf, 8.
_PART_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_MAX_WORD = 40  # longer "words" are hashes or base64, never searched for

# Words that carry no meaning in a question about code. Code verbs such as "get", "set", "make", "use" or
# "handle" are deliberately kept: they are often part of the name being asked about.
_STOPWORD_TEXT = """
    a about above after again against all also am an and any anything are as at be because been before
    being below between both but by can could did do does doing done down during each either else even
    ever every exactly few for from further had has have having he her here hers how however i if in
    into is it its itself just let me might more most much must my no nor not now of off on once one
    only onto or other our ours out over own per please same she should so some something somewhere
    such than that the their theirs them then there these they this those through thus to too under
    until up upon us very via was we were what whatever when whenever where whereas wherever whether
    which while who whom whose why will with within without would yet you your yours
    code codebase function functions method methods class classes module modules implemented
    implementation implements implement defined define defines definition responsible happen happens
    happening actually tell show explain find located lives someone thing things way ways work works
    gets got part piece place logic
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# Abbreviations programmers write in every language for words users ask with (and back). Only spelling
# variants of one word: groups of related words (send/emit/dispatch) were tuned to one library and misled on
# others, and "env" also names .env files, not only the environment. Groups meet by stem, so no member may
# stem to another everyday word: "settings" (-> "set"), "mapping" (-> "map") and "authorization"
# (-> "author") made every "set", "map" and "author" of a question mean configuration, dict and auth.
_SYNONYM_GROUPS = [
    ["config", "configuration", "configure"],
    ["app", "application"],
    ["auth", "authentication", "authenticate"],
    ["ctx", "context"],
    ["req", "request"],
    ["resp", "response"],
    ["arg", "args", "argument"],
    ["param", "parameter"],
    ["attr", "attribute"],
    ["dir", "directory", "folder"],
    ["db", "database"],
    ["err", "error"],
    ["exc", "exception"],
    ["msg", "message"],
    ["init", "initialize", "initialise", "initialization"],
    ["str", "string"],
    ["len", "length"],
    ["num", "number"],
    ["val", "value"],
    ["var", "variable"],
    ["tmpl", "template"],
    ["info", "information"],
    ["cmd", "command"],
    ["opt", "option"],
    ["max", "maximum"],
    ["min", "minimum"],
    ["src", "source"],
    ["dst", "dest", "destination"],
    ["prev", "previous"],
    ["util", "utility"],
    ["sig", "signature"],
    ["ts", "timestamp"],
    ["id", "identifier"],
    ["pwd", "passwd", "password"],
    ["tmp", "temp", "temporary"],
    ["dict", "dictionary"],
    ["obj", "object"],
    ["ref", "reference"],
    ["doc", "docs", "documentation"],
    ["repr", "representation"],
    ["kw", "kwargs", "keyword"],
    ["iter", "iterate", "iterator"],
    ["bool", "boolean"],
    ["int", "integer"],
    ["exec", "execute"],
    ["eval", "evaluate"],
    ["lib", "library"],
    ["pkg", "package"],
    ["addr", "address"],
    ["conn", "connection"],
    ["fs", "filesystem"],
    ["cli", "commandline"],
]

_ENGLISH = Stemmer.Stemmer("english")

# Irregular verb forms that suffix stripping cannot reach.
_IRREGULAR = {
    "built": "build", "sent": "send", "found": "find", "written": "write", "wrote": "write", "made": "make",
    "kept": "keep", "given": "give", "gave": "give", "taken": "take", "took": "take", "thrown": "throw",
    "threw": "throw", "chosen": "choose", "chose": "choose", "began": "begin", "begun": "begin", "ran": "run",
    "held": "hold", "bound": "bind", "left": "leave", "lost": "lose", "brought": "bring", "caught": "catch",
    "died": "die", "dies": "die", "dying": "die", "spoken": "speak", "hidden": "hide", "drawn": "draw",
    "shown": "show", "known": "know", "seen": "see", "done": "do", "gone": "go", "went": "go",
}  # fmt: skip


def stem(word: str) -> str:
    """The Snowball English stem, so that "saved", "saves" and "saving" meet "save" and "serialization"
    meets "serialize" (indexing and questions both use it); short words and non-letters stay as they are."""
    word = _IRREGULAR.get(word, word)
    if len(word) <= 3 or not word.isalpha():
        return word
    return _ENGLISH.stemWord(word)


@functools.lru_cache(maxsize=200_000)
def word_terms(word: str) -> tuple[str, ...]:
    """Terms for one identifier: the whole name (underscores dropped) plus its camel/snake parts."""
    # Cached: code repeats the same identifiers endlessly, and this is most of the indexing time.
    if len(word) > _MAX_WORD:
        return ()
    lowered = word.lower()
    whole = lowered.replace("_", "")
    if not whole:
        return ()
    terms = [stem(whole)] if len(whole) >= 2 else []
    if word.isascii():
        parts = [p.lower() for piece in word.split("_") for p in _PART_RE.findall(piece)]
    else:
        parts = [p for p in lowered.split("_") if p]
    if len(parts) > 1:
        terms.extend(stem(p) for p in parts if len(p) >= 2 and not p.isdigit())
    return tuple(terms)


def text_terms(text: str) -> list[str]:
    """All terms of a piece of source text, in order."""
    out: list[str] = []
    for word in _WORD_RE.findall(text):
        out.extend(word_terms(word))
    return out


def _build_synonyms() -> dict[str, tuple[str, ...]]:
    table: dict[str, set[str]] = {}
    for group in _SYNONYM_GROUPS:
        stems = {stem(word) for word in group}
        for term in stems:
            table.setdefault(term, set()).update(stems - {term})
    return {term: tuple(sorted(others)) for term, others in table.items()}


_SYNONYMS = _build_synonyms()


def query_concepts(question: str) -> list[tuple[str, ...]]:
    """The question's concepts, each a term followed by its synonyms; stopwords dropped, names split."""
    concepts: dict[str, tuple[str, ...]] = {}
    for word in _WORD_RE.findall(question):
        if word.lower() in STOPWORDS:
            continue
        for term in word_terms(word):
            if term not in STOPWORDS and term not in concepts:
                concepts[term] = (term, *_SYNONYMS.get(term, ()))
    return list(concepts.values())


def query_terms(question: str) -> list[str]:
    """Distinct search terms of a question: every concept's term and synonyms."""
    return list(dict.fromkeys(term for concept in query_concepts(question) for term in concept))
