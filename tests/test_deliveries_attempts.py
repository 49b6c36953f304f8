"""Every delivery attempt is kept; FAILED, DEAD and UNKNOWN rows are retried now or discarded, set-based."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from messaging import deliveries
from messaging.db import make_engine, make_sessionmaker
from messaging.deliveries import DeliveryQuery, Outcome, Result, RetryPolicy
from messaging.migrate import upgrade
from messaging.models import Delivery, DeliveryAttempt, User
from tests.conftest import reset_with_demo, wait_until
from tests.support.deliveries import ANA, BEN, MIA, herald, post_message, seed_recipients, settled
from tests.support.smtp_sink import SmtpSink
from tests.test_deliveries_state import staged, status_of


def history(engine: Engine, delivery_id: int) -> list[tuple[int, str, str | None, str | None]]:
    """(attempt, outcome, error code, provider answer) of one delivery, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(DeliveryAttempt.attempt, DeliveryAttempt.outcome, DeliveryAttempt.error_code,
                   DeliveryAttempt.provider_answer)
            .where(DeliveryAttempt.delivery_id == delivery_id)
            .order_by(DeliveryAttempt.claimed_at)
        )  # fmt: skip
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.mark.postgres
def test_each_attempt_keeps_its_outcome_code_and_the_servers_answer_and_a_retry_adds_the_next(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.script_rcpt(["451 4.3.0 try later", "550 5.1.1 User unknown"])
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        admin = live.client()
        conversation = post_message(admin, ANA)
        dead = settled(engine, conversation, count=1)["ana"]
        assert dead.status == "DEAD"
        steps = history(engine, dead.id)
        assert [(n, outcome, code) for n, outcome, code, _ in steps] == [(1, "FAILED", "smtp-451"), (2, "DEAD", "smtp-550")]
        assert "try later" in (steps[0][3] or "") and "User unknown" in (steps[1][3] or "")
        retried = admin.post(f"/api/deliveries/{dead.id}/requeue")
        assert retried.status_code == 200 and retried.json()["response"] == {"requeued": 1}
        wait_until(lambda: status_of(engine, [dead.id])[dead.id][0] == "SENT", what="the retried mail")
    assert [outcome for _, outcome, _, _ in history(engine, dead.id)] == ["FAILED", "DEAD", "SENT"]


@pytest.mark.postgres
def test_a_failed_delivery_waiting_for_its_next_attempt_is_retried_now_once_the_server_is_back(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    smtp_sink.stop()  # the outage
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_RETRY_BASE_S="3600", HERALD_RETRY_MAX_S="3600") as live:
        admin = live.client()
        conversation = post_message(admin, BEN)
        failed = settled(engine, conversation, count=1, final=frozenset({"FAILED"}))["ben"]
        smtp_sink.start()
        retried = admin.post("/api/deliveries/requeue", json={"ids": [failed.id], "statuses": ["FAILED"]})
        assert retried.json()["response"] == {"requeued": 1}
        wait_until(lambda: status_of(engine, [failed.id])[failed.id] == ("SENT", 1), what="the mail sent at once")
    assert [outcome for _, outcome, _, _ in history(engine, failed.id)] == ["FAILED", "SENT"]


def test_on_sqlite_outcomes_and_expired_leases_leave_attempts_and_retry_and_discard_act_on_a_query(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/herald.db")
    upgrade(engine)
    try:
        reset_with_demo(engine)
        seed_recipients(engine)
        ids = staged(engine, ANA, BEN, MIA, channels=("email",))
        claims = deliveries.claim(engine, "email", ids, lease_s=60)
        first, second, third = claims
        deliveries.record(engine, [
            Outcome(first.delivery_id, first.claimed_at, 1, Result.SENT, provider_id="<a>"),
            Outcome(second.delivery_id, second.claimed_at, 1, Result.TRANSIENT, code="smtp-451", reason="busy"),
            Outcome(third.delivery_id, third.claimed_at, 1, Result.PERMANENT, code="smtp-550", reason="no such user"),
        ], RetryPolicy())  # fmt: skip
        assert history(engine, first.delivery_id) == [(1, "SENT", None, None)]
        assert history(engine, second.delivery_id) == [(1, "FAILED", "smtp-451", "busy")]
        assert history(engine, third.delivery_id) == [(1, "DEAD", "smtp-550", "no such user")]
        with make_sessionmaker(engine)() as session:
            # Only FAILED, DEAD and UNKNOWN rows move: the SENT one is named but left alone.
            batch = deliveries.act(session, deliveries.RETRY, DeliveryQuery(ids=tuple(ids), statuses=("FAILED", "SENT")))
            assert batch.changed == 1
            assert deliveries.act(session, deliveries.DISCARD, DeliveryQuery(error_codes=("smtp-550",))).changed == 1
            session.commit()
        assert status_of(engine, ids) == {first.delivery_id: ("SENT", 1), second.delivery_id: ("QUEUED", 0),
                                          third.delivery_id: ("DISCARDED", 1)}  # fmt: skip
        again = deliveries.claim(engine, "email", [second.delivery_id], lease_s=0)
        assert len(again) == 1 and deliveries.expire_leases(engine) == 1
        assert history(engine, second.delivery_id)[-1][:3] == (1, "UNKNOWN", deliveries.LEASE_EXPIRED)
        assert deliveries.claim(engine, "email", [third.delivery_id], lease_s=60) == []  # discarded: never sent
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_cli_requeues_a_failed_delivery_and_exits_non_zero_when_a_named_one_cannot_be(
    delivery_db: tuple[str, Engine],
) -> None:
    url, engine = delivery_db
    ids = staged(engine, ANA, BEN)
    with engine.begin() as conn:
        conn.execute(update(Delivery).where(Delivery.id == ids[0]).values(status="FAILED", last_error_code="smtp-451"))
        conn.execute(update(Delivery).where(Delivery.id == ids[1]).values(status="SENT"))
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "herald.cli", "deliveries", "requeue", "--id", str(ids[0])],
                        env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and ok.stdout.strip() == "1 deliveries requeued", ok.stderr
    refused = subprocess.run([sys.executable, "-m", "herald.cli", "deliveries", "requeue", "--id", str(ids[1])],
                             env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 1 and "not" in refused.stderr
    assert status_of(engine, ids) == {ids[0]: ("QUEUED", 0), ids[1]: ("SENT", 0)}
    with engine.connect() as conn:
        assert conn.scalar(select(User.id).where(User.uid == ANA)) is not None
