"""weekly_mood: the PHQ-2 (CLINICAL.md "Instruments"; Kroenke 2003, Med Care 41:1284).

Two items over the past 2 weeks, each 0-3 with the standard labels, answered by number or by
label words; the total (0-6) is stored as phq2_total, and >= 3 is positive.
"""

from collections.abc import Mapping

from checkin.flows.engine import Flow, Question

# The standard answer labels, in English and Spanish (accents are folded before matching).
CHOICES = {
    "not at all": 0,
    "para nada": 0,
    "nunca": 0,
    "ningun dia": 0,
    "several days": 1,
    "some days": 1,
    "varios dias": 1,
    "algunos dias": 1,
    "more than half the days": 2,
    "more than half": 2,
    "over half the days": 2,
    "mas de la mitad de los dias": 2,
    "mas de la mitad": 2,
    "nearly every day": 3,
    "almost every day": 3,
    "every day": 3,
    "casi todos los dias": 3,
    "todos los dias": 3,
}


def total(values: Mapping[str, int | None]) -> dict[str, int]:
    interest, down = values.get("phq2_interest"), values.get("phq2_down")
    if interest is None or down is None:
        return {}  # a skipped item leaves no total: a partial PHQ-2 is not a PHQ-2
    return {"phq2_total": interest + down}


FLOW_V1 = Flow(
    name="weekly_mood",
    version=1,
    questions=(
        Question(
            "phq2_interest",
            "ask_phq2_interest",
            kind="choice",
            low=0,
            high=3,
            labels=("interest",),
            choices=CHOICES,
        ),
        Question(
            "phq2_down",
            "ask_phq2_down",
            kind="choice",
            low=0,
            high=3,
            labels=("down",),
            choices=CHOICES,
        ),
    ),
    derive=total,
)

VERSIONS = {1: FLOW_V1}
CURRENT = FLOW_V1
