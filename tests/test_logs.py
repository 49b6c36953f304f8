"""Logs that help: one WARNING per failed attempt, one line per outage start and end, the request id end to end."""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, func, select

from messaging import heartbeats
from messaging.db import make_sessionmaker
from messaging.models import OutboxEvent, WorkerHeartbeat, utcnow
from tests.conftest import REDIS_URL, wait_until
from tests.support.deliveries import ANA, BEN, MIA, broker_fleet, post_message, settled, worker_process
from tests.support.observability import OwnRedis, TcpProxy, json_lines
from tests.support.smtp_sink import SmtpSink

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
ADDRESSES = ("ana@clinic.example", "ben@clinic.example", "mia@clinic.example")


def fresh_worker(engine: Engine) -> bool:
    """A `herald worker` process is beating."""
    with make_sessionmaker(engine)() as session:
        return heartbeats.fresh_count(session, heartbeat_s=0.2, kind=heartbeats.WORKER) > 0


def lines_of(log_path: Path, **match: Any) -> list[dict[str, Any]]:
    """The worker's JSON lines whose fields equal ``match``."""
    return [line for line in json_lines(log_path) if all(line.get(k) == v for k, v in match.items())]


def test_each_failed_attempt_is_one_warning_with_channel_code_and_ids_and_never_the_address(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.deliveries import herald

    url, engine = delivery_db
    smtp_sink.script_rcpt(["451 4.3.0 Try again later", "550 5.1.1 <who@clinic.example>: User unknown"])
    caplog.set_level(logging.INFO)
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_MAX_ATTEMPTS="3", HERALD_SMTP_CONNECTIONS="1") as live:
        conversation = post_message(live.client(), ANA, BEN)
        rows = settled(engine, conversation, count=2)
    assert sorted(row.status for row in rows.values()) == ["DEAD", "SENT"]
    warnings = [r for r in caplog.records if r.name == "herald.deliveries" and r.levelno == logging.WARNING]
    assert sorted((r.__dict__["outcome"], r.__dict__["code"]) for r in warnings) == [
        ("dead", "smtp-550"), ("retrying", "smtp-451")
    ]
    ids = {row.id for row in rows.values()}
    for record in warnings:
        assert record.__dict__["channel"] == "email" and record.__dict__["delivery_id"] in ids
        assert record.__dict__["conversation_uid"] == conversation and record.__dict__["message_uid"]
    dead = next(r for r in warnings if r.__dict__["outcome"] == "dead")
    assert dead.__dict__["delivery_id"] == next(row.id for row in rows.values() if row.status == "DEAD")
    everything = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("herald"))
    assert not any(address in everything for address in (*ADDRESSES, "who@clinic.example"))


