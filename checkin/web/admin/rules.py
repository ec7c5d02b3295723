"""Alert-rule thresholds for the whole program (the web side of `checkin rules set`).

Each field shows the CLINICAL.md default; an empty field means "use the default", so a clinic
only stores what it changed. Values are checked by trends.RuleParams (the same check as the
CLI), and nothing is saved unless the whole form is valid. Per-patient settings stay on the
CLI (`checkin rules set KEY VALUE --phone`), where they are rare and deliberate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from checkin import audit
from checkin.models import Program
from checkin.trends import RuleParams
from checkin.web import context
from checkin.web.admin import bp
from checkin.web.auth import signed_in
from checkin.web.forms import FormError, field

# Typing "off" in a threshold removes it for that measure (no severe alert for it).
OFF = "off"


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    help: str
    part: str | None = None  # a measure of a threshold mapping, or "0"/"1" of a day pair

    @property
    def name(self) -> str:
        return f"{self.key}.{self.part}" if self.part is not None else self.key


SETTINGS = (
    Setting("severe_at_or_above", "Severe pain at or above", "CLINICAL.md: 9", "pain"),
    Setting("severe_at_or_above", "Severe fatigue at or above", "CLINICAL.md: 9", "fatigue"),
    Setting("severe_at_or_below", "Severe low mood at or below", "CLINICAL.md: 1", "mood"),
    Setting("worsening_points", "Worsening: points vs baseline", "Farrar 2001: 2 points"),
    Setting("worsening_percent", "Worsening: percent vs baseline", "Farrar 2001: 30%"),
    Setting("worsening_consecutive", "Worsening: consecutive check-ins", "CLINICAL.md: 2"),
    Setting(
        "worsening_beyond_baseline_range",
        "Worsening: also worse than every baseline reading",
        "our guard against noise (docs/clinical-defaults.md); yes or no",
    ),
    Setting("baseline_window", "Baseline: readings in the median", "CLINICAL.md: 7"),
    Setting("baseline_min", "Baseline: fewest readings needed", "CLINICAL.md: 4"),
    Setting("ewma_lambda", "Drift (EWMA): weight of the newest reading", "CLINICAL.md: ~0.3"),
    Setting("ewma_limit_sd", "Drift: control limit in SDs", "tuned: 3.5"),
    Setting("ewma_min_sd", "Drift: smallest SD used", "tuned: 1.0"),
    Setting("ewma_span", "Drift: readings followed", "tuned: 14"),
    Setting("phq2_positive_at", "PHQ-2 positive at or above", "Kroenke 2003: 3"),
    Setting("lor_days", "Loss of response: from day", "Kishimoto 2016: 7", "0"),
    Setting("lor_days", "Loss of response: to day", "Murrough 2013: 18", "1"),
    Setting("lor_fraction", "Loss of response: share of the gain lost", "our choice: 0.5"),
    Setting("nonresponse_consecutive", "Non-response: missed in a row", "CLINICAL.md: 3"),
    Setting("nonresponse_rate", "Non-response: answered share under", "CLINICAL.md: 0.5"),
    Setting("nonresponse_days", "Non-response: over days", "CLINICAL.md: 7"),
    Setting("nonresponse_min_sent", "Non-response: fewest sent to judge", "our choice: 4"),
)


@bp.get("/rules")
def rules_form() -> str:
    with context().db.session() as db:
        layer = dict(db.get_one(Program, signed_in().program_id).rule_params or {})
    return _page(_shown(layer))


@bp.post("/rules")
def save_rules() -> tuple[str, int] | Response:
    ctx = context()
    try:
        layer = overrides(request.form)
        RuleParams.from_overrides(layer)  # one line naming the key, as the CLI says it
        with ctx.db.session() as db:
            program = db.get_one(Program, signed_in().program_id)
            before = dict(program.rule_params or {})
            program.rule_params = layer
            changed = sorted(k for k in set(before) | set(layer) if before.get(k) != layer.get(k))
            if changed:
                audit.record(
                    db,
                    ctx.clock(),
                    signed_in().email,
                    "rules.set",
                    f"program:{program.id}",
                    changed={k: {"from": before.get(k), "to": layer.get(k)} for k in changed},
                )
    except ValueError as exc:
        shown = {s.name: field(request.form, s.name, 20) for s in SETTINGS}
        return _page(shown, error=str(exc)), 400
    flash(f"Saved alert rules ({len(changed)} changed).", "success")
    return redirect(url_for("admin.rules_form"), code=303)


def overrides(form: Any) -> dict[str, Any]:
    """The program's layer from the form: only what differs from the defaults' "empty"."""
    layer: dict[str, Any] = {}
    for s in SETTINGS:
        text = field(form, s.name, 20).lower()
        if not text:
            continue
        if s.part is None:
            layer[s.key] = _value(s, text)
        elif s.key == "lor_days":
            pair = layer.setdefault(s.key, list(RuleParams().lor_days))
            pair[int(s.part)] = _value(s, text)
        else:
            layer.setdefault(s.key, {})[s.part] = None if text == OFF else _value(s, text)
    return layer


def _value(s: Setting, text: str) -> int | float | bool:
    if s.key == "worsening_beyond_baseline_range":
        if text not in ("yes", "no"):
            raise FormError(f"{s.label}: answer yes or no, not {text!r}")
        return text == "yes"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise FormError(f"{s.label}: {text!r} is not a number") from None


def _shown(layer: dict[str, Any]) -> dict[str, str]:
    """What each field shows: the program's own value, or empty for "the default"."""
    shown: dict[str, str] = {}
    for s in SETTINGS:
        value = layer.get(s.key)
        if s.part is not None and isinstance(value, dict):
            value = OFF if s.part in value and value[s.part] is None else value.get(s.part)
        elif s.part is not None and isinstance(value, list):
            value = value[int(s.part)]
        elif s.part is not None:
            value = None
        if isinstance(value, bool):
            value = "yes" if value else "no"
        shown[s.name] = (
            "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        )
    return shown


def _defaults() -> dict[str, str]:
    d = RuleParams().to_dict()
    out: dict[str, str] = {}
    for s in SETTINGS:
        value: Any = d[s.key]
        if isinstance(value, dict):
            value = value.get(s.part or "", OFF)
        elif isinstance(value, list):
            value = value[int(s.part or 0)]
        out[s.name] = ("yes" if value else "no") if isinstance(value, bool) else f"{value:g}"
    return out


def _page(shown: dict[str, str], error: str | None = None) -> str:
    return render_template(
        "admin/rules.html", settings=SETTINGS, shown=shown, defaults=_defaults(), error=error
    )
