"""Each input that once answered 500 (issue 9's table), now a 4xx WebMessage that writes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from messaging.jsonbounds import JsonBoundsError, load_json
from tests.conftest import LiveServer
from tests.support.web import fresh, web_server

API = "/api/messageConversations"
JSON = {"Content-Type": "application/json"}
HUGE_INT = "9223372036854775808"  # 2**63: one beyond a 64-bit integer
NEGATIVE_HUGE_INT = "-9223372036854775809"
DIGITS_5000 = "9" * 5000
pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")


def assert_web_message(response: httpx.Response, status: int) -> str:
    """A DHIS2 WebMessage with this status; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["httpStatusCode"] == status
    assert body["status"] == "ERROR"
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


# ---------------------------------------------------------------- integers beyond 64 bits


@pytest.mark.parametrize("value", [HUGE_INT, NEGATIVE_HUGE_INT, "1" + "0" * 40])
def test_a_message_count_filter_beyond_64_bits_is_a_400(any_server: LiveServer, value: str) -> None:
    response = any_server.client().get(API, params={"filter": f"messageCount:eq:{value}"})
    assert "messageCount" in assert_web_message(response, 400)


@pytest.mark.parametrize(
    ("path", "prop"),
    [("/api/userGroups", "users"), ("/api/organisationUnits", "users"), ("/api/organisationUnits", "level")],
)
def test_a_directory_integer_filter_beyond_64_bits_is_a_400(any_server: LiveServer, path: str, prop: str) -> None:
    response = any_server.client().get(path, params={"filter": f"{prop}:gte:{HUGE_INT}"})
    assert prop in assert_web_message(response, 400)


def test_a_64_bit_integer_filter_at_the_limit_still_works(any_server: LiveServer) -> None:
    response = any_server.client().get(API, params={"filter": "messageCount:lt:9223372036854775807"})
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------- comparisons on booleans


@pytest.mark.parametrize(
    ("path", "flt"),
    [(API, "read:gt:true"), (API, "followUp:lt:false"), (API, "read:ge:true"), ("/api/users", "disabled:gt:true")],
)
def test_a_comparison_on_a_boolean_is_a_400(any_server: LiveServer, path: str, flt: str) -> None:
    message = assert_web_message(any_server.client().get(path, params={"filter": flt}), 400)
    assert flt.split(":")[0] in message


@pytest.mark.parametrize("flt", ["read:eq:true", "read:ne:true", "read:!eq:false", "followUp:null", "followUp:!null"])
def test_booleans_still_take_eq_ne_and_null(any_server: LiveServer, flt: str) -> None:
    assert any_server.client().get(API, params={"filter": flt}).status_code == 200


# ---------------------------------------------------------------- dates out of range


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+14:00", "99999-01-01"],
)
def test_a_date_out_of_range_is_a_400(any_server: LiveServer, value: str) -> None:
    response = any_server.client().get(API, params={"filter": f"lastMessage:gt:{value}"})
    assert "lastMessage" in assert_web_message(response, 400)


def test_the_earliest_and_latest_dates_in_range_still_work(any_server: LiveServer) -> None:
    client = any_server.client()
    assert client.get(API, params={"filter": "lastMessage:gt:0001-01-01T00:00:00Z"}).status_code == 200
    assert client.get(API, params={"filter": "lastMessage:lt:9999-12-31T00:00:00"}).status_code == 200


# ---------------------------------------------------------------- JSON numbers of 5,000 digits


def test_a_5000_digit_number_in_an_anonymous_login_is_a_400(any_server: LiveServer) -> None:
    body = '{"username": ' + DIGITS_5000 + ', "password": "x"}'
    response = any_server.client(None).post("/api/auth/login", content=body, headers=JSON)
    assert "digits" in assert_web_message(response, 400)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (API, '{"subject": "x", "text": "y", "users": [{"id": ' + DIGITS_5000 + "}]}", 409),
        (API, '{"subject": ' + DIGITS_5000 + ".5e1}", 409),
        (f"{API}/read", "[" + DIGITS_5000 + "]", 400),
        ("/api/metadata", '{"users": [{"id": ' + DIGITS_5000 + "}]}", 409),
        ("/api/configuration/feedbackRecipients", '{"id": ' + DIGITS_5000 + "}", 400),
    ],
)
def test_a_5000_digit_number_in_any_json_body_is_refused(any_server: LiveServer, path: str, body: str, status: int) -> None:
    response = any_server.client().post(path, content=body, headers=JSON)
    assert "digits" in assert_web_message(response, status)


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity"])
def test_numbers_json_cannot_store_are_refused(any_server: LiveServer, number: str) -> None:
    response = any_server.client().post(API, content='{"subject": "x", "text": ' + number + "}", headers=JSON)
    assert_web_message(response, 409)


# ---------------------------------------------------------------- wrong JSON types in settings


@pytest.mark.parametrize(
    "body",
    ['{"id": {"id": "ZoHNWQajIoe"}}', '{"id": ["ZoHNWQajIoe"]}', '{"id": 1e300}', '{"id": 12}', '{"id": null}',
     '["ZoHNWQajIoe"]', "[]", '{"id": true}', DIGITS_5000, '"' + "x" * 5000 + '"'],
)
def test_feedback_recipients_of_the_wrong_json_type_are_refused(any_server: LiveServer, body: str) -> None:
    response = any_server.client().post("/api/configuration/feedbackRecipients", content=body, headers=JSON)
    assert response.status_code in (400, 404, 409), response.text
    assert_web_message(response, response.status_code)
    configured = any_server.client().get("/api/configuration").json()["feedbackRecipients"]
    assert configured["id"] != "ZoHNWQajIoe" or configured == {"id": ""} or "name" in configured


