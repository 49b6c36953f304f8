"""Large single-notification runs write their inbox rows in chunk events: each once, whatever happened meanwhile."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, select

from messaging import fanout
from messaging.db import make_sessionmaker
from messaging.models import Conversation, OutboxEvent, RemovedParticipant, User, UserMessage, utcnow
from messaging.validation import inbox
from messaging.validation.ingestion import store_results
from messaging.validation.models import ValidationNotification
from tests.conftest import reset_with_demo, wait_until
from tests.support.deliveries import ANA, BEN, deliveries_of, herald, seed_metadata, seed_recipients
from tests.support.smtp_sink import SmtpSink
from tests.support.twilio_standin import TwilioStandIn
from tests.support.validation import RULE_HIGH, RULE_LOW, RULES, result, template
from tests.test_validation_deliveries import channels

pytestmark = [pytest.mark.postgres]
GROUP = "UgValChnk01"
PERIODS = ["202401", "202402", "202403"]


def test_chunk_ends_cut_parts_into_runs_of_at_most_the_limit() -> None:
    assert inbox.chunk_ends([2, 2, 2], limit=4) == [2, 3]
    assert inbox.chunk_ends([5, 1, 1], limit=4) == [1, 3]  # a part larger than the limit is a chunk of its own
    assert inbox.chunk_ends([1, 1], limit=4) == [2]
    assert inbox.chunk_ends([], limit=4) == [0]


def metadata() -> dict[str, Any]:
    """A group of Ana and Ben and a single-notification template for both rules."""
    return {
        "userGroups": [{"id": GROUP, "name": "Chunk team", "users": [{"id": ANA}, {"id": BEN}]}],
        "validationRules": RULES,
        "validationNotificationTemplates": [template("VntChnk0001", [RULE_HIGH, RULE_LOW], [GROUP], "SINGLE_NOTIFICATION")],
    }


def events(engine: Engine) -> list[Any]:
    """Every outbox event, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(select(OutboxEvent.id, OutboxEvent.payload, OutboxEvent.done_at).order_by(OutboxEvent.id)))


def inbox_of(engine: Engine) -> dict[str, set[str]]:
    """Each validation conversation (by uid): the uids of the users with an inbox row in it."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Conversation.uid, User.uid)
            .join(ValidationNotification, ValidationNotification.conversation_id == Conversation.id)
            .outerjoin(UserMessage, UserMessage.conversation_id == Conversation.id)
            .outerjoin(User, User.id == UserMessage.user_id)
        ).all()
    found: dict[str, set[str]] = {}
    for conversation, user in rows:
        found.setdefault(conversation, set()).update([user] if user else [])
    return found


def test_chunks_add_inbox_rows_around_recipients_added_or_removed_meanwhile(
    worker_pg_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk finds its conversations touched (a user added, one removed): no conflict, the removal holds."""
    engine = worker_pg_engine
    reset_with_demo(engine)
    seed_recipients(engine)
    seed_metadata(engine, metadata())
    monkeypatch.setattr(inbox, "CHUNK_ROWS", 2)  # one result's two recipients per chunk
    with make_sessionmaker(engine)() as session:
        summary = store_results(session, [result(RULE_HIGH, period=p) for p in PERIODS])
        session.commit()
    assert summary.imported == 3
    [run] = events(engine)
    assert fanout.process_event(engine, run.id)
    chunks = events(engine)[1:]
    assert [c.payload["parts"] for c in chunks] == [[0, 1], [1, 2], [2, 3]]
    assert all(users == set() for users in inbox_of(engine).values())  # the run wrote conversations only
    with engine.begin() as conn:
        ana, ben = (conn.scalar(select(User.id).where(User.uid == uid)) for uid in (ANA, BEN))
        first, second = (
            conn.scalar(select(ValidationNotification.conversation_id).where(ValidationNotification.part == part))
            for part in (0, 1)
        )
        # As POST .../recipients and DELETE .../recipients/{user} would leave them.
        conn.execute(UserMessage.__table__.insert(), [{"conversation_id": first, "user_id": ana, "read": True,
                                                       "follow_up": False, "last_message": utcnow(),
                                                       "message_type": "VALIDATION_RESULT"}])
        conn.execute(RemovedParticipant.__table__.insert(), [{"conversation_id": second, "user_id": ben}])
    for chunk in chunks:
        assert fanout.process_event(engine, chunk.id)
        assert not fanout.process_event(engine, chunk.id)  # a done chunk never runs twice
    with engine.connect() as conn:
        uids = dict(conn.execute(select(ValidationNotification.conversation_id, Conversation.uid)
                                 .join(Conversation, Conversation.id == ValidationNotification.conversation_id)).all())
        read = conn.scalar(select(UserMessage.read).where(UserMessage.conversation_id == first, UserMessage.user_id == ana))
    found = inbox_of(engine)
    assert found[uids[first]] == {ANA, BEN}
    assert found[uids[second]] == {ANA}  # Ben was removed before the chunk reached him
    assert read is True  # the row the added user had is left as it was
    assert sorted(map(len, found.values())) == [1, 2, 2]


def test_single_notifications_in_chunks_are_mailed_and_texted_once_each(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, twilio: TwilioStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, engine = delivery_db
    monkeypatch.setattr(inbox, "CHUNK_ROWS", 3)  # two results' recipients would be 4 rows: a chunk per result
    with herald(url, engine, **channels(smtp_sink, twilio)) as live:
        client = live.client()
        assert client.post("/api/metadata", json=metadata()).status_code == 200
        body = [result(RULE_LOW, period=p) for p in PERIODS]
        assert client.post("/api/validationResults", json=body).status_code == 200
        wait_until(lambda: len([r for r in deliveries_of(engine) if r.status == "SENT"]) >= 12 or None,
                   timeout_s=30, what="12 sent deliveries")
    assert len(events(engine)) == 1 + len(PERIODS) and all(e.done_at is not None for e in events(engine))
    keys = [(r.message_uid, r.username, r.channel) for r in deliveries_of(engine)]
    assert len(keys) == len(set(keys)) == 12  # 3 conversations x 2 users x (email, SMS), each once
    assert len(smtp_sink.messages) == 6 and len(twilio.requests) == 6
    assert all(len(users) == 2 for users in inbox_of(engine).values())
