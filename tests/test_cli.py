"""The `herald` command as an operator runs it: serve, db upgrade, import, configuration errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from messaging.db import make_engine, make_sessionmaker
from messaging.models import Conversation, User
from tests.conftest import free_tcp_port, wait_until

HERALD = [sys.executable, "-m", "herald.cli"]


def clean_env(**values: str) -> dict[str, str]:
    """The process environment without Herald's keys, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "BROKER_", "DATABASE_", "SMTP_", "TWILIO_"))}
    env.update(values)
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a herald command to completion."""
    return subprocess.run([*HERALD, *args], env=env, capture_output=True, text=True, timeout=120)


@dataclass
class Served:
    """A running `herald serve`; `output` holds what it printed once it has stopped."""

    url: str
    output: str = ""


@contextmanager
def serving(env: dict[str, str], *args: str, log: Path) -> Iterator[Served]:
    """`herald serve` in a subprocess until the block ends; its output goes to `log`."""
    port = free_tcp_port()
    served = Served(url=f"http://127.0.0.1:{port}")
    with log.open("w") as sink:
        proc = subprocess.Popen([*HERALD, "serve", "--port", str(port), *args], env=env, stdout=sink, stderr=subprocess.STDOUT)

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"herald serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            return httpx.get(f"{served.url}/api/system/ping", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout_s=60, interval_s=0.1, what="herald serve to answer")
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        served.output = log.read_text()


def test_serve_demo_is_a_working_system_and_loading_the_demo_twice_adds_nothing(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db")
    for _ in range(2):
        with serving(env, "--demo", log=tmp_path / "serve.log") as served:
            url = served.url
            listing = httpx.get(f"{url}/api/33/messageConversations", auth=("mobile", "district"), headers={"Accept": "application/xml"})
            assert listing.status_code == 200
            assert b'name="Mortality data reporting"' in listing.content
            created = httpx.post(
                f"{url}/api/messageConversations",
                json={"subject": "Hello", "text": "Hi", "users": [{"id": "PhzytPW3g2J"}]},
                auth=("admin", "district"),
            )
            assert created.status_code == 201
            uid = created.headers["Location"].rsplit("/", 1)[1]
            # In-process workers deliver to the recipient with no broker configured.
            wait_until(
                lambda url=url, uid=uid: httpx.get(
                    f"{url}/api/messageConversations/{uid}", auth=("mobile", "district")
                ).status_code == 200,
                what="the in-process worker to deliver",
            )
    engine = make_engine(f"sqlite:///{tmp_path}/herald.db")
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(User).where(User.username == "admin")) == 1
        demo = session.scalar(select(func.count()).select_from(Conversation).where(Conversation.uid == "ZjHHSjyyeJ2"))
        assert demo == 1
    engine.dispose()


def test_an_empty_database_gets_an_admin_with_a_password_printed_once(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db")
    with serving(env, log=tmp_path / "first.log") as first:
        assert httpx.get(f"{first.url}/api/me", auth=("admin", "district")).status_code == 401
    line = next(line for line in first.output.splitlines() if "Created user 'admin' with password:" in line)
    password = line.split("password:", 1)[1].split()[0]
    with serving(env, log=tmp_path / "second.log") as second:
        me = httpx.get(f"{second.url}/api/me", params={"fields": "username,authorities"}, auth=("admin", password))
        assert me.json() == {"username": "admin", "authorities": ["ALL"]}
    assert "Created user" not in second.output


def test_the_admin_password_can_be_chosen(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db", HERALD_ADMIN_PASSWORD="Chosen-Pass-1")
    with serving(env, log=tmp_path / "serve.log") as served:
        assert httpx.get(f"{served.url}/api/me", auth=("admin", "Chosen-Pass-1")).status_code == 200


def test_unknown_or_malformed_settings_stop_start_up_naming_the_key(tmp_path: Path) -> None:
    unknown = run("db", "upgrade", env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/h.db", HERALD_MAX_BODY_BYTE="1"))
    assert unknown.returncode == 2
    assert "HERALD_MAX_BODY_BYTE" in unknown.stderr
    malformed = run("serve", env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/h.db", HERALD_MAX_BODY_BYTES="lots"))
    assert malformed.returncode == 2
    assert "HERALD_MAX_BODY_BYTES" in malformed.stderr
    broker = run("worker", env=clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/h.db", BROKER_URL="kafka://x"))
    assert broker.returncode == 2 and "BROKER_URL" in broker.stderr


def test_import_creates_metadata_and_refuses_dangling_references_whole(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path}/herald.db")
    assert run("db", "upgrade", env=env).returncode == 0
    good = tmp_path / "good.json"
    good.write_text(json.dumps({
        "organisationUnits": [{"id": "OuImport001", "name": "Imported"}],
        "users": [{"id": "UsImport001", "username": "imported", "password": "Secret-123",
                   "organisationUnits": [{"id": "OuImport001"}]}],
    }))
    result = run("import", str(good), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stats"]["created"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "userGroups": [{"id": "GrImport001", "name": "G", "users": [{"id": "UsMissing01"}]}],
        "users": [{"id": "UsImport002", "username": "second"}],
    }))
    refused = run("import", str(bad), env=env)
    assert refused.returncode == 1
    assert "UsMissing01" in refused.stdout
    engine = make_engine(f"sqlite:///{tmp_path}/herald.db")
    with make_sessionmaker(engine)() as session:
        assert set(session.scalars(select(User.username))) == {"imported"}
        stored = session.scalar(select(User.password_hash).where(User.username == "imported"))
        assert stored is not None and stored.startswith("$argon2id$") and "Secret-123" not in stored
    engine.dispose()
