"""The demo data gives every object its own UID, across object types, as DHIS2 does."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from messaging.db import make_engine, make_sessionmaker
from messaging.demo import load_demo
from messaging.migrate import upgrade
from messaging.models import Base
from tests.conftest import LiveServer
from tests.support.demo import NGELEHUN_CHC, NGELEHUN_STAFF


def test_every_demo_uid_names_one_object_only() -> None:
    engine = make_engine("sqlite://")
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        load_demo(session)
        session.commit()
        uids: Counter[str] = Counter()
        for table in Base.metadata.sorted_tables:
            if "uid" in table.c:
                uids.update(uid for uid in session.scalars(select(table.c.uid)) if uid)
    engine.dispose()
    assert len(uids) > 10
    assert [uid for uid, count in uids.items() if count > 1] == []


def test_the_org_unit_and_the_group_the_doc_gives_one_id_are_two_objects(any_server: LiveServer) -> None:
    client = any_server.client()
    assert client.get(f"/api/organisationUnits/{NGELEHUN_CHC}").json()["name"] == "Ngelehun CHC"
    assert client.get(f"/api/userGroups/{NGELEHUN_STAFF}").json()["name"] == "Ngelehun staff"
    assert client.get(f"/api/userGroups/{NGELEHUN_CHC}").status_code == 404
