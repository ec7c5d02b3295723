"""Schemathesis against the served OpenAPI document: every operation gets generated requests
with an admin's token on a seeded world (valid ones, then ones the document forbids), and
every answer must be a non-5xx with a documented status code, content type and a body that
matches the declared schema.

schemathesis' Python API drives Hypothesis directly here (one strategy per operation):
its pytest plugin does not run under pytest 9 yet.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from checkin.context import Context
from tests.conftest import World
from tests.test_api import Tokens, seed

# Not negative_data_rejection: in a query string every value is text, so a "wrong type" it
# generates (q=[False]) arrives as a valid one (q=false) and the check cries wolf.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Examples per operation and mode: enough to reach every parameter's edges, small enough
# that the run stays well under a minute per database.
EXAMPLES = 25


# schemathesis loads its rate limiter on the first call, and that import looks for modules
# that do not exist here (_winapi); pygal's import hook warns about every such look-up.
@pytest.mark.filterwarnings("ignore:PluginImportFixer.find_spec:ImportWarning")
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_the_openapi_document_says(
    app: Flask, ctx: Context, world: World, mode: GenerationMode
) -> None:
    tokens: Tokens = seed(ctx, world)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {tokens.carol}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        answers_as_documented()
