"""First start: the admin user on an empty database."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from messaging.metadata import import_metadata
from messaging.models import User

ADMIN_ROLE = {"id": "yrB6vc5Ip3r", "name": "Superuser", "authorities": ["ALL"]}


def ensure_admin(session: Session, password: str | None) -> str | None:
    """Create user `admin` (authority ALL) when there are no users; return a generated password."""
    if session.scalar(select(func.count()).select_from(User)):
        return None
    generated = None if password else secrets.token_urlsafe(12)
    report = import_metadata(
        session,
        {
            "userRoles": [ADMIN_ROLE],
            "users": [
                {
                    "id": "xE7jOejl9FI",
                    "username": "admin",
                    "password": password or generated,
                    "firstName": "John",
                    "surname": "Traore",
                    "userRoles": [{"id": ADMIN_ROLE["id"]}],
                }
            ],
        },
    )
    if not report.ok:
        raise RuntimeError(f"could not create the admin user: {report.as_response()}")
    return generated
