"""GET /metrics: Prometheus text whose fleet figures match the database, and this process's HTTP requests."""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection, Engine, func, insert, select

from messaging.metric_tables import MetricTotal, MetricWatermark
from messaging.models import Delivery, DeliveryAttempt, Message, User, UserMessage
from tests.conftest import LiveServer, settle, wait_until


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
    """Deliveries of the demo's first message in every state, sent 0.3 s, 2 s and 100 s after it was written.

    Each with the attempt history the recorder would have written: failures, then the last outcome.
    """
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
        ids = conn.execute(insert(Delivery).returning(Delivery.id, Delivery.status, Delivery.attempts, Delivery.sent_at), [
            {"message_id": message_id, "user_id": user, "address": "x@example.org", "next_attempt_at": created, **row}
            for user, row in zip(users, rows, strict=True)
        ]).all()
        add_attempts(conn, [(i, status, n, sent or created) for i, status, n, sent in ids])


def add_attempts(conn: Connection, deliveries: list[tuple[int, str, int, datetime]]) -> None:
    """Attempts 1..n of each (delivery id, final status, n, last finish): FAILED until the last, which left the status."""
    history = [
        {"delivery_id": delivery_id, "attempt": k, "claimed_at": end - timedelta(seconds=n - k + 1),
         "finished_at": end - timedelta(seconds=n - k), "outcome": status if k == n else "FAILED"}
        for delivery_id, status, n, end in deliveries
        for k in range(1, n + 1)
    ]
    if history:
        conn.execute(insert(DeliveryAttempt), history)


def open_counts(engine: Engine) -> dict[tuple[tuple[str, str], ...], float]:
    """Deliveries per (channel, status) that are not sent or delivered, as /metrics labels them."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.channel, Delivery.status, func.count())
            .where(Delivery.status.not_in(["SENT", "DELIVERED", "UNDELIVERED"]))
            .group_by(Delivery.channel, Delivery.status)
        )
        return {(("channel", c), ("status", s)): float(n) for c, s, n in rows}


def attempt_counts(engine: Engine) -> dict[tuple[tuple[str, str], ...], float]:
    """Attempts per (channel, outcome) in the database, as /metrics labels them."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.channel, DeliveryAttempt.outcome, func.count())
            .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .group_by(Delivery.channel, DeliveryAttempt.outcome)
        )
        return {(("channel", c), ("outcome", o)): float(n) for c, o, n in rows}


def counted(samples: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[str, object]:
    """The delivery families of a scrape (not the HTTP ones, nor ages, which move by themselves)."""
    return {name: values for name, values in samples.items() if name.startswith(("herald_deliver", "herald_trigger"))}


def test_metrics_show_deliveries_retries_dead_queues_fanout_and_latency_as_the_database_holds_them(
    any_server: LiveServer,
) -> None:
    settle(any_server)
    seed_deliveries(any_server)
    samples = scrape(any_server)
    with any_server.engine.connect() as conn:
        inbox = conn.scalar(select(func.count()).select_from(UserMessage))
    assert samples["herald_deliveries"] == open_counts(any_server.engine)
    assert samples["herald_delivery_attempts_total"] == attempt_counts(any_server.engine)
    assert samples["herald_delivery_attempts_total"][(("channel", "email"), ("outcome", "SENT"))] == 2
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


def test_counters_stay_exact_while_scrapes_fold_the_attempts_into_running_totals(any_server: LiveServer) -> None:
    settle(any_server)
    seed_deliveries(any_server)
    first = scrape(any_server)
    with any_server.engine.connect() as conn:
        newest = conn.scalar(select(func.max(DeliveryAttempt.id)))

    def folded_all() -> bool:
        # A scrape prepares a step and a later one takes it, once no older transaction is open.
        assert counted(scrape(any_server)) == counted(first)
        with any_server.engine.connect() as conn:
            return bool(conn.scalar(select(MetricWatermark.folded_id)) == newest)

    wait_until(folded_all, timeout_s=30, interval_s=0.1, what="the scrapes to fold every attempt")
    with any_server.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(MetricTotal)) > 0
    # More attempts after the fold: counted once, on top of the folded ones.
    with any_server.engine.begin() as conn:
        sent = conn.execute(select(Delivery.id, Delivery.sent_at).where(Delivery.channel == "sms", Delivery.status == "SENT")).one()
        add_attempts(conn, [(sent[0], "SENT", 1, sent[1] + timedelta(hours=1))])
    after = scrape(any_server)
    assert after["herald_delivery_attempts_total"] == attempt_counts(any_server.engine)
    sms_sent = (("channel", "sms"), ("outcome", "SENT"))
    assert after["herald_delivery_attempts_total"][sms_sent] == first["herald_delivery_attempts_total"][sms_sent] + 1
    assert after["herald_trigger_to_sent_seconds_count"][(("channel", "sms"),)] == 2


def test_metrics_match_the_database_with_thousands_of_deliveries(any_server: LiveServer) -> None:
    settle(any_server)
    statuses = ["SENT"] * 17 + ["DEAD", "FAILED", "UNKNOWN"]
    with any_server.engine.begin() as conn:
        messages = conn.execute(select(Message.id, Message.created).order_by(Message.id)).all()
        users = list(conn.scalars(select(User.id).order_by(User.id)))
        pairs = [(m, u) for m in messages for u in users][:4000]
        rows = [
            {"message_id": m_id, "user_id": u, "channel": ("email", "sms")[n % 2], "status": statuses[n % 20],
             "address": "x@example.org", "attempts": 1 + n % 3, "next_attempt_at": created,
             "sent_at": created + timedelta(seconds=n % 90) if statuses[n % 20] == "SENT" else None}
            for n, ((m_id, created), u) in enumerate(pairs)
        ]
        ids = conn.execute(insert(Delivery).returning(Delivery.id, Delivery.status, Delivery.attempts, Delivery.sent_at), rows).all()
        add_attempts(conn, [(i, s, n, sent or datetime(2026, 1, 1)) for i, s, n, sent in ids])
    for _ in range(3):
        samples = scrape(any_server)
        assert samples["herald_deliveries"] == open_counts(any_server.engine)
        assert samples["herald_delivery_attempts_total"] == attempt_counts(any_server.engine)
        assert sum(samples["herald_trigger_to_sent_seconds_count"].values()) == sum(
            v for k, v in attempt_counts(any_server.engine).items() if dict(k)["outcome"] == "SENT"
        )


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
