"""Turning validation results into VALIDATION_RESULT conversations: the worker's outbox handler.

One outbox event (kind ``validation.results``) runs in one transaction: it claims the results it
covers (an UPDATE of notificationSent guarded by ``NOT notification_sent``, so two runs never
claim one result), renders every (result, template) pair, writes the conversations, messages,
inbox rows and ``validation_notifications`` rows, and the event is marked done with them. A worker
killed half-way leaves nothing behind; the re-run starts from scratch. Large batches stay
set-based: a few multi-row INSERTs and INSERT ... SELECTs per run, none per result. A run whose
single notifications come to more than ``inbox.CHUNK_ROWS`` inbox rows leaves those rows to chunk
events it stages in its transaction (see inbox.py), which the workers carry out in parallel.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, insert, not_, select, true, update

from messaging.ids import new_uid
from messaging.models import (
    Conversation,
    ConversationStatus,
    Message,
    MessageType,
    OrganisationUnit,
    UserMessage,
    utcnow,
)
from messaging.validation import inbox, recipients, rendering
from messaging.validation.models import (
    SendStrategy,
    TemplateRule,
    ValidationNotification,
    ValidationNotificationTemplate,
    ValidationResult,
    ValidationRule,
)

CLAIM_CHUNK = 2000
VN = cast(Table, ValidationNotification.__table__)


@dataclass(frozen=True)
class Pair:
    """One (result, template): a rendered message."""

    result_id: int
    template_id: int
    org_unit_id: int
    importance: str
    sort_key: tuple[Any, ...]
    subject: str
    text: str


def notify_results(conn: Connection, payload: dict[str, Any]) -> None:
    """Notify the results of one ingestion (or every unsent one); idempotent, in the caller's transaction."""
    if "parts" in payload:
        inbox.write_chunk(conn, payload)  # a chunk of a large run's inbox rows
        return
    batch = payload["batch"]
    claimed = _claim(conn, payload.get("result_ids"))
    if not claimed:
        return
    now = utcnow()
    pairs = _pairs(conn, claimed, now)
    singles = _strategy(conn, pairs, SendStrategy.SINGLE_NOTIFICATION)
    single = [p for p in pairs if p.template_id in singles]
    summary = [p for p in pairs if p.template_id not in singles]
    part = 0
    if single:
        part = _send_single(conn, batch, single, now)
    if summary:
        _send_summaries(conn, batch, summary, now, first_part=part)


def _claim(conn: Connection, result_ids: Sequence[int] | None) -> list[int]:
    """Mark not-yet-notified results with templates as notified now; the ids this run owns."""
    has_template = ValidationResult.rule_id.in_(select(TemplateRule.rule_id))
    base = (
        update(ValidationResult)
        .where(not_(ValidationResult.notification_sent), has_template)
        .values(notification_sent=True)
        .returning(ValidationResult.id)
    )
    if result_ids is None:
        return sorted(conn.scalars(base))
    claimed: list[int] = []
    ids = list(result_ids)
    for start in range(0, len(ids), CLAIM_CHUNK):
        chunk = ids[start : start + CLAIM_CHUNK]
        claimed.extend(conn.scalars(base.where(ValidationResult.id.in_(chunk))))
    return sorted(claimed)


def _pairs(conn: Connection, claimed: list[int], now: datetime) -> list[Pair]:
    """Every (result, template) of these results, rendered, in DHIS2's order (rule, period, combo, org unit)."""
    R, Rule, T = ValidationResult, ValidationRule, ValidationNotificationTemplate
    query = (
        select(
            R.id, R.org_unit_id, R.period, R.attribute_option_combo, R.left_value, R.right_value,
            Rule.name, Rule.description, Rule.operator, Rule.importance, Rule.left_description, Rule.right_description,
            OrganisationUnit.name.label("unit_name"),
            T.id.label("template_id"), T.name.label("template_name"), T.subject_template, T.message_template,
        )
        .join(Rule, Rule.id == R.rule_id)
        .join(OrganisationUnit, OrganisationUnit.id == R.org_unit_id)
        .join(TemplateRule, TemplateRule.rule_id == R.rule_id)
        .join(T, T.id == TemplateRule.template_id)
    )
    pairs: list[Pair] = []
    for start in range(0, len(claimed), CLAIM_CHUNK):
        for row in conn.execute(query.where(R.id.in_(claimed[start : start + CLAIM_CHUNK]))):
            facts = rendering.Facts(
                rule_name=row.name, rule_description=row.description, operator=row.operator,
                importance=row.importance, left_side_description=row.left_description,
                right_side_description=row.right_description, left_side_value=row.left_value,
                right_side_value=row.right_value, org_unit_name=row.unit_name, period=row.period,
            )
            subject, text = rendering.render(row.subject_template, row.message_template, facts, now)
            key = (row.name, row.period, row.attribute_option_combo, row.unit_name, row.id, row.template_name, row.template_id)
            pairs.append(Pair(row.id, row.template_id, row.org_unit_id, row.importance, key, subject, text))
    pairs.sort(key=lambda p: p.sort_key)
    return pairs


def _strategy(conn: Connection, pairs: Sequence[Pair], strategy: SendStrategy) -> set[int]:
    templates = {p.template_id for p in pairs}
    T = ValidationNotificationTemplate
    return set(conn.scalars(select(T.id).where(T.id.in_(templates), T.send_strategy == strategy.value)))


