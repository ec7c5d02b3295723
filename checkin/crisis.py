"""Crisis language, checked on every inbound text before anything else (CLINICAL.md).

A first curated list: explicit ideation, self-harm, and plan or method words, which predict risk
better than the word "suicide" does. We prefer a false alarm to a miss. Matching folds case,
accents, punctuation and runs of spaces, so "Kill   my-self!!" still matches.
"""

from __future__ import annotations

import re
import unicodedata

LIST_VERSION = "2026-11-25.1"

PHRASES_EN = (
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "end my life",
    "end it all",
    "take my life",
    "want to die",
    "wanna die",
    "want to be dead",
    "better off dead",
    "no reason to live",
    "not worth living",
    "dont want to live",
    "don't want to live",
    "dont want to be here",
    "hurt myself",
    "harm myself",
    "self harm",
    "selfharm",
    "cut myself",
    "overdose",
    "od on",
    "took all my pills",
    "take all my pills",
    "saving up pills",
    "stockpiling pills",
    "hoarding pills",
    "goodbye letter",
    "suicide note",
    "hang myself",
    "jump off",
    "shoot myself",
    "kms",
    "unalive",
)
PHRASES_ES = (
    "suicidio",
    "suicidarme",
    "matarme",
    "me quiero matar",
    "quiero morir",
    "quiero morirme",
    "no quiero vivir",
    "acabar con mi vida",
    "quitarme la vida",
    "hacerme dano",
    "lastimarme",
    "sobredosis",
    "carta de despedida",
    "mejor muerto",
    "mejor muerta",
)
EMOJI = ("\U0001f48a", "\U0001faa6")  # pill, headstone

_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s']")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    no_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", no_accents.replace("\u2019", "'"))).strip()


_PATTERNS = tuple(
    re.compile(r"(?<!\w)" + re.escape(_fold(p)).replace(r"\ ", r"\s*") + r"(?!\w)")
    for p in PHRASES_EN + PHRASES_ES
)

_COMPACT = tuple(
    (p, _fold(p).replace(" ", "")) for p in PHRASES_EN + PHRASES_ES if len(_fold(p)) >= 8
)


def detect(text: str) -> str | None:
    """The phrase that matched, or None. Runs on the raw body of every inbound text."""
    raw = text or ""
    for emoji in EMOJI:
        if emoji in raw:
            return emoji
    folded = _fold(raw)
    for pattern, phrase in zip(_PATTERNS, PHRASES_EN + PHRASES_ES, strict=True):
        if pattern.search(folded):
            return phrase
    # "kill my self", "sui cide": with the spaces squeezed out, longer phrases still match.
    # Short ones ("kms") are left out here, where they would match inside ordinary words.
    squeezed = folded.replace(" ", "")
    for phrase, compact in _COMPACT:
        if compact in squeezed:
            return phrase
    return None
