"""Trend rules on synthetic series with known truth: pure, no database, a fixed clock.

Readings are daily at 09:00 UTC from 2026-01-05 (bench.trends.at), noise comes from seeded
random.Random, so every run judges the same series.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bench.trends import (
    alert_episodes,
    at,
    measure_false_alarms_and_delay,
    noisy,
    quality,
    series,
    worsening_days,
)
from checkin.trends import (
    Finding,
    Reading,
    RuleParams,
    evaluate,
    history_needed,
    loss_of_response,
    non_response,
    side_effects,
)

P = RuleParams()
NY = ZoneInfo("America/New_York")


def judge(measure: str, values: Sequence[float | None], params: RuleParams = P) -> list[Finding]:
    """Evaluate the newest reading the way the caller will: only history_needed() rows."""
    readings = series(values, measure)
    return evaluate(measure, readings[-history_needed(params) :], params)


def rules(findings: Sequence[Finding]) -> set[str]:
    return {f.rule for f in findings}


def first_day(measure: str, values: Sequence[float], rule: str) -> int | None:
    for day in range(1, len(values) + 1):
        if rule in rules(judge(measure, values[:day])):
            return day - 1
    return None


# --- series with known truth --------------------------------------------------------------


@pytest.mark.parametrize("measure,level", [("pain", 4), ("fatigue", 7), ("mood", 5), ("pain", 0)])
def test_a_stable_patient_raises_nothing(measure: str, level: int) -> None:
    values = [float(level)] * 60
    assert all(judge(measure, values[:d]) == [] for d in range(1, 61))


def test_noise_only_patients_raise_at_most_one_alert_per_90_days() -> None:
    # 200 patients x 90 days x 3 measures, +-1 noise, baselines 2..8, two seeds.
    for seed in (1, 2):
        false_alerts, mean_delay = measure_false_alarms_and_delay(seed)
        assert false_alerts <= 1.0, (seed, false_alerts)
        assert mean_delay <= 4.0, (seed, mean_delay)


def test_noisy_two_point_steps_are_all_caught_most_within_three_checkins() -> None:
    q = quality(seed=5, patients=200)
    assert q.detected >= 0.98
    assert q.within_3 >= 0.6
    assert q.delay_mean <= 4.0


def test_without_the_baseline_range_guard_the_literal_rule_cries_wolf() -> None:
    # Documents why worsening_beyond_baseline_range defaults on: same noise, >2 alerts.
    literal = quality(
        seed=1, patients=100, params=RuleParams(worsening_beyond_baseline_range=False)
    )
    assert literal.false_alerts_per_90d > 2.0


@pytest.mark.parametrize(
    "measure,before,after",
    [("pain", 4, 6), ("pain", 4, 7), ("fatigue", 3, 5), ("mood", 7, 5), ("mood", 6, 4)],
)
def test_a_clean_two_point_step_is_caught_on_its_second_checkin(
    measure: str, before: int, after: int
) -> None:
    values = [float(before)] * 20 + [float(after)] * 5
    assert first_day(measure, values, "worsening_vs_baseline") == 21
    assert not rules(judge(measure, values[:21]))  # one step reading alone: nothing yet
    finding = judge(measure, values[:22])[0]
    assert (finding.kind, finding.severity) == ("worsening", "high")


def test_a_slow_drift_is_caught_by_the_ewma_not_the_step_rule() -> None:
    values = [float(round(3 + 0.1 * max(0, d - 20))) for d in range(70)]
    day = first_day("pain", values, "ewma_drift")
    assert day is not None and 20 < day <= 45
    drift = [f for f in judge("pain", values[: day + 1]) if f.rule == "ewma_drift"][0]
    assert (drift.kind, drift.severity) == ("worsening", "routine")
    assert first_day("pain", values, "worsening_vs_baseline") is None


def test_a_noisy_slow_drift_is_caught() -> None:
    rng = random.Random(3)
    values = [float(round(3 + 0.1 * max(0, d - 20) + rng.choice((-1, 0, 1)))) for d in range(80)]
    day = first_day("pain", values, "ewma_drift")
    assert day is not None and day <= 50


def test_a_sustained_one_point_shift_in_a_perfectly_stable_patient_does_not_drift() -> None:
    values = [4.0] * 20 + [5.0] * 30
    assert all(judge("pain", values[:d]) == [] for d in range(1, 51))


def test_a_single_spike_of_8_is_not_worsening_but_a_9_is_severe() -> None:
    assert judge("pain", [4.0] * 20 + [8.0]) == []
    assert judge("pain", [4.0] * 20 + [8.0, 4.0]) == []
    severe = judge("pain", [4.0] * 20 + [9.0])
    assert [(f.kind, f.severity, f.rule) for f in severe] == [
        ("severe", "high", "severe_single_reading")
    ]
    assert rules(judge("mood", [6.0] * 10 + [1.0])) == {"severe_single_reading"}
    assert judge("mood", [6.0] * 10 + [2.0]) == []


def test_missing_days_are_skipped_not_counted() -> None:
    # Every other day answered, then a 10-day silence: the baseline is still the last 7 valid
    # readings, and the two readings either side of the gap are consecutive check-ins.
    values: list[float | None] = []
    for _ in range(10):
        values += [4.0, None]
    values += [7.0] + [None] * 10 + [7.0]
    finding = judge("pain", values)[0]
    assert finding.rule == "worsening_vs_baseline"
    assert finding.evidence["baseline"]["n"] == 7
    assert [j["at"][:10] for j in finding.evidence["judged"]] == ["2026-01-25", "2026-02-05"]


# --- table tests of the rules -------------------------------------------------------------


@pytest.mark.parametrize(
    "before,median,n",
    [
        ([1, 2, 3, 4, 5, 6, 7], 4.0, 7),
        ([9, 9, 9, 1, 2, 3, 4, 5, 6, 7], 4.0, 7),  # only the last 7 before the judged count
        ([2, 2, 3, 5], 2.5, 4),  # 4 is enough
        ([5, 1, 1, 1, 5, 5, 5], 5.0, 7),  # median, not mean
    ],
)
def test_the_baseline_is_the_median_of_the_last_7_before_the_judged(
    before: list[int], median: float, n: int
) -> None:
    values = [float(v) for v in before] + [10.0, 10.0]  # 10 is severe too: always a finding
    finding = [f for f in judge("fatigue", values) if f.rule == "worsening_vs_baseline"]
    assert finding, before
    assert finding[0].evidence["baseline"]["median"] == median
    assert finding[0].evidence["baseline"]["n"] == n


def test_no_trend_rule_fires_with_fewer_than_4_baseline_readings() -> None:
    assert judge("pain", [2.0, 2.0, 2.0, 7.0, 7.0]) == []
    assert rules(judge("pain", [2.0, 2.0, 2.0, 2.0, 7.0, 7.0])) == {"worsening_vs_baseline"}


@pytest.mark.parametrize(
    "measure,base,now,fires",
    [
        ("mood", 6, 3, True),  # mood is worse going down
        ("mood", 3, 6, False),
        ("pain", 6, 3, False),  # pain is better going down
        ("pain", 3, 6, True),
        ("fatigue", 3, 6, True),
    ],
)
def test_direction(measure: str, base: int, now: int, fires: bool) -> None:
    found = rules(judge(measure, [float(base)] * 7 + [float(now)] * 2))
    assert ("worsening_vs_baseline" in found) is fires


@pytest.mark.parametrize(
    "measure,base,now,fires",
    [
        ("pain", 8, 10, False),  # 2 points but 25%
        ("fatigue", 7, 9, False),  # 2 points but 28.6%
        ("pain", 6, 8, True),  # 2 points and 33%
        ("pain", 1, 2, False),  # 100% but 1 point
        ("pain", 0, 2, True),  # from no pain any percent: 2 points decide
        ("pain", 5, 6, False),
        ("mood", 7, 5, True),  # 3 -> 5 below the top: 67%
        ("mood", 3, 1, False),  # 7 -> 9 below the top: 28.6% (severe catches it)
        ("mood", 5, 3, True),
    ],
)
def test_worsening_needs_two_points_and_thirty_percent(
    measure: str, base: int, now: int, fires: bool
) -> None:
    found = rules(judge(measure, [float(base)] * 7 + [float(now)] * 2))
    assert ("worsening_vs_baseline" in found) is fires


def test_worsening_needs_consecutive_checkins() -> None:
    assert judge("pain", [4.0] * 7 + [7.0, 4.0]) == []
    assert judge("pain", [4.0] * 7 + [4.0, 7.0]) == []
    assert rules(judge("pain", [4.0] * 7 + [7.0, 7.0])) == {"worsening_vs_baseline"}
    three = RuleParams(worsening_consecutive=3)
    assert judge("pain", [4.0] * 7 + [7.0, 7.0], three) == []
    assert rules(judge("pain", [4.0] * 7 + [7.0] * 3, three)) == {"worsening_vs_baseline"}


def test_worsening_evidence_says_why() -> None:
    finding = judge("pain", [4.0, 3.0, 4.0, 5.0, 4.0, 4.0, 3.0, 7.0, 8.0])[0]
    e = finding.evidence
    assert (e["rule"], e["measure"], e["direction"]) == (
        "worsening_vs_baseline",
        "pain",
        "higher is worse",
    )
    assert [(j["value"], j["at"]) for j in e["judged"]] == [
        (7.0, "2026-01-12T09:00:00+00:00"),
        (8.0, "2026-01-13T09:00:00+00:00"),
    ]
    assert e["baseline"]["n"] == 7 and e["baseline"]["median"] == 4.0
    assert e["baseline"]["sd"] == pytest.approx(0.690, abs=0.001)
    assert "median of the last 7" in e["baseline"]["method"]
    assert [r["value"] for r in e["baseline"]["readings"]] == [4, 3, 4, 5, 4, 4, 3]
    assert e["change"] == [{"points": 3.0, "percent": 75.0}, {"points": 4.0, "percent": 100.0}]
    assert e["thresholds"] == {
        "points": 2.0,
        "percent": 30.0,
        "consecutive": 2,
        "beyond_baseline_range": True,
    }
    assert "CLINICAL.md" in e["source"]


def test_drift_evidence_says_why() -> None:
    values = [float(round(3 + 0.1 * max(0, d - 20))) for d in range(70)]
    day = first_day("pain", values, "ewma_drift")
    assert day is not None
    e = [f for f in judge("pain", values[: day + 1]) if f.rule == "ewma_drift"][0].evidence
    assert len(e["judged"]) == P.ewma_span
    assert e["excess"] > e["limit"] > 0
    assert e["baseline"]["n"] == 7 and {"median", "mean", "sd"} <= set(e["baseline"])
    assert e["thresholds"]["lambda"] == 0.3 and e["thresholds"]["sd_used"] >= P.ewma_min_sd


def test_phq2_positive_at_3() -> None:
    weekly = [Reading("phq2_total", v, at(7 * i)) for i, v in enumerate([1.0, 2.0, 3.0])]
    findings = evaluate("phq2_total", weekly, P)
    assert [(f.kind, f.severity) for f in findings] == [("phq2_positive", "routine")]
    assert findings[0].evidence["suggest"] == "PHQ-9 assessment"
    assert evaluate("phq2_total", weekly[:2], P) == []


def test_out_of_range_readings_are_ignored_and_bad_calls_refused() -> None:
    assert judge("pain", [4.0] * 10 + [42.0]) == []
    assert judge("pain", [4.0] * 10 + [float("nan")]) == []
    with pytest.raises(ValueError, match="se_bladder_pain"):
        evaluate("se_bladder_pain", [], P)
    with pytest.raises(ValueError, match="another measure"):
        evaluate("pain", series([4.0], "mood"), P)


def test_history_needed_is_enough() -> None:
    # Passing the whole history or only history_needed() rows gives the same findings.
    assert history_needed(P) == P.baseline_window + P.ewma_span
    rng = random.Random(8)
    for measure in ("pain", "fatigue", "mood"):
        readings = series(noisy(rng, rng.randint(2, 8), 120), measure)
        for i in range(1, len(readings) + 1):
            full = evaluate(measure, readings[:i], P)
            assert full == evaluate(measure, readings[max(0, i - history_needed(P)) : i], P)


def test_alert_episodes_mimic_dedupe_and_cooldown() -> None:
    assert alert_episodes([]) == 0
    assert alert_episodes([10, 11, 12, 17]) == 1
    assert alert_episodes([10, 18]) == 2
    assert alert_episodes([10, 16, 22, 28]) == 1  # each within 7 days of the last


def test_worsening_days_counts_each_day_once() -> None:
    values = [4.0] * 20 + [7.0] * 4
    assert worsening_days(series(values, "pain"), P)[0] == 21


def test_blood_in_the_urine_is_a_side_effect_finding_and_a_no_is_not() -> None:
    found = side_effects([("pain", 9), ("mood", 5), ("se_blood_in_urine", 1)])
    assert [(f.kind, f.severity) for f in found] == [("side_effect", "high")]
    assert side_effects([("se_blood_in_urine", 0), ("se_bladder_pain", None)]) == []


# --- parameters -------------------------------------------------------------------------


def test_overrides_layer_program_then_patient() -> None:
    program = {"worsening_points": 3, "severe_at_or_above": {"pain": 8}, "lor_days": [5, 14]}
    patient = {"worsening_points": 2.5, "severe_at_or_above": {"fatigue": None}}
    p = RuleParams.from_overrides(program, patient)
    assert p.worsening_points == 2.5
    assert dict(p.severe_at_or_above) == {"pain": 8}
    assert p.lor_days == (5, 14)
    assert p.baseline_window == 7  # untouched default
    assert RuleParams.from_overrides({"severe_at_or_above": {"pain": 8}}).severe_at_or_above == {
        "pain": 8,
        "fatigue": 9,
    }  # mappings merge per measure
    program_only = RuleParams.from_overrides(program)
    assert RuleParams.from_overrides(program_only.to_dict()) == program_only
    assert RuleParams.from_overrides() == RuleParams()


@pytest.mark.parametrize(
    "layer,key",
    [
        ({"worsening_pts": 2}, "worsening_pts"),
        ({"baseline_min": 9}, "baseline_min"),
        ({"baseline_min": 2.5}, "baseline_min"),
        ({"baseline_window": True}, "baseline_window"),
        ({"ewma_lambda": 0}, "ewma_lambda"),
        ({"ewma_lambda": "0.3"}, "ewma_lambda"),
        ({"lor_days": [18, 7]}, "lor_days"),
        ({"lor_days": [7]}, "lor_days"),
        ({"severe_at_or_above": {"pain": 11}}, "severe_at_or_above"),
        ({"severe_at_or_above": {"sleep": 5}}, "severe_at_or_above"),
        ({"severe_at_or_below": 1}, "severe_at_or_below"),
        ({"worsening_beyond_baseline_range": 1}, "worsening_beyond_baseline_range"),
    ],
)
def test_bad_overrides_name_the_key(layer: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError) as error:
        RuleParams.from_overrides({}, layer)
    message = str(error.value)
    assert repr(key) in message and "\n" not in message


def test_params_cannot_be_changed_through_a_callers_dict() -> None:
    thresholds = {"pain": 9}
    p = RuleParams(severe_at_or_above=thresholds)
    thresholds["pain"] = 2
    assert p.severe_at_or_above["pain"] == 9


# --- engagement ---------------------------------------------------------------------------

D = date(2026, 3, 1)


def days(*statuses: str) -> list[tuple[date, str]]:
    return [(D + timedelta(days=i), s) for i, s in enumerate(statuses)]


def test_three_consecutive_unanswered_is_non_response() -> None:
    history = ["completed"] * 4 + ["unanswered"] * 3  # 4 of 7 answered: the rate is fine
    found = non_response(days(*history), P)
    assert [(f.kind, f.severity, f.rule) for f in found] == [
        ("non_response", "routine", "consecutive_unanswered")
    ]
    assert found[0].evidence["unanswered"] == ["2026-03-05", "2026-03-06", "2026-03-07"]
    assert non_response(days(*history[:-1]), P) == []  # 2 in a row, 4 of 6 answered


def test_failed_missed_and_skipped_are_not_the_patient_ignoring_us() -> None:
    assert non_response(days("completed", "unanswered", "failed", "unanswered", "missed"), P) == []
    spaced = days("completed", "unanswered", "failed", "unanswered", "skipped", "unanswered")
    assert "consecutive_unanswered" in rules(non_response(spaced, P))
    assert non_response(days("failed", "failed", "failed", "missed", "failed"), P) == []


def test_partial_and_interrupted_count_as_answered() -> None:
    for answered in ("partial", "interrupted"):
        history = ["completed", "completed", "unanswered", "unanswered", answered, "unanswered"]
        assert non_response(days(*history), P) == []  # 3 of 6 is not under 50%
    history = ["completed", "completed", "unanswered", "unanswered", "unanswered", "unanswered"]
    assert rules(non_response(days(*history), P)) == {"consecutive_unanswered", "answer_rate"}


def test_under_half_answered_over_7_days() -> None:
    week = days("completed", "unanswered", "completed", "unanswered", "unanswered", "completed")
    assert non_response(week, P) == []  # the newest was answered
    week = days("completed", "unanswered", "completed", "unanswered", "unanswered")
    found = non_response(week, P)
    assert rules(found) == {"answer_rate"}
    assert (found[0].evidence["sent"], found[0].evidence["answered"]) == (5, 2)


def test_the_rate_needs_four_sent_in_the_window() -> None:
    weekly = [(D, "completed"), (D + timedelta(days=7), "unanswered")]
    assert non_response(weekly, P) == []
    # Old answers fall out of the 7-day window: 1 of 4 within it.
    old = [(D - timedelta(days=20), "completed")] * 5
    recent = days("completed", "unanswered", "completed", "failed", "unanswered", "unanswered")
    assert rules(non_response(old + recent, P)) == {"answer_rate"}  # 2 of 5; 7 of 10 if old
    assert non_response(old + days("unanswered", "completed", "unanswered"), P) == []


def test_unmapped_statuses_are_refused() -> None:
    with pytest.raises(ValueError, match="expired"):
        non_response(days("completed", "expired"), P)


# --- ketamine follow-up -------------------------------------------------------------------

INFUSION = date(2026, 1, 15)  # day 10 of the series; readings at 09:00 UTC = 04:00 in New York


def mood_course(after: Sequence[float], before: float = 4.0) -> list[Reading]:
    """Daily mood from 7 days before the infusion (day 0) to len(after) days after it."""
    start = datetime(2026, 1, 8, 14, 0, tzinfo=UTC)  # 09:00 in New York
    values = [before] * 8 + list(after)  # 7 days before, the infusion day, then days 1..n
    return [Reading("mood", v, start + timedelta(days=i)) for i, v in enumerate(values)]


FADE = [8.0, 8.0, 7.0, 7.0, 6.0, 6.0, 5.0, 5.0, 4.0, 5.0, 4.0, 4.0, 5.0, 4.0, 4.0, 4.0, 5.0, 4.0]


def test_a_post_infusion_fade_is_loss_of_response() -> None:
    findings = [loss_of_response(mood_course(FADE[:n]), [INFUSION], P, NY) for n in range(1, 19)]
    first = next(n for n, f in enumerate(findings, start=1) if f)
    # Peak 8, baseline 4: half the gain is lost at 6 or below. Days 7 and 8 read 5 and 5.
    assert first == 8
    f = findings[first - 1][0]
    assert (f.kind, f.severity, f.rule) == ("loss_of_response", "routine", "loss_of_response")
    e = f.evidence
    assert e["infusion_date"] == "2026-01-15"
    assert e["baseline"]["median"] == 4.0 and e["baseline"]["n"] == 7
    assert e["post_peak"] == 8.0
    assert [j["value"] for j in e["judged"]] == [5.0, 5.0]
    assert e["fraction_lost"] == [0.75, 0.75]
    assert not loss_of_response(mood_course(FADE[:6] + [5.0, 7.0]), [INFUSION], P, NY)
    assert all(findings[n - 1] for n in range(first, 19))


def test_a_durable_responder_has_no_loss_of_response() -> None:
    for n in range(1, 19):
        assert loss_of_response(mood_course([8.0] * n), [INFUSION], P, NY) == []


def test_no_loss_without_a_response_or_a_baseline_or_outside_the_window() -> None:
    assert loss_of_response(mood_course([5.0] * 12), [INFUSION], P, NY) == []  # gain 1 < 2
    short = mood_course(FADE[:12])[4:]  # only 3 readings before the infusion
    assert loss_of_response(short, [INFUSION], P, NY) == []
    late = mood_course(FADE + [4.0, 4.0, 4.0])  # newest on day 21: the window has closed
    assert loss_of_response(late, [INFUSION], P, NY) == []
    assert loss_of_response(mood_course(FADE[:12]), [], P, NY) == []


def test_loss_of_response_counts_days_in_the_patients_zone() -> None:
    # 03:00 UTC on Jan 26 is still Jan 25 in New York: day 10, not 11, after the infusion.
    readings = mood_course(FADE[:9])
    late_evening = Reading("mood", 4.0, datetime(2026, 1, 26, 3, 0, tzinfo=UTC))
    found = loss_of_response(readings + [late_evening], [INFUSION], P, NY)
    assert found and found[0].evidence["judged"][-1]["at"] == "2026-01-26T03:00:00+00:00"
    assert loss_of_response(readings, [INFUSION, date(2026, 1, 20)], P, NY) == []
