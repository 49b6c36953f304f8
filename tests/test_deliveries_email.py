"""Email deliveries end to end: a live Herald, a real SMTP server (aiosmtpd), no mocks."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine

from messaging.demo import ADMIN, MOBILE
from tests.conftest import REDIS_URL, wait_until
from tests.support.deliveries import (
    ANA,
    APP_TITLE,
    BASE_URL,
    BEN,
    CARA,
    DAN,
    EMAIL_FROM,
    EVE,
    MIA,
    PASSWORD,
    by_user,
    deliveries_of,
    herald,
    mails_to,
    post_message,
    redis_fleet,
    settled,
)
from tests.support.smtp_sink import STALL, ReceivedMail, SmtpSink

pytestmark = [pytest.mark.postgres]


def mail_for(sink: SmtpSink, address: str) -> ReceivedMail:
    [mail] = [m for m in sink.messages if address in m.rcpt_tos]
    return mail


def test_each_recipient_gets_one_mail_with_subject_sender_parts_link_and_a_stable_message_id(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        conversation = post_message(live.client(), ANA, BEN, ADMIN, subject="Stock report", text="Stock is low.\nReorder.")
        rows = settled(engine, conversation, count=2)
    # The sender listed themself: no mail to admin, one to each other recipient.
    assert {name: row.status for name, row in rows.items()} == {"ana": "SENT", "ben": "SENT"}
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1, "ben@clinic.example": 1})
    mail = mail_for(smtp_sink, "ana@clinic.example")
    message = mail.message
    assert mail.mail_from == EMAIL_FROM
    assert message["Subject"] == f"[{APP_TITLE}] Stock report"
    assert message["To"] == "Ana Silva <ana@clinic.example>"
    assert message["From"] == f'"{APP_TITLE} message [No reply]" <{EMAIL_FROM}>'
    ana = rows["ana"]
    # Derived from (message, recipient): a resend would be recognisably the same mail.
    assert message["Message-ID"] == f"<{ana.message_uid}.{ANA}@herald.example>" == ana.provider_id
    assert ana.attempts == 1 and ana.address == "ana@clinic.example"
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    link = f"{BASE_URL}/dhis-web-messaging/#/PRIVATE/{conversation}"
    assert plain.get_content().splitlines() == ["Stock is low.", "Reorder.", "", "John Traore", "", link]
    assert "Stock is low.<br>" in html.get_content() and f'href="{link}"' in html.get_content()


def test_opted_out_and_address_less_recipients_are_skipped_with_the_reason_and_disabled_ones_get_nothing(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        conversation = post_message(live.client(), ANA, CARA, DAN, EVE, MOBILE)
        rows = settled(engine, conversation, count=4)
    assert rows["ana"].status == "SENT"
    assert (rows["cara"].status, rows["cara"].last_error_code) == ("SKIPPED", "opted-out")
    assert rows["cara"].last_error == "keyMessageEmailNotification is false"
    assert (rows["dan"].status, rows["dan"].last_error_code, rows["dan"].address) == ("SKIPPED", "no-address", None)
    assert (rows["mobile"].status, rows["mobile"].last_error_code) == ("SKIPPED", "no-address")
    assert "eve" not in rows  # disabled users get no email (DECISIONS #12)
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1})


def test_the_system_setting_turns_email_off_for_everyone_who_has_not_chosen(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        admin = live.client()
        assert admin.post("/api/systemSettings/keyMessageEmailNotification", content="false").status_code < 300
        mia = live.client("mia")
        assert mia.post("/api/userSettings/keyMessageEmailNotification", content="true").status_code < 300
        conversation = post_message(admin, ANA, MIA)
        rows = settled(engine, conversation, count=2)
    assert (rows["ana"].status, rows["ana"].last_error_code) == ("SKIPPED", "opted-out")
    assert rows["mia"].status == "SENT"


def test_a_reply_mails_every_participant_but_the_replier_and_an_internal_one_only_ticket_managers(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        admin = live.client()
        conversation = post_message(admin, ANA, BEN, MIA)
        settled(engine, conversation, count=3)
        ben = live.client("ben", PASSWORD)
        assert ben.post(f"/api/messageConversations/{conversation}", content="Reordered.").status_code == 200
        wait_until(lambda: len(deliveries_of(engine, conversation)) == 6, what="the reply's deliveries")
        assert admin.post(f"/api/messageConversations/{conversation}?internal=true", content="Note").status_code == 200
        wait_until(lambda: len(deliveries_of(engine, conversation)) == 7, what="the internal reply's delivery")
        settled(engine, conversation, count=7)
        # Adding recipients notifies nobody (DECISIONS #15).
        added = admin.post(f"/api/messageConversations/{conversation}/recipients", json={"users": [{"id": DAN}]})
        assert added.status_code < 300, added.text
        marker = post_message(admin, ANA, subject="Marker")  # processed after the recipients event
        settled(engine, marker, count=1)
    rows = deliveries_of(engine, conversation)
    first = min(rows, key=lambda r: r.id).message_uid
    reply_targets = sorted(r.username for r in rows if r.message_uid != first)
    # Ben's reply: admin, ana, mia (not ben). Admin's internal note: mia, the only other ticket manager.
    assert reply_targets == ["admin", "ana", "mia", "mia"]
    assert "dan" not in {r.username for r in rows}
    assert mails_to(smtp_sink)["ben@clinic.example"] == 1 and mails_to(smtp_sink)["mia@clinic.example"] == 3


def test_an_smtp_server_answering_421_and_451_then_250_delivers_after_retries(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_rcpt(["421 4.7.0 Too busy, come back later", "451 4.3.0 Greylisted, try again"])
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        conversation = post_message(live.client(), ANA)
        rows = settled(engine, conversation, count=1)
    ana = rows["ana"]
    assert (ana.status, ana.attempts, ana.last_error_code) == ("SENT", 3, "smtp-451")
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1})


def test_an_smtp_550_is_dead_at_once_with_the_servers_reason(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_rcpt(["550 5.1.1 <ana@clinic.example>: Recipient address rejected: User unknown"])
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        conversation = post_message(live.client(), ANA, BEN)
        rows = settled(engine, conversation, count=2)
    ana = [row for row in rows.values() if row.status == "DEAD"]
    assert len(ana) == 1
    dead = ana[0]
    assert (dead.attempts, dead.last_error_code) == (1, "smtp-550")
    assert dead.last_error is not None and "User unknown" in dead.last_error
    assert sum(mails_to(smtp_sink).values()) == 1


def test_an_smtp_server_down_for_a_while_then_up_gets_every_mail_once(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.stop()
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_MAX_ATTEMPTS="100") as live:
        conversation = post_message(live.client(), ANA, BEN, MIA, ADMIN)

        def retried() -> bool:
            rows = deliveries_of(engine, conversation)
            return len(rows) == 3 and all(r.attempts >= 2 and r.status in {"FAILED", "SENDING", "QUEUED"} for r in rows)

        wait_until(retried, what="every delivery to fail at least twice while the server is down")
        smtp_sink.start()
        rows = settled(engine, conversation, count=3)
    assert {r.status for r in rows.values()} == {"SENT"}
    assert {r.last_error_code for r in rows.values()} == {"smtp-connect"}  # the last error before success
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1, "ben@clinic.example": 1, "mia@clinic.example": 1})


def test_a_server_that_goes_silent_during_data_leaves_the_delivery_unknown_and_it_is_not_resent(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_data([STALL])
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_SMTP_TIMEOUT_S="1") as live:
        admin = live.client()
        conversation = post_message(admin, ANA)
        rows = settled(engine, conversation, count=1)
        # Another mail sent and settled afterwards: the relay has had many passes since.
        later = post_message(admin, BEN)
        settled(engine, later, count=1)
        ana = by_user(deliveries_of(engine, conversation))["ana"]
    assert (rows["ana"].status, rows["ana"].last_error_code) == ("UNKNOWN", "smtp-unknown")
    assert (ana.status, ana.attempts) == ("UNKNOWN", 1)
    assert mails_to(smtp_sink) == Counter({"ben@clinic.example": 1})


@pytest.mark.redis
def test_a_redis_worker_delivers_one_mail_per_recipient_and_skips_who_cannot_get_one(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str
) -> None:
    url, engine = delivery_db
    with redis_fleet(url, engine, REDIS_URL, f"{redis_namespace}-email", SMTP_URL=smtp_sink.url) as fleet:
        with fleet.client() as client:
            conversation = post_message(client, ANA, BEN, CARA, DAN, EVE)
        assert deliveries_of(engine, conversation) == []  # no worker yet: only the outbox row exists
        fleet.start_worker()
        rows = settled(engine, conversation, count=4)
    assert {name: row.status for name, row in rows.items()} == {
        "ana": "SENT", "ben": "SENT", "cara": "SKIPPED", "dan": "SKIPPED",
    }
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1, "ben@clinic.example": 1})
    ben = mail_for(smtp_sink, "ben@clinic.example").message
    assert ben["Message-ID"] == rows["ben"].provider_id == f"<{rows['ben'].message_uid}.{BEN}@herald.example>"
    assert ben["Subject"] == f"[{APP_TITLE}] Stock report"


def test_a_recipient_who_left_the_conversation_before_the_workers_ran_gets_no_mail(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str
) -> None:
    url, engine = delivery_db
    with redis_fleet(url, engine, REDIS_URL, f"{redis_namespace}-left", SMTP_URL=smtp_sink.url) as fleet:
        with fleet.client() as client:
            conversation = post_message(client, ANA, BEN)
        with fleet.client("ben") as ben:
            assert ben.delete(f"/api/messageConversations/{conversation}").json() == {"removed": [BEN]}
        fleet.start_worker()
        rows = settled(engine, conversation, count=1)
    assert {name: row.status for name, row in rows.items()} == {"ana": "SENT"}
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1})
