"""Carry out outbox events: expand user groups and org units into inbox rows with set-based SQL.

Users named directly got their rows in the request (`participants.py`); the fan-out adds the
members of groups and org units that have no row and were never removed (DECISIONS #20), so it
never undoes a removal, read, unread or follow-up made before it ran. Every statement is
idempotent (ON CONFLICT DO NOTHING on (conversation, user), guarded updates).

A fan-out runs in chunks of recipients by user id range: each chunk's inbox rows, its deliveries
and the event's progress (cursor, expanded, audience) commit together, so the ops overview shows
"expanded X of Y" while it runs, memory stays flat with the audience, and a worker killed half-way
resumes after the last committed chunk. The last chunk marks the event done.

With ``ranges`` > 1 (PostgreSQL, HERALD_FANOUT_RANGES), a fan-out of more than one chunk is split
instead: its first step counts the audience, cuts the user ids into up to ``ranges`` ranges of
about equal audience and stages one outbox event (kind ``fanout.range``) per range in the same
transaction, as validation runs stage their chunks. Worker threads carry the ranges out at once,
each chunk by chunk as above (its own cursor); each chunk also adds its share to the fan-out's
progress, and the chunk that completes the audience marks the fan-out done. A range killed
half-way loses its current chunk only and the sweeper enqueues it again; a done range never runs
again (its row lock and done mark); a split fan-out run again does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from messaging import outbox
from messaging.models import (
    Conversation,
    Message,
    OutboxEvent,
    RemovedParticipant,
    User,
    UserGroupMember,
    UserMessage,
    UserOrgUnit,
    utcnow,
)
from messaging.participants import INBOX_DONE, not_removed, ticket_managers_clause
from messaging.validation.notification import notify_results

__all__ = [
    "NotificationHook", "Progress", "Span", "add_participants", "never_removed", "process_event", "recipients_select",
    "run_step", "ticket_managers_clause",
]

# Recipients per fan-out step: progress shows every CHUNK_RECIPIENTS, and a killed worker
# redoes at most one chunk. Each step costs a transaction and a few small queries (~ms).
CHUNK_RECIPIENTS = 25_000
# Up to this many groups and org units, a chunk's upper end comes from one index scan each.
MAX_BOUND_SOURCES = 32
# Payload keys: a split fan-out's number of ranges; a range event's place in its fan-out.
RANGES = "ranges"
RANGE = outbox.RANGE


@dataclass(frozen=True, slots=True)
class Span:
    """A range of user ids, ``after < user_id <= upto`` (``upto`` None: no upper end): one chunk of a fan-out."""

    after: int | None = None
    upto: int | None = None

    def clause(self, column: Any) -> list[Any]:
        """The SQL conditions keeping ``column`` inside the span."""
        return [
            *([column > self.after] if self.after is not None else []),
            *([column <= self.upto] if self.upto is not None else []),
        ]


# Called after each step's inbox work, in the same transaction: email/SMS deliveries hook in here,
# for the step's span of user ids (None: the whole event). What it returns (if anything) runs
# once the step has committed.
NotificationHook = Callable[[Connection, OutboxEvent, Span | None], Callable[[], None] | None]


def recipients_select(
    users: list[int], groups: list[int], org_units: list[int], span: Span | None = None
) -> Select[Any] | None:
    """SELECT user_id over direct users, group members and org unit members (de-duplicated), within ``span``."""
    span = span or Span()
    parts: list[Select[Any]] = []
    if users:
        parts.append(select(User.id.label("user_id")).where(User.id.in_(users), *span.clause(User.id)))
    if groups:
        members = select(UserGroupMember.user_id).where(
            UserGroupMember.group_id.in_(groups), *span.clause(UserGroupMember.user_id)
        )
        # A user in two of the groups must come out once (one group cannot list a user twice).
        parts.append(members.distinct() if len(groups) > 1 else members)
    if org_units:
        assigned = select(UserOrgUnit.user_id).where(
            UserOrgUnit.org_unit_id.in_(org_units), *span.clause(UserOrgUnit.user_id)
        )
        parts.append(assigned.distinct() if len(org_units) > 1 else assigned)
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    merged = union(*parts).subquery()
    # Inserting in user order keeps both inbox indexes' writes local (a union hashes the order away).
    return select(merged.c.user_id).order_by(merged.c.user_id)


def _insert_ignore(conn: Connection) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(UserMessage)


# Above this many users, a NOT IN list costs more than it saves: the fast path gives way to
# ON CONFLICT, and removals are excluded by an anti-join instead.
MAX_KNOWN_PRESENT = 1000


def _removed_users(conn: Connection, conversation_id: int) -> list[int] | None:
    """Who was removed from the conversation (a handful at most), or None when too many to list."""
    removed = list(
        conn.scalars(
            select(RemovedParticipant.user_id)
            .where(RemovedParticipant.conversation_id == conversation_id)
            .limit(MAX_KNOWN_PRESENT + 1)
        )
    )
    return removed if len(removed) <= MAX_KNOWN_PRESENT else None


def never_removed(conn: Connection, conversation_id: int, recipients: Select[Any]) -> Select[Any]:
    """The recipients less those removed from the conversation (DECISIONS #20), for email and SMS too."""
    removed = _removed_users(conn, conversation_id)
    if removed == []:
        return recipients
    source = recipients.subquery()
    keep = source.c.user_id.not_in(removed) if removed is not None else not_removed(conversation_id, source.c.user_id)
    return select(source.c.user_id.label("user_id")).where(keep)


def add_participants(
    conn: Connection,
    conversation_id: int,
    recipients: Select[Any],
    last_message: Any,
    message_type: str,
    *,
    only_present: Sequence[int] | None = None,
    nobody_removed: bool = False,
) -> int:
    """Give every recipient never removed an unread inbox row; existing participants are untouched.

    `only_present`: the caller checked that these users (the sender, the named recipients) hold
    the only inbox rows of the conversation, so a plain INSERT that leaves them out cannot
    conflict; it skips ON CONFLICT's per-row speculative insertion (~20% of a large fan-out).
    `nobody_removed`: the caller found no removal while holding the conversation's lock.
    """
    source = recipients.subquery()
    # DECISIONS #20: a user removed before the fan-out reached them stays removed. The removals
    # are read first and left out by a NOT IN list: an anti-join probes the table once per row
    # (~100 ms of a 100k-row fan-out, measured), a list of a few ids costs nothing.
    removed = [] if nobody_removed else _removed_users(conn, conversation_id)
    excluded = [*(only_present or ()), *(removed or ())]
    conditions: list[Any] = [source.c.user_id.not_in(list(dict.fromkeys(excluded)))] if excluded else []
    if removed is None:
        conditions.append(not_removed(conversation_id, source.c.user_id))
    rows = (
        select(
            literal(conversation_id).label("conversation_id"),
            source.c.user_id,
            false().label("read"),
            false().label("follow_up"),
            literal(last_message).label("last_message"),
            literal(message_type).label("message_type"),
        )
        .select_from(source)
        # SQLite cannot parse INSERT ... SELECT ... ON CONFLICT unless the SELECT has a WHERE.
        .where(*conditions or [true()])
    )
    columns = ["conversation_id", "user_id", "read", "follow_up", "last_message", "message_type"]
    if only_present is not None:
        return conn.execute(insert(UserMessage).from_select(columns, rows)).rowcount or 0
    statement = (
        _insert_ignore(conn)
        .from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["conversation_id", "user_id"])
    )
    return conn.execute(statement).rowcount or 0


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an outbox event stands after one step: ``expanded`` of ``audience`` recipients covered."""

    done: bool
    expanded: int = 0
    audience: int | None = None


def process_event(
    engine: Engine,
    event_id: int,
    notify: NotificationHook | None = None,
    *,
    chunk: int = CHUNK_RECIPIENTS,
    ranges: int = 1,
) -> bool:
    """Carry out one outbox event to the end, chunk by chunk; False when it was already done or does not exist.

    ``ranges`` > 1: split a fan-out of more than ``chunk`` recipients into range events (module docstring).
    """
    ran = False
    while (step := run_step(engine, event_id, notify, chunk=chunk, ranges=ranges)) is not None:
        ran = True
        if step.done:
            break
    return ran


def run_step(
    engine: Engine,
    event_id: int,
    notify: NotificationHook | None = None,
    *,
    chunk: int = CHUNK_RECIPIENTS,
    ranges: int = 1,
) -> Progress | None:
    """Carry out and commit the next step of an event (a fan-out's next chunk of recipients, else all of it).

    None when the event is done or does not exist, or is a fan-out split into ranges (they carry it
    on). The step's effects, its deliveries and the event's progress commit together, so a worker
    killed between steps resumes after the last committed chunk, and one killed during a step
    loses only that step's uncommitted work. ``ranges`` > 1: a fan-out of more than ``chunk``
    recipients is split at its first step into up to that many range events (module docstring).
    """
    with engine.begin() as conn:
        query = select(OutboxEvent).where(OutboxEvent.id == event_id)
        if conn.dialect.name == "postgresql":
            # Serialise concurrent runs of the same event (a re-enqueue racing the original).
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None or row["done_at"] is not None or RANGES in (row["payload"] or {}):
            return None
        event = OutboxEvent(**dict(row))
        total = None
        if ranges > 1 and event.kind in _FAN_OUTS and event.progress_audience is None and conn.dialect.name == "postgresql":
            total = _audience(event.payload).count(conn)
            if total > chunk and (split := _split(conn, event, min(ranges, round(total / chunk)), total)) is not None:
                return split
        part = event.payload.get(RANGE) if event.kind == outbox.FANOUT_RANGE else None
        if event.kind in _FAN_OUTS or part is not None:
            # A range is a fan-out of its own within its span, reporting to the fan-out it is part of.
            fan_out = event if part is None else OutboxEvent(
                id=part["parent"], kind=part["kind"], payload=event.payload, request_id=event.request_id
            )  # fmt: skip
            within = Span() if part is None else Span(part["after"], part["upto"])
            span, progress = _fan_out_chunk(conn, event, fan_out.kind, chunk, total, within)
        else:
            _HANDLERS[event.kind](conn, event.payload)
            fan_out, span, progress = event, None, Progress(done=True)
        after_commit = notify(conn, fan_out, span) if notify is not None else None
        now = utcnow()
        values: dict[str, Any] = {
            "done_at": now if progress.done else None,
            "progress_cursor": span.upto if span is not None else None,
            "progress_expanded": progress.expanded,
            "progress_audience": progress.audience,
        }
        if not progress.done:
            # A sign of life for the sweeper: only a fan-out whose chunks stopped committing for
            # HERALD_OUTBOX_STALE_S is enqueued again, not every one that runs longer than that.
            values["enqueued_at"] = now
        conn.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values))
        if part is not None:
            _report(conn, fan_out.id, progress.expanded - (event.progress_expanded or 0), now)
    if after_commit is not None:
        after_commit()
    return progress


def _audience(payload: dict[str, Any]) -> Audience:
    """Everybody a fan-out event names, the sender too: its user ids cut it into chunks."""
    sender = payload.get("sender_id")
    return Audience([*([sender] if sender is not None else []), *payload["users"]], payload["groups"], payload["org_units"])


def _split(conn: Connection, event: OutboxEvent, ranges: int, total: int) -> Progress | None:
    """Stage ``ranges`` range events of about equal audience for a fan-out; None when one range would do.

    The fan-out then waits for them (module docstring). Each range starts with its share of the
    audience as its own, so that it runs in chunks and reports each chunk as the fan-out does.
    """
    bounds = _audience(event.payload).bounds(conn, ranges, total) if ranges > 1 else []
    if not bounds:
        return None
    spans = [Span(after, upto) for after, upto in zip([None, *bounds], [*bounds, None], strict=True)]
    # Shares are progress shown, not a count of rows: they add up to the audience recorded, whatever
    # joined or left between the count and the bounds, so the range done last completes it.
    size = -(-total // ranges)
    shares = [size] * len(bounds) + [max(1, total - size * len(bounds))]
    now = utcnow()
    conn.execute(insert(OutboxEvent), [
        {"kind": outbox.FANOUT_RANGE, "request_id": event.request_id, "created_at": now, "available_at": now,
         "attempts": 0, "progress_expanded": 0, "progress_audience": share, "payload": {**event.payload, RANGE: {
             "parent": event.id, "kind": event.kind, "after": span.after, "upto": span.upto}}}
        for span, share in zip(spans, shares, strict=True)
    ])  # fmt: skip
    audience = sum(shares)
    conn.execute(update(OutboxEvent).where(OutboxEvent.id == event.id).values(
        payload={**event.payload, RANGES: len(spans)}, progress_expanded=0, progress_audience=audience, enqueued_at=now,
    ))  # fmt: skip
    return Progress(done=False, expanded=0, audience=audience)


def _report(conn: Connection, fan_out_id: int, expanded: int, now: Any) -> None:
    """Add a range's chunk to its fan-out's progress; the chunk that completes the audience marks it done.

    Last in the chunk's transaction, so the fan-out's row lock is held only to the commit: ranges
    committing together queue here briefly.
    """
    total = OutboxEvent.progress_expanded + expanded
    conn.execute(update(OutboxEvent).where(OutboxEvent.id == fan_out_id, OutboxEvent.done_at.is_(None)).values(
        progress_expanded=total, enqueued_at=now, done_at=case((total >= OutboxEvent.progress_audience, now), else_=None),
    ))  # fmt: skip


def _fan_out_chunk(
    conn: Connection, event: OutboxEvent, kind: str, chunk: int, total: int | None = None, within: Span | None = None
) -> tuple[Span, Progress]:
    """Add the inbox rows of the next ``chunk`` recipients (by user id) above the event's cursor.

    ``total``: the audience, counted already; ``within``: a range's span (the chunks stop at its end).
    """
    payload = event.payload
    within = within or Span()
    audience = _audience(payload)
    if total is None:
        total = event.progress_audience if event.progress_audience is not None else audience.count(conn)
    expanded_before = event.progress_expanded or 0
    after = event.progress_cursor if event.progress_cursor is not None else within.after
    # What is left fits one chunk: no upper end to look up (the last chunk takes whatever is above
    # the cursor, members who joined meanwhile included). The named users may have been counted
    # in no chunk yet (one group's or org unit's bounds leave them out): a chunk of theirs to
    # themselves would cost a transaction.
    last = event.progress_audience is not None and total - expanded_before <= chunk + len(audience.users)
    upto = None if last or total <= chunk else audience.upper_bound(conn, after, chunk)
    if upto is None or (within.upto is not None and upto >= within.upto):
        upto = within.upto
    span = Span(after=after, upto=upto)
    present = _expand(conn, payload, span, first_run_fast_path=kind == outbox.CONVERSATION_CREATED)
    if not present:  # the conversation was deleted meanwhile: nothing left to expand
        span = Span(after=span.after, upto=within.upto)
    done = span.upto == within.upto
    expanded = total if done else min(total, expanded_before + chunk)
    return span, Progress(done=done, expanded=expanded, audience=total)


@dataclass(frozen=True, slots=True)
class Audience:
    """Who an event names: users, groups and org units (each a small list of ids)."""

    users: list[int]
    groups: list[int]
    org_units: list[int]

    def select(self, span: Span | None = None) -> Select[Any] | None:
        """Every user the event names, de-duplicated, within ``span``."""
        return recipients_select(list(dict.fromkeys(self.users)), self.groups, self.org_units, span)

    def count(self, conn: Connection) -> int:
        """How many users the event names, de-duplicated (once, at its first chunk)."""
        single = self._single_source()
        if single is None:
            everyone = self.select()
            return int(conn.scalar(select(func.count()).select_from(everyone.subquery())) or 0) if everyone is not None else 0
        # One group or org unit: an index-only count of its members, plus the named users outside it;
        # a union of the two would sort the whole audience to de-duplicate a handful of ids.
        member, key, value = single
        members = int(conn.scalar(select(func.count()).where(key == value)) or 0)
        users = list(dict.fromkeys(self.users))
        if not users:
            return members
        inside = select(func.count()).where(key == value, member.in_(users))
        named = int(conn.scalar(select(func.count()).where(User.id.in_(users))) or 0)
        return members + named - int(conn.scalar(inside) or 0)

    def _single_source(self) -> tuple[Any, Any, int] | None:
        """(member column, key column, id) when the event names exactly one group or org unit."""
        sources = [(UserGroupMember.user_id, UserGroupMember.group_id, g) for g in self.groups] + [
            (UserOrgUnit.user_id, UserOrgUnit.org_unit_id, o) for o in self.org_units
        ]
        return sources[0] if len(sources) == 1 else None

    def bounds(self, conn: Connection, ranges: int, total: int) -> list[int]:
        """The upper ends of ``ranges`` ranges of user ids of about equal audience (all but the last, which is open).

        With one group or org unit, each is a short index skip from the one before (``upper_bound``:
        ~2.5 ms for 50,000 members, a window over them took ~12 ms); else one numbered pass over
        the de-duplicated audience (a sort).
        """
        size = -(-total // ranges)
        if ranges < 2:
            return []
        if self._single_source() is not None:
            found: list[int] = []
            while len(found) < ranges - 1 and (bound := self.upper_bound(conn, found[-1] if found else None, size)) is not None:
                found.append(bound)
            return found
        everyone = self.select()
        if everyone is None:
            return []
        source = everyone.subquery()
        numbered = select(source.c.user_id, func.row_number().over(order_by=source.c.user_id).label("n")).subquery()
        query = select(numbered.c.user_id).where(numbered.c.n % size == 0).order_by(numbered.c.user_id).limit(ranges - 1)
        return [int(u) for u in conn.scalars(query)]

    def upper_bound(self, conn: Connection, after: int | None, chunk: int) -> int | None:
        """The ``chunk``-th user id above ``after``: the next chunk's upper end; None when fewer remain."""
        span = Span(after=after)
        sources: list[Select[Any]] = []
        if (single := self._single_source()) is not None:
            # One group or org unit: its members alone set the bound (the named users shift a chunk
            # by a few), one index-only scan with no union to de-duplicate and sort (~2 ms a chunk).
            member, key, value = single
            query = select(member).where(key == value, *span.clause(member)).order_by(member).offset(chunk - 1).limit(1)
            bound = conn.scalar(query)
            return int(bound) if bound is not None else None
        if len(self.groups) + len(self.org_units) <= MAX_BOUND_SOURCES:
            # One short index range scan per group and org unit (their primary keys lead with it),
            # instead of sorting the whole remaining union once per chunk.
            if self.users:
                sources.append(select(User.id.label("user_id")).where(User.id.in_(self.users), *span.clause(User.id)))
            for group in self.groups:
                sources.append(select(UserGroupMember.user_id).where(
                    UserGroupMember.group_id == group, *span.clause(UserGroupMember.user_id)
                ).order_by(UserGroupMember.user_id).limit(chunk))  # fmt: skip
            for org_unit in self.org_units:
                sources.append(select(UserOrgUnit.user_id).where(
                    UserOrgUnit.org_unit_id == org_unit, *span.clause(UserOrgUnit.user_id)
                ).order_by(UserOrgUnit.user_id).limit(chunk))  # fmt: skip
        else:
            everyone = self.select(span)
            sources = [everyone] if everyone is not None else []
        if not sources:
            return None
        parts = [select(s.subquery().c.user_id) for s in sources]
        merged = (union(*parts) if len(parts) > 1 else parts[0]).subquery()
        query = select(merged.c.user_id).order_by(merged.c.user_id).offset(chunk - 1).limit(1)
        upto = conn.scalar(query)
        return int(upto) if upto is not None else None


def _expand(conn: Connection, payload: dict[str, Any], span: Span, *, first_run_fast_path: bool) -> bool:
    """The inbox rows of the recipients within ``span``; False when the conversation no longer exists."""
    # The request wrote the named users' rows itself (DECISIONS #20); events staged before that
    # change (no `inbox_done`) still name users for the fan-out to add.
    done = bool(payload.get(INBOX_DONE))
    users: list[int] = [] if done else payload["users"]
    recipients = recipients_select(users, payload["groups"], payload["org_units"], span)
    conversation_id = payload["conversation_id"]
    query = select(Conversation.last_message, Conversation.message_type).where(Conversation.id == conversation_id)
    if conn.dialect.name == "postgresql":
        # Held to commit: a request changing participants (remove, add, reply) waits for this
        # chunk or makes it wait, so a removal it commits meanwhile is never missed; between
        # chunks it runs, and the next chunk reads the removals again.
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    if row is None:
        return False
    if recipients is None:
        return True
    sender = payload.get("sender_id")
    present = [*([sender] if sender is not None else []), *(payload["users"] if done else [])]
    fast_path = first_run_fast_path and 0 < len(present) <= MAX_KNOWN_PRESENT
    # One round trip, after the lock (a statement's snapshot predates the lock it waits for): is
    # anybody removed (usually not: the list is then not read), and for the fast path, does the
    # span hold rows other than the request's? Within the span, only the rows the request wrote
    # can exist on a first pass (earlier chunks wrote below it, a failed chunk rolled back whole);
    # a participant added by name meanwhile, or a re-run, finds more and takes the ON CONFLICT path.
    checks = [exists().where(RemovedParticipant.conversation_id == conversation_id)]
    if fast_path:
        checks.append(exists().where(
            UserMessage.conversation_id == conversation_id, UserMessage.user_id.not_in(present),
            *span.clause(UserMessage.user_id),
        ))  # fmt: skip
    anyone_removed, *others = conn.execute(select(*checks)).one()
    only_present = present if fast_path and not others[0] else None
    add_participants(
        conn, conversation_id, recipients, row.last_message, row.message_type, only_present=only_present,
        nobody_removed=not anyone_removed,
    )  # fmt: skip
    return True


def _message_replied(conn: Connection, payload: dict[str, Any]) -> None:
    if payload.get(INBOX_DONE):
        return  # the reply's request marked the others unread itself; only deliveries remain
    created = conn.scalar(select(Message.created).where(Message.id == payload["message_id"]))
    if created is None:
        return
    conditions = [
        UserMessage.conversation_id == payload["conversation_id"],
        UserMessage.user_id != payload["replier_id"],
        # Guard: a re-run never drags last_message back or re-marks rows a newer reply touched.
        UserMessage.last_message < created,
    ]
    if payload.get("internal"):
        conditions.append(ticket_managers_clause(conn))
    conn.execute(
        update(UserMessage).where(and_(*conditions)).values(read=False, last_message=created)
    )


# Fan-outs run chunk by chunk (`_fan_out_chunk`); every other kind in one step.
_FAN_OUTS = frozenset({outbox.CONVERSATION_CREATED, outbox.RECIPIENTS_ADDED})
_HANDLERS: dict[str, Callable[[Connection, dict[str, Any]], None]] = {
    outbox.MESSAGE_REPLIED: _message_replied,
    outbox.VALIDATION_RESULTS: notify_results,
}