def test_a_broker_outage_is_logged_once_when_it_starts_and_once_when_it_ends_never_per_poll(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    log_path = tmp_path / "worker.log"
    # A listening relay passes on its own every HERALD_OUTBOX_STALE_S / 4 (broker_fleet sets 1 s: 0.25 s),
    # and each pass during the outage is one refused enqueue.
    values = {"SMTP_URL": smtp_sink.url, "HERALD_HEARTBEAT_S": "0.2", "HERALD_LOG_FORMAT": "json"}
    with OwnRedis() as own, broker_fleet(url, engine, own.url, f"{redis_namespace}-outage", **values) as fleet:
        worker = worker_process(fleet.worker_env(), log_path)
        try:
            wait_until(lambda: fresh_worker(engine), timeout_s=30, what="the worker to beat")
            own.stop()
            with fleet.client() as client:
                conversation = post_message(client, ANA, BEN, MIA)  # accepted: the outbox holds it

            def relay_attempts() -> int:
                with engine.connect() as conn:
                    return int(conn.scalar(select(OutboxEvent.attempts).where(OutboxEvent.done_at.is_(None))) or 0)

            # 20 refused passes (about 5 s), over several Dramatiq consumer restarts.
            wait_until(lambda: relay_attempts() >= 20, timeout_s=60, what="the relay to fail 20 passes")
            wait_until(lambda: lines_of(log_path, event="outage-start"), timeout_s=10, what="the outage line")
            own.start()
            rows = settled(engine, conversation, count=3, timeout_s=30)
            wait_until(lambda: lines_of(log_path, event="outage-end"), timeout_s=15, what="the recovery line")
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
    assert {row.status for row in rows.values()} == {"SENT"}
    lines = json_lines(log_path)
    broker_lines = [line for line in lines if line.get("outage") == "broker"]
    assert [line["event"] for line in broker_lines] == ["outage-start", "outage-end"], broker_lines
    assert broker_lines[-1]["failures"] >= 20
    assert not [line for line in lines if "Traceback" in str(line)]
    loud = [line for line in lines if line.get("level") in {"WARNING", "ERROR", "CRITICAL"}]
    assert len(loud) <= 6, loud


def test_the_request_id_of_an_http_request_is_on_every_worker_line_of_the_jobs_it_caused(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    log_path = tmp_path / "worker.log"
    smtp_sink.script_rcpt(["550 5.1.1 <ana@clinic.example>: User unknown"])
    values = {"SMTP_URL": smtp_sink.url, "HERALD_HEARTBEAT_S": "0.2", "HERALD_LOG_FORMAT": "json"}
    with OwnRedis() as own, broker_fleet(url, engine, own.url, f"{redis_namespace}-rid", **values) as fleet:
        worker = worker_process(fleet.worker_env(), log_path)
        try:
            with fleet.client() as client:
                body = {"subject": "Trace me", "text": "Hello", "users": [{"id": ANA}]}
                answer = client.post("/api/messageConversations", json=body, headers={"X-Request-Id": "ops-trace-42"})
                assert answer.status_code == 201 and answer.headers["X-Request-Id"] == "ops-trace-42"
                generated = client.get("/api/system/ping", headers={"X-Request-Id": "no spaces allowed here"})
                assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-Id"])
            conversation = answer.headers["Location"].rsplit("/", 1)[1]
            with engine.connect() as conn:
                assert conn.scalar(select(OutboxEvent.request_id)) == "ops-trace-42"
            settled(engine, conversation, count=1, timeout_s=30)
            wait_until(lambda: lines_of(log_path, outcome="dead"), timeout_s=10, what="the dead letter's line")
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
    traced = lines_of(log_path, request_id="ops-trace-42")
    assert any(line["message"].startswith("outbox event") for line in traced)  # the fan-out job
    [dead] = lines_of(log_path, outcome="dead")  # the delivery job the fan-out sent
    assert dead["request_id"] == "ops-trace-42" and dead["level"] == "WARNING"
    assert dead["channel"] == "email" and dead["code"] == "smtp-550" and "ana@" not in str(dead)


def test_an_smtp_outage_is_one_line_at_its_start_and_end_and_one_warning_per_failed_attempt(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.support.deliveries import deliveries_of, herald

    url, engine = delivery_db
    caplog.set_level(logging.INFO)
    smtp_sink.stop()
    with herald(url, engine, SMTP_URL=smtp_sink.url, HERALD_MAX_ATTEMPTS="100") as live:
        conversation = post_message(live.client(), ANA)
        wait_until(lambda: [r for r in deliveries_of(engine, conversation) if r.attempts >= 3],
                   timeout_s=15, what="three refused attempts")
        smtp_sink.restart()
        [row] = settled(engine, conversation, count=1, timeout_s=15).values()
    assert row.status == "SENT"
    records = [r for r in caplog.records if r.name == "herald.deliveries" and r.levelno == logging.WARNING]
    attempts = [r for r in records if "delivery_id" in r.__dict__]
    assert len(attempts) == row.attempts - 1  # every refused attempt, once; the last one went through
    assert {(r.__dict__["code"], r.__dict__["outcome"]) for r in attempts} == {("smtp-connect", "retrying")}
    outage = [r.__dict__["event"] for r in records if r.__dict__.get("outage") == "email provider"]
    assert outage == ["outage-start", "outage-end"]


def test_a_database_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink, redis_namespace: str, tmp_path: Path
) -> None:
    url, engine = delivery_db
    log_path = tmp_path / "worker.log"
    values = {"SMTP_URL": smtp_sink.url, "HERALD_HEARTBEAT_S": "0.2", "HERALD_LOG_FORMAT": "json"}
    parts = urlsplit(url)
    with TcpProxy(parts.port or 5432) as proxy, \
            broker_fleet(url, engine, REDIS_URL, f"{redis_namespace}-dbdown", **values) as fleet:
        env = {**fleet.worker_env(), "DATABASE_URL": url.replace(f":{parts.port}/", f":{proxy.port}/")}
        worker = worker_process(env, log_path)
        try:
            wait_until(lambda: fresh_worker(engine), timeout_s=30, what="the worker to beat")
            proxy.cut()

            def silent_for_s() -> float:
                with engine.connect() as conn:
                    last = conn.scalar(select(func.max(WorkerHeartbeat.last_seen)))
                return (utcnow() - last).total_seconds() if last else 0.0

            # Ten heartbeats missed, and the relays failing 50 passes a second all the while.
            wait_until(lambda: silent_for_s() > 2.0, timeout_s=30, what="the worker to lose its database")
            proxy.restore()
            wait_until(lambda: fresh_worker(engine), timeout_s=30, what="the worker to beat again")
            with fleet.client() as client:
                conversation = post_message(client, ANA)
            rows = settled(engine, conversation, count=1, timeout_s=30)
            wait_until(lambda: lines_of(log_path, outage="database", event="outage-end"), timeout_s=10,
                       what="the recovery line")
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(20)
    assert [row.status for row in rows.values()] == ["SENT"]
    lines = json_lines(log_path)
    database = [line["event"] for line in lines if line.get("outage") == "database"]
    assert database == ["outage-start", "outage-end"], database
    assert not [line for line in lines if "Traceback" in str(line)]
    loud = [line for line in lines if line.get("level") in {"WARNING", "ERROR", "CRITICAL"}]
    assert len(loud) <= 6, loud
