"""Pure trend rules: readings in, findings out. No database, no Flask.

The skeleton has the severe single-reading rule; baseline, worsening, drift and the rest come
with the trends issue. Every default cites CLINICAL.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# CLINICAL.md "What counts as worsening": severe single reading -> same-day alert.
SEVERE_AT_OR_ABOVE = {"pain": 9, "fatigue": 9}
SEVERE_AT_OR_BELOW = {"mood": 1}


@dataclass(frozen=True)
class Finding:
    kind: str  # an alert kind from the contract
    severity: str  # urgent, high, routine
    rule: str
    evidence: dict[str, Any] = field(default_factory=dict)


def severe_readings(readings: Iterable[tuple[str, int | None]]) -> list[Finding]:
    """One `severe` finding per reading past its threshold (None values are never judged)."""
    findings = []
    for measure, value in readings:
        if value is None:
            continue
        high = SEVERE_AT_OR_ABOVE.get(measure)
        low = SEVERE_AT_OR_BELOW.get(measure)
        if high is not None and value >= high:
            findings.append(_severe(measure, value, f">= {high}"))
        elif low is not None and value <= low:
            findings.append(_severe(measure, value, f"<= {low}"))
    return findings


def _severe(measure: str, value: int, threshold: str) -> Finding:
    return Finding(
        kind="severe",
        severity="high",
        rule="severe_single_reading",
        evidence={
            "measure": measure,
            "value": value,
            "threshold": threshold,
            "source": "CLINICAL.md: pain >=9, fatigue >=9, mood <=1",
        },
    )
