"""Demo data: the users, groups, organisation units and conversations the DHIS2 doc's examples name."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from messaging.directory import FEEDBACK_RECIPIENTS_KEY, set_system_setting
from messaging.metadata import import_metadata
from messaging.models import Conversation, Message, MessageType, User, UserMessage, utcnow
from messaging.validation.demo import load_validation_demo

PASSWORD = "district"  # noqa: S105 - the demo password the DHIS2 doc uses
ADMIN, MOBILE = "xE7jOejl9FI", "PhzytPW3g2J"
FEEDBACK_GROUP = "QYrzIjSfI8z"
# Not DiszpKrYNg8, which the DHIS2 doc also uses for the group: the org unit Ngelehun CHC has it, and
# the messaging app keys recipients by id, so one id for two objects sends to the wrong one.
NGELEHUN_STAFF = "EzMMCXOSPpJ"

ORG_UNITS = [
    {"id": "ImspTQPwCqd", "name": "Sierra Leone", "shortName": "Sierra Leone"},
    {"id": "O6uvpzGd5pu", "name": "Bo", "shortName": "Bo", "parent": {"id": "ImspTQPwCqd"}},
    {"id": "YuQRtpLP10I", "name": "Badjia", "shortName": "Badjia", "parent": {"id": "O6uvpzGd5pu"}},
    {"id": "DiszpKrYNg8", "name": "Ngelehun CHC", "shortName": "Ngelehun CHC", "parent": {"id": "YuQRtpLP10I"}},
    {"id": "fdc6uOvgoji", "name": "Bombali", "shortName": "Bombali", "parent": {"id": "ImspTQPwCqd"}},
    {"id": "g8upMTyEZGZ", "name": "Njandama MCHP", "shortName": "Njandama MCHP", "parent": {"id": "YuQRtpLP10I"}},
]
ROLES = [
    {"id": "yrB6vc5Ip3r", "name": "Superuser", "authorities": ["ALL"]},
    {"id": "Euq3XfEIEbx", "name": "Data entry clerk", "authorities": ["M_dhis-web-messaging"]},
]


def _user(uid: str, username: str, first: str, surname: str, ou: str, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": uid,
        "username": username,
        "password": PASSWORD,
        "firstName": first,
        "surname": surname,
        "organisationUnits": [{"id": ou}],
        "userRoles": [{"id": role}],
        **extra,
    }


USERS = [
    _user(ADMIN, "admin", "John", "Traore", "ImspTQPwCqd", "yrB6vc5Ip3r", email="admin@dhis2.example"),
    _user(MOBILE, "mobile", "Mobile", "User", "DiszpKrYNg8", "Euq3XfEIEbx", phoneNumber="+23276000001"),
    _user("OYLGMiazHtW", "alice", "Alice", "Banda", "DiszpKrYNg8", "Euq3XfEIEbx", email="alice@dhis2.example"),
    _user("N3PZBUlN8vq", "ibrahim", "Ibrahim", "Kamara", "g8upMTyEZGZ", "Euq3XfEIEbx", phoneNumber="+23276000002"),
    _user("awtnYWiVEd5", "fatmata", "Fatmata", "Sesay", "DiszpKrYNg8", "Euq3XfEIEbx"),
    _user("Kh68cDMwZsg", "mohamed", "Mohamed", "Conteh", "O6uvpzGd5pu", "Euq3XfEIEbx"),
]
GROUPS = [
    {"id": "ZoHNWQajIoe", "name": "Field workers", "users": [{"id": "N3PZBUlN8vq"}, {"id": "awtnYWiVEd5"}]},
    # The doc's recipients example sends a user group with this id.
    {"id": NGELEHUN_STAFF, "name": "Ngelehun staff", "users": [{"id": "awtnYWiVEd5"}, {"id": MOBILE}]},
    {"id": FEEDBACK_GROUP, "name": "Feedback managers", "users": [{"id": ADMIN}, {"id": "Kh68cDMwZsg"}]},
]

# (uid, subject, text, sender or None for system, participants)
CONVERSATIONS = [
    ("GDBqVfkmnp2", "DHIS2 version 2.7 is deployed", "The new version is live.", None, [ADMIN, MOBILE]),
    ("ZjHHSjyyeJ2", "Mortality data reporting",
     "Have you reported data for the Mortality data set for January 2014?", ADMIN, [ADMIN, MOBILE]),
    ("ZrKML5WiyFm", "Stock levels", "Please report stock levels by Friday.", "OYLGMiazHtW", [ADMIN, "OYLGMiazHtW"]),
    ("Gc03smoTm6q", "Training schedule", "The training starts on Monday.", "N3PZBUlN8vq", [ADMIN, "N3PZBUlN8vq"]),
    ("WzMRrCosqc0", "Vaccination campaign", "Campaign materials have arrived.", ADMIN, [ADMIN, "awtnYWiVEd5"]),
    ("lxCjiigqrJm", "Data quality review", "Review meeting next week.", "Kh68cDMwZsg", [ADMIN, "Kh68cDMwZsg"]),
    ("jMe43trzrdi", "Monthly summary", "The monthly summary is attached.", ADMIN, [ADMIN, MOBILE]),
]


def load_demo(session: Session) -> bool:
    """Load the demo data if it is not there yet; True when anything was written. No commit."""
    existing = set(session.scalars(select(User.uid).where(User.uid.in_([u["id"] for u in USERS]))))
    users = [
        {k: v for k, v in user.items() if k != "password"} if user["id"] in existing else user for user in USERS
    ]
    report = import_metadata(
        session, {"organisationUnits": ORG_UNITS, "userRoles": ROLES, "users": users, "userGroups": GROUPS}
    )
    if not report.ok:
        raise RuntimeError(f"demo metadata failed to import: {report.as_response()}")
    set_system_setting(session, FEEDBACK_RECIPIENTS_KEY, FEEDBACK_GROUP)
    ids = {uid: pk for uid, pk in session.execute(select(User.uid, User.id))}
    wrote = len(existing) < len(USERS)
    base = utcnow() - timedelta(days=len(CONVERSATIONS))
    for index, (uid, subject, text, sender, participants) in enumerate(CONVERSATIONS):
        if session.scalar(select(Conversation.id).where(Conversation.uid == uid)) is not None:
            continue
        wrote = True
        when = base + timedelta(days=index)
        sender_id = ids[sender] if sender else None
        conversation = Conversation(
            uid=uid,
            subject=subject,
            message_type=(MessageType.PRIVATE if sender else MessageType.SYSTEM).value,
            last_sender_id=sender_id,
            created_by_id=sender_id,
            last_message=when,
            message_count=1,
            created=when,
            last_updated=when,
        )
        session.add(conversation)
        session.flush()
        session.add(Message(conversation_id=conversation.id, sender_id=sender_id, text=text, created=when, last_updated=when))
        for participant in participants:
            session.add(
                UserMessage(
                    conversation_id=conversation.id,
                    user_id=ids[participant],
                    read=participant == sender,
                    last_message=when,
                    message_type=conversation.message_type,
                )
            )
    session.flush()
    wrote = load_validation_demo(session) or wrote
    return wrote
