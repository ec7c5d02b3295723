"""Reply understanding: a table of what patients really type, and what we make of it.

Each row: the text, then the expected reading against daily_symptoms with all three questions
open (fatigue asked first). `None` values mean the reply is asked again for that reason.
"""

from __future__ import annotations

import pytest

from checkin.flows.parsing import Reply, Slot, interpret

FATIGUE = Slot("fatigue", labels=("fatigue", "tired", "tiredness", "cansancio", "fatiga"))
PAIN = Slot("pain", labels=("pain", "dolor"))
MOOD = Slot("mood", labels=("mood", "animo", "estado de animo"))
ALL = [FATIGUE, PAIN, MOOD]

A = "answers"
F, P, M = "fatigue", "pain", "mood"

CASES: list[tuple[str, str, dict[str, int]]] = [
    # plain digits
    ("0", A, {F: 0}),
    ("1", A, {F: 1}),
    ("5", A, {F: 5}),
    ("10", A, {F: 10}),
    (" 7 ", A, {F: 7}),
    ("7.", A, {F: 7}),
    ("7!", A, {F: 7}),
    ("7!!", A, {F: 7}),
    ("07", A, {F: 7}),
    ("7?", A, {F: 7}),
    ("\t8\n", A, {F: 8}),
    # fullwidth and other unicode digits
    ("７", A, {F: 7}),
    ("１０", A, {F: 10}),
    ("３ ", A, {F: 3}),
    # number words, English
    ("zero", A, {F: 0}),
    ("one", A, {F: 1}),
    ("two", A, {F: 2}),
    ("three", A, {F: 3}),
    ("four", A, {F: 4}),
    ("five", A, {F: 5}),
    ("six", A, {F: 6}),
    ("Seven", A, {F: 7}),
    ("EIGHT", A, {F: 8}),
    ("nine", A, {F: 9}),
    ("ten", A, {F: 10}),
    # number words, Spanish
    ("cero", A, {F: 0}),
    ("uno", A, {F: 1}),
    ("dos", A, {F: 2}),
    ("tres", A, {F: 3}),
    ("cuatro", A, {F: 4}),
    ("cinco", A, {F: 5}),
    ("seis", A, {F: 6}),
    ("siete", A, {F: 7}),
    ("ocho", A, {F: 8}),
    ("nueve", A, {F: 9}),
    ("diez", A, {F: 10}),
    ("Diez!", A, {F: 10}),
    # out of ten
    ("7/10", A, {F: 7}),
    ("7 / 10", A, {F: 7}),
    ("7 out of 10", A, {F: 7}),
    ("10/10", A, {F: 10}),
    ("0/10", A, {F: 0}),
    ("seven out of ten", A, {F: 7}),
    ("7 de 10", A, {F: 7}),
    ("siete de diez", A, {F: 7}),
    ("4 of 10", A, {F: 4}),
    ("7 sobre 10", A, {F: 7}),
    # labelled values, any order
    ("pain 4, fatigue 6", A, {P: 4, F: 6}),
    ("Fatigue: 8", A, {F: 8}),
    ("fatigue 6 pain 4 mood 7", A, {F: 6, P: 4, M: 7}),
    ("mood is 3", A, {M: 3}),
    ("MOOD 9", A, {M: 9}),
    ("pain: 2", A, {P: 2}),
    ("pain=2", A, {P: 2}),
    ("tired 8 pain 9 mood 2", A, {F: 8, P: 9, M: 2}),
    ("mood 5, pain 5", A, {M: 5, P: 5}),
    ("dolor 5", A, {P: 5}),
    ("cansancio 7", A, {F: 7}),
    ("animo 6", A, {M: 6}),
    ("ánimo 6", A, {M: 6}),
    ("dolor 5 y cansancio 7", A, {P: 5, F: 7}),
    ("Pain - 3", A, {P: 3}),
    ("pain was 6", A, {P: 6}),
    ("fatiga: 4", A, {F: 4}),
    ("pain seven", A, {P: 7}),
    ("Pain 7/10", A, {P: 7}),
    ("mood 8 out of 10", A, {M: 8}),
    ("pain 4, fatigue 6.", A, {P: 4, F: 6}),
    ("estado de animo 3", A, {M: 3}),
    # several bare numbers answer the open questions in order
    ("8 6 3", A, {F: 8, P: 6, M: 3}),
    ("8,6,3", A, {F: 8, P: 6, M: 3}),
    ("8, 6, 3", A, {F: 8, P: 6, M: 3}),
    ("8;6;3", A, {F: 8, P: 6, M: 3}),
    ("8 6", A, {F: 8, P: 6}),
    ("10 10 10", A, {F: 10, P: 10, M: 10}),
    ("0 0 0", A, {F: 0, P: 0, M: 0}),
    ("8  6   3", A, {F: 8, P: 6, M: 3}),
    ("８ ６ ３", A, {F: 8, P: 6, M: 3}),
    # a number wrapped in words
    ("I'd say 4 today", A, {F: 4}),
    ("5 - legs numb again", A, {F: 5}),
    ("about a 6", A, {F: 6}),
    ("prob 7", A, {F: 7}),
    ("7 rough night", A, {F: 7}),
    ("ugh 9", A, {F: 9}),
    ("feeling like a 3 today", A, {F: 3}),
    ("Solid 2", A, {F: 2}),
    ("maybe 5", A, {F: 5}),
    ("honestly 8, couldn't sleep", A, {F: 8}),
    ("un 6 hoy", A, {F: 6}),
    ("hoy 4", A, {F: 4}),
    ("4 i think", A, {F: 4}),
    ("I’d say 4", A, {F: 4}),
    ("7 (better than yesterday)", A, {F: 7}),
    ("9am was bad", A, {F: 9}),
    # skip
    ("SKIP", "skip", {}),
    ("skip", "skip", {}),
    (" Skip. ", "skip", {}),
    ("pass", "skip", {}),
    ("saltar", "skip", {}),
    ("omitir", "skip", {}),
    ("next", "skip", {}),
    # out of range
    ("11", "out_of_range", {}),
    ("12", "out_of_range", {}),
    ("100", "out_of_range", {}),
    ("-1", "out_of_range", {}),
    ("-5", "out_of_range", {}),
    ("11/10", "out_of_range", {}),
    ("pain 12", "out_of_range", {}),
    ("8 6 11", "out_of_range", {}),
    ("pain -2", "out_of_range", {}),
    ("eleven", "out_of_range", {}),
    ("15 out of 10", "out_of_range", {}),
    ("mood 99", "out_of_range", {}),
    # ambiguous: asked again, never guessed
    ("6-7", "ambiguous", {}),
    ("6 - 7", "ambiguous", {}),
    ("6 to 7", "ambiguous", {}),
    ("6 or 7", "ambiguous", {}),
    ("6 o 7", "ambiguous", {}),
    ("6 a 7", "ambiguous", {}),
    ("7.5", "ambiguous", {}),
    ("6.5 maybe", "ambiguous", {}),
    ("3/5", "ambiguous", {}),
    ("6 today 7 yesterday", "ambiguous", {}),
    ("pain 4 for 2 days", "ambiguous", {}),
    ("8 6 3 2", "ambiguous", {}),
    ("1 2 3 4 5", "ambiguous", {}),
    ("pain 4 pain 5", "ambiguous", {}),
    ("was 5 now 7", "ambiguous", {}),
    ("between 4 and 5", "ambiguous", {}),
    ("4 y 5", "ambiguous", {}),
    ("4&5", "ambiguous", {}),
    ("2 out of 5", "ambiguous", {}),
    # unreadable
    ("", "unreadable", {}),
    ("   ", "unreadable", {}),
    ("abc", "unreadable", {}),
    ("ok", "unreadable", {}),
    ("fine", "unreadable", {}),
    ("👍", "unreadable", {}),
    ("?", "unreadable", {}),
    ("not great", "unreadable", {}),
    ("pain", "unreadable", {}),
    ("mood", "unreadable", {}),
    ("bad", "unreadable", {}),
    ("1234", "unreadable", {}),
    ("<b>7</b>x", A, {F: 7}),
    ("same as yesterday", "unreadable", {}),
    ("muy mal", "unreadable", {}),
    ("\x00\x01", "unreadable", {}),
    ("idk", "unreadable", {}),
    ("can't say", "unreadable", {}),
    ("lol", "unreadable", {}),
    ("x" * 1600, "unreadable", {}),
    ("🙂🙂🙂", "unreadable", {}),
    ("N/A", "unreadable", {}),
    # messy real-world replies
    ("Pain - 3", A, {P: 3}),
    ("  pain  4 ,  fatigue 6 ", A, {P: 4, F: 6}),
    ("PAIN:4 FATIGUE:6 MOOD:7", A, {P: 4, F: 6, M: 7}),
    ("fatigue8", A, {F: 8}),
    ("pain8", A, {P: 8}),
    ("8,6,3.", A, {F: 8, P: 6, M: 3}),
    ("8 6 3!", A, {F: 8, P: 6, M: 3}),
    ("its a 5", A, {F: 5}),
    ("5 I guess", A, {F: 5}),
    ("5\nlegs numb", A, {F: 5}),
    ("Seven.", A, {F: 7}),
    ("seven!!!", A, {F: 7}),
    ("a solid seven", A, {F: 7}),
    ("ocho, mucho cansancio", A, {F: 8}),
    ("tengo dolor 6", A, {P: 6}),
    ("mood 4 pain 6", A, {M: 4, P: 6}),
    ("7 out of 10 today", A, {F: 7}),
    ("about 7/10", A, {F: 7}),
    ("10 - worst ever", A, {F: 10}),
    ("0 none", A, {F: 0}),
]


