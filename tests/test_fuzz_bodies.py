"""Raw bodies from hypothesis into the JSON, XML, text and multipart parsers: never a 500, never a dropped connection.

Bounded for CI (FUZZ_EXAMPLES per parser, derandomized); scripts/fuzz.sh runs the long version.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.conftest import LiveServer, reset_with_demo
from tests.support.demo import ALICE
from tests.support.web import web_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8")) * 5
API = "/api/messageConversations"
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
json_keys = st.sampled_from(["subject", "text", "users", "userGroups", "organisationUnits", "attachments", "id", "username", "password"])
json_like = st.dictionaries(json_keys, json_values, max_size=6)
nasty = st.sampled_from([b"9" * 5000, b"[" * 100_000, b'{"a":' * 50_000, b"1e999", b"NaN", b"\xef\xbb\xbf{}", b"\x00", b'"\\ud800"', b"-0", b"{}" * 1000])
raw_json = st.one_of(json_like.map(lambda v: httpx.Request("POST", "/", json=v).content), st.binary(max_size=300), nasty,
                     st.tuples(nasty, nasty).map(lambda p: b'{"subject": ' + p[0] + b', "text": ' + p[1] + b"}"))
xml_parts = st.sampled_from([b"<message>", b"</message>", b"<subject>", b"</subject>", b"<text>x</text>", b"<users><user id='" + ALICE.encode() + b"'/></users>",
                             b"<!DOCTYPE m [<!ENTITY e 'x'>]>", b"&e;", b"<?xml version='1.0'?>", b"<![CDATA[", b"]]>", b"\x00", b"\xff", b"<a xmlns='urn:x'>", b"</a>", b"&#0;", b"&#xD800;"])
raw_xml = st.one_of(st.lists(xml_parts | st.binary(max_size=8), max_size=12).map(b"".join), st.binary(max_size=200))
raw_text = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
boundary = b"fuzzboundary"
part = st.tuples(st.sampled_from([b"file", b"domain", b"x", b""]), st.binary(max_size=100), st.sampled_from([b"a.txt", b"", b"..\\x", b"\x00", b'"']))
raw_multipart = st.one_of(
    st.binary(max_size=300),
    st.lists(part, max_size=3).map(lambda parts: b"".join(
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="' + n + b'"; filename="' + f + b'"\r\nContent-Type: text/plain\r\n\r\n' + c + b"\r\n" for n, c, f in parts
    ) + b"--" + boundary + b"--\r\n"),
)


@pytest.fixture(scope="module")
def fuzzed(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald with the demo data and an apps folder of its own."""
    for live in web_server(pg_url, pg_engine, tmp_path_factory):
        reset_with_demo(live)
        yield live
        live.close_clients()


def _conversation(client: httpx.Client) -> str:
    response = client.post(API, json={"subject": "Fuzz", "text": "Target", "users": [{"id": ALICE}]})
    assert response.status_code == 201, response.text
    return response.headers["location"].rsplit("/", 1)[-1]


def _send_all(client: httpx.Client, targets: list[str], content_type: str, body: bytes, found: list[str]) -> None:
    for path in targets:
        try:
            response = client.post(path, content=body, headers={"Content-Type": content_type})
        except httpx.HTTPError as exc:
            found.append(f"{path} {body[:60]!r}: {type(exc).__name__}")
            continue
        if response.status_code >= 500:
            found.append(f"{path} {body[:60]!r} -> {response.status_code} {response.text[:120]}")


def _fuzz(fuzzed: LiveServer, strategy: Any, content_type: str, targets: list[str]) -> int:
    client = fuzzed.client()
    found: list[str] = []
    cases = [0]

    @FUZZ
    @given(strategy)
    def run(body: bytes) -> None:
        cases[0] += 1
        _send_all(client, targets, content_type, body, found)

    run()
    assert found == [], found[:10]
    return cases[0] * len(targets)


def test_the_json_parsers_never_answer_500(fuzzed: LiveServer) -> None:
    uid = _conversation(fuzzed.client())
    targets = [API, f"{API}/read", f"{API}/{uid}/recipients", "/api/auth/login", "/api/metadata",
               "/api/configuration/feedbackRecipients", f"{API}/feedback", "/api/deliveries/requeue"]
    print("json requests:", _fuzz(fuzzed, raw_json, "application/json", targets))


def test_the_xml_parser_never_answers_500(fuzzed: LiveServer) -> None:
    uid = _conversation(fuzzed.client())
    print("xml requests:", _fuzz(fuzzed, raw_xml, "application/xml", [API, f"{API}/{uid}/recipients", "/api/metadata"]))


def test_the_text_parsers_never_answer_500(fuzzed: LiveServer) -> None:
    uid = _conversation(fuzzed.client())
    targets = [f"{API}/{uid}", "/api/userSettings/keyUiLocale", "/api/configuration/feedbackRecipients", f"{API}/feedback"]
    print("text requests:", _fuzz(fuzzed, raw_text, "text/plain", targets))


def test_the_multipart_parser_never_answers_500(fuzzed: LiveServer) -> None:
    targets = ["/api/fileResources?domain=MESSAGE_ATTACHMENT", f"{API}/attachments", "/api/apps", "/dhis-web-commons-security/login.action"]
    print("multipart requests:", _fuzz(fuzzed, raw_multipart, f"multipart/form-data; boundary={boundary.decode()}", targets))
