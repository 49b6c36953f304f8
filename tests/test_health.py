"""GET /health/live and /health/ready: ready means database at current migrations, broker up, a worker beating."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import Engine

from api.app import create_app
from messaging.db import make_engine
from messaging.migrate import upgrade
from tests.conftest import LiveServer, make_settings, wait_until
from tests.support.deliveries import broker_fleet
from tests.support.observability import OwnRedis, api_only


def test_live_answers_200_without_credentials(any_server: LiveServer) -> None:
    answer = any_server.client(None).get("/health/live")
    assert (answer.status_code, answer.json()) == (200, {"status": "UP"})


def test_ready_answers_200_with_the_in_process_fleet_beating(any_server: LiveServer) -> None:
    client = any_server.client(None)
    answer = wait_until(lambda: (r := client.get("/health/ready")).status_code == 200 and r,
                        timeout_s=15, what="the fleet's heartbeat after the tables were emptied")
    body = answer.json()
    assert body["status"] == "UP" and body["failing"] == []
    assert body["checks"]["broker"] == {"ok": True, "detail": "in-process"}
    assert body["checks"]["database"]["ok"] and body["checks"]["workers"]["ok"]


def test_ready_is_503_without_a_worker_and_with_redis_stopped_and_200_again_after(
    delivery_db: tuple[str, Engine], redis_namespace: str
) -> None:
    url, engine = delivery_db
    namespace = f"{redis_namespace}-ready"
    with OwnRedis() as own, broker_fleet(url, engine, own.url, namespace, HERALD_HEARTBEAT_S="0.2") as fleet, \
            fleet.client() as client:
        answer = client.get("/health/ready")
        assert answer.status_code == 503
        assert answer.json()["failing"] == ["workers"]
        assert answer.json()["checks"]["workers"]["detail"].startswith("no worker heartbeat")

        fleet.start_worker(threads=2)
        wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=10, what="ready with a worker")

        own.stop()
        answer = client.get("/health/ready")
        assert answer.status_code == 503
        body = answer.json()
        assert body["failing"] == ["broker"] and body["status"] == "DOWN"
        assert body["checks"]["broker"]["detail"].startswith("unreachable")
        assert own.url not in answer.text and str(own.port) not in answer.text  # nothing sensitive

        own.start()
        wait_until(lambda: client.get("/health/ready").status_code == 200, timeout_s=10, what="ready again")


def test_ready_is_503_naming_the_database_when_its_migrations_are_behind(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/behind.db")
    upgrade(engine, "0002")
    app = create_app(make_settings(DATABASE_URL=f"sqlite:///{tmp_path}/behind.db"), engine=engine)
    with api_only(app) as base, httpx.Client(base_url=base) as client:
        answer = client.get("/health/ready")
        assert answer.status_code == 503
        body = answer.json()
        assert "database" in body["failing"]
        assert body["checks"]["database"]["detail"].startswith("migrations not current: database at 0002")
        upgrade(engine)
        answer = client.get("/health/ready")
        assert answer.json()["checks"]["database"]["ok"] is True
        assert answer.json()["failing"] == ["workers"]  # no fleet runs beside this app
    engine.dispose()


def test_the_broker_check_answers_for_rabbitmq_and_names_an_unreachable_broker_without_its_address() -> None:
    from messaging import health
    from tests.conftest import RABBITMQ_URL, free_tcp_port

    assert health.broker(RABBITMQ_URL, 2.0) == health.Check(True, "rabbitmq accepts connections")
    closed = f"amqp://guest:secret-pw@127.0.0.1:{free_tcp_port()}/%2F"
    check = health.broker(closed, 1.0)
    assert not check.ok and check.detail.startswith("unreachable (") and "secret-pw" not in check.detail
    assert health.broker("", 1.0) == health.Check(True, "in-process")
