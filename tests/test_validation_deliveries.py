"""Validation notifications by email and SMS, like any message: real SMTP sink and Twilio stand-in."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import wait_until
from tests.support.deliveries import ANA, APP_TITLE, BEN, FROM_NUMBER, deliveries_of, herald, mails_to
from tests.support.smtp_sink import SmtpSink
from tests.support.twilio_standin import TwilioStandIn
from tests.support.validation import RULE_HIGH, RULE_LOW, RULES, result, template, validation_conversations

pytestmark = [pytest.mark.postgres]
GROUP = "UgValMail01"


def channels(smtp_sink: SmtpSink, twilio: TwilioStandIn) -> dict[str, Any]:
    """Settings turning on email (the sink) and SMS (the stand-in)."""
    return {
        "SMTP_URL": smtp_sink.url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "HERALD_SMS_RATE": "1000",
    }


def setup(client: Any, strategy: str) -> None:
    """Rules, a group of Ana and Ben, and one template of this strategy for both rules."""
    payload = {
        "userGroups": [{"id": GROUP, "name": "Mail team", "users": [{"id": ANA}, {"id": BEN}]}],
        "validationRules": RULES,
        "validationNotificationTemplates": [template("VntMail0001", [RULE_HIGH, RULE_LOW], [GROUP], strategy)],
    }
    response = client.post("/api/metadata", json=payload)
    assert response.status_code == 200, response.text


def sent(engine: Engine, count: int) -> list[Any]:
    """Wait until ``count`` deliveries are SENT."""
    return wait_until(
        lambda: rows if len(rows := [r for r in deliveries_of(engine) if r.status == "SENT"]) >= count else None,
        timeout_s=20, what=f"{count} sent deliveries",
    )


def test_a_summary_is_mailed_whole_and_texted_as_its_first_line(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    with herald(url, engine, **channels(smtp_sink, twilio)) as live:
        client = live.client()
        setup(client, "COLLECTIVE_SUMMARY")
        assert client.post("/api/validationResults", json=[result(RULE_HIGH), result(RULE_LOW)]).status_code == 200
        sent(engine, 4)
        [conversation] = validation_conversations(engine)
    assert set(mails_to(smtp_sink)) == {"ana@clinic.example", "ben@clinic.example"}
    mail = smtp_sink.messages[0].message
    assert mail["Subject"] == f"[{APP_TITLE}] {conversation['subject']}"
    plain = mail.get_body(("plain",))
    assert plain is not None
    lines = plain.get_content().splitlines()
    assert lines[:3] == ["Violations: High 1, medium 0, low 1", "", "ANC visits above expected at Ngelehun CHC"]
    bodies = sorted((r.form["To"], r.form["Body"]) for r in twilio.requests)
    assert bodies == [("+256772100001", "Violations: High 1, medium 0, low 1"),
                      ("+256772100002", "Violations: High 1, medium 0, low 1")]


def test_single_notifications_are_mailed_and_texted_whole(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, twilio: TwilioStandIn
) -> None:
    url, engine = delivery_db
    with herald(url, engine, **channels(smtp_sink, twilio)) as live:
        client = live.client()
        setup(client, "SINGLE_NOTIFICATION")
        assert client.post("/api/validationResults", json=[result(RULE_LOW)]).status_code == 200
        sent(engine, 4)
    subjects = {m.message["Subject"] for m in smtp_sink.messages}
    assert subjects == {f"[{APP_TITLE}] Measles doses at Ngelehun CHC"}
    assert {r.form["Body"] for r in twilio.requests} == {"ANC 1st visits 12.0 <= 10.0 in 202401"}
    assert len(twilio.requests) == 2