def test_feedback_recipients_as_a_plain_id_or_an_object_still_work(any_server: LiveServer) -> None:
    client = any_server.client()
    assert client.post("/api/configuration/feedbackRecipients", content="ZoHNWQajIoe").status_code == 204
    assert client.post("/api/configuration/feedbackRecipients", content='{"id": "ZoHNWQajIoe"}', headers=JSON).status_code == 204
    assert client.get("/api/configuration").json()["feedbackRecipients"]["id"] == "ZoHNWQajIoe"


# ---------------------------------------------------------------- keys longer than their column


@pytest.mark.parametrize("path", ["/api/userSettings", "/api/systemSettings"])
def test_a_settings_key_longer_than_its_column_is_a_400(any_server: LiveServer, path: str) -> None:
    client = any_server.client()
    key = "k" * 5000
    assert "key" in assert_web_message(client.post(f"{path}/{key}", params={"value": "x"}), 400).lower()
    assert client.get(f"{path}/{key}").status_code in (200, 404)


def test_a_settings_key_at_its_column_length_is_stored(any_server: LiveServer) -> None:
    client = any_server.client()
    key = "k" * 120
    assert client.post(f"/api/userSettings/{key}", params={"value": "x"}).status_code == 200
    assert client.get(f"/api/userSettings/{key}").text == "x"


# ---------------------------------------------------------------- an app manifest nested 100k deep


@pytest.fixture(scope="module")
def apps_server(pg_url: str, pg_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live Herald with an apps folder of its own."""
    yield from web_server(pg_url, pg_engine, tmp_path_factory)


@pytest.fixture
def apps_site(apps_server: LiveServer) -> Iterator[LiveServer]:
    """The apps server with fresh demo data and no apps."""
    yield from fresh(apps_server)


def _zip(manifest: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.webapp", manifest)
        archive.writestr("index.html", b"<!doctype html>")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "manifest",
    [
        b'{"name": "Deep", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"name": "Deep", "x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        b'{"name": "Digits", "version": ' + DIGITS_5000.encode() + b"}",
    ],
    ids=["lists", "objects", "digits"],
)
def test_an_app_manifest_beyond_the_json_bounds_is_refused(apps_site: LiveServer, manifest: bytes) -> None:
    client = apps_site.client()
    response = client.post("/api/apps", files={"file": ("app.zip", _zip(manifest), "application/zip")})
    assert response.status_code in (400, 409), response.text
    assert_web_message(response, response.status_code)
    assert client.get("/api/apps").json() == []
    assert not any(apps_site.settings.apps_dir.iterdir())


def test_an_ordinary_app_manifest_still_installs(apps_site: LiveServer) -> None:
    manifest = json.dumps({"name": "Plain", "version": "1.0.0", "nested": [[[{"a": 1}]]]}).encode()
    response = apps_site.client().post("/api/apps", files={"file": ("app.zip", _zip(manifest), "application/zip")})
    assert response.status_code in (200, 201, 204), response.text


# ---------------------------------------------------------------- found by the schema fuzzer


def test_a_nul_character_in_a_username_is_a_refused_login_not_a_500(any_server: LiveServer) -> None:
    form = any_server.client(None, follow_redirects=False).post(
        "/dhis-web-commons-security/login.action", data={"j_username": "ad\x00min", "j_password": "district"}
    )
    assert form.status_code < 500, form.text
    basic = any_server.client("ad\x00min").get("/api/me")
    assert_web_message(basic, 401)


# ---------------------------------------------------------------- found in review: digits int() refuses


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/userSettings/keySmsMaxLength?value=%C2%B2", 400),
        ("GET", "/api/validationResults/%C2%B2", 404),
        ("POST", f"/api/deliveries/{'9' * 4301}/requeue", 400),
        ("GET", "/api/deliveries?filter=id:eq:%C2%B2", 400),
        ("GET", "/api/ops/throughput?hours=%C2%B2", 400),
        ("GET", "/api/ops/deliveries?pageSize=%C2%B2", 400),
    ],
)
def test_superscript_digits_and_4301_digit_numbers_are_refused_not_a_500(
    server: LiveServer, method: str, path: str, status: int
) -> None:
    # '²'.isdigit() is True but int('²') raises; int() refuses more than 4,300 digits.
    assert_web_message(server.client().request(method, path), status)


def test_an_unclosed_string_after_deep_brackets_is_refused_in_one_pass() -> None:
    # Re-scanning from every unclosed quote made this cost the square of its size (about an hour at 1 MiB).
    body = b"[" * 65 + b'"\\' * 500_000
    with pytest.raises(JsonBoundsError, match="nested deeper"):
        load_json(body)


# ---------------------------------------------------------------- found by the long fuzz run (FUZZ_EXAMPLES=30)


@pytest.mark.parametrize("statuses", [[], [","], [" "]])
def test_a_requeue_naming_no_status_is_a_400_not_a_500(server: LiveServer, statuses: list[str]) -> None:
    response = server.client().post("/api/deliveries/requeue", json={"all": True, "statuses": statuses})
    assert assert_web_message(response, 400) == "'statuses' must be a list of FAILED, DEAD and UNKNOWN."
