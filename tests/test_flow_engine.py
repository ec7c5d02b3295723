"""The pure flow engine, every flow driven step by step with a fixed clock.

No Flask, Twilio or database: (flow, state, text, now) -> Outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from checkin import flows
from checkin.catalog import render
from checkin.flows.engine import Outcome, RunState, Text, advance, expire, start

NOW = datetime(2026, 3, 10, 14, 5, tzinfo=UTC)
DAILY = flows.current("daily_symptoms")
WEEKLY = flows.current("weekly_mood")
POST = flows.current("post_infusion")


def run(flow: flows.Flow, *replies: str) -> list[Outcome]:
    """Drive a run from its start through `replies`; the outcome of each reply."""
    state = start(flow).state
    outcomes = []
    for reply in replies:
        outcome = advance(flow, state, reply, NOW)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


def values(outcomes: list[Outcome]) -> dict[str, int | None]:
    return {r.measure: r.value for o in outcomes for r in o.readings}


def keys(outcome: Outcome) -> list[str]:
    return [t.key for t in outcome.texts]


def test_daily_symptoms_asks_fatigue_pain_then_mood_one_per_text_and_thanks() -> None:
    assert start(DAILY).texts == [Text("ask_fatigue")]
    outcomes = run(DAILY, "6", "4", "7")
    assert [keys(o) for o in outcomes] == [["ask_pain"], ["ask_mood"], ["thanks"]]
    assert values(outcomes) == {"fatigue": 6, "pain": 4, "mood": 7}
    assert outcomes[-1].status == "completed"


def test_three_numbers_in_one_text_finish_the_daily_check_in() -> None:
    (outcome,) = run(DAILY, "8 6 3")
    assert values([outcome]) == {"fatigue": 8, "pain": 6, "mood": 3}
    assert outcome.status == "completed" and keys(outcome) == ["thanks"]


def test_labelled_values_answer_the_questions_they_name_and_the_rest_is_asked() -> None:
    (outcome,) = run(DAILY, "pain 4, fatigue 6")
    assert values([outcome]) == {"pain": 4, "fatigue": 6}
    assert keys(outcome) == ["ask_mood"]


def test_words_around_the_number_are_kept_as_a_note() -> None:
    (outcome,) = run(DAILY, "5 - legs numb again")
    assert [(r.value, r.note, r.raw_text) for r in outcome.readings] == [
        (5, "legs numb again", "5 - legs numb again")
    ]


@pytest.mark.parametrize(
    ("reply", "key"),
    [
        ("eleven", "reask"),
        ("11", "reask"),
        ("-1", "reask"),
        ("", "reask"),
        ("not great", "reask"),
        ("6-7", "reask_one"),
        ("7.5", "reask_one"),
        ("6 today 7 yesterday", "reask_one"),
    ],
)
def test_a_reply_that_cannot_be_read_is_asked_again_naming_the_range(reply: str, key: str) -> None:
    (outcome,) = run(DAILY, reply)
    assert outcome.readings == [] and outcome.status == "open"
    assert outcome.texts == [Text(key, {"low": 0, "high": 10}), Text("ask_fatigue")]
    assert "0 to 10" in render(key, "en", {"low": 0, "high": 10}).replace("from ", "")


def test_after_two_failed_tries_the_question_is_skipped_and_stored_as_missing() -> None:
    first, second = run(DAILY, "dunno", "???")
    assert [(r.measure, r.value, r.status) for r in second.readings] == [
        ("fatigue", None, "missing")
    ]
    assert keys(second) == ["skipped_question", "ask_pain"]
    third = advance(DAILY, second.state, "junk", NOW)  # the count starts again for pain
    assert third.readings == [] and keys(third) == ["reask", "ask_pain"]


def test_skip_skips_one_question_without_a_value() -> None:
    (outcome,) = run(DAILY, "SKIP")
    assert [(r.measure, r.value, r.status) for r in outcome.readings] == [
        ("fatigue", None, "skipped")
    ]
    assert keys(outcome) == ["ask_pain"]


def test_a_good_answer_after_a_failed_try_is_stored() -> None:
    outcomes = run(DAILY, "6", "4", "hmm", "3")
    assert values(outcomes) == {"fatigue": 6, "pain": 4, "mood": 3}
    assert outcomes[-1].status == "completed"


def test_a_label_for_an_answered_question_corrects_it() -> None:
    outcomes = run(DAILY, "6", "actually fatigue 8")
    assert [(r.measure, r.value) for r in outcomes[1].readings] == [("fatigue", 8)]
    assert keys(outcomes[1]) == ["ask_pain"]  # pain is still the open question


def test_expiry_records_every_unanswered_question_as_missing_never_zero() -> None:
    (outcome,) = run(DAILY, "6")
    assert [(r.measure, r.value, r.status) for r in expire(DAILY, outcome.state)] == [
        ("pain", None, "missing"),
        ("mood", None, "missing"),
    ]


def test_weekly_mood_takes_label_words_and_stores_the_phq2_total() -> None:
    outcomes = run(WEEKLY, "several days", "3")
    assert values(outcomes) == {"phq2_interest": 1, "phq2_down": 3, "phq2_total": 4}
    assert start(WEEKLY).texts == [Text("ask_phq2_interest")]
    assert outcomes[-1].status == "completed"


def test_weekly_mood_in_spanish_label_words() -> None:
    outcomes = run(WEEKLY, "para nada", "más de la mitad de los días")
    assert values(outcomes) == {"phq2_interest": 0, "phq2_down": 2, "phq2_total": 2}


def test_a_skipped_phq2_item_leaves_no_total() -> None:
    outcomes = run(WEEKLY, "skip", "2")
    assert values(outcomes) == {"phq2_interest": None, "phq2_down": 2}


def test_a_phq2_answer_outside_0_to_3_is_asked_again_naming_the_range() -> None:
    (outcome,) = run(WEEKLY, "5")
    assert outcome.texts[0] == Text("reask", {"low": 0, "high": 3})


def test_post_infusion_none_answers_every_side_effect_then_asks_mood() -> None:
    first, second = run(POST, "none", "6")
    side_effects = {m: v for m, v in values([first]).items()}
    assert len(side_effects) == 9 and set(side_effects.values()) == {0}
    assert keys(first) == ["ask_mood"]
    assert values([second]) == {"mood": 6} and second.status == "completed"


def test_post_infusion_asks_each_side_effect_yes_or_no() -> None:
    replies = ["no", "yes", "no", "no", "no", "yes a bit", "no", "no", "yes", "7"]
    outcomes = run(POST, *replies)
    got = values(outcomes)
    assert got["se_nausea"] == 1 and got["se_anxiety"] == 1 and got["se_blood_in_urine"] == 1
    assert got["se_headache"] == 0 and got["mood"] == 7
    assert outcomes[-1].status == "completed"


def test_a_yes_no_question_reasks_for_yes_or_no() -> None:
    (outcome,) = run(POST, "maybe")
    assert keys(outcome) == ["reask_yesno", "ask_se_dissociation"]


def test_run_state_survives_a_round_trip_through_json() -> None:
    (outcome,) = run(WEEKLY, "2")
    assert RunState.from_dict(outcome.state.to_dict()) == outcome.state
    assert RunState.from_dict({}) == RunState()


def test_flows_are_versioned_so_a_run_keeps_the_flow_it_started_with() -> None:
    for name in ("daily_symptoms", "weekly_mood", "post_infusion"):
        current = flows.current(name)
        assert flows.version(name, current.version) is current
    with pytest.raises(flows.UnknownFlow):
        flows.current("no_such_flow")
