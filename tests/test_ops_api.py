"""/api/ops and /api/deliveries on PostgreSQL and SQLite; queue depth read from real Redis and RabbitMQ."""

from __future__ import annotations

import secrets
from datetime import timedelta

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import Engine, insert, select, update

from messaging.models import Conversation, Delivery, Message, User, utcnow
from messaging.ops import overview as ops_overview
from messaging.ops.broker import queue_depths
from tests.conftest import RABBITMQ_URL, REDIS_URL, LiveServer, wait_until
from tests.support.deliveries import ANA, broker_fleet


def seed_deliveries(engine: Engine) -> dict[str, int]:
    """Four deliveries of one demo message: SENT 2 s after it, DEAD (smtp-550), FAILED (smtp-451), QUEUED."""
    now = utcnow()
    with engine.begin() as conn:
        message_id, conversation_uid = conn.execute(
            select(Message.id, Conversation.uid).join(Conversation).order_by(Message.id).limit(1)
        ).one()
        created = now - timedelta(seconds=2)  # the trigger: the message was created 2 s before the send
        conn.execute(update(Message).where(Message.id == message_id).values(created=created))
        users = list(conn.scalars(select(User.id).order_by(User.id).limit(4)))
        rows = [
            {"status": "SENT", "sent_at": now, "updated": now},
            {"status": "DEAD", "last_error_code": "smtp-550", "last_error": "User unknown"},
            {"status": "FAILED", "last_error_code": "smtp-451", "next_attempt_at": now + timedelta(hours=1)},
            {"status": "QUEUED"},
        ]
        ids = {}
        for user_id, row in zip(users, rows, strict=True):
            values = {"message_id": message_id, "user_id": user_id, "channel": "email", "address": "x@clinic.example",
                      "attempts": 1, "next_attempt_at": now, "created": created, "updated": now, **row}  # fmt: skip
            ids[row["status"]] = conn.execute(insert(Delivery).values(**values).returning(Delivery.id)).scalar_one()
    ids["conversation"] = conversation_uid  # type: ignore[assignment]
    return ids


def test_the_ops_json_counts_what_the_database_holds_on_both_databases(any_server: LiveServer) -> None:
    ids = seed_deliveries(any_server.engine)
    admin = any_server.client()
    overview = admin.get("/api/ops/overview").json()
    email = next(c for c in overview["channels"] if c["channel"] == "email")
    assert (email["waiting"], email["retrying"], email["dead"], email["sentLastHour"]) == (1, 1, 1, 1)
    assert email["nextAttemptAt"] is not None and email["oldestWaitingAgeS"] is not None
    assert overview["broker"] == "in-process" and [q["queue"] for q in overview["queues"]] == ["outbox", "deliveries"]
    assert overview["latencyS"]["email"]["count"] == 1 and abs(overview["latencyS"]["email"]["p50"] - 2.0) < 0.01
    series = admin.get("/api/ops/throughput").json()["series"]
    assert sum(n for _, n in series["email"]) == 1
    assert admin.get("/api/ops/throughput", params={"hours": "0"}).status_code == 400
    assert admin.get("/api/ops/overview", params={"x": "1"}).status_code == 400

    page = admin.get("/api/ops/deliveries", params={"pageSize": "2", "total": "true"}).json()
    assert page["total"] == 4 and [d["id"] for d in page["deliveries"]] == [ids["QUEUED"], ids["FAILED"]]
    rest = admin.get("/api/ops/deliveries", params={"pageSize": "2", "before": page["next"]["before"]}).json()
    assert [d["id"] for d in rest["deliveries"]] == [ids["DEAD"], ids["SENT"]] and rest["next"] is None
    found = admin.get("/api/ops/deliveries", params={"errorCode": "smtp-550", "messageConversation": ids["conversation"]})
    assert [d["id"] for d in found.json()["deliveries"]] == [ids["DEAD"]]
    assert found.json()["deliveries"][0]["attemptHistory"] == []

    retried = admin.post("/api/ops/deliveries/retry", json={"query": {"status": ["DEAD", "FAILED"]}})
    assert retried.status_code == 200 and retried.json()["response"] == {"retried": 2}
    assert admin.post("/api/ops/deliveries/discard", json={"query": {"status": "SENT"}}).status_code == 400
    assert admin.post("/api/ops/deliveries/discard", json={"ids": [ids["SENT"]]}).json()["response"] == {"discarded": 0}


def test_api_deliveries_honours_dhis2_fields_filter_order_and_paging_and_refuses_what_it_does_not_know(
    any_server: LiveServer,
) -> None:
    ids = seed_deliveries(any_server.engine)
    admin = any_server.client()
    listed = admin.get("/api/deliveries", params={"fields": "id,status", "filter": "lastErrorCode:like:smtp",
                                                  "order": "status:asc", "pageSize": "1"}).json()  # fmt: skip
    assert listed["pager"]["total"] == 2 and listed["pager"]["pageCount"] == 2
    assert listed["deliveries"] == [{"id": ids["DEAD"], "status": "DEAD"}]
    by_user = admin.get("/api/deliveries", params={"messageConversation": ids["conversation"], "paging": "false",
                                                   "fields": "id,attemptHistory"}).json()  # fmt: skip
    assert len(by_user["deliveries"]) == 4 and "pager" not in by_user
    assert all(d["attemptHistory"] == [] for d in by_user["deliveries"])
    for params in ({"bogus": "1"}, {"filter": "nothing:eq:1"}, {"filter": "id:eq:9223372036854775808"},
                   {"order": "nothing:asc"}, {"status": "LOST"}, {"fields": "id["}):  # fmt: skip
        answer = admin.get("/api/deliveries", params=params)
        assert answer.status_code == 400 and answer.json()["httpStatusCode"] == 400, params
    for path in ("/api/deliveries/9223372036854775808/requeue", "/api/deliveries/-1/requeue", "/api/deliveries/x/requeue"):
        assert admin.post(path).status_code == 400, path
    assert admin.post("/api/deliveries/requeue", json={"ids": [2**64]}).status_code == 400
    assert admin.post("/api/ops/deliveries/retry", json={"ids": [2**63]}).status_code == 400
    assert admin.get("/api/ops/deliveries/9223372036854775808").status_code == 400