@pytest.mark.parametrize(("text", "kind", "values"), CASES, ids=[c[0] or "empty" for c in CASES])
def test_reply_understanding(text: str, kind: str, values: dict[str, int]) -> None:
    reply = interpret(text, ALL, ALL)
    assert (reply.kind, reply.values) == (kind, values)


def test_the_table_has_at_least_150_cases() -> None:
    assert len(CASES) >= 150


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("I'd say 4 today", "i'd say today"),
        ("5 - legs numb again", "legs numb again"),
        ("7", None),
        ("a 7", None),
        ("7 (better than yesterday)", "better than yesterday"),
    ],
)
def test_words_around_a_number_are_kept_as_a_note(text: str, note: str | None) -> None:
    assert interpret(text, ALL, ALL).note == note


def test_bare_numbers_answer_only_the_questions_still_open() -> None:
    assert interpret("6 3", [PAIN, MOOD], ALL) == Reply("answers", {P: 6, M: 3})
    assert interpret("6 3", [MOOD], ALL).kind == "ambiguous"  # two numbers, one question


def test_a_label_for_an_answered_question_is_read_as_a_correction() -> None:
    assert interpret("actually pain 5", [MOOD], ALL).values == {P: 5}


PHQ = Slot(
    "phq2_interest",
    kind="choice",
    low=0,
    high=3,
    labels=("interest",),
    choices={
        "not at all": 0,
        "para nada": 0,
        "several days": 1,
        "varios dias": 1,
        "more than half the days": 2,
        "mas de la mitad de los dias": 2,
        "nearly every day": 3,
        "casi todos los dias": 3,
    },
)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("several days", A, 1),
        ("Several days.", A, 1),
        ("nearly every day", A, 3),
        ("not at all", A, 0),
        ("more than half the days", A, 2),
        ("varios días", A, 1),
        ("casi todos los dias", A, 3),
        ("2", A, 2),
        ("3 nearly every day", A, 3),
        ("4", "out_of_range", None),
        ("several days or nearly every day", "ambiguous", None),
        ("1 nearly every day", "ambiguous", None),
        ("sometimes", "unreadable", None),
    ],
)
def test_phq2_answers_by_number_or_by_label(text: str, kind: str, value: int | None) -> None:
    reply = interpret(text, [PHQ])
    assert reply.kind == kind
    assert reply.values.get("phq2_interest") == value


YESNO = Slot("se_headache", kind="yesno", low=0, high=1)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("yes", A, 1),
        ("Y", A, 1),
        ("yeah a bit", A, 1),
        ("sí", A, 1),
        ("si", A, 1),
        ("no", A, 0),
        ("N", A, 0),
        ("nope", A, 0),
        ("not really", A, 0),
        ("none", "none", None),
        ("ninguno", "none", None),
        ("nada", "none", None),
        ("yes no", "ambiguous", None),
        ("maybe", "unreadable", None),
        ("7", "unreadable", None),
    ],
)
def test_yes_no_questions_and_none_for_the_whole_group(
    text: str, kind: str, value: int | None
) -> None:
    reply = interpret(text, [YESNO])
    assert reply.kind == kind
    assert reply.values.get("", None) == value


def test_one_value_in_range_or_nothing() -> None:
    value = [Slot("value", low=0, high=10)]
    assert interpret("seven", value) == Reply("answers", {"value": 7})
    assert interpret("4", [Slot("value", low=0, high=3)]).kind == "out_of_range"
    assert interpret("6-7", value).kind == "ambiguous"
