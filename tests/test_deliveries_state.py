"""The delivery state machine: claims, outcomes, backoff, sweeping, re-driving; idempotence and crashes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, update

from messaging import conversations, deliveries, fanout
from messaging.db import make_engine, make_sessionmaker
from messaging.deliveries import Outcome, Result, RetryPolicy
from messaging.demo import ADMIN
from messaging.directory import principal_for, user_by_uid
from messaging.migrate import upgrade
from messaging.models import Delivery, OutboxEvent, User, utcnow
from tests.conftest import REDIS_URL, make_settings, reset_with_demo, wait_until
from tests.support.deliveries import (
    ANA,
    BEN,
    MIA,
    TEST_DEFAULTS,
    answers_left,
    by_user,
    deliveries_of,
    herald,
    mails_to,
    post_message,
    redis_fleet,
    seed_metadata,
    seed_recipients,
    settled,
    worker_process,
)
from tests.support.smtp_sink import STALL, SmtpSink
from workers.sending import CLAIM_DEPTH, DeliveryHost

pytestmark = [pytest.mark.postgres]


def bulk_email_users(engine: Engine, count: int, prefix: str = "Blk") -> list[str]:
    """``count`` more users with email addresses; their UIDs."""
    uids = [f"{prefix}{i:08d}" for i in range(count)]
    users = [
        {"id": uid, "username": f"{prefix.lower()}{i}", "firstName": "Bulk", "surname": str(i),
         "email": f"{prefix.lower()}{i}@clinic.example"}
        for i, uid in enumerate(uids)
    ]
    seed_metadata(engine, {"users": users})
    return uids


def staged(engine: Engine, *user_uids: str, channels: tuple[str, ...] = ("email",)) -> list[int]:
    """Admin messages these users and the fan-out runs here, without workers: the new deliveries' ids."""
    with make_sessionmaker(engine)() as session:
        admin = user_by_uid(session, ADMIN)
        assert admin is not None
        conversation = conversations.send_private_message(
            session, sender=principal_for(session, admin), subject="Staged", text="Hello",
            refs=conversations.RecipientRefs(users=list(user_uids)),
        )
        session.commit()
        event_id = session.scalar(select(func.max(OutboxEvent.id)))
    assert event_id is not None
    assert fanout.process_event(engine, event_id, notify=deliveries.notifier(channels))
    return [row.id for row in deliveries_of(engine, conversation.uid) if row.status == "QUEUED"]


def status_of(engine: Engine, ids: list[int]) -> dict[int, tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.status, Delivery.attempts).where(Delivery.id.in_(ids)))
        return {row.id: (row.status, row.attempts) for row in rows}


# --- idempotence and exclusivity ------------------------------------------------------------


