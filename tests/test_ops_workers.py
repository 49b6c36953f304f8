"""Worker heartbeats and GET /api/ops/workers: who is working, since when, on what; stale ones shown so."""

from __future__ import annotations

import threading
from datetime import timedelta

import dramatiq
import pytest
from sqlalchemy import Engine, select, update

from messaging import heartbeats
from messaging.models import WorkerHeartbeat, utcnow
from tests.conftest import REDIS_URL, LiveServer, wait_until
from tests.support.deliveries import broker_fleet

KEYS = {"id", "hostname", "pid", "kind", "queues", "startedAt", "lastSeen", "fresh", "current"}


def test_the_in_process_fleet_reports_itself_fresh_with_its_queues(any_server: LiveServer) -> None:
    client = any_server.client()
    assert client.get("/api/ops/workers").status_code == 200
    # The fixture emptied the tables after the fleet started: its row is back within one heartbeat.
    workers = wait_until(lambda: client.get("/api/ops/workers").json()["workers"], timeout_s=15, what="a heartbeat")
    mine = [w for w in workers if w["kind"] == "in-process"]
    assert mine and all(set(w) == KEYS for w in workers)
    assert mine[0]["fresh"] is True and "herald.outbox" in mine[0]["queues"] and mine[0]["current"] == []


def test_a_plain_user_is_refused_the_workers(server: LiveServer) -> None:
    answer = server.client("mobile").get("/api/ops/workers")
    assert answer.status_code == 403
    assert answer.json()["httpStatusCode"] == 403


def test_a_worker_shows_the_job_it_is_running_and_removes_its_row_when_it_stops(
    delivery_db: tuple[str, Engine], redis_namespace: str
) -> None:
    release = threading.Event()
    url, engine = delivery_db
    with broker_fleet(url, engine, REDIS_URL, f"{redis_namespace}-hb", HERALD_HEARTBEAT_S="0.1") as fleet:

        def slow() -> None:
            release.wait(20)

        actor: dramatiq.Actor[[], None] = dramatiq.actor(
            broker=fleet.runtime.broker, actor_name="test.slow", queue_name=f"{redis_namespace}-hb.outbox"
        )(slow)
        fleet.start_worker(threads=2)
        message = actor.send()
        with fleet.client() as client:

            def busy() -> list[dict[str, object]]:
                listed = client.get("/api/ops/workers").json()["workers"]
                return [w for w in listed if w["kind"] == "worker" and w["current"]]

            [worker] = wait_until(busy, timeout_s=15, what="the worker to report its job")
            [job] = worker["current"]
            assert job["actor"] == "test.slow" and job["messageId"] == message.message_id
            assert job["queue"] == f"{redis_namespace}-hb.outbox" and job["since"]
            assert worker["fresh"] is True and worker["pid"] > 0 and worker["hostname"]
            release.set()
            wait_until(lambda: not busy(), timeout_s=10, what="the job to end")
            fleet.stop_worker()
            listed = client.get("/api/ops/workers").json()["workers"]
        assert [w for w in listed if w["id"] == worker["id"]] == []


@pytest.mark.parametrize("missed_s, fresh", [(1.0, True), (20.0, False)])
def test_a_heartbeat_is_fresh_for_three_periods(worker_pg_engine: Engine, missed_s: float, fresh: bool) -> None:
    beat = heartbeats.Beat(id=f"test-{missed_s}", hostname="h", pid=1, kind="worker", queues=["q"],
                           started_at=utcnow(), current=[])
    heartbeats.beat(worker_pg_engine, beat)
    with worker_pg_engine.begin() as conn:
        conn.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.id == beat.id)
                     .values(last_seen=utcnow() - timedelta(seconds=missed_s)))
    from messaging.db import make_sessionmaker

    with make_sessionmaker(worker_pg_engine)() as session:
        [view] = [w for w in heartbeats.list_workers(session, heartbeat_s=5.0) if w.id == beat.id]
    assert view.fresh is fresh
    heartbeats.forget(worker_pg_engine, beat.id)


def test_rows_not_seen_for_ten_minutes_are_deleted_by_the_next_beat(worker_pg_engine: Engine) -> None:
    old = heartbeats.Beat(id="test-old", hostname="h", pid=1, kind="worker", queues=[], started_at=utcnow(), current=[])
    heartbeats.beat(worker_pg_engine, old)
    with worker_pg_engine.begin() as conn:
        conn.execute(update(WorkerHeartbeat).where(WorkerHeartbeat.id == old.id)
                     .values(last_seen=utcnow() - timedelta(seconds=heartbeats.EXPIRE_S + 1)))
    heartbeats.beat(worker_pg_engine, heartbeats.Beat(id="test-new", hostname="h", pid=2, kind="worker", queues=[],
                                                      started_at=utcnow(), current=[]))
    with worker_pg_engine.connect() as conn:
        ids = set(conn.scalars(select(WorkerHeartbeat.id)))
    assert "test-old" not in ids and "test-new" in ids
    heartbeats.forget(worker_pg_engine, "test-new")
