"""Schemathesis against Herald's own OpenAPI document, as admin, every operation: no 500, no dropped connection.

Bounded for CI (a few examples per operation, derandomized); scripts/fuzz.sh runs the long version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine

from tests.conftest import LiveServer, reset_with_demo
from tests.support.web import web_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
ADMIN = httpx.BasicAuth("admin", "district")._auth_header  # the header value httpx would send
# Operations that would end the fuzzer's own access or wipe what other operations fuzz.
SPARED = {("POST", "/api/auth/logout"), ("GET", "/dhis-web-commons-security/logout.action")}


@pytest.fixture(scope="module")
def fuzzed(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald with the demo data and an apps folder of its own (the fuzzer installs apps)."""
    for live in web_server(pg_url, pg_engine, tmp_path_factory):
        reset_with_demo(live)
        yield live
        live.close_clients()


@pytest.fixture(scope="module")
def herald_schema(fuzzed: LiveServer) -> Any:
    """The document as the server serves it, pointed at the server."""
    return schemathesis.openapi.from_url(f"{fuzzed.url}/api/openapi.json")


def _fuzz(operation: Any, session: requests.Session, found: list[str], cases: list[int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def run(case: Any) -> None:
        cases[0] += 1
        headers = {**(case.headers or {}), "Authorization": ADMIN}
        try:
            response = case.call(session=session, headers=headers, timeout=30)
        except Exception as exc:  # a dropped or reset connection
            found.append(f"{case.method} {case.formatted_path}: {type(exc).__name__}: {exc}")
            return
        if response.status_code >= 500:
            found.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

    run()


def test_no_operation_answers_500_or_drops_the_connection(herald_schema: Any) -> None:
    found: list[str] = []
    cases = [0]
    operations = 0
    with requests.Session() as session:  # one pool, closed at the end (a session per call leaks sockets)
        for result in herald_schema.get_all_operations():
            operation = result.ok()
            if (operation.method.upper(), operation.path) in SPARED:
                continue
            operations += 1
            _fuzz(operation, session, found, cases)
    print(f"schemathesis: {operations} operations, {cases[0]} cases, {len(found)} failures")
    assert operations > 50
    assert found == []
