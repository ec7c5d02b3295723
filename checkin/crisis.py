"""Crisis language, checked on every inbound text before anything else (CLINICAL.md).

A curated, versioned list in English and Spanish: explicit ideation, self-harm, and plan or
method words, which predict risk better than the word "suicide" does (Crisis Text Line found
"ibuprofen", "800mg" and the pill emoji ranked above it). We prefer a false alarm to a miss.
Matching folds case, accents, punctuation and runs of spaces, so "Kill   my-self!!" matches.
Recall and false alarms are measured on tests/data/crisis_labelled.csv.

Changing the list: add phrases, bump LIST_VERSION, add labelled examples; alerts record the
version that fired them.
"""

from __future__ import annotations

import re
import unicodedata

LIST_VERSION = "2026-11-25.2"

PHRASES_EN = (
    # ideation
    "suicide",
    "suicidal",
    "kill myself",
    "killing myself",
    "end my life",
    "end it all",
    "end things",
    "take my life",
    "want to die",
    "wanna die",
    "want to be dead",
    "wish i was dead",
    "wish i were dead",
    "better off dead",
    "better off without me",
    "no reason to live",
    "not worth living",
    "dont want to live",
    "don't want to live",
    "dont want to be here",
    "don't want to be here",
    "dont want to wake up",
    "don't want to wake up",
    "never wake up",
    "cant go on",
    "can't go on",
    "unalive",
    "kms",
    "kys",
    # self-harm
    "hurt myself",
    "harm myself",
    "self harm",
    "selfharm",
    "cut myself",
    "cutting myself",
    # plan and method
    "plan to end",
    "overdose",
    "overdosing",
    "od",
    "took all my pills",
    "take all my pills",
    "taking all my pills",
    "all my pills",
    "saving up pills",
    "saving pills",
    "stockpiling pills",
    "hoarding pills",
    "whole bottle",
    "goodbye letter",
    "suicide note",
    "hang myself",
    "jump off",
    "jumping off",
    "shoot myself",
    "ibuprofen",
)
PHRASES_ES = (
    "suicidio",
    "suicida",
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
    "cortarme",
    "sobredosis",
    "todas mis pastillas",
    "carta de despedida",
    "mejor muerto",
    "mejor muerta",
    "no quiero estar aqui",
    "ya no puedo mas",
    "ahorcarme",
)
EMOJI = ("\U0001f48a", "\U0001faa6", "\U0001f52a")  # pill, headstone, knife
# A dose of 100 mg or more in a text to a check-in line is a method word, not a reading.
_DOSE = re.compile(r"(?<!\d)\d{3,5}\s?mg\b")

_SPACES = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s']")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    no_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", no_accents.replace("\u2019", "'"))).strip()


PHRASES = PHRASES_EN + PHRASES_ES
_PATTERNS = tuple(
    re.compile(r"(?<!\w)" + re.escape(_fold(p)).replace(r"\ ", r"\s*") + r"(?!\w)") for p in PHRASES
)
_COMPACT = tuple((p, _fold(p).replace(" ", "")) for p in PHRASES if len(_fold(p)) >= 8)


def detect(text: str) -> str | None:
    """The phrase that matched, or None. Runs on the raw body of every inbound text."""
    raw = text or ""
    for emoji in EMOJI:
        if emoji in raw:
            return emoji
    folded = _fold(raw)
    for pattern, phrase in zip(_PATTERNS, PHRASES, strict=True):
        if pattern.search(folded):
            return phrase
    if _DOSE.search(folded):
        return "dose in mg"
    # "kill my self", "sui cide": with the spaces squeezed out, longer phrases still match.
    # Short ones ("kms") are left out here, where they would match inside ordinary words.
    squeezed = folded.replace(" ", "")
    for phrase, compact in _COMPACT:
        if compact in squeezed:
            return phrase
    return None
