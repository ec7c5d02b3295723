"""Compliance keywords (CLINICAL.md "Messaging compliance"): whole message, any case, trimmed."""

from __future__ import annotations

import unicodedata

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "UNSTOP"})
# YES re-subscribes only someone who is opted out; otherwise it may be an answer.
OPT_IN_WHEN_OPTED_OUT = frozenset({"YES"})
HELP = frozenset({"HELP", "INFO", "AYUDA"})

# Twilio Advanced Opt-Out sends OptOutType=STOP|START|HELP on the inbound webhook.
_TWILIO_OPT_OUT_TYPES = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}


def classify(body: str, *, opted_out: bool, opt_out_type: str | None = None) -> str | None:
    """'opt_out', 'opt_in', 'help' or None for an ordinary message."""
    if opt_out_type and opt_out_type.upper() in _TWILIO_OPT_OUT_TYPES:
        return _TWILIO_OPT_OUT_TYPES[opt_out_type.upper()]
    word = unicodedata.normalize("NFKC", body or "").strip().strip(".!").upper()
    if word in OPT_OUT:
        return "opt_out"
    if word in OPT_IN or (opted_out and word in OPT_IN_WHEN_OPTED_OUT):
        return "opt_in"
    if word in HELP:
        return "help"
    return None


# Free-text requests to stop are not keywords (carriers only honour the exact words), but a
# person asked: staff follow up, and the patient is told how to stop at once. Folded text.
STOP_REQUEST_PHRASES = (
    "stop texting",
    "stop messaging",
    "stop sending",
    "stop the texts",
    "stop these texts",
    "stop texts",
    "no more texts",
    "no more messages",
    "dont text",
    "don't text",
    "do not text",
    "unsubscribe me",
    "remove me",
    "take me off",
    "opt me out",
    "leave me alone",
    "quit texting",
    "stop contacting",
    "no me escriban",
    "dejen de escribir",
    "dejen de mandar",
    "no mas mensajes",
    "no quiero mas mensajes",
    "quitenme de la lista",
    "ya no me manden",
)


def is_stop_request(body: str) -> bool:
    text = unicodedata.normalize("NFKD", (body or "").casefold())
    text = "".join(c for c in text if not unicodedata.combining(c)).replace("\u2019", "'")
    text = " ".join(text.split())
    return any(phrase in text for phrase in STOP_REQUEST_PHRASES)
