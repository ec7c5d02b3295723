"""The `checkin` command. Verbs and flags are a contract (DESIGN.md); errors are one line."""

from __future__ import annotations

import getpass
import logging
import socket
import sys
from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import click

from checkin.config import ConfigError, load_settings
from checkin.context import Context, make_context

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from checkin.export import Filters
    from checkin.models import Patient

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A one-line problem with what the user asked; exit status 1, no traceback."""


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _origin() -> dict[str, str]:
    """'From where' for the audit log: the host a command ran on."""
    return {"host": socket.gethostname()}


def friendly_errors(command: F) -> F:
    """Turn the domain's ValueErrors and config errors into one-line messages."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            raise UserError(f"configuration: {exc}") from None
        except ValueError as exc:  # PatientError, ScheduleError, StaffError, InvalidPhone...
            raise UserError(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _context() -> Context:
    ctx = make_context(load_settings())
    # Release the pool when the command ends (in-process callers and tests run many commands).
    click.get_current_context().call_on_close(ctx.db.dispose)
    return ctx


def _date(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{flag} must be YYYY-MM-DD, got {value!r}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """SMS check-ins for patients, alerts for their care team."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Alembic announces every plugin it loads at INFO; only its migration lines matter here.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from checkin import audit

    click.get_current_context().with_resource(audit.origin(**_origin()))


# --- database ---------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from checkin.migrate import upgrade

    settings = load_settings()
    upgrade(settings.database_url)
    click.echo("database is up to date")


# --- processes --------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
@friendly_errors
def serve(host: str, port: int, workers: int) -> None:
    """Serve the web app (webhooks, /healthz) under gunicorn."""
    from checkin.server import serve_gunicorn

    load_settings().require_web()  # fail before forking, with the variable's name
    serve_gunicorn(host, port, workers)


@cli.command()
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@friendly_errors
def scheduler(once: bool) -> None:
    """Run the scheduler worker (safe to run several on PostgreSQL)."""
    from checkin import scheduler as worker

    ctx = _context()
    if once:
        click.echo(worker.tick(ctx))
        return
    if not ctx.db.is_postgres:
        logging.getLogger(__name__).info("SQLite: run exactly one scheduler process")
    worker.run(ctx)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@friendly_errors
def demo(host: str, port: int) -> None:
    """One process: SQLite, console SMS, web + scheduler, demo data."""
    from checkin.demo import run_demo

    run_demo(host, port)


# --- patients ---------------------------------------------------------------------------


@cli.group()
def patients() -> None:
    """Enrol, import, pause and resume patients."""


@patients.command("add")
@click.option("--phone", required=True)
@click.option("--name", required=True)
@click.option("--timezone", required=True, help="IANA name, e.g. America/New_York")
@click.option("--language", default="en", show_default=True, type=click.Choice(["en", "es"]))
@friendly_errors
def patients_add(phone: str, name: str, timezone: str, language: str) -> None:
    """Enrol a patient who gave consent to staff, and send the welcome text."""
    from checkin import outbox
    from checkin.patients import NewPatient, enrol

    ctx = _context()
    with ctx.db.session() as session:
        patient = enrol(
            session,
            NewPatient(phone, name, timezone, language),
            ctx.clock(),
            actor=_actor(),
            sender=ctx.settings.sender,
        )
        welcome = session.scalar(_welcome_id(patient.id))
        phone = patient.phone
    status = outbox.deliver(ctx, welcome) if welcome else "not sent"
    click.echo(f"enrolled {phone}; welcome text {status}")


def _welcome_id(patient_id: int) -> Any:
    from sqlalchemy import select

    from checkin.models import Message

    return select(Message.id).where(Message.patient_id == patient_id, Message.purpose == "welcome")


@patients.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--no-welcome", is_flag=True, help="Patients already consented and welcomed.")
@friendly_errors
def patients_import(file: str, no_welcome: bool) -> None:
    """Import phone,name,timezone[,language] rows: all or nothing."""
    from checkin import outbox
    from checkin.patients import enrol_all, find, read_csv

    with open(file, encoding="utf-8-sig") as handle:
        text = handle.read()
    ctx = _context()
    with ctx.db.session() as session:
        good, errors = read_csv(text, exists=lambda phone: find(session, phone) is not None)
        if errors:
            for line in errors:
                click.echo(line, err=True)
            raise UserError(f"{file}: {len(errors)} bad row(s); nothing was imported")
        welcomes = enrol_all(
            session,
            good,
            ctx.clock(),
            actor=_actor(),
            sender=ctx.settings.sender,
            welcome=not no_welcome,
        )
    for message_id in welcomes:
        outbox.deliver(ctx, message_id)
    click.echo(f"imported {len(good)} patient(s); {len(welcomes)} welcome text(s)")


@patients.command("pause")
@click.option("--phone", required=True)
@click.option("--until", "until", required=True, help="YYYY-MM-DD, the last paused day")
@friendly_errors
def patients_pause(phone: str, until: str) -> None:
    """Send nothing to a patient up to and including a date."""
    from checkin.patients import get, pause

    ctx = _context()
    with ctx.db.session() as session:
        patient = get(session, phone)
        pause(session, patient, _date(until, "--until"), ctx.clock(), actor=_actor())
        click.echo(f"paused {patient.phone} until {until}")


@patients.command("resume")
@click.option("--phone", required=True)
@friendly_errors
def patients_resume(phone: str) -> None:
    """End a pause now."""
    from checkin.patients import get, resume

    ctx = _context()
    with ctx.db.session() as session:
        patient = get(session, phone)
        resume(session, patient, ctx.clock(), actor=_actor())
        click.echo(f"resumed {patient.phone} ({patient.status})")


# --- staff ------------------------------------------------------------------------------


@cli.group()
def staff() -> None:
    """Staff accounts."""


@staff.command("add")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "clinician"]))
@click.option("--phone")
@click.option("--on-call", is_flag=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    required=True,
    help="Read the password from standard input (never from the command line).",
)
@friendly_errors
def staff_add(
    email: str, name: str, role: str, phone: str | None, on_call: bool, password_stdin: bool
) -> None:
    """Add a staff member; the password is read from stdin."""
    from checkin.staff import add

    del password_stdin
    if on_call and not phone:
        raise UserError("--on-call needs --phone: alerts are texted to on-call staff")
    password = sys.stdin.readline().rstrip("\r\n")
    ctx = _context()
    with ctx.db.session() as session:
        member = add(
            session,
            email=email,
            name=name,
            role=role,
            phone=phone,
            on_call=on_call,
            password=password,
            now=ctx.clock(),
            actor=_actor(),
        )
        click.echo(f"added {member.role} {member.email}" + (" (on call)" if on_call else ""))


# --- check-ins --------------------------------------------------------------------------


@cli.command("send-now")
@click.option("--phone", required=True)
@click.option("--flow", required=True)
@friendly_errors
def send_now(phone: str, flow: str) -> None:
    """Start a check-in for one patient now (quiet hours still apply)."""
    from checkin.sendnow import start_now

    ctx = _context()
    click.echo(start_now(ctx, phone, flow, actor=_actor()))


@cli.command("text")
@click.option("--phone", required=True, help="The patient's number (the sender).")
@click.argument("body")
@friendly_errors
def text(phone: str, body: str) -> None:
    """Play the patient: send BODY to the running app as a signed Twilio webhook."""
    from checkin.phones import normalise_phone
    from checkin.simulate import SimulationError, send_text

    try:
        replies = send_text(load_settings(), normalise_phone(phone), body)
    except SimulationError as exc:
        raise UserError(str(exc)) from None
    for reply in replies:
        click.echo(reply)
    if not replies:
        click.echo("(no reply)")


@cli.group()
def infusions() -> None:
    """Treatment events that infusion-relative check-ins follow."""


@infusions.command("add")
@click.option("--phone", required=True)
@click.option("--date", "on", required=True, help="YYYY-MM-DD")
@friendly_errors
def infusions_add(phone: str, on: str) -> None:
    """Record an infusion."""
    from checkin.patients import add_infusion, get

    ctx = _context()
    with ctx.db.session() as session:
        patient = get(session, phone)
        add_infusion(session, patient, _date(on, "--date"), ctx.clock(), actor=_actor())
        click.echo(f"recorded infusion on {on} for {patient.phone}")


# --- schedules --------------------------------------------------------------------------


@cli.group()
def schedules() -> None:
    """What is asked, when."""


@schedules.command("add")
@click.option("--flow", required=True)
@click.option("--time", "at", required=True, help="HH:MM local; several: 09:00,18:00")
@click.option("--days", help="e.g. mon,wed,fri (default every day)")
@click.option("--phone", help="One patient; without it, every enrolled patient")
@click.option("--after-infusion", help="Days after each infusion instead of weekdays: 1,3,7,14")
@click.option("--start", "start", help="YYYY-MM-DD, first local day (default today)")
@click.option("--end", "end", help="YYYY-MM-DD, last local day (default open-ended)")
@friendly_errors
def schedules_add(
    flow: str,
    at: str,
    days: str | None,
    phone: str | None,
    after_infusion: str | None,
    start: str | None,
    end: str | None,
) -> None:
    """Add a schedule; a time inside quiet hours is refused."""
    from checkin import schedules as sched
    from checkin.patients import get
    from checkin.programs import default_program

    if after_infusion and days:
        raise UserError("--days and --after-infusion do not go together: pick one")
    times = [sched.parse_time(part) for part in at.split(",") if part.strip()]
    ctx = _context()
    with ctx.db.session() as session:
        now = ctx.clock()
        patient = get(session, phone) if phone else None
        program = default_program(session, now)
        added = [
            sched.add(
                session,
                program,
                flow=flow,
                local_time=local_time,
                days=sched.parse_days(days),
                patient=patient,
                now=now,
                actor=_actor(),
                start_date=_date(start, "--start") if start else None,
                end_date=_date(end, "--end") if end else None,
                day_offsets=after_infusion,
            )
            for local_time in times
        ]
        who = patient.phone if patient else "every enrolled patient"
        for schedule in added:
            when = (
                f"days {schedule.day_offsets} after each infusion"
                if schedule.kind == "infusion"
                else f"on {schedule.days}"
            )
            click.echo(
                f"schedule {schedule.id}: {flow} at {schedule.local_time:%H:%M} {when} for {who}"
            )


@schedules.command("list")
@friendly_errors
def schedules_list() -> None:
    """List schedules as CSV."""
    from sqlalchemy import select

    from checkin.models import Patient, Schedule

    ctx = _context()
    click.echo("id,flow,local_time,days,after_infusion,start,end,phone,active")
    with ctx.db.session() as session:
        stmt = select(Schedule, Patient.phone).outerjoin(Patient, Patient.id == Schedule.patient_id)
        for s, phone in session.execute(stmt.order_by(Schedule.id)):
            days = "" if s.kind == "infusion" else s.days.replace(",", " ")
            offsets = (s.day_offsets or "").replace(",", " ")
            click.echo(
                f"{s.id},{s.flow},{s.local_time:%H:%M},{days},{offsets},"
                f"{s.start_date or ''},{s.end_date or ''},{phone or 'all'},{s.active}"
            )


@schedules.command("remove")
@click.argument("schedule_id", type=int)
@friendly_errors
def schedules_remove(schedule_id: int) -> None:
    """Deactivate a schedule (its history stays)."""
    from checkin import schedules as sched
    from checkin.models import Schedule

    ctx = _context()
    with ctx.db.session() as session:
        schedule = session.get(Schedule, schedule_id)
        if schedule is None:
            raise UserError(f"no schedule {schedule_id}")
        sched.retire(session, schedule, ctx.clock(), actor=_actor())
        click.echo(f"schedule {schedule_id} removed")


@schedules.command("preview")
@click.option("--phone", required=True)
@click.option("--from", "start", help="YYYY-MM-DD in the patient's zone (default today)")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366))
@friendly_errors
def schedules_preview(phone: str, start: str | None, days: int) -> None:
    """CSV of the sends to come: phone,flow,local_time,utc_time."""
    from checkin import schedules as sched
    from checkin.patients import get, program_of

    ctx = _context()
    with ctx.db.session() as session:
        patient = get(session, phone)
        zone = ZoneInfo(patient.timezone)
        now = ctx.clock()
        begin = (
            datetime.combine(_date(start, "--from"), datetime.min.time(), tzinfo=zone)
            if start
            else now
        )
        sends = sched.preview(
            patient,
            program_of(session, patient),
            sched.for_patient(session, patient),
            begin,
            days,
            sched.infusions_of(session, patient.id),
        )
        click.echo("phone,flow,local_time,utc_time")
        for send in sends:
            click.echo(
                f"{patient.phone},{send.flow},{send.local_time.isoformat()},"
                f"{send.utc_time.astimezone(ZoneInfo('UTC')).isoformat()}"
            )


# --- alerts -----------------------------------------------------------------------------


@cli.group("alerts")
def alerts_group() -> None:
    """The alert inbox: list, acknowledge, resolve."""


@alerts_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "acknowledged", "resolved", "all"]),
    default="open",
    show_default=True,
)
@friendly_errors
def alerts_list(status: str) -> None:
    """Alerts as CSV, most severe then oldest first."""
    from sqlalchemy import select

    from checkin.alerts import SEVERITY_RANK
    from checkin.models import Alert

    ctx = _context()
    with ctx.db.session() as session:
        stmt = select(Alert) if status == "all" else select(Alert).where(Alert.status == status)
        rows = sorted(
            session.scalars(stmt), key=lambda a: (-SEVERITY_RANK[a.severity], a.created_at)
        )
        click.echo("ref,kind,severity,status,created_at,evidence_items")
        for a in rows:
            click.echo(
                f"{a.ref},{a.kind},{a.severity},{a.status},{a.created_at.isoformat()},"
                f"{len(a.evidence)}"
            )


def _staff_member(session: Any, email: str) -> Any:
    from sqlalchemy import select

    from checkin.models import StaffUser

    member = session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if member is None:
        raise UserError(f"no staff member with email {email}")
    return member


@alerts_group.command("ack")
@click.argument("ref")
@click.option("--email", required=True, help="Who acknowledges (a staff email)")
@friendly_errors
def alerts_ack(ref: str, email: str) -> None:
    """Acknowledge an alert: you are looking at it."""
    from checkin import alerts

    ctx = _context()
    with ctx.db.session() as session:
        alert = alerts.by_ref(session, ref)
        alerts.acknowledge(session, alert, _staff_member(session, email), ctx.clock(), via="cli")
        click.echo(f"acknowledged {alert.ref}")


@alerts_group.command("resolve")
@click.argument("ref")
@click.option("--email", required=True, help="Who resolves (a staff email)")
@click.option("--note", required=True, help="What was done")
@friendly_errors
def alerts_resolve(ref: str, email: str, note: str) -> None:
    """Resolve an alert with a note."""
    from checkin import alerts

    ctx = _context()
    with ctx.db.session() as session:
        alert = alerts.by_ref(session, ref)
        alerts.resolve(session, alert, _staff_member(session, email), note, ctx.clock(), via="cli")
        click.echo(f"resolved {alert.ref}")


# --- trend rules ------------------------------------------------------------------------


@cli.group()
def rules() -> None:
    """Trend-rule settings: program-wide, or for one patient (see docs/clinical-defaults.md)."""


@rules.command("show")
@click.option("--phone", help="One patient's effective settings (program and own layered)")
@friendly_errors
def rules_show(phone: str | None) -> None:
    """Print the settings in force, as JSON."""
    import json

    from checkin.evaluation import params_for
    from checkin.patients import get
    from checkin.programs import default_program
    from checkin.trends import RuleParams

    ctx = _context()
    with ctx.db.session() as session:
        if phone:
            params = params_for(session, get(session, phone))
        else:
            program = default_program(session, ctx.clock())
            params = RuleParams.from_overrides(program.rule_params or {})
        click.echo(json.dumps(params.to_dict(), indent=2, sort_keys=True))


@rules.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--phone", help="Set it for one patient only")
@friendly_errors
def rules_set(key: str, value: str, phone: str | None) -> None:
    """Set one parameter, e.g. `rules set worsening_points 3` (VALUE is JSON; `null` clears)."""
    import json

    from checkin import audit
    from checkin.patients import get
    from checkin.programs import default_program
    from checkin.trends import RuleParams

    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    ctx = _context()
    with ctx.db.session() as session:
        now = ctx.clock()
        program = default_program(session, now)
        target = get(session, phone) if phone else program
        layer = dict(target.rule_params or {})
        if parsed is None and key in layer:
            del layer[key]
        else:
            layer[key] = parsed
        layers = [program.rule_params or {}, layer] if phone else [layer]
        RuleParams.from_overrides(*layers)  # refuses an unknown key or a bad value, one line
        target.rule_params = layer
        where = f"patient:{target.id}" if phone else f"program:{program.id}"
        audit.record(session, now, _actor(), "rules.set", where, key=key, value=parsed)
        click.echo(f"{key} = {json.dumps(parsed)} for {phone or 'the whole program'}")


# --- programs ---------------------------------------------------------------------------


@cli.group()
def programs() -> None:
    """The clinic's own settings."""


@programs.command("texting-hours")
@click.option("--from", "start", required=True, help="HH:MM, no earlier than 08:00")
@click.option("--until", "until", required=True, help="HH:MM, no later than 21:00")
@friendly_errors
def programs_texting_hours(start: str, until: str) -> None:
    """Narrow the hours scheduled texts may go out (never wider than 08:00-21:00)."""
    from checkin import audit
    from checkin.programs import default_program, set_texting_hours
    from checkin.schedules import parse_time

    ctx = _context()
    with ctx.db.session() as session:
        now = ctx.clock()
        program = default_program(session, now)
        set_texting_hours(program, parse_time(start), parse_time(until))
        audit.record(
            session,
            now,
            _actor(),
            "program.texting_hours",
            f"program:{program.id}",
            start=start,
            until=until,
        )
        click.echo(f"{program.name}: scheduled texts go out from {start} until {until} local")


# --- export -----------------------------------------------------------------------------


@cli.command("export")
@click.argument(
    "kind", type=click.Choice(["observations", "alerts", "messages", "checkins", "fhir"])
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    help="csv (the default) or json; fhir is always JSON",
)
@click.option("--status", help="Only rows in this status, e.g. messages --status failed")
@click.option("--from", "start", help="YYYY-MM-DD, the first day included (UTC)")
@click.option("--to", "end", help="YYYY-MM-DD, the last day included (UTC)")
@click.option("--phone", help="Only this patient (E.164)")
@click.option(
    "--deidentify",
    is_flag=True,
    help="No names, numbers or free text; pseudonyms and shifted dates (docs/exports.md)",
)
@friendly_errors
def export_cmd(
    kind: str,
    fmt: str | None,
    status: str | None,
    start: str | None,
    end: str | None,
    phone: str | None,
    deidentify: bool,
) -> None:
    """Write observations, alerts, messages, check-ins or a FHIR R4 Bundle to stdout.

    Every program's data unless --phone names one patient. Audited before anything is
    written, so nothing leaves without its audit row.
    """
    from checkin import export as exporter
    from checkin.patients import get

    ctx = _context()
    with ctx.db.session() as session:
        patient = get(session, phone) if phone else None
        filters = exporter.Filters(
            _date(start, "--from") if start else None,
            _date(end, "--to") if end else None,
            patient_id=patient.id if patient else None,
            status=status,
        )
        if kind == "fhir":
            fmt = _fhir_format(fmt, filters, deidentify)
            text, count = _fhir_bundle(session, ctx, patient, filters)
        else:
            fmt = fmt or "csv"
            data = exporter.build(session, kind, filters, deidentify=deidentify)
            text, count = exporter.render(data, fmt), len(data.rows)
        exporter.record(
            session,
            ctx.clock(),
            _actor(),
            kind=kind,
            fmt=fmt,
            filters=filters,
            deidentified=deidentify,
            rows=count,
        )
    click.echo(text, nl=False)


def _fhir_format(fmt: str | None, filters: Filters, deidentify: bool) -> str:
    if fmt not in (None, "json"):
        raise UserError("export fhir writes JSON only (leave out --format)")
    if deidentify:
        raise UserError(
            "export fhir is identified (it carries each Patient); "
            "use --deidentify with csv or json exports"
        )
    if filters.status is not None:
        raise UserError("export fhir takes no --status")
    return "json"


def _fhir_bundle(
    session: Session, ctx: Context, patient: Patient | None, filters: Filters
) -> tuple[str, int]:
    """The Bundle as JSON, and its number of resources (the audit row's count)."""
    import json

    from checkin import fhir

    url, since, before, now = ctx.settings.public_url, filters.since, filters.before, ctx.clock()
    if patient is not None:
        data = fhir.patient_bundle(session, patient, url, since=since, before=before, timestamp=now)
    else:
        data = fhir.all_patients_bundle(
            session, None, url, since=since, before=before, timestamp=now
        )
    return json.dumps(data, indent=2) + "\n", len(data["entry"])


def main() -> None:
    cli(prog_name="checkin")


from checkin.api.cli import tokens  # noqa: E402  (API tokens; a module of their own)

cli.add_command(tokens)
