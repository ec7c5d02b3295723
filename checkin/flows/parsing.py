"""Reading what patients type. The skeleton understands a plain whole number in range."""

from __future__ import annotations

import re
import unicodedata

_PLAIN_NUMBER = re.compile(r"\d{1,3}")


def parse_number(text: str, low: int, high: int) -> int | None:
    """The number in `text` if it is a plain whole number between low and high, else None.

    NFKC folds fullwidth digits ("７") to ASCII; anything else is not guessed.
    """
    cleaned = unicodedata.normalize("NFKC", text or "").strip().rstrip(".!")
    if not _PLAIN_NUMBER.fullmatch(cleaned):
        return None
    value = int(cleaned)
    return value if low <= value <= high else None
