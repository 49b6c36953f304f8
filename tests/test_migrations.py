"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from messaging.db import make_engine
from messaging.migrate import upgrade
from messaging.models import Base


def schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would still change after upgrading to head."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_migrated_postgresql_matches_the_models(pg_engine: Engine) -> None:
    assert schema_differences(pg_engine) == []


def test_migrated_sqlite_matches_the_models(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/schema.db")
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    assert schema_differences(engine) == []
    engine.dispose()
