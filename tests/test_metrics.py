"""GET /metrics: Prometheus text whose fleet figures match the database, and this process's HTTP requests."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, insert, select

from messaging.models import Delivery, Message, User, UserMessage
from tests.conftest import LiveServer, settle


def scrape(server: LiveServer) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of /metrics, by sample name and sorted labels."""
    answer = server.client(None).get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def seed_deliveries(server: LiveServer) -> None:
    """Deliveries of the demo's first message in every state, sent 0.3 s, 2 s and 100 s after it was written."""
    with server.engine.begin() as conn:
        message_id, created = conn.execute(select(Message.id, Message.created).order_by(Message.id).limit(1)).one()
        users = list(conn.scalars(select(User.id).order_by(User.id).limit(6)))
        rows = [
            {"channel": "email", "status": "SENT", "attempts": 1, "sent_at": created + timedelta(seconds=0.3)},
            {"channel": "email", "status": "SENT", "attempts": 3, "sent_at": created + timedelta(seconds=2)},
            {"channel": "sms", "status": "SENT", "attempts": 1, "sent_at": created + timedelta(seconds=100)},
            {"channel": "email", "status": "DEAD", "attempts": 4, "sent_at": None},
            {"channel": "sms", "status": "FAILED", "attempts": 2, "sent_at": None, "next_attempt_at": created},
            {"channel": "email", "status": "QUEUED", "attempts": 0, "sent_at": None, "next_attempt_at": created},
        ]
        conn.execute(insert(Delivery), [
            {"message_id": message_id, "user_id": user, "address": "x@example.org", "next_attempt_at": created, **row}
            for user, row in zip(users, rows, strict=True)
        ])


def test_metrics_show_deliveries_retries_dead_queues_fanout_and_latency_as_the_database_holds_them(
    any_server: LiveServer,
) -> None:
    settle(any_server)
    seed_deliveries(any_server)
    samples = scrape(any_server)
    with any_server.engine.connect() as conn:
        counts = {(c, s): n for c, s, n in conn.execute(
            select(Delivery.channel, Delivery.status, func.count()).group_by(Delivery.channel, Delivery.status))}
        inbox = conn.scalar(select(func.count()).select_from(UserMessage))
    assert samples["herald_deliveries"] == {
        (("channel", c), ("status", s)): float(n) for (c, s), n in counts.items()
    }
    assert samples["herald_delivery_retries_total"] == {(("channel", "email"),): 5.0, (("channel", "sms"),): 1.0}
    assert samples["herald_deliveries_dead"] == {(("channel", "email"),): 1.0, (("channel", "sms"),): 0.0}
    assert samples["herald_deliveries_retrying"] == {(("channel", "email"),): 0.0, (("channel", "sms"),): 1.0}
    assert samples["herald_fanout_recipients"] == {(): float(inbox or 0)}
    depth = samples["herald_queue_depth"]
    assert depth[(("queue", "outbox"),)] == 0.0
    assert depth[(("queue", "deliveries.email"),)] == 1.0 and depth[(("queue", "deliveries.sms"),)] == 1.0
    assert samples["herald_queue_oldest_age_seconds"][(("queue", "deliveries.sms"),)] > 0
    buckets = samples["herald_trigger_to_sent_seconds_bucket"]
    email = {dict(labels)["le"]: value for labels, value in buckets.items() if dict(labels)["channel"] == "email"}
    sms = {dict(labels)["le"]: value for labels, value in buckets.items() if dict(labels)["channel"] == "sms"}
    assert (email["0.25"], email["0.5"], email["1.0"], email["2.5"], email["+Inf"]) == (0, 1, 1, 2, 2)
    assert (sms["60.0"], sms["300.0"], sms["+Inf"]) == (0, 1, 1)
    assert samples["herald_trigger_to_sent_seconds_count"][(("channel", "email"),)] == 2
    assert abs(samples["herald_trigger_to_sent_seconds_sum"][(("channel", "email"),)] - 2.3) < 0.01


def test_metrics_count_http_requests_by_route_template_and_status_with_latency(any_server: LiveServer) -> None:
    client = any_server.client()
    before = scrape(any_server).get("herald_http_requests_total", {})
    key = (("method", "GET"), ("route", "/api/messageConversations/{uid}"), ("status", "404"))
    for uid in ("AAAAAAAAAAA", "BBBBBBBBBBB", "CCCCCCCCCCC"):
        assert client.get(f"/api/33/messageConversations/{uid}").status_code == 404
    client.get("/no/such/path/at/all")
    samples = scrape(any_server)
    assert samples["herald_http_requests_total"][key] - before.get(key, 0.0) == 3
    unmatched = (("method", "GET"), ("route", "unmatched"), ("status", "404"))
    assert samples["herald_http_requests_total"][unmatched] >= 1
    latency = (("method", "GET"), ("route", "/api/messageConversations/{uid}"))
    assert samples["herald_http_request_duration_seconds_count"][latency] >= 3
    assert samples["herald_http_request_duration_seconds_bucket"][(("le", "+Inf"), *latency)] >= 3
