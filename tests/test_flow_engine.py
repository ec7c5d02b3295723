"""The pure flow engine, driven step by step with a fixed clock: no Flask, Twilio or database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkin import flows
from checkin.catalog import render
from checkin.flows.engine import RunState, Text, advance, expire, start
from checkin.flows.parsing import parse_number

NOW = datetime(2026, 3, 10, 14, 5, tzinfo=UTC)
FLOW = flows.current("daily_symptoms")


def test_daily_symptoms_asks_fatigue_pain_then_mood_and_thanks() -> None:
    outcome = start(FLOW)
    assert outcome.texts == [Text("ask_fatigue")]
    values = {}
    state = outcome.state
    for reply, measure, next_text in (
        ("6", "fatigue", "ask_pain"),
        ("4", "pain", "ask_mood"),
        ("7", "mood", "thanks"),
    ):
        outcome = advance(FLOW, state, reply, NOW)
        assert [r.measure for r in outcome.readings] == [measure]
        assert outcome.texts[-1].key == next_text
        values[measure] = outcome.readings[0].value
        state = outcome.state
    assert values == {"fatigue": 6, "pain": 4, "mood": 7}
    assert outcome.status == "completed"


@pytest.mark.parametrize("reply", ["eleven", "11", "-1", "7.5", "", "six or so", "6-7"])
def test_anything_but_a_plain_number_in_range_is_asked_again_naming_the_range(reply: str) -> None:
    outcome = advance(FLOW, RunState(step=1), reply, NOW)
    assert outcome.readings == []
    assert outcome.status == "open"
    assert outcome.texts[0] == Text("reask", {"low": 0, "high": 10})
    assert outcome.texts[1] == Text("ask_pain")
    assert "0 to 10" in render("reask", "en", outcome.texts[0].params).replace("from ", "")


def test_after_two_failed_tries_the_question_is_skipped_and_stored_as_missing() -> None:
    first = advance(FLOW, RunState(step=0), "dunno", NOW)
    second = advance(FLOW, first.state, "???", NOW)
    assert [(r.measure, r.value, r.status) for r in second.readings] == [
        ("fatigue", None, "missing")
    ]
    assert second.state.step == 1 and second.state.failed_tries == 0
    assert [t.key for t in second.texts] == ["skipped_question", "ask_pain"]


def test_a_good_answer_after_a_failed_try_is_stored() -> None:
    first = advance(FLOW, RunState(step=2), "hmm", NOW)
    second = advance(FLOW, first.state, "3", NOW)
    assert [(r.measure, r.value) for r in second.readings] == [("mood", 3)]
    assert second.status == "completed"


def test_expiry_records_every_unanswered_question_as_missing_never_zero() -> None:
    readings = expire(FLOW, RunState(step=1))
    assert [(r.measure, r.value, r.status) for r in readings] == [
        ("pain", None, "missing"),
        ("mood", None, "missing"),
    ]


def test_run_state_survives_a_round_trip_through_json() -> None:
    state = RunState(step=2, failed_tries=1)
    assert RunState.from_dict(state.to_dict()) == state
    assert RunState.from_dict({}) == RunState()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("10", 10),
        (" 7 ", 7),
        ("7.", 7),
        ("７", 7),
        ("10!", 10),
        ("11", None),
        ("007", 7),
        ("seven", None),
        ("7/10", None),
        ("", None),
        ("1e1", None),
    ],
)
def test_the_skeleton_parser_reads_plain_whole_numbers_only(
    text: str, expected: int | None
) -> None:
    assert parse_number(text, 0, 10) == expected


def test_flows_are_versioned_so_a_run_keeps_the_flow_it_started_with() -> None:
    assert flows.version("daily_symptoms", 1) is FLOW
    with pytest.raises(flows.UnknownFlow):
        flows.current("no_such_flow")