def _conversations(conn: Connection, items: Sequence[tuple[str, str, str]], now: datetime) -> list[int]:
    """Insert one VALIDATION_RESULT conversation and its one message per (subject, text, priority); their ids."""
    rows = [
        {
            "uid": new_uid(), "subject": subject, "message_type": MessageType.VALIDATION_RESULT.value,
            "status": ConversationStatus.OPEN.value, "priority": priority, "last_sender_id": None,
            "last_message": now, "message_count": 1, "created_by_id": None, "created": now, "last_updated": now,
        }
        for subject, _, priority in items
    ]
    statement = insert(Conversation).returning(Conversation.id, sort_by_parameter_order=True)
    ids = list(conn.scalars(statement, rows))
    messages = [
        {"uid": new_uid(), "conversation_id": cid, "sender_id": None, "text": text, "internal": False,
         "created": now, "last_updated": now}
        for cid, (_, text, _) in zip(ids, items, strict=True)
    ]
    conn.execute(insert(Message), messages)
    return ids


def _send_single(conn: Connection, batch: str, pairs: list[Pair], now: datetime) -> int:
    """One conversation per (result, template) not notified before; returns the parts used."""
    known: set[tuple[int, int]] = set()
    result_ids = sorted({p.result_id for p in pairs})
    for start in range(0, len(result_ids), CLAIM_CHUNK):
        chunk = result_ids[start : start + CLAIM_CHUNK]
        known.update(conn.execute(select(VN.c.result_id, VN.c.template_id).where(VN.c.result_id.in_(chunk))).all())
    fresh = [p for p in pairs if (p.result_id, p.template_id) not in known]
    if not fresh:
        return 0
    ids = _conversations(conn, [(p.subject, p.text, rendering.highest([p.importance])) for p in fresh], now)
    conn.execute(
        insert(VN),
        [
            {"conversation_id": cid, "batch": batch, "part": index, "result_id": p.result_id, "template_id": p.template_id}
            for index, (cid, p) in enumerate(zip(ids, fresh, strict=True))
        ],
    )
    members = inbox.member_counts(conn, {p.template_id for p in fresh})
    ends = inbox.chunk_ends([members.get(p.template_id, 0) for p in fresh])
    if len(ends) > 1:
        inbox.stage_chunks(conn, batch, ends)  # too many inbox rows for one transaction: see inbox.py
    else:
        inbox.write_single(conn, batch, None, None, now, fresh=True)
    return len(fresh)


def _send_summaries(conn: Connection, batch: str, pairs: list[Pair], now: datetime, *, first_part: int) -> None:
    """One conversation per distinct set of recipients, with DHIS2's summary subject, text and priority."""
    T = ValidationNotificationTemplate
    hierarchy_only = set(
        conn.scalars(
            select(T.id).where(T.id.in_({p.template_id for p in pairs}), T.notify_users_in_hierarchy_only.is_(true()))
        )
    )

    def key_of(p: Pair) -> recipients.Key:
        return (p.template_id, p.org_unit_id if p.template_id in hierarchy_only else None)

    by_key: dict[recipients.Key, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_key[key_of(p)].append(p)
    users_of = recipients.key_recipients(
        conn, {p.template_id for p in pairs}, {p.org_unit_id for p in pairs if p.template_id in hierarchy_only}
    )
    keys_of_user: dict[int, set[recipients.Key]] = defaultdict(set)
    for key in by_key:
        for user_id in users_of.get(key, ()):
            keys_of_user[user_id].add(key)
    groups: dict[frozenset[recipients.Key], list[int]] = defaultdict(list)
    for user_id, user_keys in keys_of_user.items():
        groups[frozenset(user_keys)].append(user_id)
    if not groups:
        return
    ordered = sorted(groups.items(), key=lambda item: sorted(item[1])[0])
    items = []
    for keys, _ in ordered:
        mine = sorted({id(p): p for k in keys for p in by_key[k]}.values(), key=lambda p: p.sort_key)
        items.append(rendering.summary(((p.importance, p.subject, p.text) for p in mine), now))
    ids = _conversations(conn, items, now)
    conn.execute(
        insert(VN),
        [{"conversation_id": cid, "batch": batch, "part": first_part + i, "result_id": None, "template_id": None}
         for i, cid in enumerate(ids)],
    )
    conn.execute(
        insert(UserMessage),
        [
            {"conversation_id": cid, "user_id": user_id, "read": False, "follow_up": False, "last_message": now,
             "message_type": MessageType.VALIDATION_RESULT.value}
            for cid, (_, users) in zip(ids, ordered, strict=True)
            for user_id in users
        ],
    )


def delivery_recipients(payload: dict[str, Any]) -> Select[Any]:
    """(message_id, user_id) of every inbox row a notification run created: who gets email and SMS."""
    statement = (
        select(Message.id.label("message_id"), UserMessage.user_id)
        .select_from(VN)
        .join(Message, Message.conversation_id == VN.c.conversation_id)
        .join(UserMessage, UserMessage.conversation_id == VN.c.conversation_id)
        .where(VN.c.batch == payload["batch"], inbox.chunk_filter(payload))
    )
    return cast(Select[Any], statement)

