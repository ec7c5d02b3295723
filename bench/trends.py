"""Trend rules: evaluation cost and how often they cry wolf.

(1) Cost of one `evaluate` call against the length of a patient's stored history, when the
caller passes only the `history_needed()` most recent readings (as the indexed query does):
it must be flat. Set against a floor measured in the same run: `statistics.median` over the
same window of floats.

(2) Quality on synthetic patients with known truth (daily readings at 09:00 UTC, seeded):
false alerts per patient per 90 days on noise-only series (all three measures, +-1 point
day-to-day noise, baselines 2..8), and the delay from a 2-point step to the first `worsening`
finding. Alerts are counted the way the alert layer would open them: one per patient and kind,
a finding opening a new alert only if no finding of that kind came in the previous 7 days.

    .venv/bin/python -m bench.trends [--patients 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from checkin.trends import (
    BAD_DIRECTION,
    Reading,
    RuleParams,
    evaluate,
    history_needed,
)

DAY0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a fixed clock: daily check-ins at 09:00 UTC
DAYS = 90
COOLDOWN_DAYS = 7  # an alert stays open (deduped) about a week before a new one would open
MEASURES = ("fatigue", "pain", "mood")
STEP_AT = 30  # the step comes after a month of history, like a patient a month in


def at(day: int) -> datetime:
    return DAY0 + timedelta(days=day)


def clip(value: float) -> float:
    return float(min(10, max(0, round(value))))


def series(values: Sequence[float | None], measure: str) -> list[Reading]:
    """Readings for day 0, 1, 2...; None is a missed day (no reading stored)."""
    return [
        Reading(measure, v, at(day), checkin_id=day + 1)
        for day, v in enumerate(values)
        if v is not None
    ]


def noisy(rng: random.Random, base: float, days: int = DAYS) -> list[float]:
    """A stable patient: the same level every day, +-1 point of day-to-day noise."""
    return [clip(base + rng.choice((-1, 0, 1))) for _ in range(days)]


def worsening_days(readings: Sequence[Reading], params: RuleParams) -> list[int]:
    """Days on which evaluate() returned a kind 'worsening' finding (any rule)."""
    need = history_needed(params)
    days = []
    for i, reading in enumerate(readings):
        window = readings[max(0, i + 1 - need) : i + 1]
        if any(f.kind == "worsening" for f in evaluate(reading.measure, window, params)):
            days.append((reading.at - DAY0).days)
    return days


def alert_episodes(days: Sequence[int], cooldown: int = COOLDOWN_DAYS) -> int:
    """Findings of one kind that would open a new alert (none in the previous `cooldown` days)."""
    opened, last = 0, None
    for day in sorted(days):
        if last is None or day - last > cooldown:
            opened += 1
        last = day
    return opened


@dataclass(frozen=True)
class Quality:
    false_alerts_per_90d: float  # per patient, all three measures together
    findings_per_90d: float  # before dedupe, for comparison
    delay_mean: float  # check-ins from a 2-point step to the first worsening finding
    delay_max: int
    detected: float  # share of step patients detected before the series ended
    within_3: float  # share of step patients detected within 3 check-ins of the step
    drift_delay_mean: float  # days from the start of a +0.1/day drift to the first finding


def false_alerts(seed: int, patients: int, params: RuleParams) -> tuple[float, float]:
    """Noise only: every 'worsening' finding is false. Returns (alerts, findings) / patient."""
    rng = random.Random(seed)
    alerts = findings = 0
    for _ in range(patients):
        days: list[int] = []
        for measure in MEASURES:
            days += worsening_days(series(noisy(rng, rng.randint(2, 8)), measure), params)
        alerts += alert_episodes(days)
        findings += len(days)
    scale = 90 / DAYS
    return alerts / patients * scale, findings / patients * scale


def step_delays(seed: int, patients: int, params: RuleParams) -> list[int | None]:
    """A 2-point step in the bad direction on top of +-1 noise; check-ins until detected."""
    rng = random.Random(seed)
    delays: list[int | None] = []
    for _ in range(patients):
        measure = rng.choice(MEASURES)
        # Bases from which 2 points is also >= 30% worse (pain/fatigue 2..6; mood 4..8).
        base = rng.randint(2, 6) if BAD_DIRECTION[measure] > 0 else rng.randint(4, 8)
        after = base + 2 * BAD_DIRECTION[measure]
        values = noisy(rng, base, STEP_AT) + noisy(rng, after, DAYS - STEP_AT)
        found = [d for d in worsening_days(series(values, measure), params) if d >= STEP_AT]
        delays.append(found[0] - STEP_AT + 1 if found else None)
    return delays


def drift_delays(seed: int, patients: int, params: RuleParams) -> list[int | None]:
    """+0.1 point a day in the bad direction from day STEP_AT, on +-1 noise."""
    rng = random.Random(seed)
    delays: list[int | None] = []
    for _ in range(patients):
        measure = rng.choice(MEASURES)
        sign = BAD_DIRECTION[measure]
        base = rng.randint(2, 4) if sign > 0 else rng.randint(6, 8)
        values = [
            clip(base + sign * 0.1 * max(0, d - STEP_AT) + rng.choice((-1, 0, 1)))
            for d in range(DAYS)
        ]
        found = [d for d in worsening_days(series(values, measure), params) if d >= STEP_AT]
        delays.append(found[0] - STEP_AT + 1 if found else None)
    return delays


def quality(seed: int, patients: int = 200, params: RuleParams | None = None) -> Quality:
    params = params or RuleParams()
    alerts, findings = false_alerts(seed, patients, params)
    steps = step_delays(seed + 1, patients, params)
    drifts = drift_delays(seed + 2, patients, params)
    hit = [d for d in steps if d is not None]
    drift_hit = [d for d in drifts if d is not None]
    return Quality(
        false_alerts_per_90d=alerts,
        findings_per_90d=findings,
        delay_mean=statistics.fmean(hit) if hit else float("inf"),
        delay_max=max(hit) if hit else 0,
        detected=len(hit) / len(steps),
        within_3=sum(1 for d in hit if d <= 3) / len(steps),
        drift_delay_mean=statistics.fmean(drift_hit) if drift_hit else float("inf"),
    )


def measure_false_alarms_and_delay(seed: int) -> tuple[float, float]:
    """(false alerts per patient per 90 days, mean check-ins to detect a 2-point step).

    200 noise-only patients x 90 days x 3 measures, and 200 step patients; shared by
    tests/test_trends.py and this benchmark so both judge the same thing.
    """
    q = quality(seed)
    return q.false_alerts_per_90d, q.delay_mean


# --- (1) cost per evaluation ---------------------------------------------------------------


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best of 5 rounds, microseconds per call (the best round is the least disturbed)."""
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - began) / repeat)
    return best * 1e6


