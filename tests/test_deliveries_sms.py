"""SMS deliveries end to end: a live Herald, the real twilio client against a Twilio stand-in."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update

from messaging.models import Delivery, User
from tests.conftest import REDIS_URL, wait_until
from tests.support.deliveries import (
    ANA,
    BASE_URL,
    BEN,
    CARA,
    DAN,
    EVE,
    FROM_NUMBER,
    by_user,
    deliveries_of,
    herald,
    post_message,
    redis_fleet,
    seed_metadata,
    set_system,
    settled,
)
from tests.support.twilio_standin import Answer, TwilioStandIn, error_body
from workers.ratelimit import RedisBucket

pytestmark = [pytest.mark.postgres]
CALLBACK_PATH = "/api/sms/twilio/status"


def sms(twilio: TwilioStandIn, **extra: Any) -> dict[str, Any]:
    """Settings pointing the SMS channel at the stand-in."""
    return {
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "HERALD_SMS_RATE": "1000",
        **extra,
    }


def bulk_phone_users(engine: Engine, count: int) -> list[str]:
    """``count`` more users with phone numbers; their UIDs."""
    uids = [f"Sms{i:08d}" for i in range(count)]
    users = [
        {"id": uid, "username": f"sms{i}", "firstName": "Sms", "surname": str(i), "phoneNumber": f"+25677250{i:04d}"}
        for i, uid in enumerate(uids)
    ]
    seed_metadata(engine, {"users": users})
    return uids


def test_twilio_gets_the_form_fields_with_basic_auth_and_the_status_callback(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA, BEN, CARA, DAN, EVE, text="Stock is low.")
        rows = settled(engine, conversation, count=4, channel="sms")
    assert {name: (row.status, row.last_error_code) for name, row in rows.items()} == {
        "ana": ("SENT", None), "ben": ("SENT", None), "cara": ("SKIPPED", "opted-out"), "dan": ("SKIPPED", "no-address"),
    }
    requests = {r.form["To"]: r for r in twilio.requests}
    assert set(requests) == {"+256772100001", "+256772100002"}  # "00256 772 100 001" normalised to E.164
    expected_auth = "Basic " + base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    for request in requests.values():
        assert request.authorised and request.headers["Authorization"] == expected_auth
        assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
        assert request.form["From"] == FROM_NUMBER
        assert request.form["Body"] == "Stock is low."
        assert request.form["StatusCallback"] == f"{BASE_URL}{CALLBACK_PATH}"
    assert rows["ana"].provider_id is not None and rows["ana"].provider_id.startswith("SM")


def test_a_text_longer_than_keySmsMaxLength_is_cut_to_it_ending_in_dots(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    set_system(engine, "keySmsMaxLength", 20)
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA, text="The cold chain failed at the district store.")
        settled(engine, conversation, count=1, channel="sms")
    [request] = twilio.requests
    assert request.form["Body"] == "The cold chain fa..."
    assert len(request.form["Body"]) == 20


def test_a_429_with_retry_after_is_retried_no_sooner_than_twilio_asked(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    twilio.script([(429, error_body(20429), {"Retry-After": "1"})])
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA)

        def waiting() -> Any:
            with engine.connect() as conn:
                return conn.execute(
                    select(Delivery.next_attempt_at, Delivery.updated).where(Delivery.status == "FAILED")
                ).first()

        failed = wait_until(waiting, what="the 429 to be recorded")
        assert failed.next_attempt_at - failed.updated >= timedelta(seconds=1)  # not the 0.05 s backoff
        rows = settled(engine, conversation, count=1, channel="sms")
    assert (rows["ana"].status, rows["ana"].attempts, rows["ana"].last_error_code) == ("SENT", 2, "twilio-20429")
    assert len(twilio.requests) == 2


def test_an_invalid_to_number_21211_is_dead_at_once(delivery_db: tuple[str, Engine], twilio: TwilioStandIn) -> None:
    url, engine = delivery_db
    twilio.script([(400, error_body(21211, to="+256772100001"), {})])
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA)
        rows = settled(engine, conversation, count=1, channel="sms")
    ana = rows["ana"]
    assert (ana.status, ana.attempts, ana.last_error_code) == ("DEAD", 1, "twilio-21211")
    assert ana.last_error is not None and "is not a valid phone number" in ana.last_error
    assert len(twilio.requests) == 1


def test_a_number_that_cannot_be_e164_never_reaches_twilio_and_is_dead(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    with engine.begin() as conn:
        conn.execute(update(User).where(User.uid == DAN).values(phone_number="0772 100 004"))  # no country code
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), DAN)
        rows = settled(engine, conversation, count=1, channel="sms")
    assert (rows["dan"].status, rows["dan"].last_error_code) == ("DEAD", "invalid-number")
    assert twilio.requests == []


def test_a_500_then_201_is_delivered_on_the_second_attempt(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    twilio.script([(500, error_body(20500, 500), {})])
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), BEN)
        rows = settled(engine, conversation, count=1, channel="sms")
    assert (rows["ben"].status, rows["ben"].attempts, rows["ben"].last_error_code) == ("SENT", 2, "twilio-20500")
    assert len(twilio.requests) == 2


def test_a_timeout_after_the_request_left_is_unknown_and_never_resent(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    twilio.script([Answer(stall_s=30)])
    with herald(url, engine, **sms(twilio, HERALD_SMS_TIMEOUT_S="0.5")) as live:
        admin = live.client()
        conversation = post_message(admin, ANA)
        rows = settled(engine, conversation, count=1, channel="sms")
        later = post_message(admin, BEN)  # settles after many relay passes
        settled(engine, later, count=1, channel="sms")
        ana = by_user(deliveries_of(engine, conversation, "sms"))["ana"]
    assert (rows["ana"].status, rows["ana"].last_error_code) == ("UNKNOWN", "twilio-unknown")
    assert (ana.status, ana.attempts) == ("UNKNOWN", 1)
    assert [r.form["To"] for r in twilio.requests] == ["+256772100001", "+256772100002"]


def callback(client: httpx.Client, form: dict[str, str], headers: dict[str, str]) -> httpx.Response:
    return client.post(CALLBACK_PATH, data=form, headers=headers)


def test_signed_status_callbacks_move_the_delivery_forward_and_never_back(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    public = f"{BASE_URL}{CALLBACK_PATH}"  # what Twilio signs: the URL it was given, behind the proxy
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA, BEN)
        rows = settled(engine, conversation, count=2, channel="sms")
        ana, ben = rows["ana"].provider_id, rows["ben"].provider_id
        assert ana and ben
        anonymous = live.client(None)
        for status in ("sent", "delivered", "sent", "sending"):  # a late "sent" never overwrites "delivered"
            assert callback(anonymous, *twilio.status_callback(public, ana, status)).status_code == 204
        assert callback(anonymous, *twilio.status_callback(public, ben, "undelivered", error_code=30003)).status_code == 204
        after = by_user(deliveries_of(engine, conversation, "sms"))
    assert (after["ana"].status, after["ana"].provider_status) == ("DELIVERED", "delivered")
    assert (after["ben"].status, after["ben"].provider_status, after["ben"].last_error_code) == (
        "DEAD", "undelivered", "twilio-30003",
    )


def test_unsigned_or_wrongly_signed_status_callbacks_are_refused(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    public = f"{BASE_URL}{CALLBACK_PATH}"
    with herald(url, engine, **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA)
        sid = settled(engine, conversation, count=1, channel="sms")["ana"].provider_id
        assert sid
        anonymous = live.client(None)
        form, headers = twilio.status_callback(public, sid, "delivered")
        unsigned = callback(anonymous, form, {"Content-Type": headers["Content-Type"]})
        tampered = callback(anonymous, {**form, "MessageStatus": "failed"}, headers)
        other_url = callback(anonymous, *twilio.status_callback(f"{live.url}{CALLBACK_PATH}", sid, "delivered"))
        forged = TwilioStandIn(auth_token=secrets.token_hex(16))  # signed with another account's token
        wrong_token = callback(anonymous, *forged.status_callback(public, sid, "delivered"))
        after = by_user(deliveries_of(engine, conversation, "sms"))["ana"]
    for response in (unsigned, tampered, other_url, wrong_token):
        assert response.status_code == 403
        assert response.json()["httpStatusCode"] == 403 and response.json()["status"] == "ERROR"
    assert (after.status, after.provider_status) == ("SENT", None)


def test_without_a_base_url_the_signature_covers_the_url_the_request_came_to(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    with herald(url, engine, HERALD_BASE_URL="", **sms(twilio)) as live:
        conversation = post_message(live.client(), ANA)
        sid = settled(engine, conversation, count=1, channel="sms")["ana"].provider_id
        assert sid
        assert "StatusCallback" not in twilio.requests[0].form  # no public URL to give Twilio
        anonymous = live.client(None)
        assert callback(anonymous, *twilio.status_callback(f"{BASE_URL}{CALLBACK_PATH}", sid, "delivered")).status_code == 403
        assert callback(anonymous, *twilio.status_callback(f"{live.url}{CALLBACK_PATH}", sid, "delivered")).status_code == 204
        assert by_user(deliveries_of(engine, conversation, "sms"))["ana"].status == "DELIVERED"


def test_the_sms_rate_holds_across_the_in_process_fleet(delivery_db: tuple[str, Engine], twilio: TwilioStandIn) -> None:
    url, engine = delivery_db
    uids = bulk_phone_users(engine, 12)
    with herald(url, engine, **sms(twilio, HERALD_SMS_RATE="4")) as live:
        started = time.monotonic()
        conversation = post_message(live.client(), *uids)
        settled(engine, conversation, count=12, channel="sms", timeout_s=20)
        elapsed = time.monotonic() - started
    # A bucket of 4 tokens refilled at 4/s: the last 8 SMS need at least 2 s.
    assert elapsed >= 1.9
    assert len(twilio.requests) == 12


@pytest.mark.redis
def test_two_processes_draw_on_one_token_bucket_in_redis(redis_namespace: str) -> None:
    key = f"{redis_namespace}.bucket-{secrets.token_hex(3)}"
    first, second = RedisBucket(REDIS_URL, key, 5.0), RedisBucket(REDIS_URL, key, 5.0)
    try:
        granted, _ = first.take(8)
        refused, wait_s = second.take(1)
    finally:
        first.close()
        second.close()
    assert granted == 5  # the burst: one second's worth
    assert refused == 0 and 0 < wait_s <= 0.25  # the other process waits for the next token


@pytest.mark.redis
def test_a_redis_worker_sends_sms_at_the_shared_rate(
    delivery_db: tuple[str, Engine], twilio: TwilioStandIn, redis_namespace: str
) -> None:
    url, engine = delivery_db
    uids = bulk_phone_users(engine, 8)
    namespace = f"{redis_namespace}-sms"
    with redis_fleet(url, engine, REDIS_URL, namespace, **sms(twilio, HERALD_SMS_RATE="4")) as fleet:
        with fleet.client() as client:
            conversation = post_message(client, *uids)
        fleet.start_worker()
        started = time.monotonic()
        rows = settled(engine, conversation, count=8, channel="sms", timeout_s=20)
        elapsed = time.monotonic() - started
    assert {row.status for row in rows.values()} == {"SENT"}
    assert sorted(r.form["To"] for r in twilio.requests) == sorted(f"+25677250{i:04d}" for i in range(8))
    assert elapsed >= 0.9  # 4 at once, then 4 per second
