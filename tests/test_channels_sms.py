"""SmsChannel against a local Twilio stand-in over real HTTP: no mocks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import pickle
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import pytest_asyncio
from twilio.request_validator import RequestValidator

from channels.base import Channel, Envelope
from channels.errors import (
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from channels.sms import DEFAULT_SMS_MAX_LENGTH, SmsChannel, normalise_phone_number
from herald.settings import load_settings
from tests.support.channels import closed_afterwards
from tests.support.smtp_sink import free_tcp_port
from tests.support.twilio_standin import Answer, TwilioStandIn, error_body

FROM_NUMBER = "+15005550006"


def envelope(**changes: object) -> Envelope:
    base = Envelope(
        delivery_id=7,
        channel="sms",
        message_uid="Msg00000001",
        conversation_uid="Conv0000001",
        message_type="PRIVATE",
        recipient_uid="User0000001",
        recipient_name="Ana Silva",
        address="+256 772 123 456",
        subject="Stock report",
        text="Stock is low. Please reorder.",
        sender_name="Bob Okello",
        conversation_url="https://herald.example/dhis-web-messaging/#/PRIVATE/Conv0000001",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


ChannelFactory = Callable[..., SmsChannel]


@pytest_asyncio.fixture
async def make_channel(twilio: TwilioStandIn) -> AsyncIterator[ChannelFactory]:
    """Build SmsChannels pointed at the stand-in; closes them after the test."""

    def make(**kwargs: object) -> SmsChannel:
        options: dict[str, object] = {
            "account_sid": twilio.account_sid,
            "auth_token": twilio.auth_token,
            "from_number": FROM_NUMBER,
            "api_base_url": twilio.base_url,
            "timeout_s": 5.0,
        }
        options.update(kwargs)
        return SmsChannel(**options)  # type: ignore[arg-type]

    async with closed_afterwards(make) as factory:
        yield factory


# --- what Twilio receives --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_sms_is_posted_to_the_account_messages_resource_with_basic_auth_and_form_fields(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    receipt = await channel.send(envelope())

    [request] = twilio.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{twilio.account_sid}/Messages.json"
    assert request.authorised
    expected_auth = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected_auth}"
    assert request.form == {"To": "+256772123456", "From": FROM_NUMBER, "Body": "Stock is low. Please reorder."}
    assert receipt.status == "SENT"
    assert receipt.provider_id is not None
    assert receipt.provider_id.startswith("SM")
    assert len(receipt.provider_id) == 34
    assert isinstance(channel, Channel)
    assert channel.name == "sms"


@pytest.mark.asyncio
async def test_a_messaging_service_sends_instead_of_a_from_number(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel(from_number=None, messaging_service_sid="MG" + "a" * 32)

    await channel.send(envelope())

    form = twilio.requests[0].form
    assert form["MessagingServiceSid"] == "MG" + "a" * 32
    assert "From" not in form


@pytest.mark.asyncio
async def test_a_status_callback_url_is_sent_only_when_configured(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    await make_channel().send(envelope())
    await make_channel(status_callback="https://herald.example/api/sms/status").send(envelope())

    first, second = twilio.requests
    assert "StatusCallback" not in first.form
    assert second.form["StatusCallback"] == "https://herald.example/api/sms/status"


@pytest.mark.asyncio
async def test_a_text_longer_than_the_limit_is_cut_to_it_ending_in_three_dots(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel(max_length=20)

    await channel.send(envelope(text="0123456789" * 3))
    await channel.send(envelope(text="01234567890123456789"))

    cut, exact = (request.form["Body"] for request in twilio.requests)
    assert cut == "01234567890123456..."
    assert len(cut) == 20
    assert exact == "01234567890123456789"


@pytest.mark.asyncio
async def test_the_default_limit_is_dhis2s_1071_characters(twilio: TwilioStandIn, make_channel: ChannelFactory) -> None:
    channel = make_channel()

    await channel.send(envelope(text="é" * 2000))

    body = twilio.requests[0].form["Body"]
    assert DEFAULT_SMS_MAX_LENGTH == 1071
    assert channel.limits.max_text_length == 1071
    assert len(body) == 1071
    assert body.endswith("é...")


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+256 772 123 456", "+256772123456"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0047 22.33.44.55", "+4722334455"),
        ("00256-772-123456", "+256772123456"),
        ("+4722334455", "+4722334455"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
        ("0772123456", None),
        ("772 123 456", None),
        ("+1234567", None),
        ("+1234567890123456", None),
        ("+0772123456", None),
        ("+25677212345a", None),
        ("+256 ٧٧٢ 123 456", None),
        ("", None),
    ],
)
def test_numbers_are_normalised_to_e164_or_refused(raw: str, e164: str | None) -> None:
    assert normalise_phone_number(raw) == e164


@pytest.mark.asyncio
async def test_a_number_without_a_country_code_is_permanent_and_twilio_is_never_called(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(envelope(address="0772 123 456"))

    assert raised.value.code == "invalid-number"
    assert twilio.requests == []


# --- Twilio's refusals -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_429_with_retry_after_is_transient_and_carries_the_delay(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    twilio.script([(429, error_body(20429), {"Retry-After": "7"}), (201, None, {})])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())
    receipt = await channel.send(envelope())

    assert raised.value.code == "twilio-20429"
    assert raised.value.retry_after_s == 7.0
    assert pickle.loads(pickle.dumps(raised.value)).retry_after_s == 7.0
    assert receipt.provider_id is not None


@pytest.mark.asyncio
async def test_a_retry_after_given_as_an_http_date_becomes_seconds(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    twilio.script([(503, error_body(20500, 503), {"Retry-After": when})])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.retry_after_s is not None
    assert 25 <= raised.value.retry_after_s <= 31


@pytest.mark.asyncio
async def test_a_429_without_retry_after_is_transient_with_no_delay(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    twilio.script([(429, error_body(20429), {})])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.retry_after_s is None


@pytest.mark.asyncio
async def test_an_invalid_to_number_refused_by_twilio_21211_is_permanent(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    twilio.script([(400, error_body(21211, to="+256772123456"), {})])

    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "twilio-21211"
    assert "is not a valid phone number" in raised.value.reason


@pytest.mark.asyncio
@pytest.mark.parametrize("code", [21610, 21614, 21408, 21606, 21612])
async def test_twilio_errors_about_the_recipient_or_route_are_permanent(
    twilio: TwilioStandIn, make_channel: ChannelFactory, code: int
) -> None:
    channel = make_channel()
    twilio.script([(400, error_body(code, to="+256772123456"), {})])

    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == f"twilio-{code}"


@pytest.mark.asyncio
async def test_a_500_is_transient_and_the_retry_is_accepted(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    twilio.script([(500, None, {}), (201, None, {})])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())
    receipt = await channel.send(envelope())

    assert raised.value.code == "twilio-20500"
    assert receipt.status == "SENT"
    assert len(twilio.requests) == 2


@pytest.mark.asyncio
async def test_refused_credentials_are_transient_and_the_token_never_shows(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel(auth_token="not-the-token-0123")

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "twilio-20003"
    assert twilio.requests[0].authorised is False
    texts = [str(raised.value), repr(raised.value), str(raised.value.__cause__)]
    assert not any("not-the-token-0123" in text or twilio.auth_token in text for text in texts)


# --- lost answers ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_answer_after_the_request_left_is_an_unknown_outcome(
    twilio: TwilioStandIn, make_channel: ChannelFactory
) -> None:
    channel = make_channel(timeout_s=1.0)
    twilio.script([Answer(stall_s=30.0)])

    with pytest.raises(UnknownOutcomeError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "twilio-unknown"
    assert not isinstance(raised.value, TransientDeliveryError)
    assert twilio.requests[0].form["To"] == "+256772123456"  # it did reach "Twilio"


@pytest.mark.asyncio
async def test_twilio_unreachable_before_anything_was_sent_is_transient(make_channel: ChannelFactory) -> None:
    channel = make_channel(api_base_url=f"http://127.0.0.1:{free_tcp_port()}")

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "twilio-connect"


@pytest.mark.asyncio
async def test_concurrent_sends_each_get_their_own_answer(twilio: TwilioStandIn, make_channel: ChannelFactory) -> None:
    channel = make_channel()
    twilio.script([(201, None, {})] * 3 + [(429, error_body(20429), {"Retry-After": "9"})])
    numbers = [f"+25677212{n:04d}" for n in range(20)]

    results = await asyncio.gather(*(channel.send(envelope(address=n)) for n in numbers), return_exceptions=True)

    failures = [(n, r) for n, r in zip(numbers, results, strict=True) if isinstance(r, BaseException)]
    assert len(failures) == 1
    number, error = failures[0]
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after_s == 9.0
    assert twilio.requests[3].form["To"] == number  # the fourth request to arrive got the 429
    sids = [r.provider_id for r in results if not isinstance(r, BaseException)]
    assert len(set(sids)) == 19


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_channel_is_built_from_herald_settings(twilio: TwilioStandIn) -> None:
    settings = load_settings(
        {
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": twilio.base_url + "/",
        }
    )
    channel = SmsChannel.from_settings(settings, max_length=160)
    try:
        await channel.send(envelope(text="x" * 200))
    finally:
        await channel.aclose()

    assert twilio.requests[0].authorised
    assert len(twilio.requests[0].form["Body"]) == 160


def test_without_twilio_credentials_the_sms_channel_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="TWILIO_ACCOUNT_SID"):
        SmsChannel.from_settings(load_settings({}))
    with pytest.raises(ValueError, match="TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"):
        SmsChannel(account_sid="AC" + "0" * 32, auth_token="token")


@pytest.mark.asyncio
async def test_twilio_edge_and_region_in_the_environment_do_not_redirect_the_client(
    twilio: TwilioStandIn, make_channel: ChannelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    channel = make_channel()

    await channel.send(envelope())

    assert len(twilio.requests) == 1


def test_a_status_callback_signature_from_the_stand_in_validates_with_the_auth_token(
    twilio: TwilioStandIn,
) -> None:
    url = "https://herald.example/api/sms/status"
    form, headers = twilio.status_callback(url, "SM" + "b" * 32, "delivered")

    assert RequestValidator(twilio.auth_token).validate(url, form, headers["X-Twilio-Signature"])
    assert not RequestValidator("another-token").validate(url, form, headers["X-Twilio-Signature"])
    assert twilio.signature(url, form) == headers["X-Twilio-Signature"]
