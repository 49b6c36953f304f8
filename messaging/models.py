"""Herald's tables. Timestamps are naive UTC; public identifiers are DHIS2 UIDs."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from messaging.ids import new_uid

# BIGINT keys on PostgreSQL; SQLite only auto-increments a plain INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, as naive UTC (how every timestamp is stored)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base with deterministic constraint names (for migrations)."""

    metadata = MetaData(naming_convention=NAMING)


class MessageType(enum.StrEnum):
    """DHIS2 MessageType."""

    PRIVATE = "PRIVATE"
    SYSTEM = "SYSTEM"
    VALIDATION_RESULT = "VALIDATION_RESULT"
    TICKET = "TICKET"
    SYSTEM_VERSION_UPDATE = "SYSTEM_VERSION_UPDATE"


class ConversationStatus(enum.StrEnum):
    """DHIS2 MessageConversationStatus."""

    NONE = "NONE"
    OPEN = "OPEN"
    PENDING = "PENDING"
    INVALID = "INVALID"
    SOLVED = "SOLVED"


class ConversationPriority(enum.StrEnum):
    """DHIS2 MessageConversationPriority."""

    NONE = "NONE"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class DeliveryStatus(enum.StrEnum):
    """Where one (message, recipient, channel) delivery stands."""

    QUEUED = "QUEUED"
    SENDING = "SENDING"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"  # failed transiently; retried at next_attempt_at
    DEAD = "DEAD"
    SKIPPED = "SKIPPED"
    UNKNOWN = "UNKNOWN"  # the provider may have it; not resent blindly
    DISCARDED = "DISCARDED"  # an operator gave up on it: final, never sent


class Timestamped:
    """created / lastUpdated columns."""

    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class User(Timestamped, Base):
    """A DHIS2 user (credentials folded in)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(160), default="")
    surname: Mapped[str] = mapped_column(String(160), default="")
    email: Mapped[str | None] = mapped_column(String(255))
    phone_number: Mapped[str | None] = mapped_column(String(64))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def display_name(self) -> str:
        """DHIS2's displayName: first name and surname."""
        return f"{self.first_name} {self.surname}".strip() or self.username


class UserRole(Timestamped, Base):
    """A set of authorities."""

    __tablename__ = "user_roles"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(230))
    authorities: Mapped[list[str]] = mapped_column(JSON, default=list)


class UserRoleMember(Base):
    """users <-> user_roles."""

    __tablename__ = "user_role_members"
    role_id: Mapped[int] = mapped_column(ForeignKey("user_roles.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class OrganisationUnit(Timestamped, Base):
    """A node of the organisation unit tree."""

    __tablename__ = "org_units"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(230))
    short_name: Mapped[str] = mapped_column(String(50), default="")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    path: Mapped[str] = mapped_column(String(400), default="", index=True)  # "/uidA/uidB/self"
    level: Mapped[int] = mapped_column(Integer, default=1)


class UserOrgUnit(Base):
    """A user's data-capture organisation units (DHIS2 `organisationUnits`)."""

    __tablename__ = "user_org_units"
    org_unit_id: Mapped[int] = mapped_column(
        ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class UserGroup(Timestamped, Base):
    """A named set of users."""

    __tablename__ = "user_groups"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(230))


class UserGroupMember(Base):
    """user_groups <-> users."""

    __tablename__ = "user_group_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class UserSetting(Base):
    """A user's key/value setting (JSON-encoded value)."""

    __tablename__ = "user_settings"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class SystemSetting(Base):
    """A system-wide key/value setting (JSON-encoded value); also holds /api/configuration."""

    __tablename__ = "system_settings"
    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)