@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_queue_depth_is_read_from_the_broker_itself(kind: str) -> None:
    namespace = f"herald-ops-{secrets.token_hex(4)}"
    queue = f"{namespace}.deliveries"
    broker: dramatiq.Broker = RedisBroker(url=REDIS_URL, namespace=namespace) if kind == "redis" else RabbitmqBroker(url=RABBITMQ_URL)
    url = REDIS_URL if kind == "redis" else RABBITMQ_URL

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"noop_{kind}")
    def noop() -> None:
        """Never run: the message only has to wait in the queue."""

    try:
        for _ in range(3):
            noop.send()
        (depth,) = queue_depths(url, namespace, [queue])
        assert depth.waiting == 3 and depth.error is None
        assert queue_depths("redis://127.0.0.1:1/0", namespace, [queue], timeout_s=0.5)[0].error is not None
        assert queue_depths(None, namespace, [queue]) == []  # in-process: nothing to ask
    finally:
        broker.flush_all()
        if kind == "rabbitmq":
            channel = broker.channel  # type: ignore[attr-defined]
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                channel.queue_delete(name)
        broker.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.rabbitmq
@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_with_workers_stopped_the_overview_shows_the_waiting_outbox_and_the_brokers_queues_then_the_drain(
    kind: str, delivery_db: tuple[str, Engine], redis_namespace: str
) -> None:
    url, engine = delivery_db
    broker_url = REDIS_URL if kind == "redis" else RABBITMQ_URL
    with broker_fleet(url, engine, broker_url, redis_namespace) as fleet, fleet.client() as admin:
        for _ in range(3):
            assert admin.post("/api/messageConversations", json={
                "subject": "Stock", "text": "Low", "users": [{"id": ANA}]}).status_code == 201  # fmt: skip
        overview = admin.get("/api/ops/overview").json()
        assert overview["broker"] == kind
        outbox = next(q for q in overview["queues"] if q["queue"] == "outbox")
        assert outbox["waiting"] + outbox["inProgress"] == 3 and outbox["oldestWaitingAgeS"] is not None
        assert all("broker" in q and "error" not in q["broker"] for q in overview["queues"])
        fleet.start_worker(threads=2)
        wait_until(lambda: next(q for q in admin.get("/api/ops/overview").json()["queues"] if q["queue"] == "outbox")
                   ["waiting"] == 0, timeout_s=30, what="the outbox drained")  # fmt: skip


@pytest.mark.postgres
def test_a_fan_out_handed_to_a_worker_and_not_done_shows_expanded_x_of_y(delivery_db: tuple[str, Engine]) -> None:
    from sqlalchemy import func

    from messaging import conversations
    from messaging.db import make_sessionmaker
    from messaging.demo import ADMIN
    from messaging.directory import principal_for, user_by_uid
    from messaging.models import OutboxEvent
    from messaging.ops import overview
    from tests.support.deliveries import BEN, MIA

    _, engine = delivery_db
    with make_sessionmaker(engine)() as session:
        admin = user_by_uid(session, ADMIN)
        assert admin is not None
        conversations.send_private_message(
            session, sender=principal_for(session, admin), subject="Big one", text="Hello",
            refs=conversations.RecipientRefs(users=[ANA, BEN, MIA]),
        )  # fmt: skip
        event_id = session.scalar(select(func.max(OutboxEvent.id)))
        session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(enqueued_at=utcnow()))
        session.commit()
        (found,) = overview.fanouts(session)
    # The request wrote the rows of the users it names (DECISIONS #20); the audience adds the sender.
    assert (found.subject, found.audience) == ("Big one", 4) and 1 <= found.expanded <= 4


def test_the_overview_counts_repeat_the_partial_indexes_predicates_verbatim() -> None:
    # Otherwise the planner cannot prove the index applies and every poll scans the SENT history.
    predicates = {
        index.name: str(index.dialect_options["postgresql"]["where"]) for index in Delivery.__table__.indexes
    }
    assert predicates["ix_deliveries_due"] == ops_overview.DUE_INDEX_PREDICATE
    assert predicates["ix_deliveries_attention_id"] == ops_overview.ATTENTION_INDEX_PREDICATE


def test_retry_now_wakes_the_listening_delivery_relays_when_it_commits(server: LiveServer) -> None:
    from messaging.deliveries.relay import NOTIFY_CHANNEL
    from workers.relay import Listener

    ids = seed_deliveries(server.engine)
    listener = Listener(server.engine, NOTIFY_CHANNEL)
    try:
        assert listener.wait(0) is False  # nothing pending before the action
        retried = server.client().post("/api/ops/deliveries/retry", json={"ids": [ids["DEAD"]]})
        assert retried.json()["response"] == {"retried": 1}
        assert listener.wait(10.0) is True  # 10 s is only reached when the NOTIFY is missing
    finally:
        listener.close()
