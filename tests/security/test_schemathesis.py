"""Schemathesis against the API's own OpenAPI document: no input makes the server answer 5xx.

Every operation in ``/openapi.json`` is generated from its schema (positive and negative cases,
plus schemathesis' boundary "coverage" cases such as the largest integers and empty strings),
sent with an administrator's token (so scope does not stop the request before the interesting
code) to the real app over a seeded database, on SQLite and on PostgreSQL.

Bounded on purpose (``MAX_EXAMPLES`` per operation, derandomized so a failure reproduces), so the
whole module stays under two minutes per database.

Checked: ``not_a_server_error`` only. The response-conformance checks would all fail on the
documented shape alone: the API answers errors as ``{"error": code, "detail": message}``
(``server.errors``), which the OpenAPI document does not declare (it lists FastAPI's default 422
body and no 4xx at all). Documenting the error responses is a change to the document, not a
security property; until then conformance is not asserted here.

Nothing is excluded: every operation of the document is generated. Not covered by this module,
because the document does not contain them: the web pages under ``/web`` (the web sub-app has
no OpenAPI document; ``test_injection`` and ``test_authorization`` send hostile input there)
and ``/`` (a redirect, ``include_in_schema=False``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from server.app import create_app
from server.config import ServerSettings
from tests.security.conftest import SECRET, Realm

MAX_EXAMPLES = 10

# The document only: building the app touches no database (that happens in its lifespan).
_DOCUMENT = create_app(
    ServerSettings(data_dir=Path("/nonexistent"), database_url="sqlite://", secret_key=SecretStr(SECRET))
).openapi()
SCHEMA = schemathesis.openapi.from_dict(_DOCUMENT)
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture(scope="module")
def served(realm: Realm) -> FastAPI:
    """The app schemathesis calls, over the realm's database.

    A second app rather than the realm's own: schemathesis starts an app's lifespan itself and
    keeps it for the rest of the process, which must not replace the realm app's engine.
    """
    return create_app(realm.settings, clock=realm.clock)


def test_the_document_lists_every_api_route() -> None:
    """What schemathesis generates from is the whole API, so "no 5xx" means every endpoint."""
    paths = set(_DOCUMENT["paths"])
    assert "/api/v1/taps" in paths
    assert "/api/v1/transfers/{transfer_id}/transitions" in paths
    assert all(path.startswith("/api/v1/") for path in paths)
    operations = sum(len(methods) for methods in _DOCUMENT["paths"].values())
    assert operations >= 33


@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_a_server_error(case: schemathesis.Case, served: FastAPI, realm: Realm) -> None:
    case.call_and_validate(app=served, headers=realm.admin_api, checks=[not_a_server_error])
