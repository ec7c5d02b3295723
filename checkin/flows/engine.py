"""The pure flow engine: (flow, run state, inbound text, now) -> Outcome.

No Flask, Twilio or database here. Texts are catalog keys plus parameters, so the engine never
deals with languages; the caller renders them for the patient. A flow is data (questions with
their answer types and result names); the engine walks any flow the same way:

- the first open question is the one asked; one reply may answer several (see parsing);
- an unreadable, out-of-range or ambiguous reply is asked again, naming what is valid;
- after MAX_FAILED_TRIES failures the question is skipped and recorded as missing;
- SKIP skips a question; "none" answers a whole group of yes/no questions with no.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from checkin.flows.parsing import Reply, Slot, interpret

# Issue 4: after 2 failed tries the question is skipped; nothing is stored as a value.
MAX_FAILED_TRIES = 2


@dataclass(frozen=True)
class Question:
    measure: str
    prompt: str  # catalog key
    kind: str = "scale"  # scale, choice, yesno
    low: int = 0
    high: int = 10
    labels: tuple[str, ...] = ()
    choices: Mapping[str, int] = field(default_factory=dict)
    group: str | None = None  # yes/no questions that "none" answers together

    def slot(self) -> Slot:
        return Slot(self.measure, self.kind, self.low, self.high, self.labels, self.choices)


@dataclass(frozen=True)
class Flow:
    name: str
    version: int
    questions: tuple[Question, ...]
    closing: str = "thanks"
    # Results computed from answers, e.g. phq2_total; called once all its inputs are known.
    derive: Callable[[Mapping[str, int | None]], dict[str, int]] | None = None

    def question(self, measure: str) -> Question:
        return next(q for q in self.questions if q.measure == measure)


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
    note: str | None = None


@dataclass(frozen=True)
class RunState:
    done: tuple[str, ...] = ()  # measures answered, skipped or missing, in order
    failed_tries: int = 0
    values: Mapping[str, int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": list(self.done),
            "failed_tries": self.failed_tries,
            "values": dict(self.values),
            "step": len(self.done),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RunState:
        data = data or {}
        return cls(
            tuple(data.get("done", ())),
            int(data.get("failed_tries", 0)),
            dict(data.get("values", {})),
        )


@dataclass(frozen=True)
class Outcome:
    state: RunState
    texts: list[Text]
    readings: list[Reading]
    status: str  # open, completed


def start(flow: Flow) -> Outcome:
    """The opening of a run: the first question."""
    return Outcome(RunState(), [Text(flow.questions[0].prompt)], [], "open")


def remaining(flow: Flow, state: RunState) -> list[Question]:
    return [q for q in flow.questions if q.measure not in state.done]


def advance(flow: Flow, state: RunState, text: str, now: datetime) -> Outcome:
    """Apply one inbound reply to a run. `now` is the reply's time (kept for later rules)."""
    del now  # no rule of the current flows depends on the time of the reply
    open_questions = remaining(flow, state)
    if not open_questions:
        return Outcome(state, [Text(flow.closing)], [], "completed")
    current = open_questions[0]
    reply = interpret(text, [q.slot() for q in open_questions], [q.slot() for q in flow.questions])
    if reply.kind == "answers":
        return _answered(flow, state, current, reply, text)
    if reply.kind == "skip":
        return _finish(flow, state, [Reading(current.measure, None, "skipped", text)], [])
    if reply.kind == "none" and current.group:
        group = [q for q in open_questions if q.group == current.group]
        readings = [Reading(q.measure, 0, "answered", text) for q in group]
        return _finish(flow, state, readings, [])
    return _failed(flow, state, current, reply, text)


def expire(flow: Flow, state: RunState) -> list[Reading]:
    """The questions still unanswered when a run's window closes, recorded as missing."""
    return [Reading(q.measure, None, "missing") for q in remaining(flow, state)]


def _answered(flow: Flow, state: RunState, current: Question, reply: Reply, text: str) -> Outcome:
    values = {current.measure if m == "" else m: v for m, v in reply.values.items()}
    note = reply.note if len(values) == 1 else None
    readings = [Reading(m, v, "answered", text, note) for m, v in values.items()]
    return _finish(flow, state, readings, [])


def _failed(flow: Flow, state: RunState, current: Question, reply: Reply, text: str) -> Outcome:
    if state.failed_tries + 1 >= MAX_FAILED_TRIES:
        missing = Reading(current.measure, None, "missing", text)
        return _finish(flow, state, [missing], [Text("skipped_question")])
    retry = RunState(state.done, state.failed_tries + 1, state.values)
    return Outcome(retry, [_reask(current, reply), Text(current.prompt)], [], "open")


def _reask(question: Question, reply: Reply) -> Text:
    if question.kind == "yesno":
        return Text("reask_yesno")
    key = "reask_one" if reply.kind == "ambiguous" else "reask"
    return Text(key, {"low": question.low, "high": question.high})


def _finish(flow: Flow, state: RunState, readings: list[Reading], texts: list[Text]) -> Outcome:
    done = state.done + tuple(r.measure for r in readings if r.measure not in state.done)
    values = {**state.values, **{r.measure: r.value for r in readings}}
    readings = readings + _derived(flow, state, values)
    next_state = RunState(done, 0, values)
    following = remaining(flow, next_state)
    if not following:
        return Outcome(next_state, [*texts, Text(flow.closing)], readings, "completed")
    return Outcome(next_state, [*texts, Text(following[0].prompt)], readings, "open")


def _derived(flow: Flow, before: RunState, values: Mapping[str, int | None]) -> list[Reading]:
    if flow.derive is None:
        return []
    old = flow.derive(before.values)
    return [Reading(m, v, "answered") for m, v in flow.derive(values).items() if old.get(m) != v]
