"""The JSON REST API at /api/v1, for integrations (an EHR, a clinic's reporting), with
personal API tokens.

The request and response schemas are pydantic models and the OpenAPI 3.1 document is
generated from them by spectree (`checkin.api.spec`). Why spectree with pydantic rather than
flask-smorest (marshmallow) or flask-openapi3:
- it decorates views on a plain Flask Blueprint, so the staff app keeps its Flask class
  (flask-openapi3 needs its own `OpenAPI` app class and blueprints registered through it);
- it installs no app-wide error handlers (flask-smorest's `Api` turns every HTTPException of
  the whole app into JSON, which would change the staff pages' error pages);
- spectree and pydantic ship type hints (py.typed), so `mypy --strict` checks the views and
  models with no override (flask-smorest ships none, and its decorators would be untyped);
- the same models validate requests (a mismatch is a JSON 400 naming the field) and responses.

Authorisation is the dashboard's: the token's owner's role and program (checkin.api.auth,
checkin.api.scope); every read of patient data and every change is audited like a page view.

The blueprint and its views live in checkin.api.v1, so that importing the token functions
(checkin.api.tokens) or `checkin tokens` (checkin.api.cli) does not load spectree, pydantic
and the views.
"""
