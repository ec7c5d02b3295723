"""The pure flow engine: (flow, run state, inbound text, now) -> Outcome.

No Flask, Twilio or database here. Texts are catalog keys plus parameters, so the engine never
deals with languages; the caller renders them for the patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checkin.flows.parsing import parse_number

# CLINICAL/issue 4: an unreadable reply is asked again naming the range; after 2 failed tries
# the question is skipped and recorded as missing (never guessed, never stored as 0).
MAX_FAILED_TRIES = 2


@dataclass(frozen=True)
class Question:
    measure: str
    prompt: str  # catalog key
    low: int
    high: int


@dataclass(frozen=True)
class Flow:
    name: str
    version: int
    questions: tuple[Question, ...]
    closing: str = "thanks"


@dataclass(frozen=True)
class Text:
    key: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """One result: `value` is None when the question was skipped or went unanswered."""

    measure: str
    value: int | None
    status: str  # answered, skipped, missing
    raw_text: str | None = None


@dataclass(frozen=True)
class RunState:
    step: int = 0
    failed_tries: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"step": self.step, "failed_tries": self.failed_tries}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunState:
        data = data or {}
        return cls(step=int(data.get("step", 0)), failed_tries=int(data.get("failed_tries", 0)))


@dataclass(frozen=True)
class Outcome:
    state: RunState
    texts: list[Text]
    readings: list[Reading]
    status: str  # open, completed


def start(flow: Flow) -> Outcome:
    """The opening of a run: the first question."""
    return Outcome(RunState(), [Text(flow.questions[0].prompt)], [], "open")


def advance(flow: Flow, state: RunState, text: str, now: datetime) -> Outcome:
    """Apply one inbound reply to a run. `now` is the reply's time (kept for later rules)."""
    del now  # the skeleton's rules do not depend on time yet; the signature is the contract
    question = flow.questions[state.step]
    value = parse_number(text, question.low, question.high)
    if value is not None:
        reading = Reading(question.measure, value, "answered", text)
        return _next(flow, state.step + 1, [reading], [])
    if state.failed_tries + 1 >= MAX_FAILED_TRIES:
        reading = Reading(question.measure, None, "missing", text)
        return _next(flow, state.step + 1, [reading], [Text("skipped_question")])
    reask = Text("reask", {"low": question.low, "high": question.high})
    retry = RunState(state.step, state.failed_tries + 1)
    return Outcome(retry, [reask, Text(question.prompt)], [], "open")


def expire(flow: Flow, state: RunState) -> list[Reading]:
    """The questions still unanswered when a run's window closes, recorded as missing."""
    return [Reading(q.measure, None, "missing") for q in flow.questions[state.step :]]


def _next(flow: Flow, step: int, readings: list[Reading], texts: list[Text]) -> Outcome:
    if step >= len(flow.questions):
        return Outcome(RunState(step), [*texts, Text(flow.closing)], readings, "completed")
    return Outcome(RunState(step), [*texts, Text(flow.questions[step].prompt)], readings, "open")
