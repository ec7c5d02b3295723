"""`checkin export` for research: every kind, filters, formats, the contract's columns,
de-identification (no name or number anywhere, pseudonyms and date shifts) and the audit row
each export writes. Real databases (SQLite and PostgreSQL), the real click command."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from checkin.cli import cli
from checkin.context import Context
from checkin.export import MAX_SHIFT_DAYS, ExportError, Filters, Pseudonyms
from checkin.models import AuditEvent
from tests.conftest import ALICE, ERIN, T0, World, twilio_env
from tests.fake_twilio import FakeTwilio
from tests.records import ALICE_NOTE, RESOLUTION, History, seed

CONTRACT = {
    "observations": {"phone", "measure", "value", "recorded_at", "checkin_id"},
    "alerts": {"phone", "kind", "severity", "status", "created_at"},
}


@pytest.fixture
def history(ctx: Context, world: World) -> History:
    return seed(ctx, world)


@pytest.fixture
def env(db_url: str, fake_twilio: FakeTwilio) -> dict[str, str]:
    return twilio_env(db_url, fake_twilio)


def export(env: dict[str, str], *args: str) -> str:
    result = invoke(env, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def invoke(env: dict[str, str], args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def parse(out: str, fmt: str) -> list[dict[str, object]]:
    if fmt == "json":
        rows = json.loads(out)
        assert isinstance(rows, list)
        return rows
    return list(csv.DictReader(io.StringIO(out)))


def exports_audited(ctx: Context) -> list[AuditEvent]:
    with ctx.db.session() as session:
        stmt = select(AuditEvent).where(AuditEvent.action == "export").order_by(AuditEvent.id)
        return list(session.scalars(stmt))


# --- pure: pseudonyms, offsets, filters ----------------------------------------------------


def test_a_pseudonym_is_stable_within_one_export_and_differs_in_the_next() -> None:
    first, second = Pseudonyms(), Pseudonyms()
    assert first.patient(12) == first.patient(12)
    assert first.patient(12) != first.patient(13)
    assert first.patient(12) != second.patient(12)
    assert first.offset(12) == first.offset(12)
    assert first.token("checkin", 5) == first.token("checkin", 5) != second.token("checkin", 5)


def test_every_shift_is_whole_days_within_half_a_year_and_never_zero() -> None:
    shifts = [Pseudonyms().offset(n) for n in range(3000)]
    days = {s.days for s in shifts}
    assert all(s == timedelta(days=s.days) for s in shifts)
    assert 0 not in days
    assert min(days) >= -MAX_SHIFT_DAYS and max(days) <= MAX_SHIFT_DAYS
    assert min(days) < -100 and max(days) > 100  # the whole range is used, both ways


def test_filters_refuse_a_to_date_before_the_from_date() -> None:
    with pytest.raises(ExportError, match="before the from date"):
        Filters(date(2026, 3, 10), date(2026, 3, 1))


def test_a_date_range_is_whole_utc_days_at_both_ends() -> None:
    f = Filters(date(2026, 3, 1), date(2026, 3, 2))
    assert f.since is not None and f.since.isoformat() == "2026-03-01T00:00:00+00:00"
    assert f.before is not None and f.before.isoformat() == "2026-03-03T00:00:00+00:00"


# --- identified exports: contract columns, kinds, filters ----------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("kind", ["observations", "alerts"])
def test_identified_exports_keep_the_contract_columns(
    env: dict[str, str], history: History, kind: str, fmt: str
) -> None:
    rows = parse(export(env, kind, "--format", fmt), fmt)
    assert rows and all(CONTRACT[kind] <= set(row) for row in rows)
    assert {row["phone"] for row in rows} <= {ALICE, ERIN}


def test_the_checkins_export_counts_answers_and_days_after_the_infusion(
    env: dict[str, str], history: History
) -> None:
    rows = {row["checkin_id"]: row for row in parse(export(env, "checkins"), "csv")}
    expired = rows[str(history.alice_expired)]
    assert (expired["status"], expired["answered"], expired["missing"]) == ("expired", "1", "2")
    post = rows[str(history.alice_post_infusion)]
    assert (post["flow"], post["answered"], post["days_after_infusion"]) == (
        "post_infusion",
        "10",
        "1",
    )
    assert rows[str(history.alice_pending)]["sent_at"] == ""
    assert rows[str(history.alice_daily)]["days_after_infusion"] == ""


def test_observations_carry_the_flow_the_note_and_the_raw_reply_when_identified(
    env: dict[str, str], history: History
) -> None:
    rows = parse(export(env, "observations", "--format", "json"), "json")
    pain = next(
        r for r in rows if r["checkin_id"] == history.alice_daily and r["measure"] == "pain"
    )
    assert (pain["flow"], pain["value"], pain["note"]) == ("daily_symptoms", 9, ALICE_NOTE)
    assert pain["raw_text"] == f"9 - {ALICE_NOTE}"


def test_the_dates_filter_keeps_whole_utc_days_by_the_rows_own_time(
    env: dict[str, str], history: History
) -> None:
    # Alice's daily was answered on 7 March (T0 - 3 days), her PHQ-2 on 8 March, her
    # post-infusion and expired checks on 9 March; Erin's daily on 8 March.
    day = (T0 - timedelta(days=2)).date().isoformat()
    rows = parse(export(env, "observations", "--from", day, "--to", day), "csv")
    assert {r["checkin_id"] for r in rows} == {str(history.alice_weekly), str(history.erin_daily)}
    checkins = parse(export(env, "checkins", "--from", day), "csv")
    assert str(history.alice_daily) not in {r["checkin_id"] for r in checkins}
    assert str(history.alice_pending) in {r["checkin_id"] for r in checkins}


def test_the_phone_filter_keeps_one_patient_in_every_kind(
    env: dict[str, str], history: History
) -> None:
    for kind in ("observations", "alerts", "messages", "checkins"):
        rows = parse(export(env, kind, "--phone", "(617) 555-0102", "--format", "json"), "json")
        assert {r["phone"] for r in rows} == ({ERIN} if kind != "alerts" else set()), kind


def test_the_status_filter_applies_to_every_kind(env: dict[str, str], history: History) -> None:
    missing = parse(export(env, "observations", "--status", "missing"), "csv")
    assert [(r["measure"], r["value"]) for r in missing] == [("pain", ""), ("mood", "")]
    expired = parse(export(env, "checkins", "--status", "expired"), "csv")
    assert [r["checkin_id"] for r in expired] == [str(history.alice_expired)]


def test_a_bad_request_is_one_line_and_exports_nothing(
    ctx: Context, env: dict[str, str], history: History
) -> None:
    cases = {
        ("observations", "--from", "2026-03-10", "--to", "2026-03-01"): "before the from date",
        ("observations", "--from", "10/03/2026"): "--from must be YYYY-MM-DD",
        ("alerts", "--phone", "+16175550100"): "no patient with phone +16175550100",
        ("fhir", "--deidentify"): "export fhir is identified",
        ("fhir", "--format", "csv"): "JSON only",
    }
    for args, problem in cases.items():
        result = invoke(env, ["export", *args])
        assert result.exit_code == 1, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and problem in lines[0], (args, result.output)
    assert exports_audited(ctx) == []


# --- de-identified exports -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("kind", ["observations", "alerts", "messages", "checkins"])
def test_a_deidentified_export_has_no_name_number_or_free_text_anywhere(
    env: dict[str, str], history: History, kind: str, fmt: str
) -> None:
    out = export(env, kind, "--deidentify", "--format", fmt)
    rows = parse(out, fmt)
    assert rows, kind
    for secret in history.identifying:
        assert secret not in out, (kind, secret)
    assert "phone" not in rows[0] and "note" not in rows[0]
    assert all(str(row["patient"]).startswith("P-") for row in rows)


def test_deidentified_messages_are_only_the_texts_with_patients(
    env: dict[str, str], history: History
) -> None:
    identified = parse(export(env, "messages", "--format", "json"), "json")
    assert {r["purpose"] for r in identified} >= {"alert", "unknown_sender"}
    rows = parse(export(env, "messages", "--deidentify", "--format", "json"), "json")
    assert sorted(r["purpose"] for r in rows) == ["checkin", "patient", "patient"]
    assert set(rows[0]) == {
        "patient",
        "direction",
        "purpose",
        "status",
        "error_code",
        "attempts",
        "created_at",
        "sent_at",
        "checkin",
    }


def test_pseudonyms_agree_within_an_export_and_differ_between_exports(
    env: dict[str, str], history: History
) -> None:
    first = parse(export(env, "observations", "--deidentify"), "csv")
    second = parse(export(env, "observations", "--deidentify"), "csv")
    # Alice has 19 answered or missing readings over four check-ins, Erin 3 over one.
    for rows in (first, second):
        sizes = sorted(len([r for r in rows if r["patient"] == p]) for p in patients(rows))
        assert sizes == [3, 19]
        checkins = {r["checkin"] for r in rows}
        assert len(checkins) == 5
    assert patients(first).isdisjoint(patients(second))
    assert {r["checkin"] for r in first}.isdisjoint({r["checkin"] for r in second})


def patients(rows: list[dict[str, object]]) -> set[object]:
    return {r["patient"] for r in rows}


def test_each_patients_dates_move_by_one_whole_day_offset_and_keep_their_gaps(
    env: dict[str, str], history: History
) -> None:
    real = parse(export(env, "observations", "--format", "json"), "json")
    shifted = parse(export(env, "observations", "--deidentify", "--format", "json"), "json")
    by_phone = defaultdict(list)
    for row in real:
        by_phone[row["phone"]].append(row)
    by_pseudonym = defaultdict(list)
    for row in shifted:
        by_pseudonym[row["patient"]].append(row)
    # Pair each pseudonym with its patient by row count (19 readings for Alice, 3 for Erin).
    pairs = {len(rows): rows for rows in by_pseudonym.values()}
    offsets = []
    for phone, rows in by_phone.items():
        mine = pairs[len(rows)]
        moves = {
            instant(s["recorded_at"]) - instant(r["recorded_at"])
            for r, s in zip(rows, mine, strict=True)
        }
        assert len(moves) == 1, phone  # one offset for all of a patient's rows
        (move,) = moves
        assert move.seconds == 0 and move.microseconds == 0 and move.days != 0
        assert abs(move.days) <= MAX_SHIFT_DAYS
        assert [(r["measure"], r["value"]) for r in rows] == [
            (s["measure"], s["value"]) for s in mine
        ]
        offsets.append(move)
    assert len(offsets) == 2


def test_checkin_dates_and_times_move_together_and_days_after_infusion_stays(
    env: dict[str, str], history: History
) -> None:
    real = parse(export(env, "checkins", "--phone", ALICE, "--format", "json"), "json")
    shifted = parse(
        export(env, "checkins", "--phone", ALICE, "--deidentify", "--format", "json"), "json"
    )
    assert len({r["patient"] for r in shifted}) == 1
    moves = set()
    for r, s in zip(real, shifted, strict=True):
        moves.add(instant(s["due_at"]) - instant(r["due_at"]))
        day_move = date.fromisoformat(str(s["local_date"])) - date.fromisoformat(
            str(r["local_date"])
        )
        moves.add(day_move)
        if r["completed_at"]:
            moves.add(instant(s["completed_at"]) - instant(r["completed_at"]))
        assert s["days_after_infusion"] == r["days_after_infusion"]
        assert (s["flow"], s["status"], s["answered"]) == (r["flow"], r["status"], r["answered"])
    assert len(moves) == 1


def instant(value: object) -> datetime:
    return datetime.fromisoformat(str(value))


# --- the audit row -------------------------------------------------------------------------


def test_every_export_is_audited_with_its_filters_format_and_row_count(
    ctx: Context, env: dict[str, str], world: World, history: History
) -> None:
    out = export(
        env,
        "observations",
        "--phone",
        ALICE,
        "--from",
        "2026-03-07",
        "--to",
        "2026-03-09",
        "--deidentify",
        "--format",
        "json",
    )
    export(env, "alerts")
    first, second = exports_audited(ctx)
    assert first.actor.startswith("cli") and first.target == "observations"
    assert first.program_id == world.program_id  # one patient: her program's admins see it
    detail = {k: v for k, v in first.detail.items() if k != "host"}
    assert detail == {
        "format": "json",
        "filters": {
            "from": "2026-03-07",
            "to": "2026-03-09",
            "patient": f"patient:{world.alice_id}",
        },
        "deidentified": True,
        "rows": len(json.loads(out)),
    }
    assert first.detail["host"]
    assert (second.target, second.program_id, second.detail["rows"]) == ("alerts", None, 1)
    assert second.detail["deidentified"] is False and second.detail["filters"] == {}
    assert RESOLUTION not in json.dumps(first.detail) + json.dumps(second.detail)
