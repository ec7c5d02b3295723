"""audit log per program and append-only; how and when consent was given

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 13:20:21.090213

- audit_events.program_id, filled in for existing rows from their target, so each clinic's
  admins see their own log in the dashboard.
- Triggers that refuse UPDATE and DELETE on audit_events (PostgreSQL and SQLite): the log is
  append-only in the database itself, not only by the app's good manners. A later migration
  that rebuilds audit_events in SQLite batch mode must create them again (see TRIGGERS_SQLITE).
- consent_events.method and .given_at: how and when the patient agreed (the text shown is
  already `detail`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import checkin.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSENT_METHODS = ("in_person", "phone_call", "written_form", "electronic_form")
APPEND_ONLY = "audit_events is append-only"

# Existing rows: the program of the patient, staff member, schedule or alert they name.
BACKFILL = (
    "UPDATE audit_events SET program_id = (SELECT p.program_id FROM patients p "
    "WHERE 'patient:' || p.id = audit_events.target) WHERE target LIKE 'patient:%'",
    "UPDATE audit_events SET program_id = (SELECT s.program_id FROM staff_users s "
    "WHERE 'staff:' || s.id = audit_events.target) WHERE target LIKE 'staff:%'",
    "UPDATE audit_events SET program_id = (SELECT s.program_id FROM schedules s "
    "WHERE 'schedule:' || s.id = audit_events.target) WHERE target LIKE 'schedule:%'",
    "UPDATE audit_events SET program_id = (SELECT p.program_id FROM alerts a "
    "JOIN patients p ON p.id = a.patient_id WHERE 'alert:' || a.ref = audit_events.target) "
    "WHERE target LIKE 'alert:%'",
    "UPDATE audit_events SET program_id = (SELECT p.id FROM programs p "
    "WHERE 'program:' || p.id = audit_events.target) WHERE target LIKE 'program:%'",
    "UPDATE audit_events SET program_id = (SELECT s.program_id FROM staff_users s "
    "WHERE s.email = audit_events.target) WHERE action LIKE 'auth.%' AND target NOT LIKE '%:%'",
)

TRIGGERS_SQLITE = (
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END",
)
TRIGGERS_POSTGRES = (
    "CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("program_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_audit_events_program_id"), ["program_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_audit_events_program_id_programs"), "programs", ["program_id"], ["id"]
        )

    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("method", sa.String(length=40), nullable=True))
        batch_op.add_column(
            sa.Column("given_at", checkin.db.UTCDateTime(timezone=True), nullable=True)
        )
        methods = ", ".join(f"'{m}'" for m in CONSENT_METHODS)
        batch_op.create_check_constraint("method", f"method IS NULL OR method IN ({methods})")

    for statement in BACKFILL:
        op.execute(statement)
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in TRIGGERS_POSTGRES if postgres else TRIGGERS_SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER audit_events_no_update")
        op.execute("DROP TRIGGER audit_events_no_delete")

    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_constraint("method", type_="check")
        batch_op.drop_column("given_at")
        batch_op.drop_column("method")

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_audit_events_program_id_programs"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_audit_events_program_id"))
        batch_op.drop_column("program_id")
