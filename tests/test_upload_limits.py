"""Uploads never attached are bounded per user and removed after HERALD_UNATTACHED_UPLOAD_TTL, bytes and rows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from messaging.models import FileResource, utcnow
from tests.conftest import LiveServer, make_settings, serve, wait_until
from tests.support.demo import ALICE
from workers.upload_cleanup import UploadSweeper

pytestmark = pytest.mark.usefixtures("drain_outbox_after_each_test")
ENDPOINTS = ("/api/fileResources", "/api/messageConversations/attachments")


def upload(client: httpx.Client, size_bytes: int = 100, endpoint: str = ENDPOINTS[0]) -> httpx.Response:
    return client.post(endpoint, files={"file": ("note.txt", b"x" * size_bytes, "text/plain")})


def uid_of(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    return str(body["response"]["fileResource"]["id"] if "response" in body else body["id"])


def attach(client: httpx.Client, file_uid: str) -> None:
    response = client.post(
        "/api/messageConversations",
        json={"subject": "Files", "text": "See attached.", "users": [{"id": ALICE}], "attachments": [file_uid]},
    )
    assert response.status_code == 201, response.text


def stored(server: LiveServer) -> tuple[int, int]:
    """(rows, bytes of content) in file_resources."""
    with server.session() as session:
        rows, size_bytes = session.execute(
            select(func.count(), func.coalesce(func.sum(func.length(FileResource.content)), 0))
        ).one()
        return int(rows), int(size_bytes)


@pytest.fixture
def limited(any_server: LiveServer) -> Iterator[LiveServer]:
    """An API process on the demo database allowing 2 unattached uploads and 4 KiB per user."""
    settings = make_settings(
        DATABASE_URL=any_server.settings.database_url,
        HERALD_MAX_UNATTACHED_UPLOADS=2,
        HERALD_MAX_UNATTACHED_UPLOAD_BYTES=4096,
    )
    with serve(settings, any_server.engine) as live:
        yield live
        live.close_clients()


def assert_refused(response: httpx.Response, text: str) -> None:
    assert response.status_code == 409, response.text
    body: dict[str, Any] = response.json()
    assert body["httpStatus"] == "Conflict" and body["status"] == "ERROR"
    assert text in body["message"], body["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_user_may_hold_only_so_many_unattached_uploads(limited: LiveServer, endpoint: str) -> None:
    admin = limited.client()
    first = uid_of(upload(admin, endpoint=endpoint))
    uid_of(upload(admin, endpoint=ENDPOINTS[1] if endpoint == ENDPOINTS[0] else ENDPOINTS[0]))
    before = stored(limited)
    assert_refused(upload(admin, endpoint=endpoint), "Too many uploads not attached to a message: 2 of at most 2.")
    assert stored(limited) == before
    uid_of(upload(limited.client("mobile"), endpoint=endpoint))  # a quota per user
    attach(admin, first)  # an attached upload no longer counts
    uid_of(upload(admin, endpoint=endpoint))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_user_may_hold_only_so_many_unattached_bytes(limited: LiveServer, endpoint: str) -> None:
    admin = limited.client()
    uid_of(upload(admin, 3000, endpoint))
    assert_refused(upload(admin, 2000, endpoint), "would hold 4.9 KiB, more than the limit of 4.0 KiB")
    uid_of(upload(admin, 1000, endpoint))


def test_the_sweeper_removes_expired_unattached_uploads_and_keeps_attached_ones(any_server: LiveServer) -> None:
    admin = any_server.client()
    kept, expired, fresh = (uid_of(upload(admin, 1000)) for _ in range(3))
    attach(admin, kept)
    with any_server.session() as session:
        session.execute(
            update(FileResource).where(FileResource.uid.in_([kept, expired])).values(created=utcnow() - timedelta(hours=2))
        )
        session.commit()
    assert stored(any_server) == (3, 3000)
    # One hour's TTL: the server's own sweeper (24 h) leaves these two-hour-old rows alone.
    sweeper = UploadSweeper(any_server.engine, ttl_s=3600, interval_s=600)
    assert sweeper.run_once() == (1, 1000)
    assert stored(any_server) == (2, 2000)
    with any_server.session() as session:
        assert set(session.scalars(select(FileResource.uid))) == {kept, fresh}
    assert sweeper.run_once() == (0, 0)


def test_the_workers_sweep_by_themselves(any_server: LiveServer) -> None:
    settings = make_settings(
        DATABASE_URL=any_server.settings.database_url,
        HERALD_UNATTACHED_UPLOAD_TTL=3600,
        HERALD_UPLOAD_CLEANUP_INTERVAL_S=0.05,
    )
    with serve(settings, any_server.engine) as live:  # its in-process fleet runs a sweeper
        old = uid_of(upload(live.client(), 500))
        with live.session() as session:
            session.execute(update(FileResource).where(FileResource.uid == old).values(created=utcnow() - timedelta(hours=2)))
            session.commit()
        wait_until(lambda: stored(live) == (0, 0), what="the in-process sweeper to remove the expired upload")
        live.close_clients()


def test_the_ttl_is_read_from_either_key() -> None:
    assert make_settings().unattached_upload_ttl_s == 24 * 3600
    assert make_settings(HERALD_UNATTACHED_UPLOAD_TTL=60).unattached_upload_ttl_s == 60
    assert make_settings(HERALD_UNATTACHED_UPLOAD_TTL_S=90).unattached_upload_ttl_s == 90
