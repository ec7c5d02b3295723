"""Crisis detection, compliance keywords and the message catalog: pure functions."""

from __future__ import annotations

import pytest

from checkin import crisis, keywords
from checkin.catalog import CATALOG, EMAIL_KEYS, LANGUAGES, health_word, render

CRISIS = [
    "I want to kill myself",
    "i want to KILL   my-self!!",
    "thinking about suicide",
    "I'm going to end my life",
    "better off dead honestly",
    "took all my pills",
    "been saving up pills",
    "wrote a goodbye letter",
    "gonna OD on my meds",
    "💊💊💊",
    "i might hurt myself tonight",
    "quiero morir",
    "Me quiero matar",
    "pienso en el suicidio",
    "no quiero vivir mas",
    "kms",
    "5 - want to die",
]
ORDINARY = [
    "7",
    "pain 8 today, legs numb",
    "STOP",
    "feeling good, went to the store",
    "tired but ok",
    "the end of the week was hard",
    "killing it at physio today",
    "dead tired",
    "ayuda",
]


@pytest.mark.parametrize("text", CRISIS)
def test_crisis_language_is_detected(text: str) -> None:
    assert crisis.detect(text) is not None


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_replies_are_not_crisis(text: str) -> None:
    assert crisis.detect(text) is None


@pytest.mark.parametrize(
    "word",
    [
        "STOP",
        "stop",
        " Stop ",
        "STOPALL",
        "UNSUBSCRIBE",
        "cancel",
        "END",
        "quit",
        "REVOKE",
        "optout",
        "Stop.",
    ],
)
def test_the_stop_family_opts_out_on_the_whole_message(word: str) -> None:
    assert keywords.classify(word, opted_out=False) == "opt_out"


@pytest.mark.parametrize("text", ["please stop", "stop texting me", "the end", "7 stop"])
def test_stop_inside_a_sentence_is_not_a_keyword(text: str) -> None:
    assert keywords.classify(text, opted_out=False) is None


def test_yes_opts_in_only_someone_who_opted_out() -> None:
    assert keywords.classify("YES", opted_out=True) == "opt_in"
    assert keywords.classify("YES", opted_out=False) is None
    assert keywords.classify("unstop", opted_out=False) == "opt_in"


def test_twilio_advanced_opt_out_type_wins() -> None:
    assert keywords.classify("arret", opted_out=False, opt_out_type="STOP") == "opt_out"
    assert keywords.classify("x", opted_out=True, opt_out_type="START") == "opt_in"
    assert keywords.classify("info", opted_out=False) == "help"


def test_every_catalog_text_exists_in_every_language() -> None:
    for key, texts in CATALOG.items():
        assert set(texts) == set(LANGUAGES), key


# GSM 03.38 basic set: texts outside it are sent as UCS-2 at 70 characters a segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
SAMPLE = {
    "count": 2,
    "lines": "K7Q2X9 phq2 positive https://checkin.example.org/alerts/K7Q2X9",
    "reason": "no alert K7Q2X9",
    "program": "Neuro Care Team",
    "support": "617-555-0100",
    "low": 0,
    "high": 10,
    "severity": "URGENT",
    "ref": "K7Q2MX",
    "kind": "crisis",
    "link": "https://checkin.example.org/alerts/K7Q2MX",
}


@pytest.mark.parametrize("key", sorted(set(CATALOG) - EMAIL_KEYS))
@pytest.mark.parametrize("language", LANGUAGES)
def test_catalog_texts_fit_one_gsm7_segment(key: str, language: str) -> None:
    text = render(key, language, SAMPLE)
    assert set(text) <= GSM7, sorted(set(text) - GSM7)
    assert len(text) <= 160, (key, language, len(text))


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_no_text_names_a_diagnosis_or_a_drug(key: str) -> None:
    for language in LANGUAGES:
        assert health_word(render(key, language, SAMPLE)) is None, (key, language)


@pytest.mark.parametrize(
    "text",
    [
        "MS Clinic",
        "ketamine follow-up",
        "Esketamine Center",
        "Depression Care",
        "Centro de Esclerosis",
        "Infusion Suite",
        "m.s. team",
    ],
)
def test_the_health_word_check_catches_diagnoses_drugs_and_treatments(text: str) -> None:
    assert health_word(text) is not None


@pytest.mark.parametrize("text", ["Neuro Care Team", "Care Team", "617-555-0100", "Mass General"])
def test_the_health_word_check_leaves_neutral_names_alone(text: str) -> None:
    assert health_word(text) is None


def test_the_crisis_reply_names_988_and_911_and_says_the_line_is_not_watched() -> None:
    for language in LANGUAGES:
        text = render("crisis", language)
        assert "988" in text and "911" in text and "24/7" in text
