"""Admin pages: enrol and import patients, schedules, staff and the on-call roster, alert-rule
thresholds, and the audit log. Admins only: the blueprint refuses everyone else before any
view runs, so a view that forgot its decorator is still closed.

Everything is scoped to the signed-in admin's own program.
"""

from __future__ import annotations

from typing import cast

from flask import Blueprint, abort, render_template
from flask_login import current_user
from werkzeug.wrappers import Response

from checkin.web.auth import login_manager

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def admins_only() -> Response | None:
    if not current_user.is_authenticated:
        return cast(Response, login_manager.unauthorized())
    if current_user.role != "admin":
        abort(403)
    return None


@bp.get("")
def index() -> str:
    return render_template("admin/index.html")


# The pages register their routes on `bp` (imported last: they import `bp` from here).
from checkin.web.admin import audit_log, enrolment, rules, schedules, staff  # noqa: E402

__all__ = ["audit_log", "bp", "enrolment", "rules", "schedules", "staff"]

# The alert webhook pages, on a line of their own (several people add pages here).
from checkin.web.admin import webhooks  # noqa: E402, F401

# The export page, on a line of its own: the `__all__` line between keeps the import sorter
# from merging it into the webhooks line.
__all__ += ["exports"]
from checkin.web.admin import exports  # noqa: E402
