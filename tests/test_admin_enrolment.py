"""Enrolling one patient and importing many from the admin pages, on SQLite and PostgreSQL:
E.164 phones, IANA zones, consent captured (how, when, the text shown), the welcome text over
the fake Twilio, and imports that are all or nothing with every bad row named."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from checkin import scheduler
from checkin.consent import ENROLMENT_CONSENT_TEXT
from checkin.context import Context
from checkin.models import AuditEvent, ConsentEvent, Message, Patient
from checkin.web.admin import enrolment
from tests.conftest import World
from tests.fake_twilio import FakeTwilio
from tests.test_web import login, token

CAROL = "carol@example.org"
ENROL = "/admin/patients/new"
IMPORT = "/admin/patients/import"


def enrol_form(**changes: str) -> dict[str, str]:
    form = {
        "name": "Gina Example",
        "phone": "(617) 555-0107",
        "timezone": "America/Denver",
        "language": "es",
        "consent_method": "in_person",
        "consent_at": "2026-03-10T09:40",
        "consent_text": ENROLMENT_CONSENT_TEXT,
        "consent_confirmed": "yes",
        "welcome": "yes",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v != "<omit>"}


def submit(client: FlaskClient, path: str, form: dict[str, Any]) -> Any:
    return client.post(path, data={"csrf_token": token(client, path), **form})


def patients(ctx: Context) -> int:
    with ctx.db.session() as session:
        return session.scalar(select(func.count()).select_from(Patient)) or 0


def test_an_admin_enrols_a_patient_with_consent_and_the_welcome_text_goes_out(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    response = submit(client, ENROL, enrol_form())
    assert response.status_code == 303
    landed = client.get(response.headers["Location"]).text
    assert "Enrolled Gina Example; welcome text sent." in landed
    with ctx.db.session() as session:
        gina = session.scalars(select(Patient).where(Patient.name == "Gina Example")).one()
        assert (gina.phone, gina.timezone, gina.language, gina.program_id) == (
            "+16175550107",
            "America/Denver",
            "es",
            world.program_id,
        )
        (consent,) = session.scalars(select(ConsentEvent).where(ConsentEvent.patient_id == gina.id))
        # 09:40 in the clinic's zone (CHECKIN_DIGEST_TIMEZONE, UTC here).
        assert consent.given_at == datetime(2026, 3, 10, 9, 40, tzinfo=UTC)
        assert gina.consented_at == consent.given_at
        assert (consent.kind, consent.source, consent.method, consent.recorded_by) == (
            "consent_given",
            "staff_enrolment",
            "in_person",
            CAROL,
        )
        assert consent.detail == ENROLMENT_CONSENT_TEXT
        enrolled = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "patient.enrol")
        ).all()[-1]
        assert (enrolled.actor, enrolled.detail["ip"], enrolled.program_id) == (
            CAROL,
            "127.0.0.1",
            world.program_id,
        )
    (welcome,) = fake_twilio.to("+16175550107")
    assert "STOP" in welcome.body


def test_a_bad_phone_is_refused_in_one_line_and_the_form_keeps_what_was_typed(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    before = patients(ctx)
    response = submit(client, ENROL, enrol_form(phone="555-01"))
    assert response.status_code == 400
    assert "Not saved: not a valid phone number: &#39;555-01&#39;." in response.text
    assert 'value="Gina Example"' in response.text
    assert '<option value="America/Denver" selected>' in response.text
    assert patients(ctx) == before
    assert fake_twilio.sent == []


def test_enrolment_refuses_what_would_text_a_patient_wrongly(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    before = patients(ctx)
    cases = {
        "not an IANA time zone: &#39;EST5EDT-ish&#39;": enrol_form(timezone="EST5EDT-ish"),
        "choose a time zone": enrol_form(timezone=""),
        "confirm that the patient agreed": enrol_form(consent_confirmed="<omit>"),
        "say how consent was obtained": enrol_form(consent_method=""),
        "consent cannot be dated in the future": enrol_form(consent_at="2026-03-11T09:00"),
        "the consent text shown to the patient is missing": enrol_form(consent_text="ok"),
        "a patient with phone +16175550101 already exists": enrol_form(phone="+16175550101"),
        "language must be one of en, es": enrol_form(language="fr"),
        "name is empty": enrol_form(name="   "),
    }
    for message, form in cases.items():
        response = submit(client, ENROL, form)
        assert response.status_code == 400, message
        assert message in response.text, (message, response.text[-2000:])
    assert patients(ctx) == before
    assert fake_twilio.sent == []


def test_without_the_welcome_box_no_text_is_sent(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    response = submit(client, ENROL, enrol_form(welcome="<omit>"))
    assert "Enrolled Gina Example." in client.get(response.headers["Location"]).text
    assert fake_twilio.sent == []
    with ctx.db.session() as session:
        assert session.scalar(select(Message.id).where(Message.purpose == "welcome")) is None


# --- CSV import ----------------------------------------------------------------------------


def import_form(csv: str | bytes, **changes: str) -> dict[str, Any]:
    data = csv.encode() if isinstance(csv, str) else csv
    form: dict[str, Any] = {
        "file": (io.BytesIO(data), "patients.csv"),
        "consent_method": "written_form",
        "consent_text": ENROLMENT_CONSENT_TEXT,
        "consent_confirmed": "yes",
        "welcome": "yes",
    }
    form.update(changes)
    return form


def test_a_good_csv_imports_every_row_with_its_consent_and_welcome(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    csv = (
        "phone,name,timezone,language\n"
        "+16175550111,Hana One,America/New_York,en\n"
        "(312) 555-0112,Ivan Two,America/Chicago,es\n"
    )
    response = submit(client, IMPORT, import_form(csv))
    assert response.status_code == 303
    flashed = "Imported 2 patient(s); 2 welcome text(s) queued for the scheduler."
    assert flashed in client.get("/patients").text
    assert fake_twilio.sent == []  # the page does not wait for Twilio
    assert scheduler.tick(ctx)["delivered"] == 2
    with ctx.db.session() as session:
        rows = session.execute(
            select(Patient.phone, Patient.program_id, ConsentEvent.source, ConsentEvent.method)
            .join(ConsentEvent, ConsentEvent.patient_id == Patient.id)
            .where(Patient.name.in_(("Hana One", "Ivan Two")))
            .order_by(Patient.phone)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("+13125550112", world.program_id, "csv_import", "written_form"),
        ("+16175550111", world.program_id, "csv_import", "written_form"),
    ]
    welcomed = {s.to for s in fake_twilio.sent if "STOP" in s.body}
    assert welcomed == {"+16175550111", "+13125550112"}


def test_a_csv_with_bad_rows_lists_each_by_line_and_imports_nobody(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    before = patients(ctx)
    csv = (
        "phone,name,timezone\n"
        "+16175550111,Hana One,America/New_York\n"
        "12,Bad Phone,America/New_York\n"
        "+16175550113,Bad Zone,Moon/Base\n"
        "+16175550111,Hana Again,America/New_York\n"
        "+16175550101,Alice Again,America/New_York\n"
    )
    response = submit(client, IMPORT, import_form(csv))
    assert response.status_code == 400
    assert "Nothing was imported. Fix these 4 rows and try again:" in response.text
    for line in (
        "line 3: not a valid phone number: &#39;12&#39;",
        "line 4: not an IANA time zone: &#39;Moon/Base&#39;",
        "line 5: phone +16175550111 repeats line 2",
        "line 6: a patient with phone +16175550101 already exists",
    ):
        assert line in response.text, line
    assert patients(ctx) == before
    assert fake_twilio.sent == []


def test_an_import_refuses_a_missing_column_an_empty_file_and_non_utf8(
    client: FlaskClient, ctx: Context, world: World
) -> None:
    login(client, email=CAROL)
    before = patients(ctx)
    cases = [
        ("name,timezone\nX,America/New_York\n", "line 1: missing column(s) phone"),
        ("phone,name,timezone\n", "the file has no patient rows"),
        ("", "choose a CSV file (or paste its rows)"),
        (
            "phone,name,timezone\n+16175550111,Jos\xe9,America/New_York\n".encode("latin-1"),
            "the file is not UTF-8 text",
        ),
    ]
    for csv, message in cases:
        response = submit(client, IMPORT, import_form(csv))
        assert response.status_code == 400, message
        assert message in response.text, message
    assert patients(ctx) == before


def test_pasted_rows_import_as_well_as_a_file(
    client: FlaskClient, ctx: Context, world: World, fake_twilio: FakeTwilio
) -> None:
    login(client, email=CAROL)
    form = import_form(b"", welcome="<omit>")
    form["pasted"] = "phone,name,timezone\n+16175550121,Pat Pasted,Europe/Madrid\n"
    form = {k: v for k, v in form.items() if v != "<omit>"}
    assert submit(client, IMPORT, form).status_code == 303
    with ctx.db.session() as session:
        assert session.scalar(select(Patient.timezone).where(Patient.name == "Pat Pasted")) == (
            "Europe/Madrid"
        )
    assert fake_twilio.sent == []


def test_a_file_over_the_pages_row_limit_is_refused_whole(
    client: FlaskClient, ctx: Context, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(enrolment, "MAX_IMPORT_ROWS", 2)
    login(client, email=CAROL)
    before = patients(ctx)
    csv = "phone,name,timezone\n" + "".join(
        f"+1617555011{i},P {i},America/New_York\n" for i in range(3)
    )
    response = submit(client, IMPORT, import_form(csv))
    assert response.status_code == 400
    assert "the file has 3 rows; this page imports at most 2 at a time" in response.text
    assert patients(ctx) == before
