"""Crisis detection measured on a labelled set: recall must be total, false alarms are counted.

CLINICAL.md: prefer a false alarm to a miss. The set mixes explicit ideation, plan and method
words, abbreviations and Spanish with ordinary replies that share words ("dead tired",
"my pills make me sleepy").
"""

from __future__ import annotations

import csv
from pathlib import Path

from checkin import crisis

DATA = Path(__file__).parent / "data" / "crisis_labelled.csv"


def _rows() -> list[tuple[str, str]]:
    with DATA.open(encoding="utf-8") as handle:
        return [(row["label"], row["text"]) for row in csv.DictReader(handle)]


def measure() -> tuple[float, float, list[str], list[str]]:
    """Recall on crisis rows, false-alarm rate on ordinary rows, and the offending texts."""
    rows = _rows()
    crises = [t for label, t in rows if label == "crisis"]
    ordinary = [t for label, t in rows if label == "ordinary"]
    missed = [t for t in crises if crisis.detect(t) is None]
    alarms = [t for t in ordinary if crisis.detect(t) is not None]
    return 1 - len(missed) / len(crises), len(alarms) / len(ordinary), missed, alarms


def test_the_labelled_set_has_at_least_60_messages() -> None:
    assert len(_rows()) >= 60


def test_every_crisis_message_in_the_labelled_set_is_detected() -> None:
    recall, _, missed, _ = measure()
    assert missed == [] and recall == 1.0


def test_false_alarms_stay_under_one_in_ten_ordinary_messages() -> None:
    _, rate, _, alarms = measure()
    print(f"false alarms: {alarms}")
    assert rate <= 0.10, alarms
