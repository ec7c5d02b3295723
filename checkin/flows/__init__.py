"""Flows: each module declares one flow as data; `engine` runs them; `parsing` reads replies.

Flows are versioned: a run stores the version it started with, and old versions stay in VERSIONS
so editing a flow never breaks a conversation already in progress.
"""

from __future__ import annotations

from checkin.flows import daily_symptoms, post_infusion, weekly_mood
from checkin.flows.engine import Flow

_MODULES = {
    "daily_symptoms": daily_symptoms,
    "weekly_mood": weekly_mood,
    "post_infusion": post_infusion,
}
FLOW_NAMES = tuple(_MODULES)


class UnknownFlow(ValueError):
    pass


def current(name: str) -> Flow:
    module = _MODULES.get(name)
    if module is None:
        raise UnknownFlow(f"unknown flow {name!r} (known: {', '.join(FLOW_NAMES)})")
    flow: Flow = module.CURRENT
    return flow


def version(name: str, number: int) -> Flow:
    current(name)  # raises UnknownFlow
    flow: Flow = _MODULES[name].VERSIONS[number]
    return flow


def versions(name: str) -> tuple[Flow, ...]:
    """Every version of a flow, oldest first (old ones stay for the runs that used them)."""
    current(name)  # raises UnknownFlow
    table: dict[int, Flow] = _MODULES[name].VERSIONS
    return tuple(table[number] for number in sorted(table))