class Conversation(Timestamped, Base):
    """A DHIS2 MessageConversation."""

    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    subject: Mapped[str] = mapped_column(Text)
    message_type: Mapped[str] = mapped_column(String(32), default=MessageType.PRIVATE.value)
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.NONE.value)
    priority: Mapped[str] = mapped_column(String(16), default=ConversationPriority.NONE.value)
    last_sender_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_message: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    message_count: Mapped[int] = mapped_column(Integer, default=0)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    ext_message_id: Mapped[str | None] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Message(Timestamped, Base):
    """One message of a conversation."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_conversation_id_id", "conversation_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    sender_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(Text, default="")
    meta_data: Mapped[str | None] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)


class UserMessage(Base):
    """A participant's inbox row: one per (conversation, user).

    `last_message` repeats the conversation's so that a user's folder, newest first, is one index
    range scan on (user_id, message_type, last_message) however many conversations they have.
    """

    __tablename__ = "user_messages"
    __table_args__ = (
        # A folder (message type) newest first is one range of this index, a whole inbox one range
        # per type, merged (messaging/inbox.py); conversation_id is the tie-break of the order.
        # INCLUDE makes the counts (pager totals, unread per folder) index-only scans on PostgreSQL.
        Index(
            "ix_user_messages_inbox",
            "user_id",
            "message_type",
            "last_message",
            "conversation_id",
            postgresql_include=["read", "follow_up"],
        ),
    )
    # No foreign keys on this, the fan-out's hot table: their per-row checks cost 60% of a 100k-row
    # fan-out (1.26 s -> 0.51 s measured). Rows are only ever written from existing ids, and
    # conversations and users are never deleted (DHIS2 removal only removes the relation).
    conversation_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
    follow_up: Mapped[bool] = mapped_column(Boolean, default=False)
    last_message: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # The conversation's type never changes, so folders filter and count without a join.
    message_type: Mapped[str] = mapped_column(String(32), default=MessageType.PRIVATE.value)


class OutboxEvent(Base):
    """Work accepted in a request's transaction and not yet finished by a worker.

    A relay enqueues pending rows (enqueued_at NULL) to the broker; a sweeper re-enqueues rows
    enqueued longer ago than the stale limit and still not done, so a lost broker message or a
    killed worker only delays the work.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "available_at",
            postgresql_where=text("done_at IS NULL"),
            sqlite_where=text("done_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))  # the HTTP request that caused it (issue 11)
    # A fan-out's progress, committed with each chunk (messaging/fanout.py): the last user id
    # expanded, how many of the audience that covers, and the audience's size.
    progress_cursor: Mapped[int | None] = mapped_column(BigInteger)
    progress_expanded: Mapped[int | None] = mapped_column(Integer)
    progress_audience: Mapped[int | None] = mapped_column(Integer)


class FileResource(Base):
    """An uploaded file (message attachments); the bytes live in the database."""

    __tablename__ = "file_resources"
    __table_args__ = (
        # Per-uploader limits and the clean-up of uploads never attached (issue 8).
        Index("ix_file_resources_owner", "created_by_id", "assigned"),
        Index("ix_file_resources_unassigned", "assigned", "created"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    content_length: Mapped[int] = mapped_column(BigInteger, default=0)
    content_md5: Mapped[str | None] = mapped_column(String(32))
    domain: Mapped[str] = mapped_column(String(40), default="MESSAGE_ATTACHMENT")
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    assigned: Mapped[bool] = mapped_column(Boolean, default=False)
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Delivery(Base):
    """One (message, recipient, channel) email or SMS delivery and its fate."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", "channel"),
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('QUEUED', 'FAILED', 'SENDING')"),
            sqlite_where=text("status IN ('QUEUED', 'FAILED', 'SENDING')"),
        ),
        # Operators look for what needs attention, newest first (keyset on id), by status, error code
        # or recipient; SENT rows (most of them) stay out of the status index and are found by walking
        # the primary key backwards.
        Index(
            "ix_deliveries_attention_id",
            "status",
            "id",
            postgresql_where=text("status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"),
            sqlite_where=text("status IN ('FAILED', 'DEAD', 'UNKNOWN', 'DISCARDED', 'SKIPPED')"),
        ),
        Index(
            "ix_deliveries_error_code_id",
            "last_error_code",
            "id",
            postgresql_where=text("last_error_code IS NOT NULL"),
            sqlite_where=text("last_error_code IS NOT NULL"),
        ),
        Index("ix_deliveries_user_id_id", "user_id", "id"),
        # Throughput and trigger-to-sent latency over the last hours.
        Index(
            "ix_deliveries_sent_at",
            "sent_at",
            postgresql_where=text("sent_at IS NOT NULL"),
            sqlite_where=text("sent_at IS NOT NULL"),
        ),
        # Twilio's status callbacks find an SMS by its SID.
        Index(
            "ix_deliveries_sms_provider_id",
            "provider_id",
            postgresql_where=text("channel = 'sms' AND provider_id IS NOT NULL"),
            sqlite_where=text("channel = 'sms' AND provider_id IS NOT NULL"),
        ),
        # What the delivery relay polls for: due rows not yet handed to the broker.
        Index(
            "ix_deliveries_unqueued",
            "next_attempt_at",
            postgresql_where=text("status IN ('QUEUED', 'FAILED') AND enqueued_at IS NULL"),
            sqlite_where=text("status IN ('QUEUED', 'FAILED') AND enqueued_at IS NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys, as on user_messages: their per-row checks were 59% of the fan-out's delivery
    # INSERT (docs/architecture.md); rows are only written from existing ids, never orphaned.
    message_id: Mapped[int] = mapped_column(BigId)
    user_id: Mapped[int] = mapped_column(BigId)  # indexed with id: ix_deliveries_user_id_id
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED.value)
    address: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(64))
    provider_status: Mapped[str | None] = mapped_column(String(32))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Handed to the broker at this time (NULL: not yet); re-sent when still not claimed long after.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When the current attempt claimed the row: the token an outcome must match to be recorded.
    # While SENDING, next_attempt_at holds the end of the claim's lease.
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime)


class WebSession(Base):
    """A browser session; the cookie carries a token whose SHA-256 is the key."""

    __tablename__ = "web_sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


# --- validation (issue 10): its tables live in messaging/validation/models.py ---
from messaging.validation import models as _validation_models  # noqa: E402,F401

# --- security (issue 8): models of this concern go below ---


class LoginFailure(Base):
    """One failed login, under a throttle key (`user:<name>` or `addr:<address>`); rows age out."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key", "key", "failed_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(320))
    failed_at: Mapped[datetime] = mapped_column(DateTime, index=True)


# (spacer: keep sections apart so parallel branches merge cleanly)

# --- participants (issue 9): models of this concern go below ---


class RemovedParticipant(Base):
    """A user taken out of a conversation: the fan-out never adds them back (DECISIONS #20).

    A separate table keeps `user_messages` what the inbox reads: one row per current participant,
    so lists, counts and their index need no `removed` filter. Only adding the user again by name
    (`POST .../recipients`) deletes the record. No foreign keys, as on `user_messages`.
    """

    __tablename__ = "removed_participants"
    conversation_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    removed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

# (spacer)

# --- operations and observability (issue 11): models of this concern go below ---


class WorkerHeartbeat(Base):
    """One worker process (``herald worker`` or the in-process fleet) and what it is doing, refreshed every few seconds."""

    __tablename__ = "worker_heartbeats"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # worker | in-process
    queues: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime, index=True)
    current: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # the jobs under way: queue, actor, messageId, since

class DeliveryAttempt(Base):
    """One attempt of a delivery: when it was claimed and ended, how, and what the provider answered."""

    __tablename__ = "delivery_attempts"
    # One row per claim: the recorder's upsert key, and the delivery's history in order.
    __table_args__ = (UniqueConstraint("delivery_id", "claimed_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigId, ForeignKey("deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime)
    outcome: Mapped[str] = mapped_column(String(16))  # the status the attempt left: SENT, FAILED, DEAD, UNKNOWN, SKIPPED
    error_code: Mapped[str | None] = mapped_column(String(64))
    provider_answer: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(64))


# --- metrics (issue 11): its tables live in messaging/metric_tables.py ---
from messaging import metric_tables as _metric_tables  # noqa: E402,F401
