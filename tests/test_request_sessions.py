"""Every request gives its database connection back, whichever way it ends.

The session of an authenticated request is opened by a plain dependency and closed in the
handler's own thread (api.deps.SessionClosingRoute), with the dependency's teardown as the net
for requests that end before their handler runs. A leak would show as connections still checked
out of a pool that nothing else uses.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine, event, func, select

from api.app import create_app
from messaging.db import make_engine
from messaging.models import Conversation
from tests.conftest import make_settings, reset_with_demo, serve_app, wait_until

pytestmark = pytest.mark.postgres

DRAFT = {"subject": "Stock", "text": "Please report", "users": [{"id": "PhzytPW3g2J"}]}


@pytest.fixture
def own_pool(pg_url: str, pg_engine: Engine) -> Iterator[tuple[str, Engine]]:
    """An API without in-process workers on an engine of its own: its pool counts only requests."""
    reset_with_demo(pg_engine)
    engine = make_engine(pg_url, pool_size=5, max_overflow=0)
    with serve_app(create_app(make_settings(DATABASE_URL=pg_url), engine=engine)) as url:
        yield url, engine
    engine.dispose()


def _all_returned(engine: Engine) -> None:
    wait_until(lambda: engine.pool.checkedout() == 0, timeout_s=5, what="every connection back in the pool")  # type: ignore[attr-defined]


def test_every_way_a_request_ends_gives_its_connection_back(own_pool: tuple[str, Engine]) -> None:
    url, engine = own_pool
    with httpx.Client(base_url=url, auth=("admin", "district"), timeout=30) as client:
        answers = [
            client.post("/api/messageConversations", json=DRAFT).status_code,  # commits
            client.get("/api/messageConversations?pageSize=5").status_code,  # reads, never commits
            client.post("/api/messageConversations", content=b"{", headers={"content-type": "application/json"}).status_code,
            client.post("/api/messageConversations", json={**DRAFT, "users": [{"id": "NoSuchUser1"}]}).status_code,
            client.get("/api/messageConversations/NoSuchConv1").status_code,  # raises in the handler
            client.get("/api/messageConversations", auth=("admin", "wrong")).status_code,  # fails in the dependency
        ]
    assert answers == [201, 200, 409, 409, 404, 401]
    _all_returned(engine)


def test_connections_are_reused_not_dropped(own_pool: tuple[str, Engine]) -> None:
    """A session that nobody closes is cleaned up by the garbage collector, which drops its
    connection instead of returning it: the pool then has to open new ones. 40 requests on a
    pool of five open at most five when every request closes its session."""
    url, engine = own_pool
    connects: list[object] = []
    event.listen(engine, "connect", lambda dbapi_connection, _record: connects.append(dbapi_connection))
    with engine.connect() as conn:
        before = conn.scalar(select(func.count()).select_from(Conversation))
    with httpx.Client(base_url=url, auth=("admin", "district"), timeout=30) as client:
        for _ in range(20):
            assert client.post("/api/messageConversations", content=b"{", headers={"content-type": "application/json"}).status_code == 409
            assert client.get("/api/messageConversations?pageSize=1").status_code == 200
    _all_returned(engine)
    assert len(connects) <= 5
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Conversation)) == before  # the bad bodies wrote nothing
