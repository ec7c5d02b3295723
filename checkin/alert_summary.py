"""One line saying why an alert fired, from its evidence JSON, for the inbox. Pure: no Flask,
no database.

An alert's evidence is a list of dicts, newest appended last (alerts.raise_alert). The line
describes the newest item: that is the latest thing staff are being told. Evidence is JSON that
older releases, other rules and hand-made test rows wrote, so every field is checked before it
is used, and an unknown or odd shape falls back to the rule's name instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# Long enough for every line the rules below write; a stray rule string is cut here so one
# odd row cannot stretch the inbox.
SUMMARY_MAX = 160
MEASURE_LABELS = {"phq2_total": "PHQ-2 total"}
# The rule an item of each kind was written by when it does not name one (crisis and delivery
# items never do; hand-made or old items may not).
DEFAULT_RULE = {
    "crisis": "crisis",
    "severe": "severe_single_reading",
    "worsening": "worsening_vs_baseline",
    "phq2_positive": "phq2_total",
    "loss_of_response": "loss_of_response",
    "side_effect": "bladder_symptoms",
    "non_response": "consecutive_unanswered",
    "delivery_failure": "delivery_failure",
}
FALLBACK = "open the alert to see the evidence"

Item = Mapping[str, Any]


def summarize(kind: str, evidence: object) -> str:
    """'pain 6, 7 vs baseline 2 (worsening ≥2 points and ≥30% on 2 check-ins)'."""
    items = _items(evidence)
    if not items:
        return FALLBACK
    line = _describe(kind, items[-1])
    if len(items) > 1 and line != FALLBACK:
        line += f" (newest of {len(items)})"
    return _one_line(line)


def measure_label(measure: str) -> str:
    """'phq2_total' -> 'PHQ-2 total', 'pain' -> 'pain'."""
    return MEASURE_LABELS.get(measure, measure.replace("_", " "))


def measure_of(evidence: object) -> str | None:
    """The measure the newest evidence item names ('pain'), if it names one."""
    items = _items(evidence)
    if not items:
        return None
    measure = items[-1].get("measure")
    return measure if isinstance(measure, str) and measure else None


def _items(evidence: object) -> list[Item]:
    if not isinstance(evidence, Sequence) or isinstance(evidence, str | bytes):
        return []
    return [item for item in evidence if isinstance(item, Mapping)]


def _describe(kind: str, item: Item) -> str:
    rule = item.get("rule")
    name = rule if isinstance(rule, str) and rule in _RULES else DEFAULT_RULE.get(kind)
    line = _RULES[name](item) if name is not None else None
    if line:
        return line
    if isinstance(rule, str) and rule.strip():
        return rule.strip().replace("_", " ")
    return FALLBACK


# --- one function per rule; each returns None when the item lacks what it needs ------------


def _crisis(item: Item) -> str | None:
    matched = _text(item, "matched")
    return f'crisis language: "{matched}"' if matched else None


def _severe(item: Item) -> str | None:
    measure, values = _measure(item), _judged(item)
    if measure is None or not values:
        return None
    threshold = _threshold(_mapping(item, "thresholds").get("severe"))
    line = f"{measure} {_nums(values[-1:])}"
    return f"{line} (severe: {threshold})" if threshold else line


def _worsening(item: Item) -> str | None:
    measure, values = _measure(item), _judged(item)
    if measure is None or not values:
        return None
    line = f"{measure} {_nums(values)}"
    median = _number(_mapping(item, "baseline"), "median")
    if median is not None:
        line += f" vs baseline {_num(median)}"
    limits = _mapping(item, "thresholds")
    points, percent = _number(limits, "points"), _number(limits, "percent")
    times = _number(limits, "consecutive")
    if points is not None and percent is not None and times is not None:
        line += (
            f" (worsening ≥{_num(points)} points and ≥{_num(percent)}% on {_num(times)} check-ins)"
        )
    return line


def _drift(item: Item) -> str | None:
    measure, ewma = _measure(item), _number(item, "ewma")
    mean = _number(_mapping(item, "baseline"), "mean")
    if measure is None or ewma is None or mean is None:
        return None
    line = f"{measure} drifting worse: weighted average {_num(ewma, 1)} vs baseline {_num(mean, 1)}"
    limit = _number(item, "limit")
    return f"{line} (over the {_num(limit, 1)}-point limit)" if limit is not None else line


def _phq2(item: Item) -> str | None:
    values = _judged(item)
    if not values:
        return None
    threshold = _threshold(_mapping(item, "thresholds").get("positive_at"))
    line = f"PHQ-2 total {_nums(values[-1:])}"
    return f"{line} ({threshold})" if threshold else line


def _loss_of_response(item: Item) -> str | None:
    values = _judged(item)
    peak = _number(item, "post_peak")
    if not values or peak is None:
        return None
    line = f"mood {_nums(values)}"
    infusion = _text(item, "infusion_date")
    if infusion:
        line += f" after the {infusion} infusion"
    line += f": peak {_num(peak)}"
    median = _number(_mapping(item, "baseline"), "median")
    if median is not None:
        line += f", baseline {_num(median)}"
    fraction = _number(_mapping(item, "thresholds"), "fraction")
    return f"{line} (≥{_num(fraction * 100)}% of the gain lost)" if fraction is not None else line


def _side_effect(item: Item) -> str | None:
    raw = item.get("measures")
    if not isinstance(raw, list):
        return None
    names = [m.removeprefix("se_").replace("_", " ") for m in raw if isinstance(m, str) and m]
    return f"reported: {', '.join(names)}" if names else None


def _unanswered(item: Item) -> str | None:
    days = item.get("unanswered")
    if not isinstance(days, list) or not days:
        return None
    return f"{len(days)} check-in{'s' if len(days) != 1 else ''} unanswered in a row"


def _answer_rate(item: Item) -> str | None:
    sent, answered = _number(item, "sent"), _number(item, "answered")
    if sent is None or answered is None:
        return None
    line = f"{_num(answered)} of {_num(sent)} check-ins answered"
    limits = _mapping(item, "thresholds")
    days, below = _number(limits, "days"), _number(limits, "rate_below")
    if days is not None:
        line += f" in {_num(days)} days"
    return f"{line} (under {_num(below * 100)}%)" if below is not None else line


def _delivery_failure(item: Item) -> str | None:
    code = _number(item, "error_code")
    return f"delivery failed: error {_num(code)}" if code is not None else None


_RULES: dict[str, Callable[[Item], str | None]] = {
    "crisis": _crisis,
    "severe_single_reading": _severe,
    "worsening_vs_baseline": _worsening,
    "ewma_drift": _drift,
    "phq2_total": _phq2,
    "loss_of_response": _loss_of_response,
    "bladder_symptoms": _side_effect,
    "consecutive_unanswered": _unanswered,
    "answer_rate": _answer_rate,
    "delivery_failure": _delivery_failure,
}


# --- reading JSON defensively ---------------------------------------------------------------


def _mapping(item: Item, key: str) -> Item:
    value = item.get(key)
    return value if isinstance(value, Mapping) else {}


def _text(item: Item, key: str) -> str | None:
    value = item.get(key)
    return (value.strip() or None) if isinstance(value, str) else None


def _number(item: Item, key: str) -> float | None:
    value = item.get(key)
    # bool is an int to Python, but True is not a reading.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _measure(item: Item) -> str | None:
    measure = _text(item, "measure")
    return measure_label(measure) if measure else None


def _judged(item: Item) -> list[float]:
    """The values of the readings the rule judged, oldest first."""
    judged = item.get("judged")
    if not isinstance(judged, list):
        return []
    values = (_number(r, "value") for r in judged if isinstance(r, Mapping))
    return [v for v in values if v is not None]


def _threshold(value: object) -> str | None:
    """'>= 9' -> '≥9'."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.replace(">=", "≥").replace("<=", "≤").replace(" ", "")


def _num(value: float, digits: int = 3) -> str:
    """6.0 -> '6', 2.25 -> '2.25': as staff would write it."""
    return f"{round(value, digits):g}"


def _nums(values: Sequence[float]) -> str:
    return ", ".join(_num(v) for v in values)


def _one_line(line: str) -> str:
    """Whitespace squeezed (a rule string may hold a newline) and cut at SUMMARY_MAX."""
    line = " ".join(line.split())
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1].rstrip() + "…"