def test_the_same_deliver_job_run_twice_sends_once_even_by_two_workers_at_the_same_time(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    settings = make_settings(DATABASE_URL=url, SMTP_URL=smtp_sink.url, **TEST_DEFAULTS)
    first_job = staged(engine, ANA, BEN)
    second_job = staged(engine, *bulk_email_users(engine, 20))
    hosts = [DeliveryHost(settings, engine, ("email",)) for _ in range(2)]  # two worker processes
    for host in hosts:
        host.start()
    try:
        hosts[0].deliver("email", first_job)
        hosts[0].deliver("email", first_job)  # the broker delivered the job twice
        threads = [threading.Thread(target=host.deliver, args=("email", second_job)) for host in hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # A job returns once its rows are claimed and handed to the loop; the sends go on.
        wait_until(
            lambda: set(status_of(engine, first_job + second_job).values()) == {("SENT", 1)},
            what="every row SENT once",
        )
    finally:
        for host in hosts:
            host.stop()
    assert set(status_of(engine, first_job + second_job).values()) == {("SENT", 1)}
    received = mails_to(smtp_sink)
    assert len(received) == 22 and set(received.values()) == {1}


def test_a_stopping_worker_finishes_the_send_under_way_and_hands_back_the_rows_not_started(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    overrides = {"SMTP_URL": smtp_sink.url, "HERALD_SMTP_CONNECTIONS": "1", "HERALD_SMTP_TIMEOUT_S": "1"}
    settings = make_settings(DATABASE_URL=url, **{**TEST_DEFAULTS, **overrides})
    ids = staged(engine, *bulk_email_users(engine, 4, "Stp"))
    smtp_sink.script_data([STALL])  # the first mail hangs in DATA until the client gives up
    host = DeliveryHost(settings, engine, ("email",))
    host.start()
    try:
        host.deliver("email", ids)  # returns with the rows claimed: one in DATA, three waiting for the connection
        wait_until(lambda: answers_left(smtp_sink, "DATA") == 0, what="the first mail's DATA to hang")
    finally:
        host.stop()
    columns = (Delivery.id, Delivery.status, Delivery.attempts, Delivery.enqueued_at, Delivery.last_error_code)
    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(*columns).where(Delivery.id.in_(ids)))}
    first, rest = rows[ids[0]], [rows[i] for i in ids[1:]]
    # The send under way ran to its end (a timeout after DATA left: maybe delivered, never resent blindly).
    assert (first.status, first.attempts) == ("UNKNOWN", 1)
    # The rows that never reached the server are QUEUED again, their attempt not counted, for the relay.
    assert {(r.status, r.attempts, r.enqueued_at, r.last_error_code) for r in rest} == {("QUEUED", 0, None, "stopping")}
    assert smtp_sink.messages == []


def test_concurrent_claims_of_the_same_rows_never_overlap(delivery_db: tuple[str, Engine]) -> None:
    _, engine = delivery_db
    ids = staged(engine, *bulk_email_users(engine, 200))
    claimed: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim() -> None:
        barrier.wait()
        mine: list[int] = []
        for start in range(0, len(ids), 10):
            mine += [c.delivery_id for c in deliveries.claim(engine, "email", ids[start : start + 10], lease_s=60)]
        claimed.append(mine)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    every = [i for mine in claimed for i in mine]
    assert sorted(every) == sorted(ids)  # each row claimed exactly once, by one of the four
    assert set(status_of(engine, ids).values()) == {("SENDING", 1)}


def test_a_sent_row_is_never_claimed_again_nor_requeued(delivery_db: tuple[str, Engine], smtp_sink: SmtpSink) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        conversation = post_message(live.client(), ANA)
        sent = settled(engine, conversation, count=1)["ana"]
        assert deliveries.claim(engine, "email", [sent.id], lease_s=60) == []
        refused = live.client().post(f"/api/deliveries/{sent.id}/requeue")
    assert refused.status_code == 409 and "only FAILED, DEAD and UNKNOWN" in refused.json()["message"]
    assert status_of(engine, [sent.id]) == {sent.id: ("SENT", 1)}
    assert len(smtp_sink.messages) == 1


def test_an_outcome_counts_only_for_its_own_claim_and_a_late_real_one_beats_the_sweepers_guess(
    delivery_db: tuple[str, Engine]
) -> None:
    _, engine = delivery_db
    [delivery_id] = staged(engine, ANA)
    [claim] = deliveries.claim(engine, "email", [delivery_id], lease_s=0)  # a lease that is over at once
    assert deliveries.expire_leases(engine) == 1
    with engine.connect() as conn:
        code = conn.scalar(select(Delivery.last_error_code).where(Delivery.id == delivery_id))
    assert status_of(engine, [delivery_id]) == {delivery_id: ("UNKNOWN", 1)} and code == "lease-expired"
    policy = RetryPolicy()
    stale = Outcome(delivery_id, claim.claimed_at - timedelta(seconds=1), 1, Result.SENT, provider_id="<old>")
    deliveries.record(engine, [stale], policy)
    assert status_of(engine, [delivery_id]) == {delivery_id: ("UNKNOWN", 1)}  # another claim's outcome: ignored
    deliveries.record(engine, [Outcome(delivery_id, claim.claimed_at, 1, Result.SENT, provider_id="<id>")], policy)
    assert status_of(engine, [delivery_id]) == {delivery_id: ("SENT", 1)}


# --- retries --------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_maximum_and_never_precedes_retry_after() -> None:
    policy = RetryPolicy(max_attempts=8, base_s=30, max_s=3600)
    rng = random.Random(7)
    for attempt, step in [(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (40, 3600)]:
        delays = [policy.delay_s(attempt, rng=rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # jittered, so retries of one outage spread out
    assert policy.delay_s(1, retry_after_s=120, rng=rng) == 120
    assert 15 <= policy.delay_s(1, retry_after_s=1, rng=rng) <= 30


def test_transient_failures_end_dead_after_the_last_attempt_with_the_reason(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_rcpt(["451 4.3.0 Try again later"] * 3)
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_MAX_ATTEMPTS="3") as live:
        conversation = post_message(live.client(), ANA)
        ana = settled(engine, conversation, count=1)["ana"]
    assert (ana.status, ana.attempts, ana.last_error_code) == ("DEAD", 3, "smtp-451")
    assert ana.last_error == "gave up after 3 attempts: SMTP 451 on RCPT TO: 4.3.0 Try again later"
    assert smtp_sink.messages == []


# --- re-driving -----------------------------------------------------------------------------


def test_dead_deliveries_are_re_driven_one_a_selection_or_all_by_an_admin(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_rcpt(["550 5.1.1 User unknown"] * 3)
    with engine.begin() as conn:  # a typo an operator will fix before re-driving
        conn.execute(update(User).where(User.uid == MIA).values(email="mia at clinic.example"))
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        admin = live.client()
        conversation = post_message(admin, ANA, BEN, MIA, *bulk_email_users(engine, 1, "Red"))
        rows = settled(engine, conversation, count=4)
        dead = sorted(row.id for row in rows.values() if row.status == "DEAD")
        assert len(dead) == 4 and rows["mia"].last_error_code == "invalid-address"
        listed = admin.get("/api/deliveries", params={"status": "DEAD", "channel": "email", "pageSize": 2}).json()
        assert listed["pager"]["total"] == 4 and len(listed["deliveries"]) == 2
        assert {d["status"] for d in listed["deliveries"]} == {"DEAD"}
        assert live.client("ben").post(f"/api/deliveries/{dead[0]}/requeue").status_code == 403
        assert live.client("ben").get("/api/deliveries").status_code == 403

        with engine.begin() as conn:
            conn.execute(update(User).where(User.uid == MIA).values(email="mia@clinic.example"))
        one = admin.post(f"/api/deliveries/{rows['mia'].id}/requeue")
        assert one.status_code == 200 and one.json()["response"] == {"requeued": 1}
        wait_until(lambda: status_of(engine, [rows["mia"].id])[rows["mia"].id][0] == "SENT", what="mia's mail")
        selection = admin.post("/api/deliveries/requeue", json={"ids": [rows["ana"].id]})
        assert selection.json()["response"] == {"requeued": 1}
        wait_until(lambda: status_of(engine, [rows["ana"].id])[rows["ana"].id][0] == "SENT", what="ana's mail")
        rest = admin.post("/api/deliveries/requeue", json={"all": True})
        assert rest.json()["response"] == {"requeued": 2}
        final = settled(engine, conversation, count=4)
        assert admin.post("/api/deliveries/requeue", json={"ids": [1], "all": True}).status_code == 400
        assert admin.post("/api/deliveries/requeue", json={"all": True, "statuses": ["SENT"]}).status_code == 400
    assert {row.status for row in final.values()} == {"SENT"}
    assert all(row.attempts == 1 for row in final.values())  # attempts start again on a re-drive
    assert final["mia"].address == "mia@clinic.example"  # the address is read afresh
    received = mails_to(smtp_sink)
    assert len(received) == 4 and set(received.values()) == {1}


def test_the_zero_setup_sqlite_database_creates_claims_records_sweeps_and_requeues(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/herald.db")
    upgrade(engine)
    try:
        reset_with_demo(engine)
        seed_recipients(engine)
        ids = staged(engine, ANA, BEN, MIA, channels=("email", "sms"))
        assert len(ids) == 6
        email = [c for c in deliveries.claim(engine, "email", ids, lease_s=60, base_url="https://h.example")]
        assert len(email) == 3 and all(c.draft and c.draft.conversation_url for c in email)
        assert deliveries.claim(engine, "email", ids, lease_s=60) == []
        policy = RetryPolicy(max_attempts=1)
        deliveries.record(engine, [
            Outcome(email[0].delivery_id, email[0].claimed_at, 1, Result.SENT, provider_id="<a>"),
            Outcome(email[1].delivery_id, email[1].claimed_at, 1, Result.TRANSIENT, code="smtp-451", reason="busy"),
        ], policy)
        sms = deliveries.claim(engine, "sms", ids, lease_s=0)
        assert len(sms) == 3 and deliveries.expire_leases(engine) == 3  # the third email's lease still runs
        statuses = Counter(status for status, _ in status_of(engine, ids).values())
        assert statuses == Counter({"UNKNOWN": 3, "SENT": 1, "DEAD": 1, "SENDING": 1})
        with make_sessionmaker(engine)() as session:
            assert deliveries.requeue(session, every=True, statuses=["DEAD", "UNKNOWN"]) == 4
            session.commit()
        assert deliveries.claim_due(engine, ["email", "sms"], limit=10) != []
    finally:
        engine.dispose()


# --- crashes and lost jobs (real Redis, real worker processes) -------------------------------


@pytest.mark.redis
def test_an_emptied_redis_loses_no_delivery(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str
) -> None:
    url, engine = delivery_db
    namespace = f"{redis_namespace}-lost"
    with redis_fleet(url, engine, REDIS_URL, namespace, SMTP_URL=smtp_sink.url, HERALD_DELIVERY_STALE_S="1") as fleet:
        with fleet.client() as client:
            conversation = post_message(client, ANA, BEN, MIA)
        with engine.connect() as conn:
            event_id = conn.scalar(select(OutboxEvent.id).where(OutboxEvent.done_at.is_(None)))
        workers = fleet.runtime.deliveries
        assert event_id is not None and workers is not None
        fanout.process_event(engine, event_id, notify=workers.notify)  # the fan-out hands its rows to Redis itself
        assert workers.relay.run_once() == 0  # nothing left for the relay: the jobs are in Redis now...
        with engine.connect() as conn:
            enqueued = conn.scalars(select(Delivery.enqueued_at).where(Delivery.status == "QUEUED")).all()
        assert len(enqueued) == 3 and None not in enqueued
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{namespace}*"))
        assert keys
        client.delete(*keys)  # ...and Redis restarts empty
        client.close()
        fleet.start_worker()
        rows = settled(engine, conversation, count=3)
    assert {row.status for row in rows.values()} == {"SENT"}
    assert mails_to(smtp_sink) == Counter({"ana@clinic.example": 1, "ben@clinic.example": 1, "mia@clinic.example": 1})


@pytest.mark.redis
def test_a_worker_killed_mid_send_loses_nothing_and_resends_nothing_blindly(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    uids = bulk_email_users(engine, 6, "Kil")
    smtp_sink.script_data([STALL])  # the first mail hangs in DATA: a send in flight when the worker dies
    overrides = {
        "SMTP_URL": smtp_sink.url, "HERALD_SMTP_CONNECTIONS": "1", "HERALD_DELIVERY_LEASE_S": "2",
        "HERALD_DELIVERY_STALE_S": "1", "HERALD_OUTBOX_POLL_S": "0.05",
    }
    with redis_fleet(url, engine, REDIS_URL, f"{redis_namespace}-kill", **overrides) as fleet:
        with fleet.client() as client:
            conversation = post_message(client, *uids)
        env = {**fleet.worker_env(), "HERALD_LOG_LEVEL": "DEBUG"}
        first = worker_process(env, tmp_path / "first-worker.log")
        held = CLAIM_DEPTH  # one SMTP connection: the rows a worker claims ahead of it
        try:
            # One row hangs in DATA, three wait for the connection, two wait for room to be claimed.
            wait_until(
                lambda: answers_left(smtp_sink, "DATA") == 0
                and Counter(r.status for r in deliveries_of(engine, conversation))["SENDING"] == held,
                timeout_s=30, what="the worker to be mid-send (the first mail's DATA hanging)",
            )
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        second = worker_process(env, tmp_path / "second-worker.log")
        try:
            rows = settled(engine, conversation, count=6, timeout_s=30)
            # The rows the dead worker held may have reached the server: UNKNOWN, never resent by itself.
            # The rows it had not claimed yet went out through the new worker once the sweeper re-enqueued them.
            statuses = Counter((r.status, r.last_error_code) for r in rows.values())
            assert statuses == Counter({("UNKNOWN", "lease-expired"): held, ("SENT", None): 6 - held})
            listed = subprocess.run(
                [sys.executable, "-m", "herald.cli", "deliveries", "list", "--status", "UNKNOWN"],
                env=env, capture_output=True, text=True, timeout=60, check=True,
            ).stdout
            assert "lease-expired" in listed
            # The operator checked: the stalled mail never arrived. Re-drive them.
            requeued = subprocess.run(
                [sys.executable, "-m", "herald.cli", "deliveries", "requeue", "--status", "UNKNOWN", "--all"],
                env=env, capture_output=True, text=True, timeout=60, check=True,
            ).stdout
            assert requeued.strip() == f"{held} deliveries requeued"
            final = settled(engine, conversation, count=6, timeout_s=30, final=frozenset({"SENT"}))
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(20)
    assert set(by_user(list(final.values())).keys()) == {f"kil{i}" for i in range(6)}
    received = mails_to(smtp_sink)
    assert len(received) == 6 and set(received.values()) == {1}


def test_the_relay_hands_due_rows_out_once_and_again_only_when_their_job_was_lost(
    delivery_db: tuple[str, Engine]
) -> None:
    _, engine = delivery_db
    ids = staged(engine, ANA, BEN)
    first = deliveries.claim_due(engine, ["email"], limit=10)
    assert sorted(i for i, _ in first) == sorted(ids)
    assert deliveries.claim_due(engine, ["email"], limit=10) == []  # enqueued: not again
    assert deliveries.claim_due(engine, ["sms"], limit=10) == []  # other channel
    assert deliveries.claim_due(engine, ["email"], limit=10, stale_s=60) == []  # not stale yet
    with engine.begin() as conn:
        conn.execute(update(Delivery).values(enqueued_at=utcnow() - timedelta(seconds=120)))
    assert sorted(i for i, _ in deliveries.claim_due(engine, ["email"], limit=10, stale_s=60)) == sorted(ids)
