"""Pure trend rules: readings in, findings out. No database, no Flask, no I/O.

Two families share this module:

* check-in rules (`side_effects`) judge one check-in's own answers;
* trend rules (`evaluate`, `loss_of_response`, `non_response`) judge a patient's history
  against their own baseline, with thresholds in `RuleParams` that a program, then a patient,
  can override (`RuleParams.from_overrides`).

Every default cites shared/CLINICAL.md by section and line. Every finding carries the readings
it judged, the baseline and the thresholds, so a clinician can see why it fired.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

# CLINICAL.md "What counts as worsening": severe single reading -> same-day alert. The
# defaults of RuleParams; `evaluate` applies them (with any program or patient override).
SEVERE_AT_OR_ABOVE = {"pain": 9, "fatigue": 9}
SEVERE_AT_OR_BELOW = {"mood": 1}
# CLINICAL.md "Instruments": PHQ-2 total >= 3 is positive (Kroenke 2003) -> routine alert.
PHQ2_POSITIVE_AT = 3
# CLINICAL.md "Ketamine follow-up": bladder symptoms suggest ketamine cystitis -> alert.
SIDE_EFFECTS_ALERTING = ("se_bladder_pain", "se_blood_in_urine")


@dataclass(frozen=True)
class Finding:
    kind: str  # an alert kind from the contract
    severity: str  # urgent, high, routine
    rule: str
    evidence: dict[str, Any] = field(default_factory=dict)


def side_effects(readings: Iterable[tuple[str, int | None]]) -> list[Finding]:
    found = [m for m, v in readings if m in SIDE_EFFECTS_ALERTING and v == 1]
    if not found:
        return []
    return [
        Finding(
            "side_effect",
            "high",
            "bladder_symptoms",
            {
                "measures": found,
                "source": "CLINICAL.md: bladder symptoms suggest ketamine cystitis",
            },
        )
    ]


# --- trend rules --------------------------------------------------------------------------

# Which way is worse on each 0-10 item (CLINICAL.md "Instruments", l.7-13): more pain and
# more fatigue are worse; mood runs 0 very low to 10 very good, so lower is worse.
BAD_DIRECTION = {"pain": +1, "fatigue": +1, "mood": -1}
# Valid range per measure (CLINICAL.md "Instruments"); readings outside it are ignored, never
# judged, so a stray value cannot raise or mask an alert.
SCALE_MAX = {"pain": 10, "fatigue": 10, "mood": 10, "phq2_total": 6}
TREND_MEASURES = frozenset(SCALE_MAX)
# Statuses `non_response` accepts (see its docstring for what the caller maps to them).
ANSWERED = frozenset({"completed", "partial", "interrupted"})
UNANSWERED = frozenset({"unanswered"})
NOT_COUNTED = frozenset({"failed", "missed", "skipped", "pending", "sending", "open"})


@dataclass(frozen=True)
class Reading:
    measure: str  # fatigue, pain, mood (0-10); phq2_total (0-6)
    value: float
    at: datetime  # aware UTC
    checkin_id: int | None = None


@dataclass(frozen=True)
class RuleParams:
    """Every threshold the trend rules use; the defaults cite CLINICAL.md by line."""

    # CLINICAL.md l.22: baseline = median of the last 7 valid readings before those judged...
    baseline_window: int = 7
    # ... and it needs >= 4 of them (l.22); no trend rule fires with fewer.
    baseline_min: int = 4
    # l.21 and l.23: a change of >= 2 points AND >= 30% in the bad direction vs baseline ...
    worsening_points: float = 2.0
    worsening_percent: float = 30.0
    # ... on 2 consecutive check-ins (l.23-24).
    worsening_consecutive: int = 2
    # Not in CLINICAL.md (our addition, measured by bench/trends.py): each judged reading must
    # also be worse than every baseline reading. With day-to-day noise of +-1 point the median of
    # 7 integer readings sits a point low about 1 time in 6, and two "+1" days then pass the
    # 2-point test: ~2.7 false alerts per patient per 90 days (3 measures). The guard brings
    # that to ~0.8, at a small cost on noisy 2-point steps (mean 3.5 vs 3.2 check-ins to detect;
    # a clean step is still caught on its 2nd check-in). l.31-32: "Alert fatigue is real ...
    # measure false alarms". Set False for the literal CLINICAL.md rule.
    worsening_beyond_baseline_range: bool = True
    # l.25: severe single reading: pain >= 9, fatigue >= 9, mood <= 1 -> same-day alert.
    severe_at_or_above: Mapping[str, int] = field(default_factory=lambda: dict(SEVERE_AT_OR_ABOVE))
    severe_at_or_below: Mapping[str, int] = field(default_factory=lambda: dict(SEVERE_AT_OR_BELOW))
    # l.26: gradual drift: EWMA with lambda ~0.3 ...
    ewma_lambda: float = 0.3
    # ... control limits from the patient's own baseline SD, tuned (l.26-27) so a stable patient
    # with +-1 point noise gets very few false alarms. Tuned by `python -m bench.trends` (200
    # patients x 90 days x 3 measures, noise-only and 2-point steps): 3.5 SD with a 1.0 floor
    # adds ~0.03 false alerts per patient per 90 days to the worsening rule's ~0.8 (0.84 in all),
    # helps catch noisy 2-point steps (mean 3.5 check-ins, all caught) and finds a +0.1/day
    # drift in ~15 days; 3.0 SD or a 0.8 floor detect a little faster but took false alerts to
    # ~1.0-1.1 per patient per 90 days in tuning. See docs/benchmarks.md.
    ewma_limit_sd: float = 3.5
    # Floor on the baseline SD: a patient who answered "4" seven times has SD 0, and any 1-point
    # change would cross a zero-width limit. 1.0 is a little above the SD of +-1 point noise
    # (0.82, l.27): with it the limit is ~1.5 points, so a sustained 1-point shift in a perfectly
    # stable patient never fires (less than the 2-point minimal important change, l.21).
    ewma_min_sd: float = 1.0
    # Readings the EWMA runs over (newest last), after the baseline window. 14 check-ins let a
    # slow drift (e.g. 0.1 point a day) build up 2 points (l.21) vs the baseline before it, and
    # 0.7**14 < 1% so the start value no longer matters.
    ewma_span: int = 14
    # l.28 and "Instruments" l.13-16: PHQ-2 >= 3 is positive (Kroenke 2003) -> routine alert.
    phq2_positive_at: int = PHQ2_POSITIVE_AT
    # l.35-39: one infusion's effect is gone by days 10-12, series responders relapse at a median
    # of 18 days; raise loss_of_response when mood falls back in days 7-18.
    lor_days: tuple[int, int] = (7, 18)
    # How much of the post-infusion gain (peak of days 1-3 minus pre-infusion baseline) must be
    # lost on `worsening_consecutive` readings. CLINICAL.md gives no fraction: 0.5 ("at least
    # half the gain gone") is our choice, as "response" is conventionally half the improvement.
    lor_fraction: float = 0.5
    # l.29: non-response: 3 consecutive missed check-ins ...
    nonresponse_consecutive: int = 3
    # ... or under 50% answered over 7 days.
    nonresponse_rate: float = 0.5
    nonresponse_days: int = 7
    # Not in CLINICAL.md: the 7-day rate is only judged with at least 4 sent check-ins, so one
    # missed out of 2 (a weekly-only schedule) is not "under 50%"; the consecutive rule still
    # covers sparse schedules.
    nonresponse_min_sent: int = 4

    def __post_init__(self) -> None:
        # Read-only copies: a caller's dict must not change a params object after the fact.
        for name in ("severe_at_or_above", "severe_at_or_below"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        object.__setattr__(self, "lor_days", tuple(self.lor_days))
        _validate(self)

    @classmethod
    def from_overrides(cls, *layers: Mapping[str, object]) -> RuleParams:
        """Defaults, then each layer in turn (program, then patient).

        Threshold mappings merge per measure (a patient layer {"pain": 8} keeps the program's
        fatigue threshold); None removes a measure's threshold. An unknown key or a bad value
        raises ValueError with a one-line message naming the key.
        """
        values = cls().to_dict()
        for layer in layers:
            for key, raw in layer.items():
                if key not in values:
                    raise ValueError(f"unknown trend parameter {key!r}")
                values[key] = _coerce(key, values[key], raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able values (lists for tuples, dicts for mappings)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _coerce(key: str, current: object, raw: object) -> object:
    """Check one override's type against the default's; ranges are checked in _validate."""
    if isinstance(current, bool):
        if not isinstance(raw, bool):
            raise ValueError(f"trend parameter {key!r} must be true or false, not {raw!r}")
        return raw
    if isinstance(current, int):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"trend parameter {key!r} must be a whole number, not {raw!r}")
        return raw
    if isinstance(current, float):
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ValueError(f"trend parameter {key!r} must be a number, not {raw!r}")
        return float(raw)
    if isinstance(current, dict):
        return _merge_thresholds(key, current, raw)
    if isinstance(current, list):
        return _day_pair(key, raw)
    raise ValueError(f"trend parameter {key!r} cannot be overridden")


def _day_pair(key: str, raw: object) -> list[int]:
    if isinstance(raw, list | tuple) and len(raw) == 2:
        pair = [v for v in raw if isinstance(v, int) and not isinstance(v, bool)]
        if len(pair) == 2:
            return pair
    raise ValueError(f"trend parameter {key!r} must be two whole numbers, not {raw!r}")


def _merge_thresholds(key: str, current: dict[str, int], raw: object) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"trend parameter {key!r} must map measures to numbers, not {raw!r}")
    merged = dict(current)
    for measure, value in raw.items():
        if value is None:
            merged.pop(measure, None)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"trend parameter {key!r}: {measure} must be a whole number")
        else:
            merged[measure] = value
    return merged


def _validate(p: RuleParams) -> None:
    """Ranges and consistency; one line naming the offending key."""
    checks: list[tuple[str, bool, str]] = [
        ("baseline_window", p.baseline_window >= 1, "at least 1"),
        ("baseline_min", 1 <= p.baseline_min <= p.baseline_window, "1..baseline_window"),
        ("worsening_points", p.worsening_points > 0, "above 0"),
        ("worsening_percent", p.worsening_percent >= 0, "0 or more"),
        ("worsening_consecutive", p.worsening_consecutive >= 1, "at least 1"),
        ("ewma_lambda", 0 < p.ewma_lambda <= 1, "in (0, 1]"),
        ("ewma_limit_sd", p.ewma_limit_sd > 0, "above 0"),
        ("ewma_min_sd", p.ewma_min_sd > 0, "above 0"),
        ("ewma_span", p.ewma_span >= 1, "at least 1"),
        ("phq2_positive_at", 0 <= p.phq2_positive_at <= 6, "0..6"),
        ("lor_days", 1 <= p.lor_days[0] <= p.lor_days[1], "two days, 1 <= first <= last"),
        ("lor_fraction", 0 < p.lor_fraction <= 1, "in (0, 1]"),
        ("nonresponse_consecutive", p.nonresponse_consecutive >= 1, "at least 1"),
        ("nonresponse_rate", 0 < p.nonresponse_rate <= 1, "in (0, 1]"),
        ("nonresponse_days", p.nonresponse_days >= 1, "at least 1"),
        ("nonresponse_min_sent", p.nonresponse_min_sent >= 1, "at least 1"),
    ]
    for name in ("severe_at_or_above", "severe_at_or_below"):
        thresholds: Mapping[str, int] = getattr(p, name)
        ok = all(m in BAD_DIRECTION and 0 <= v <= SCALE_MAX[m] for m, v in thresholds.items())
        checks.append((name, ok, "pain/fatigue/mood to a value 0..10"))
    for key, ok, expected in checks:
        if not ok:
            raise ValueError(f"trend parameter {key!r} must be {expected}, got {getattr(p, key)!r}")


def history_needed(params: RuleParams) -> int:
    """Most-recent readings per measure that `evaluate` looks at; pass no more, no fewer.

    The baseline window sits before the newest readings: the judged consecutive ones for the
    worsening rule, the EWMA span for drift (which covers the judged ones too).
    """
    return params.baseline_window + max(params.worsening_consecutive, params.ewma_span)


def evaluate(measure: str, history: Sequence[Reading], params: RuleParams) -> list[Finding]:
    """Judge the newest reading of `measure` (and its predecessors for 'consecutive').

    `history` is that measure's readings, oldest to newest; the newest is the one just stored.
    Readings outside the scale are ignored. Raises ValueError for a measure without trend rules
    (see TREND_MEASURES) or a reading of another measure.
    """
    if measure not in TREND_MEASURES:
        raise ValueError(f"no trend rules for measure {measure!r}")
    if any(r.measure != measure for r in history):
        raise ValueError(f"history for {measure!r} holds readings of another measure")
    valid = sorted(
        (r for r in history if math.isfinite(r.value) and 0 <= r.value <= SCALE_MAX[measure]),
        key=lambda r: r.at,
    )
    if not valid:
        return []
    if measure == "phq2_total":
        return _phq2(valid, params)
    return (
        _severe_trend(measure, valid, params)
        + _worsening(measure, valid, params)
        + _drift(measure, valid, params)
    )


@dataclass(frozen=True)
class _Baseline:
    readings: tuple[Reading, ...]

    @property
    def n(self) -> int:
        return len(self.readings)

    @cached_property
    def values(self) -> list[float]:
        return [r.value for r in self.readings]

    @cached_property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @cached_property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @cached_property
    def sd(self) -> float:
        return statistics.stdev(self.values) if self.n >= 2 else 0.0

    def evidence(self, params: RuleParams, how: str) -> dict[str, Any]:
        if not self.readings:
            return {"n": 0, "method": how, "needs": params.baseline_min}
        return {
            "method": how,
            "n": self.n,
            "needs": params.baseline_min,
            "median": self.median,
            "mean": round(self.mean, 3),
            "sd": round(self.sd, 3),
            "min": min(self.values),
            "max": max(self.values),
            "readings": [_reading_evidence(r) for r in self.readings],
        }


def _reading_evidence(r: Reading) -> dict[str, Any]:
    return {"value": r.value, "at": r.at.isoformat(), "checkin_id": r.checkin_id}


def _baseline_before(valid: Sequence[Reading], judged: int, params: RuleParams) -> _Baseline:
    """CLINICAL.md l.22: the last `baseline_window` valid readings before the judged ones."""
    before = valid[: len(valid) - judged]
    return _Baseline(tuple(before[-params.baseline_window :]))


_MEDIAN_HOW = "median of the last {w} valid readings before the {j} judged"


def _severe_trend(measure: str, valid: Sequence[Reading], params: RuleParams) -> list[Finding]:
    """CLINICAL.md l.25: one reading past its threshold is enough, no baseline needed."""
    newest = valid[-1]
    high = params.severe_at_or_above.get(measure)
    low = params.severe_at_or_below.get(measure)
    if high is not None and newest.value >= high:
        threshold = f">= {high}"
    elif low is not None and newest.value <= low:
        threshold = f"<= {low}"
    else:
        return []
    baseline = _baseline_before(valid, 1, params)
    how = _MEDIAN_HOW.format(w=params.baseline_window, j=1)
    evidence = {
        "rule": "severe_single_reading",
        "measure": measure,
        "judged": [_reading_evidence(newest)],
        "baseline": baseline.evidence(params, how),
        "thresholds": {"severe": threshold},
        "source": "CLINICAL.md 'What counts as worsening': pain >=9, fatigue >=9, mood <=1",
    }
    return [Finding("severe", "high", "severe_single_reading", evidence)]


def _badness(measure: str, value: float) -> float:
    """The value on a scale where higher is worse and 0 is best (mood 7 -> 3)."""
    return value if BAD_DIRECTION[measure] > 0 else SCALE_MAX[measure] - value


def _change(measure: str, value: float, median: float) -> tuple[float, float]:
    """Points and percent worse than the baseline median.

    Percent is taken of the baseline's distance from the best end of the scale (pain 4 -> 6 is
    +50%; mood 7 -> 5 is 3 -> 5 from the top, +67%): Farrar's 30% (CLINICAL.md l.21) is a share
    of the symptom's size, and for mood the symptom is how far it is below 10. A baseline at
    the best end (pain 0) makes any change infinite percent: the 2 points then decide.
    """
    points = _badness(measure, value) - _badness(measure, median)
    base = _badness(measure, median)
    percent = math.inf if base == 0 else 100.0 * points / base
    return points, percent


def _worsening(measure: str, valid: Sequence[Reading], params: RuleParams) -> list[Finding]:
    """CLINICAL.md l.23-24: >= 2 points AND >= 30% worse than baseline, on 2 consecutive."""
    judged = list(valid[-params.worsening_consecutive :])
    baseline = _baseline_before(valid, params.worsening_consecutive, params)
    if len(judged) < params.worsening_consecutive or baseline.n < params.baseline_min:
        return []
    changes = [_change(measure, r.value, baseline.median) for r in judged]
    worst_usual = max(_badness(measure, v) for v in baseline.values)
    for r, (points, percent) in zip(judged, changes, strict=True):
        if points < params.worsening_points or percent < params.worsening_percent:
            return []
        if params.worsening_beyond_baseline_range and _badness(measure, r.value) <= worst_usual:
            return []
    how = _MEDIAN_HOW.format(w=params.baseline_window, j=params.worsening_consecutive)
    evidence = {
        "rule": "worsening_vs_baseline",
        "measure": measure,
        "direction": "higher is worse" if BAD_DIRECTION[measure] > 0 else "lower is worse",
        "judged": [_reading_evidence(r) for r in judged],
        "change": [
            {"points": round(pts, 3), "percent": _percent_json(pct)} for pts, pct in changes
        ],
        "baseline": baseline.evidence(params, how),
        "thresholds": {
            "points": params.worsening_points,
            "percent": params.worsening_percent,
            "consecutive": params.worsening_consecutive,
            "beyond_baseline_range": params.worsening_beyond_baseline_range,
        },
        "source": "CLINICAL.md 'What counts as worsening': >=2 points and >=30%, 2 consecutive",
    }
    return [Finding("worsening", "high", "worsening_vs_baseline", evidence)]


def _percent_json(percent: float) -> float | None:
    return None if math.isinf(percent) else round(percent, 1)


def _drift(measure: str, valid: Sequence[Reading], params: RuleParams) -> list[Finding]:
    """CLINICAL.md l.26-27: an EWMA of the last `ewma_span` readings vs the baseline before.

    The chart's centre is the mean of the baseline window (an EWMA's in-control target is a
    mean; the median of 7 integers is too coarse for a sub-point limit) and its width comes from
    the same window's SD, floored at `ewma_min_sd`. Only drift in the bad direction fires, and
    only while the newest readings stay on the bad side (see `_sustained`).
    """
    span = list(valid[-params.ewma_span :])
    baseline = _baseline_before(valid, params.ewma_span, params)
    if len(span) < params.ewma_span or baseline.n < params.baseline_min:
        return []
    lam = params.ewma_lambda
    z = baseline.mean
    for r in span:
        z = lam * r.value + (1 - lam) * z
    sigma = max(baseline.sd, params.ewma_min_sd)
    width = math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * params.ewma_span)))
    limit = params.ewma_limit_sd * sigma * width
    excess = BAD_DIRECTION[measure] * (z - baseline.mean)
    if excess <= limit or not _sustained(measure, span, baseline.mean, params):
        return []
    how = f"mean and SD of the {params.baseline_window} valid readings before the EWMA span"
    evidence = {
        "rule": "ewma_drift",
        "measure": measure,
        "direction": "higher is worse" if BAD_DIRECTION[measure] > 0 else "lower is worse",
        "judged": [_reading_evidence(r) for r in span],
        "ewma": round(z, 3),
        "excess": round(excess, 3),
        "limit": round(limit, 3),
        "baseline": baseline.evidence(params, how),
        "thresholds": {
            "lambda": lam,
            "limit_sd": params.ewma_limit_sd,
            "min_sd": params.ewma_min_sd,
            "sd_used": round(sigma, 3),
            "span": params.ewma_span,
        },
        "source": "CLINICAL.md 'What counts as worsening': gradual drift, EWMA lambda ~0.3",
    }
    return [Finding("worsening", "routine", "ewma_drift", evidence)]


def _sustained(measure: str, span: Sequence[Reading], centre: float, params: RuleParams) -> bool:
    """The newest `worsening_consecutive` readings are all worse than the baseline mean.

    With lambda 0.3 one outlier moves the EWMA by 0.3 x its size: a lone 9 in a patient who
    always answers 4 would cross the limit by itself. That is a spike (the severe rule's job),
    not a drift, so drift also needs the last readings to stay on the bad side.
    """
    recent = span[-params.worsening_consecutive :]
    return all(BAD_DIRECTION[measure] * (r.value - centre) > 0 for r in recent)


def _phq2(valid: Sequence[Reading], params: RuleParams) -> list[Finding]:
    """CLINICAL.md l.28: PHQ-2 >= 3 -> routine alert, suggest a PHQ-9 assessment."""
    newest = valid[-1]
    if newest.value < params.phq2_positive_at:
        return []
    previous = _Baseline(tuple(valid[:-1][-params.baseline_window :]))
    evidence = {
        "rule": "phq2_total",
        "measure": "phq2_total",
        "judged": [_reading_evidence(newest)],
        "baseline": previous.evidence(params, "previous PHQ-2 totals, for context only"),
        "thresholds": {"positive_at": f">= {params.phq2_positive_at}"},
        "suggest": "PHQ-9 assessment",
        "source": "CLINICAL.md: PHQ-2 >= 3 (Kroenke 2003)",
    }
    return [Finding("phq2_positive", "routine", "phq2_total", evidence)]


# --- ketamine follow-up -------------------------------------------------------------------


def loss_of_response(
    mood: Sequence[Reading], infusions: Sequence[date], params: RuleParams, zone: ZoneInfo
) -> list[Finding]:
    """CLINICAL.md l.35-39: mood falls back toward the pre-infusion baseline in days 7-18.

    For the most recent infusion on or before the newest mood reading (days counted in the
    patient's `zone`): pre-infusion baseline = median of mood in the 7 days before (needs
    `baseline_min`); gain = peak of days 1-3 minus that baseline, and must be at least
    `worsening_points` (no response, nothing to lose); fires when the newest
    `worsening_consecutive` readings, the newest of all among them, fall in days
    `lor_days` and each has lost at least `lor_fraction` of the gain.

    Severity 'routine': losing a single infusion's effect by days 10-12 is the expected course
    (l.35-37), and the action is a booster or schedule review, not a same-day call; danger is
    covered separately by mood <= 1 (severe, high), PHQ-2 and crisis language, which page.
    """
    valid = sorted((r for r in mood if r.measure == "mood" and 0 <= r.value <= 10), key=_at)
    if not valid or not infusions:
        return []
    newest_day = valid[-1].at.astimezone(zone).date()
    past = [d for d in infusions if d <= newest_day]
    if not past:
        return []
    infusion = max(past)
    by_day = [((r.at.astimezone(zone).date() - infusion).days, r) for r in valid]
    first, last = params.lor_days
    recent = [r for day, r in by_day if first <= day <= last]
    if not recent or recent[-1] is not valid[-1]:
        return []  # the newest reading is outside days 7-18: nothing new to judge
    pre = _Baseline(tuple(r for day, r in by_day if -7 <= day <= -1))
    peak = [r.value for day, r in by_day if 1 <= day <= 3]
    judged = recent[-params.worsening_consecutive :]
    if pre.n < params.baseline_min or not peak or len(judged) < params.worsening_consecutive:
        return []
    gain = max(peak) - pre.median
    if gain < params.worsening_points:
        return []
    lost = [(max(peak) - r.value) / gain for r in judged]
    if min(lost) < params.lor_fraction:
        return []
    return [_lor_finding(infusion, pre, max(peak), judged, lost, params)]


def _at(r: Reading) -> datetime:
    return r.at


def _lor_finding(
    infusion: date,
    pre: _Baseline,
    peak: float,
    judged: Sequence[Reading],
    lost: Sequence[float],
    params: RuleParams,
) -> Finding:
    evidence = {
        "rule": "loss_of_response",
        "measure": "mood",
        "infusion_date": infusion.isoformat(),
        "baseline": pre.evidence(params, "median of mood in the 7 days before the infusion"),
        "post_peak": peak,
        "post_peak_days": [1, 3],
        "judged": [_reading_evidence(r) for r in judged],
        "fraction_lost": [round(f, 3) for f in lost],
        "thresholds": {
            "days": list(params.lor_days),
            "fraction": params.lor_fraction,
            "min_gain_points": params.worsening_points,
            "consecutive": params.worsening_consecutive,
        },
        "source": "CLINICAL.md 'Ketamine follow-up': effect gone by days 10-12, relapse ~18",
    }
    return Finding("loss_of_response", "routine", "loss_of_response", evidence)


# --- engagement ---------------------------------------------------------------------------


def non_response(outcomes: Sequence[tuple[date, str]], params: RuleParams) -> list[Finding]:
    """CLINICAL.md l.29-30: 3 consecutive unanswered, or under 50% answered over 7 days.

    `outcomes` are (local date, status) of the patient's finished check-ins, oldest first:
    'completed', 'partial' (expired with some answers) and 'interrupted' (a crisis paused it:
    the patient did write) count as answered; 'unanswered' (expired with no answer) is the
    only status that counts as not responding; 'failed' (not delivered), 'missed' and 'skipped'
    (never sent) and unfinished 'pending'/'sending'/'open' are left out entirely, so a delivery
    failure is never read as a patient ignoring us. Any other status (e.g. raw 'expired') is a
    ValueError: the caller must say whether it had answers.

    Fires only when the newest counted check-in went unanswered: a patient who just answered is
    engaging again. Kind 'non_response', severity 'routine', kept apart from clinical alerts.
    """
    counted = [(day, _answered(status)) for day, status in outcomes if status not in NOT_COUNTED]
    if not counted or counted[-1][1]:
        return []
    findings = []
    run = _unanswered_run(counted)
    if run >= params.nonresponse_consecutive:
        findings.append(_run_finding(counted[-run:], params))
    newest = counted[-1][0]
    week = [(d, a) for d, a in counted if 0 <= (newest - d).days < params.nonresponse_days]
    answered = sum(1 for _, a in week if a)
    rate = answered / len(week)
    if len(week) >= params.nonresponse_min_sent and rate < params.nonresponse_rate:
        findings.append(_rate_finding(week, answered, rate, params))
    return findings


def _answered(status: str) -> bool:
    if status in ANSWERED:
        return True
    if status in UNANSWERED:
        return False
    raise ValueError(f"non_response: unknown check-in status {status!r}")


def _unanswered_run(counted: Sequence[tuple[date, bool]]) -> int:
    run = 0
    for _, answered in reversed(counted):
        if answered:
            break
        run += 1
    return run


def _run_finding(run: Sequence[tuple[date, bool]], params: RuleParams) -> Finding:
    evidence = {
        "rule": "consecutive_unanswered",
        "unanswered": [d.isoformat() for d, _ in run],
        "thresholds": {"consecutive": params.nonresponse_consecutive},
        "not_counted": sorted(NOT_COUNTED),
        "source": "CLINICAL.md 'What counts as worsening': 3 consecutive missed check-ins",
    }
    return Finding("non_response", "routine", "consecutive_unanswered", evidence)


def _rate_finding(
    week: Sequence[tuple[date, bool]], answered: int, rate: float, params: RuleParams
) -> Finding:
    evidence = {
        "rule": "answer_rate",
        "from": week[0][0].isoformat(),
        "to": week[-1][0].isoformat(),
        "sent": len(week),
        "answered": answered,
        "rate": round(rate, 3),
        "thresholds": {
            "rate_below": params.nonresponse_rate,
            "days": params.nonresponse_days,
            "min_sent": params.nonresponse_min_sent,
        },
        "not_counted": sorted(NOT_COUNTED),
        "source": "CLINICAL.md 'What counts as worsening': under 50% answered over 7 days",
    }
    return Finding("non_response", "routine", "answer_rate", evidence)
