"""EmailChannel against a real SMTP server (aiosmtpd on loopback): no mocks."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from channels.base import Channel, Envelope
from channels.email import EmailChannel, SmtpServer
from channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from herald.settings import load_settings
from tests.support.channels import closed_afterwards
from tests.support.smtp_sink import DROP, STALL, SmtpSink

SENDER = "no-reply@herald.example"
LINK = "https://herald.example/dhis-web-messaging/#/PRIVATE/Conv0000001"


def envelope(**changes: object) -> Envelope:
    base = Envelope(
        delivery_id=1,
        channel="email",
        message_uid="Msg00000001",
        conversation_uid="Conv0000001",
        message_type="PRIVATE",
        recipient_uid="User0000001",
        recipient_name="Ana Silva",
        address="ana@example.org",
        subject="Stock report",
        text="Stock is low.\nPlease reorder.",
        sender_name="Bob Okello",
        conversation_url=LINK,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


ChannelFactory = Callable[..., EmailChannel]


@pytest_asyncio.fixture
async def make_channel(smtp_sink: SmtpSink) -> AsyncIterator[ChannelFactory]:
    """Build EmailChannels pointed at the sink; closes them after the test."""

    def make(url: str | None = None, **kwargs: object) -> EmailChannel:
        options: dict[str, object] = {"email_from": SENDER, "app_title": "DHIS 2", "timeout_s": 5.0}
        options.update(kwargs)
        server = SmtpServer.from_url(url or smtp_sink.url)
        return EmailChannel(server=server, **options)  # type: ignore[arg-type]

    async with closed_afterwards(make) as factory:
        yield factory


# --- what arrives ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_email_arrives_once_with_its_subject_sender_recipient_and_message_id(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    receipt = await channel.send(envelope())

    [mail] = smtp_sink.messages
    msg = mail.message
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == ["ana@example.org"]
    assert msg["Subject"] == "[DHIS 2] Stock report"
    assert msg["From"].addresses[0].display_name == "DHIS 2 message [No reply]"
    assert msg["From"].addresses[0].addr_spec == SENDER
    assert msg["To"].addresses[0].display_name == "Ana Silva"
    assert msg["To"].addresses[0].addr_spec == "ana@example.org"
    assert msg["Message-ID"] == "<Msg00000001.User0000001@herald.example>"
    assert msg["Date"] is not None
    assert receipt.provider_id == "<Msg00000001.User0000001@herald.example>"
    assert receipt.status == "SENT"
    assert isinstance(channel, Channel)
    assert channel.name == "email"


@pytest.mark.asyncio
async def test_the_plain_part_holds_text_sender_and_link_and_the_html_part_escapes_them(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    await channel.send(envelope(text="Stock <low> & falling.\nPlease reorder."))

    msg = smtp_sink.messages[0].message
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert plain.replace("\r\n", "\n").rstrip("\n") == (
        f"Stock <low> & falling.\nPlease reorder.\n\nBob Okello\n\n{LINK}"
    )
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Stock &lt;low&gt; &amp; falling.<br>" in html
    assert "Please reorder." in html
    assert "<p>Bob Okello</p>" in html
    assert f'<a href="{LINK}">Respond to this message</a>' in html


@pytest.mark.asyncio
async def test_without_a_conversation_url_neither_part_has_a_link(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    await channel.send(envelope(conversation_url=None, sender_name=None))

    msg = smtp_sink.messages[0].message
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert plain.replace("\r\n", "\n").rstrip("\n") == "Stock is low.\nPlease reorder."
    assert "<a " not in html
    assert "Respond to this message" not in html
    assert "https://" not in plain


@pytest.mark.asyncio
async def test_non_ascii_names_subject_text_and_domains_survive_the_trip(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel(app_title="DHIS 2 Ouganda")

    await channel.send(
        envelope(
            recipient_name="Zoë Müller",
            address="zoe@bücher.example",
            subject="Résumé des stocks",
            text="Grüße aus Genève — ça va? " * 60,
            sender_name="Jean-Émile",
        )
    )

    mail = smtp_sink.messages[0]
    assert mail.rcpt_tos == ["zoe@xn--bcher-kva.example"]
    assert mail.message["Subject"] == "[DHIS 2 Ouganda] Résumé des stocks"
    assert mail.message["To"].addresses[0].display_name == "Zoë Müller"
    plain = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert plain.startswith("Grüße aus Genève — ça va? ")
    assert "Jean-Émile" in plain
    assert all(len(line) <= 998 for line in mail.raw.split(b"\r\n"))


@pytest.mark.asyncio
async def test_a_line_break_in_the_subject_or_name_cannot_inject_a_header(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    await channel.send(envelope(subject="Hello\r\nBcc: eve@evil.example", recipient_name="Ana\nCc: eve@evil.example"))

    msg = smtp_sink.messages[0].message
    assert msg["Bcc"] is None
    assert msg["Cc"] is None
    assert msg["Subject"] == "[DHIS 2] Hello Bcc: eve@evil.example"
    assert smtp_sink.messages[0].rcpt_tos == ["ana@example.org"]


@pytest.mark.asyncio
async def test_the_message_id_is_the_same_for_a_resend_and_differs_per_recipient(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()

    await channel.send(envelope())
    await channel.send(envelope())
    await channel.send(envelope(recipient_uid="User0000002", address="bo@example.org"))

    ids = [mail.message["Message-ID"] for mail in smtp_sink.messages]
    assert ids[0] == ids[1]
    assert ids[2] == "<Msg00000001.User0000002@herald.example>"


# --- connections -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_sequential_sends_reuse_one_connection(smtp_sink: SmtpSink, make_channel: ChannelFactory) -> None:
    channel = make_channel(connections=4)

    for n in range(5):
        await channel.send(envelope(message_uid=f"Msg0000000{n}"))

    assert len(smtp_sink.messages) == 5
    assert smtp_sink.connections_opened == 1
    assert len({mail.peer for mail in smtp_sink.messages}) == 1


@pytest.mark.asyncio
async def test_concurrent_sends_use_at_most_the_pool_size_of_connections(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel(connections=3)

    await asyncio.gather(*(channel.send(envelope(message_uid=f"Msg{n:08d}")) for n in range(30)))

    assert len(smtp_sink.messages) == 30
    assert smtp_sink.connections_opened == 3
    assert len({mail.message["Message-ID"] for mail in smtp_sink.messages}) == 30


@pytest.mark.asyncio
async def test_a_connection_the_server_dropped_while_idle_is_reopened_and_the_send_goes_on(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    await channel.send(envelope(message_uid="Msg00000001"))

    smtp_sink.drop_connections()
    await channel.send(envelope(message_uid="Msg00000002"))

    assert len(smtp_sink.messages) == 2
    assert smtp_sink.connections_opened == 2


@pytest.mark.asyncio
async def test_a_disconnect_at_mail_from_on_a_reused_connection_is_retried_once_on_a_new_one(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    await channel.send(envelope(message_uid="Msg00000001"))
    smtp_sink.script_mail([DROP])

    await channel.send(envelope(message_uid="Msg00000002"))

    assert [m.message["Message-ID"] for m in smtp_sink.messages][-1] == "<Msg00000002.User0000001@herald.example>"
    assert smtp_sink.connections_opened == 2


@pytest.mark.asyncio
async def test_a_server_that_drops_every_connection_is_transient_after_one_reconnect(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    smtp_sink.script_mail([DROP, DROP])

    with pytest.raises(TransientDeliveryError):
        await channel.send(envelope())

    assert smtp_sink.connections_opened == 2
    assert smtp_sink.messages == []


@pytest.mark.asyncio
async def test_aclose_quits_the_connections_and_a_later_send_reconnects(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    await channel.send(envelope())

    await channel.aclose()
    smtp_sink.wait_for(lambda: smtp_sink.open_connections == 0, what="the QUIT to close the connection")
    await channel.send(envelope())

    assert smtp_sink.connections_opened == 2
    assert len(smtp_sink.messages) == 2


# --- refusals and failures -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "answer", ["451 4.3.0 Try again later", "421 4.7.0 Too many connections, closing", "452 4.2.2 Mailbox full"]
)
async def test_a_4xx_answer_to_rcpt_is_transient_and_the_next_attempt_delivers(
    smtp_sink: SmtpSink, make_channel: ChannelFactory, answer: str
) -> None:
    channel = make_channel()
    smtp_sink.script_rcpt([answer])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())
    await channel.send(envelope())

    assert raised.value.code == f"smtp-{answer[:3]}"
    assert answer[4:] in raised.value.reason
    assert len(smtp_sink.messages) == 1


@pytest.mark.asyncio
async def test_a_451_leaves_the_connection_usable_for_the_next_message(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    smtp_sink.script_rcpt(["451 4.3.0 Try again later"])

    with pytest.raises(TransientDeliveryError):
        await channel.send(envelope())
    await channel.send(envelope())

    assert smtp_sink.connections_opened == 1


@pytest.mark.asyncio
async def test_a_550_unknown_user_is_permanent(smtp_sink: SmtpSink, make_channel: ChannelFactory) -> None:
    channel = make_channel()
    smtp_sink.script_rcpt(["550 5.1.1 <ana@example.org>: Recipient address rejected: User unknown"])

    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "smtp-550"
    assert "User unknown" in raised.value.reason
    assert smtp_sink.messages == []


@pytest.mark.asyncio
async def test_a_5xx_after_the_data_is_permanent_and_a_4xx_transient(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    smtp_sink.script_data(["554 5.6.0 Message content rejected", "452 4.3.1 Insufficient system storage"])

    with pytest.raises(PermanentDeliveryError) as permanent:
        await channel.send(envelope())
    with pytest.raises(TransientDeliveryError) as transient:
        await channel.send(envelope())

    assert permanent.value.code == "smtp-554"
    assert transient.value.code == "smtp-452"
    assert smtp_sink.messages == []


@pytest.mark.asyncio
async def test_a_refused_sender_is_transient_because_it_is_our_configuration(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    smtp_sink.script_mail(["553 5.7.1 Sender address rejected: not owned by user"])

    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope())

    assert raised.value.code == "smtp-553"


@pytest.mark.asyncio
async def test_a_server_down_is_transient_and_delivery_resumes_when_it_is_back_on_the_same_port(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    await channel.send(envelope(message_uid="Msg00000001"))

    smtp_sink.stop()
    with pytest.raises(TransientDeliveryError) as raised:
        await channel.send(envelope(message_uid="Msg00000002"))
    smtp_sink.start()
    await channel.send(envelope(message_uid="Msg00000003"))

    assert raised.value.code == "smtp-connect"
    assert [m.message["Message-ID"] for m in smtp_sink.messages] == [
        "<Msg00000001.User0000001@herald.example>",
        "<Msg00000003.User0000001@herald.example>",
    ]


@pytest.mark.asyncio
async def test_a_server_silent_after_the_data_is_an_unknown_outcome(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel(timeout_s=1.0)
    smtp_sink.script_data([STALL])

    with pytest.raises(UnknownOutcomeError) as raised:
        await channel.send(envelope(message_uid="Msg00000001"))
    await channel.send(envelope(message_uid="Msg00000002"))

    assert raised.value.code == "smtp-unknown"
    assert not isinstance(raised.value, TransientDeliveryError)
    assert [m.message["Message-ID"] for m in smtp_sink.messages] == ["<Msg00000002.User0000001@herald.example>"]
    assert smtp_sink.connections_opened == 2


@pytest.mark.asyncio
async def test_a_connection_lost_during_the_data_is_an_unknown_outcome(
    smtp_sink: SmtpSink, make_channel: ChannelFactory
) -> None:
    channel = make_channel()
    smtp_sink.script_data([DROP])

    with pytest.raises(UnknownOutcomeError):
        await channel.send(envelope())


@pytest.mark.asyncio
@pytest.mark.parametrize("address", ["not-an-address", "ana@", "@example.org", "ana smith@example.org", "ä@x.org"])
async def test_an_invalid_address_is_permanent_without_contacting_the_server(
    smtp_sink: SmtpSink, make_channel: ChannelFactory, address: str
) -> None:
    channel = make_channel()

    with pytest.raises(PermanentDeliveryError) as raised:
        await channel.send(envelope(address=address))

    assert raised.value.code == "invalid-address"
    assert smtp_sink.connections_opened == 0


# --- credentials and configuration -----------------------------------------------------------


@pytest.mark.asyncio
async def test_smtp_credentials_log_in_and_a_wrong_password_never_shows_in_the_error() -> None:
    with SmtpSink(credentials=("herald", "s3cret-pass")) as sink:
        good = EmailChannel(
            server=SmtpServer.from_url(f"smtp://herald:s3cret-pass@127.0.0.1:{sink.port}"),
            email_from=SENDER,
            app_title="DHIS 2",
        )
        bad = EmailChannel(
            server=SmtpServer.from_url(f"smtp://herald:wr0ng-pass@127.0.0.1:{sink.port}"),
            email_from=SENDER,
            app_title="DHIS 2",
        )
        try:
            await good.send(envelope())
            with pytest.raises(TransientDeliveryError) as raised:
                await bad.send(envelope())
        finally:
            await good.aclose()
            await bad.aclose()

        assert [mail.login for mail in sink.messages] == ["herald"]
        assert raised.value.code == "smtp-535"
        texts = [str(raised.value), repr(raised.value), repr(bad.server), str(bad.server)]
        assert not any("wr0ng-pass" in text for text in texts)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpServer("mail.example.org", 25)),
        ("smtp://mail.example.org:2525", SmtpServer("mail.example.org", 2525)),
        ("smtp://mail.example.org?starttls=true", SmtpServer("mail.example.org", 587, start_tls=True)),
        ("smtps://mail.example.org", SmtpServer("mail.example.org", 465, use_tls=True)),
        (
            "smtp://us%40er:p%3Ass@mail.example.org:587?starttls=true",
            SmtpServer("mail.example.org", 587, "us@er", "p:ss", start_tls=True),
        ),
    ],
)
def test_smtp_urls_name_host_port_credentials_and_tls(url: str, expected: SmtpServer) -> None:
    server = SmtpServer.from_url(url)

    assert server == expected
    assert server.password == expected.password


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@mail.example.org",
        "smtp://user:hunter2@mail.example.org?tls=yes",
        "smtps://user:hunter2@mail.example.org?starttls=true",
        "smtp://user:hunter2@mail.example.org:99999",
    ],
)
def test_a_malformed_smtp_url_is_refused_without_quoting_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL") as raised:
        SmtpServer.from_url(url)

    assert "hunter2" not in str(raised.value)


@pytest.mark.asyncio
async def test_the_channel_is_built_from_herald_settings(smtp_sink: SmtpSink) -> None:
    settings = load_settings(
        {
            "SMTP_URL": smtp_sink.url,
            "HERALD_EMAIL_FROM": "dhis2@moh.example",
            "HERALD_APP_TITLE": "HMIS",
            "HERALD_SMTP_CONNECTIONS": "2",
            "HERALD_SMTP_TIMEOUT_S": "5",
        }
    )
    channel = EmailChannel.from_settings(settings)
    try:
        await channel.send(envelope())
    finally:
        await channel.aclose()

    msg = smtp_sink.messages[0].message
    assert msg["Subject"] == "[HMIS] Stock report"
    assert msg["From"].addresses[0].addr_spec == "dhis2@moh.example"
    assert msg["Message-ID"] == "<Msg00000001.User0000001@moh.example>"


def test_without_smtp_url_the_email_channel_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        EmailChannel.from_settings(load_settings({}))


def test_delivery_errors_survive_pickling_with_reason_code_and_delay() -> None:
    for error in (
        PermanentDeliveryError("SMTP 550 on RCPT TO: unknown", "smtp-550"),
        TransientDeliveryError("busy", "smtp-451", 30.0),
        UnknownOutcomeError("silent after DATA", "smtp-unknown"),
    ):
        copy = pickle.loads(pickle.dumps(error))

        assert type(copy) is type(error)
        assert isinstance(copy, DeliveryError)
        assert (copy.reason, copy.code, copy.retry_after_s) == (error.reason, error.code, error.retry_after_s)
