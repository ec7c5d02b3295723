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
# CLINICAL.md "Instruments": PHQ-2 total >= 3 is positive (Kroenke 2003) -> routine alert.
PHQ2_POSITIVE_AT = 3
# CLINICAL.md "Ketamine follow-up": bladder symptoms suggest ketamine cystitis -> alert.
SIDE_EFFECTS_ALERTING = ("se_bladder_pain", "se_blood_in_urine")


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


def checkin_findings(readings: Iterable[tuple[str, int | None]]) -> list[Finding]:
    """Every rule that judges one check-in's own answers."""
    readings = list(readings)
    return severe_readings(readings) + side_effects(readings) + phq2_positive(readings)


def side_effects(readings: Iterable[tuple[str, int | None]]) -> list[Finding]:
    found = [m for m, v in readings if m in SIDE_EFFECTS_ALERTING and v == 1]
    if not found:
        return []
    return [
        Finding(
            "side_effect",
            "high",
            "bladder_symptoms",
            {
                "measures": found,
                "source": "CLINICAL.md: bladder symptoms suggest ketamine cystitis",
            },
        )
    ]


def phq2_positive(readings: Iterable[tuple[str, int | None]]) -> list[Finding]:
    totals = [v for m, v in readings if m == "phq2_total" and v is not None]
    if not totals or totals[-1] < PHQ2_POSITIVE_AT:
        return []
    return [
        Finding(
            "phq2_positive",
            "routine",
            "phq2_total",
            {
                "measure": "phq2_total",
                "value": totals[-1],
                "threshold": f">= {PHQ2_POSITIVE_AT}",
                "suggest": "PHQ-9 assessment",
                "source": "CLINICAL.md: PHQ-2 >= 3 (Kroenke 2003)",
            },
        )
    ]
