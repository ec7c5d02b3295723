"""Reading what patients type, without guessing.

`interpret(text, remaining, every)` reads one reply against the questions still open (the first
is the one just asked) and returns answers, a skip, or a reason to ask again:

- digits, number words in English and Spanish ("seven", "siete"), "7/10", "7 out of 10",
  fullwidth digits;
- labelled values in any order, for whichever questions they name: "pain 4, fatigue 6";
- several bare numbers answering the open questions in order: "8 6 3", "8,6,3";
- one number wrapped in words: "I'd say 4 today"; the words become a note for staff;
- PHQ-2 label words ("several days") and yes/no (with "none" for a whole group).

A range ("6-7"), a decimal, or several numbers among words is *ambiguous* and asked again; a
number outside the scale is *out_of_range*. Nothing here touches Flask, Twilio or a database.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SKIP_WORDS = frozenset({"skip", "pass", "next", "saltar", "omitir", "paso", "siguiente"})
NONE_WORDS = frozenset(
    {
        "none",
        "none of them",
        "none of these",
        "no side effects",
        "nothing",
        "nope none",
        "ninguno",
        "ninguna",
        "ningunos",
        "nada",
        "ningun efecto",
    }
)
YES_WORDS = frozenset({"yes", "y", "yeah", "yep", "yup", "ya", "si", "claro", "sure", "a little"})
NO_WORDS = frozenset({"no", "n", "nope", "nah", "not really", "not at all"})

NUMBER_WORDS: Mapping[str, int] = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "cero": 0,
    "uno": 1,
    "una": 1,
    "dos": 2,
    "tres": 3,
    "cuatro": 4,
    "cinco": 5,
    "seis": 6,
    "siete": 7,
    "ocho": 8,
    "nueve": 9,
    "diez": 10,
}


@dataclass(frozen=True)
class Slot:
    """What the parser knows about one question."""

    measure: str
    kind: str = "scale"  # scale, choice, yesno
    low: int = 0
    high: int = 10
    labels: tuple[str, ...] = ()  # words that name this question ("pain", "dolor")
    choices: Mapping[str, int] = field(default_factory=dict)  # "several days" -> 1


@dataclass(frozen=True)
class Reply:
    kind: str  # answers, skip, none, unreadable, out_of_range, ambiguous
    values: dict[str, int] = field(default_factory=dict)
    note: str | None = None


UNREADABLE = Reply("unreadable")
AMBIGUOUS = Reply("ambiguous")
OUT_OF_RANGE = Reply("out_of_range")

_SPACES = re.compile(r"\s+")
_INT = re.compile(r"(?<![\d.])\d{1,3}(?![\d.]*\d)")
_DECIMAL = re.compile(r"\d+\.\d+")
_FRACTION = re.compile(r"(\d{1,3})\s*(?:/|out of|de|of|sobre)\s*(\d{1,3})\b")
_RANGE = re.compile(r"\d{1,3}\s*(?:-|to|or|a|o|y|and|&)\s*\d{1,3}")
_NEGATIVE = re.compile(r"(?:^|[\s:=(])-\d")  # "-1", "pain -2"; not "pain - 3"
_NUMBER_LIST = re.compile(r"^\d{1,3}(?:\s*[,;\s]\s*\d{1,3})+$")


def normalise(text: str) -> str:
    """Fold width, case, accents, curly quotes and runs of spaces."""
    folded = unicodedata.normalize("NFKC", text or "").casefold().replace("\u2019", "'")
    plain = "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
    return _SPACES.sub(" ", plain).strip()


def interpret(text: str, remaining: Sequence[Slot], every: Sequence[Slot] | None = None) -> Reply:
    """Read `text` as the answer to remaining[0] (and perhaps the later open questions).

    `every` is the flow's full list, so a labelled value for an earlier question ("actually
    pain 5") is read as a correction rather than ignored.
    """
    if not remaining:
        return UNREADABLE
    norm = normalise(text).strip(" .!?")
    if norm in SKIP_WORDS:
        return Reply("skip")
    current = remaining[0]
    if current.kind == "yesno":
        return _yes_no(norm)
    if current.kind == "choice":
        chosen = _choice(norm, current)
        if chosen is not None:
            return chosen
    return _numbers(norm, remaining, every or remaining)


def _yes_no(norm: str) -> Reply:
    if norm in NONE_WORDS:
        return Reply("none")
    words = re.findall(r"[a-z']+", norm)
    if not words:
        return UNREADABLE
    for size in (2, 1):  # "a little", "not really" before "a", "not"
        head = " ".join(words[:size])
        rest = " ".join(words[size:]) or None
        if head in YES_WORDS:
            return AMBIGUOUS if set(words[size:]) & NO_WORDS else Reply("answers", {"": 1}, rest)
        if head in NO_WORDS:
            return AMBIGUOUS if set(words[size:]) & YES_WORDS else Reply("answers", {"": 0}, rest)
    return UNREADABLE


def _choice(norm: str, slot: Slot) -> Reply | None:
    """A label answer such as 'several days'; None when no label is present."""
    found = {value for phrase, value in slot.choices.items() if _has_phrase(norm, phrase)}
    if not found:
        return None
    if len(found) > 1 or len(set(_INT.findall(norm)) - {str(v) for v in found}) > 0:
        return AMBIGUOUS
    return Reply("answers", {slot.measure: found.pop()})


def _numbers(norm: str, remaining: Sequence[Slot], every: Sequence[Slot]) -> Reply:
    text = _words_to_digits(norm)
    if _DECIMAL.search(text):
        return AMBIGUOUS
    text, bad_fraction = _fold_fractions(text, remaining[0].high)
    if bad_fraction:
        return AMBIGUOUS
    if _RANGE.search(text):
        return AMBIGUOUS
    if _NEGATIVE.search(text):
        return OUT_OF_RANGE
    labelled = _labelled(text, every)
    if labelled is not None:
        return labelled
    numbers = [int(n) for n in _INT.findall(text)]
    if not numbers:
        return UNREADABLE
    if len(numbers) == 1:
        return _checked([(remaining[0], numbers[0])], _note(text))
    if _NUMBER_LIST.match(text) and len(numbers) <= len(remaining):
        return _checked(list(zip(remaining, numbers, strict=False)), None)
    return AMBIGUOUS


def _words_to_digits(text: str) -> str:
    return re.sub(r"[a-z]+", lambda m: str(NUMBER_WORDS.get(m.group(0), m.group(0))), text)


def _fold_fractions(text: str, high: int) -> tuple[str, bool]:
    """'7/10' and '7 out of 10' become '7'; a fraction of another scale ('3/5') is flagged."""
    bad = False

    def fold(match: re.Match[str]) -> str:
        nonlocal bad
        if int(match.group(2)) != high:
            bad = True
        return match.group(1)

    return _FRACTION.sub(fold, text), bad


def _labelled(text: str, every: Sequence[Slot]) -> Reply | None:
    """'pain 4, fatigue 6': None when no question is named; else the named values."""
    values: dict[str, tuple[Slot, int]] = {}
    consumed = text
    for slot in every:
        for label in slot.labels:
            for match in _label_pattern(label).finditer(text):
                value = int(match.group(1))
                if values.get(slot.measure, (slot, value))[1] != value:
                    return AMBIGUOUS
                values[slot.measure] = (slot, value)
                consumed = consumed.replace(match.group(0), " ", 1)
    if not values:
        return None
    if _INT.search(consumed):
        return AMBIGUOUS  # a number that belongs to no label: do not guess
    return _checked(list(values.values()), _note(consumed, labels=True))


def _label_pattern(label: str) -> re.Pattern[str]:
    # "pain 4", "pain: 4", "pain is 4", "dolor de 5"
    return re.compile(
        rf"(?<![a-z]){re.escape(label)}(?![a-z])\W*(?:is|was|at|es|de|a)?\W*(\d{{1,3}})\b"
    )


def _checked(values: Sequence[tuple[Slot, int]], note: str | None) -> Reply:
    for slot, value in values:
        if not slot.low <= value <= slot.high:
            return OUT_OF_RANGE
    return Reply("answers", {slot.measure: value for slot, value in values}, note)


def _note(text: str, labels: bool = False) -> str | None:
    """The words around the number, kept for staff ("legs numb again")."""
    words = text if labels else _INT.sub(" ", text, count=1)
    cleaned = _SPACES.sub(" ", re.sub(r"^[\W_]+|[\W_]+$", "", words)).strip()
    # "a 7", "5 y 7": a word of one or two letters says nothing worth showing staff.
    return cleaned if len(cleaned) > 2 else None


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(normalise(phrase))}(?!\w)", text) is not None
