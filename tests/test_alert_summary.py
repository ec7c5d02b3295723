"""The inbox's one-line 'why it fired', from evidence as the real rules and alert code write it
(round-tripped through JSON, as the database returns it), and from odd JSON that must not crash.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from checkin import trends
from checkin.alert_summary import FALLBACK, SUMMARY_MAX, measure_of, summarize

T0 = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")
KINDS = (
    "crisis",
    "severe",
    "worsening",
    "phq2_positive",
    "loss_of_response",
    "side_effect",
    "non_response",
    "delivery_failure",
    "stop_request",
)


def stored(evidence: dict[str, Any]) -> dict[str, Any]:
    """An evidence item as alerts.raise_alert stores it and the database gives it back."""
    item: dict[str, Any] = json.loads(json.dumps({"at": T0.isoformat(), **evidence}))
    return item


def finding_item(finding: trends.Finding) -> dict[str, Any]:
    """What conversations.py and the scheduler pass to raise_alert for a finding."""
    return stored({**finding.evidence, "rule": finding.rule, "checkin_id": 99})


def series(measure: str, values: Sequence[float]) -> list[trends.Reading]:
    """One reading a day, the newest yesterday."""
    return [
        trends.Reading(measure, v, T0 - timedelta(days=len(values) - i), i)
        for i, v in enumerate(values)
    ]


def found(measure: str, values: Sequence[float], rule: str) -> dict[str, Any]:
    findings = trends.evaluate(measure, series(measure, values), trends.RuleParams())
    (finding,) = [f for f in findings if f.rule == rule]
    return finding_item(finding)


# --- every alert kind, from the evidence its real code writes -----------------------------


def test_a_worsening_alert_says_the_judged_readings_the_baseline_and_the_rule() -> None:
    item = found("pain", [2] * 14 + [6, 7], "worsening_vs_baseline")
    assert summarize("worsening", [item]) == (
        "pain 6, 7 vs baseline 2 (worsening ≥2 points and ≥30% on 2 check-ins)"
    )


def test_a_gradual_drift_says_the_weighted_average_against_the_baseline() -> None:
    item = found("fatigue", [3] * 7 + [5] * 14, "ewma_drift")
    assert summarize("worsening", [item]) == (
        "fatigue drifting worse: weighted average 5 vs baseline 3 (over the 1.5-point limit)"
    )


@pytest.mark.parametrize(
    ("measure", "value", "line"),
    [("pain", 9, "pain 9 (severe: ≥9)"), ("mood", 1, "mood 1 (severe: ≤1)")],
)
def test_a_severe_reading_says_the_value_and_the_threshold_it_crossed(
    measure: str, value: float, line: str
) -> None:
    usual = 2 if measure == "pain" else 7
    item = found(measure, [usual] * 7 + [value], "severe_single_reading")
    assert summarize("severe", [item]) == line


def test_a_positive_phq2_says_the_total_and_the_cut_off() -> None:
    item = found("phq2_total", [1, 2, 4], "phq2_total")
    assert summarize("phq2_positive", [item]) == "PHQ-2 total 4 (≥3)"


def test_a_loss_of_response_says_the_mood_the_infusion_the_peak_and_the_baseline() -> None:
    infusion = date(2026, 3, 1)
    days = list(range(-7, 0)) + [1, 2, 3, 8, 9]
    values = [3] * 7 + [8, 8, 7, 4, 3]
    mood = [
        trends.Reading("mood", v, datetime(2026, 3, 1, 15, tzinfo=UTC) + timedelta(days=d), d)
        for d, v in zip(days, values, strict=True)
    ]
    (finding,) = trends.loss_of_response(mood, [infusion], trends.RuleParams(), NEW_YORK)
    assert summarize("loss_of_response", [finding_item(finding)]) == (
        "mood 4, 3 after the 2026-03-01 infusion: peak 8, baseline 3 (≥50% of the gain lost)"
    )


def test_a_side_effect_alert_names_the_symptoms_reported() -> None:
    (finding,) = trends.side_effects([("se_bladder_pain", 1), ("se_blood_in_urine", 1)])
    assert summarize("side_effect", [finding_item(finding)]) == (
        "reported: bladder pain, blood in urine"
    )


def test_non_response_says_how_many_check_ins_in_a_row_went_unanswered() -> None:
    outcomes = [(date(2026, 3, d), "unanswered") for d in (7, 8, 9)]
    (finding,) = trends.non_response(outcomes, trends.RuleParams())
    assert summarize("non_response", [stored({**finding.evidence, "rule": finding.rule})]) == (
        "3 check-ins unanswered in a row"
    )


def test_a_low_answer_rate_says_how_many_were_answered_of_how_many_sent() -> None:
    statuses = ["completed", "unanswered", "unanswered", "completed", "unanswered"]
    outcomes = [(date(2026, 3, 5 + i), s) for i, s in enumerate(statuses)]
    (finding,) = trends.non_response(outcomes, trends.RuleParams())
    assert summarize("non_response", [stored({**finding.evidence, "rule": finding.rule})]) == (
        "2 of 5 check-ins answered in 7 days (under 50%)"
    )


def test_a_crisis_shows_the_words_that_matched() -> None:
    # As conversations.py writes it: the phrase the patient's text matched.
    item = stored({"matched": "kill myself", "message_id": 7, "phrase_list": "2026-11"})
    assert summarize("crisis", [item]) == 'crisis language: "kill myself"'


def test_a_delivery_failure_shows_the_twilio_error_code() -> None:
    # As outbox.py writes it.
    rule = "Twilio reports the number invalid or not mobile"
    item = stored({"error_code": 21211, "rule": rule})
    assert summarize("delivery_failure", [item]) == "delivery failed: error 21211"


def test_a_stop_request_shows_its_rule() -> None:
    item = stored({"message_id": 7, "rule": "free-text stop request"})
    assert summarize("stop_request", [item]) == "free-text stop request"


def test_an_alert_with_more_evidence_describes_the_newest_and_says_how_many() -> None:
    first = found("pain", [2] * 14 + [6, 7], "worsening_vs_baseline")
    newest = found("pain", [2] * 14 + [6, 8], "worsening_vs_baseline")
    line = summarize("worsening", [first, newest])
    assert line.startswith("pain 6, 8 vs baseline 2")
    assert line.endswith("(newest of 2)")


# --- the measure whose readings the inbox shows --------------------------------------------


def test_the_measure_is_the_one_the_newest_evidence_names() -> None:
    pain = found("pain", [2] * 14 + [6, 7], "worsening_vs_baseline")
    fatigue = found("fatigue", [2] * 14 + [6, 7], "worsening_vs_baseline")
    assert measure_of([pain, fatigue]) == "fatigue"
    assert measure_of([stored({"matched": "kill myself"})]) is None


# --- odd JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "evidence",
    [
        None,
        "pain 9",
        42,
        {},
        [],
        [None, 3, "x"],
        [{}],
        [{"measure": 5, "judged": "nope"}],
        [{"judged": [{"value": "high"}], "baseline": {"median": 2}}],
        [{"judged": [{"value": True}], "thresholds": ">= 9"}],
        [{"judged": {"value": 9}, "post_peak": 8}],
        [{"matched": 7}, {"matched": "   "}],
        [{"error_code": "21211"}, {"error_code": float("nan")}],
        [{"measures": "se_bladder_pain", "unanswered": 3}],
        [{"rule": ["not", "a", "string"]}],
        [{"rule": "   "}],
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_odd_evidence_gets_the_fallback_line_instead_of_an_error(kind: str, evidence: Any) -> None:
    assert summarize(kind, evidence) == FALLBACK
    assert measure_of(evidence) is None


def test_an_unknown_rule_or_an_unreadable_known_one_is_shown_by_name() -> None:
    assert summarize("worsening", [{"rule": "test worsening"}]) == "test worsening"
    assert summarize("new_kind", [{"rule": "new_rule_name"}]) == "new rule name"
    unreadable = {"rule": "worsening_vs_baseline", "measure": "pain", "judged": [{"value": "x"}]}
    assert summarize("worsening", [unreadable]) == "worsening vs baseline"


def test_thresholds_missing_from_old_evidence_leave_the_readings_shown() -> None:
    item = {"rule": "worsening_vs_baseline", "measure": "pain", "judged": [{"value": 6}]}
    assert summarize("worsening", [item]) == "pain 6"


def test_a_very_long_rule_is_cut_to_one_line() -> None:
    line = summarize("stop_request", [{"rule": "x" * 1000}])
    assert len(line) == SUMMARY_MAX and line.endswith("…")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["rule", "measure", "judged", "baseline", "thresholds", "matched", "error_code", "measures"]
    + ["unanswered", "sent", "answered", "ewma", "limit", "post_peak", "infusion_date", "value"]
)


@given(
    kind=st.sampled_from(KINDS),
    evidence=JSON | st.lists(st.dictionaries(KEYS, JSON, max_size=6), max_size=3),
)
def test_any_json_at_all_gives_one_short_line(kind: str, evidence: Any) -> None:
    line = summarize(kind, evidence)
    assert line.strip() and len(line) <= SUMMARY_MAX and "\n" not in line
    measure = measure_of(evidence)
    assert measure is None or isinstance(measure, str)
