"""Tables of validation rules, notification templates, results and the conversations they became."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from messaging.ids import new_uid
from messaging.models import Base, BigId, Timestamped, utcnow

DEFAULT_COMBO = "HllvX50cXC0"  # DHIS2's default category option combo


class Importance(enum.StrEnum):
    """DHIS2 Importance of a validation rule."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class SendStrategy(enum.StrEnum):
    """DHIS2 SendStrategy of a validation notification template."""

    SINGLE_NOTIFICATION = "SINGLE_NOTIFICATION"
    COLLECTIVE_SUMMARY = "COLLECTIVE_SUMMARY"


# DHIS2's Operator and its mathematical form (V{operator}).
OPERATORS = {
    "equal_to": "==",
    "not_equal_to": "!=",
    "greater_than": ">",
    "greater_than_or_equal_to": ">=",
    "less_than": "<",
    "less_than_or_equal_to": "<=",
    "compulsory_pair": "[Compulsory pair]",
    "exclusive_pair": "[Exclusive pair]",
}


class ValidationRule(Timestamped, Base):
    """A DHIS2 validation rule (its expressions are kept, never evaluated: results come from DHIS2)."""

    __tablename__ = "validation_rules"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(230))
    description: Mapped[str | None] = mapped_column(Text)
    instruction: Mapped[str | None] = mapped_column(Text)
    importance: Mapped[str] = mapped_column(String(16), default=Importance.MEDIUM.value)
    operator: Mapped[str] = mapped_column(String(32))
    left_description: Mapped[str | None] = mapped_column(Text)
    left_expression: Mapped[str] = mapped_column(Text, default="")
    right_description: Mapped[str | None] = mapped_column(Text)
    right_expression: Mapped[str] = mapped_column(Text, default="")
    period_type: Mapped[str] = mapped_column(String(40), default="Monthly")


class ValidationNotificationTemplate(Timestamped, Base):
    """A DHIS2 validation notification template."""

    __tablename__ = "validation_notification_templates"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    uid: Mapped[str] = mapped_column(String(11), unique=True, default=new_uid)
    name: Mapped[str] = mapped_column(String(230))
    subject_template: Mapped[str | None] = mapped_column(Text)
    message_template: Mapped[str] = mapped_column(Text)
    notify_users_in_hierarchy_only: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_parent_org_unit_only: Mapped[bool] = mapped_column(Boolean, default=False)
    send_strategy: Mapped[str] = mapped_column(String(32), default=SendStrategy.COLLECTIVE_SUMMARY.value)


class TemplateRule(Base):
    """validation_notification_templates <-> validation_rules."""

    __tablename__ = "validation_template_rules"
    template_id: Mapped[int] = mapped_column(
        ForeignKey("validation_notification_templates.id", ondelete="CASCADE"), primary_key=True
    )
    rule_id: Mapped[int] = mapped_column(
        ForeignKey("validation_rules.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class TemplateGroup(Base):
    """validation_notification_templates <-> user_groups (recipientUserGroups)."""

    __tablename__ = "validation_template_groups"
    template_id: Mapped[int] = mapped_column(
        ForeignKey("validation_notification_templates.id", ondelete="CASCADE"), primary_key=True
    )
    group_id: Mapped[int] = mapped_column(ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True)


class ValidationResult(Base):
    """A rule violation DHIS2 found; stored once per (rule, period, org unit, attribute option combo)."""

    __tablename__ = "validation_results"
    __table_args__ = (
        UniqueConstraint("rule_id", "period", "org_unit_id", "attribute_option_combo"),
        # What a notification run looks for: results not yet notified.
        Index(
            "ix_validation_results_unsent",
            "id",
            postgresql_where=text("NOT notification_sent"),
            sqlite_where=text("NOT notification_sent"),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("validation_rules.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(20))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    attribute_option_combo: Mapped[str] = mapped_column(String(11), default=DEFAULT_COMBO)
    left_value: Mapped[float | None] = mapped_column(Float)
    right_value: Mapped[float | None] = mapped_column(Float)
    day_in_period: Mapped[int] = mapped_column(Integer, default=0)
    notification_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ValidationNotification(Base):
    """A conversation a notification run created: one per (result, template) or per summary recipient set.

    (result_id, template_id) is unique for single notifications (NULL for summaries, and NULLs never
    collide), and (batch, part) for every conversation of a run: a run that commits twice cannot.
    """

    __tablename__ = "validation_notifications"
    __table_args__ = (
        UniqueConstraint("result_id", "template_id"),
        UniqueConstraint("batch", "part"),
    )
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True)
    batch: Mapped[str] = mapped_column(String(11))
    part: Mapped[int] = mapped_column(Integer)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("validation_results.id", ondelete="SET NULL"))
    template_id: Mapped[int | None] = mapped_column(
        ForeignKey("validation_notification_templates.id", ondelete="SET NULL")
    )