def cost_rows(repeat: int = 2000) -> list[tuple[int, float, float]]:
    """(stored readings, µs per evaluate, µs for the floor) for growing histories."""
    params = RuleParams()
    need = history_needed(params)
    rng = random.Random(11)
    rows = []
    for stored in (10, 100, 1_000, 10_000):
        readings = series(noisy(rng, 4, stored + 1), "pain")
        window = readings[-need:]  # what the indexed query returns: the newest `need` rows
        values = [r.value for r in window]
        us = timed(lambda: evaluate("pain", window, params), repeat)  # noqa: B023
        floor_us = timed(lambda: statistics.median(values), repeat)  # noqa: B023
        rows.append((stored, us, floor_us))
        print(f"  {stored:,} stored readings: {us:.1f} µs per evaluation", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    print("  cost per evaluation", flush=True)
    rows = cost_rows()
    print(f"  quality on {args.patients} synthetic patients per series (takes a few s)", flush=True)
    q = quality(args.seed, args.patients)
    literal = quality(args.seed, args.patients, RuleParams(worsening_beyond_baseline_range=False))
    from bench.dispatch import report  # imported here: it pulls in the database stack

    report("trends", render(rows, q, literal, args.patients))


def render(
    rows: Sequence[tuple[int, float, float]], q: Quality, literal: Quality, patients: int
) -> str:
    p = RuleParams()
    lines = [
        "### Trend rules: cost per evaluation and false alarms",
        "",
        f"The caller passes the newest `history_needed()` = {history_needed(p)} readings, "
        "so cost must not grow with the stored history. Floor: `statistics.median` over the "
        "same window of floats, same run.",
        "",
        "| stored readings | µs per evaluation | floor µs | ratio to floor |",
        "|---|---|---|---|",
    ]
    for stored, us, floor_us in rows:
        lines.append(f"| {stored:,} | {us:.1f} | {floor_us:.2f} | {us / floor_us:.0f} |")
    lines += [
        "",
        f"Synthetic patients, daily at 09:00 UTC, {DAYS} days, seeded; defaults: EWMA "
        f"λ={p.ewma_lambda}, limit {p.ewma_limit_sd} SD, SD floor {p.ewma_min_sd}, span "
        f"{p.ewma_span}. Alerts counted as the alert layer opens them (one per patient and "
        f"kind; a new one only after {COOLDOWN_DAYS} quiet days).",
        "",
        "| rules | false alerts / patient / 90 d | findings / patient / 90 d | "
        "2-pt step: mean / max check-ins | detected within 3 | drift +0.1/day: mean days |",
        "|---|---|---|---|---|---|",
        _quality_row("defaults", q),
        _quality_row("literal CLINICAL.md (no baseline-range guard)", literal),
        "",
        f"Noise: {patients} patients x 3 measures, value = base ± 1 (uniform), base 2..8. "
        f"Steps: {patients} patients, 2 points worse (and ≥30%) from day {STEP_AT}, same noise.",
    ]
    return "\n".join(lines)


def _quality_row(name: str, q: Quality) -> str:
    return (
        f"| {name} | {q.false_alerts_per_90d:.2f} | {q.findings_per_90d:.2f} | "
        f"{q.delay_mean:.1f} / {q.delay_max} | {q.within_3:.0%} | {q.drift_delay_mean:.1f} |"
    )


if __name__ == "__main__":
    main()
