"""Operator commands: `herald status [--watch]` and `herald deliveries list|retry|discard`, with the dashboard's filters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from herald.settings import HeraldSettings
from messaging.settings import BrokerSettings

BATCH_ROWS = 5_000  # rows per transaction of a long retry/discard: progress shows, locks stay short

Channel = Annotated[list[str] | None, typer.Option("--channel", help="email or sms (repeatable).")]
Status = Annotated[list[str] | None, typer.Option("--status", help="A status, e.g. DEAD (repeatable).")]
ErrorCode = Annotated[list[str] | None, typer.Option("--error-code", help="An error code, e.g. smtp-550 (repeatable).")]
Recipient = Annotated[str | None, typer.Option(help="A user id, username or address.")]
User = Annotated[list[str] | None, typer.Option("--user", help="A user id (repeatable).")]
ConversationOpt = Annotated[list[str] | None, typer.Option("--conversation", help="A conversation id (repeatable).")]
Since = Annotated[str | None, typer.Option("--from", help="Created at or after (ISO 8601).")]
Until = Annotated[str | None, typer.Option("--to", help="Created before (ISO 8601).")]
Ids = Annotated[list[int] | None, typer.Option("--id", help="A delivery id (repeatable).")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


def _query(
    channel: list[str] | None, status: list[str] | None, error_code: list[str] | None, recipient: str | None,
    user: list[str] | None, conversation: list[str] | None, since: str | None, until: str | None,
    ids: list[int] | None = None,
) -> Any:
    """The dashboard's DeliveryQuery from the options; exit 2 naming a bad filter."""
    from api.delivery_query import delivery_ids, search_query
    from messaging.errors import BadRequest

    source = {"channel": channel, "status": status, "errorCode": error_code, "recipient": recipient, "user": user,
              "messageConversation": conversation, "from": since, "to": until}  # fmt: skip
    try:
        return search_query({k: v for k, v in source.items() if v}, ids=delivery_ids(ids) if ids else None)
    except BadRequest as exc:
        typer.echo(f"herald: {exc.message}", err=True)
        raise typer.Exit(2) from None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def _ago(now: datetime, value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (now - value).total_seconds()
    prefix, seconds = ("in ", -seconds) if seconds < 0 else ("", seconds)
    text = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
    return f"{prefix}{text}" if prefix else f"{text} ago"


def status_data(session: Session, settings: BrokerSettings) -> dict[str, Any]:
    """The overview as plain data: per channel, per queue (database and broker), latency."""
    from messaging.ops import broker, overview

    figures = overview.overview(session)
    names = [f"{settings.broker_namespace}.{q}" for q in ("outbox", "deliveries")]
    depths = {d.queue.rsplit(".", 1)[-1]: d for d in broker.queue_depths(settings.broker_url, settings.broker_namespace, names)}
    return {
        "at": _iso(figures.at),
        "broker": broker.broker_kind(settings.broker_url),
        "channels": [
            {"channel": c.channel, "waiting": c.waiting, "inProgress": c.in_progress, "retrying": c.retrying,
             "nextAttemptAt": _iso(c.next_attempt_at), "dead": c.dead, "unknown": c.unknown,
             "sentLastHour": c.sent_last_hour, "deliveredLastHour": c.delivered_last_hour,
             "oldestWaitingAt": _iso(c.oldest_waiting_at)}
            for c in figures.channels
        ],
        "outbox": {"waiting": figures.outbox.waiting, "inProgress": figures.outbox.in_progress,
                   "retrying": figures.outbox.retrying, "oldestWaitingAt": _iso(figures.outbox.oldest_waiting_at)},
        "brokerQueues": {name: {"waiting": d.waiting, "inProgress": d.in_progress, "error": d.error}
                         for name, d in depths.items()},
        "latencyS": overview.latency_s(session),
    }  # fmt: skip


def _status_tables(data: dict[str, Any]) -> Table:
    now = datetime.fromisoformat(data["at"].rstrip("Z"))
    grid = Table.grid(padding=(1, 0))
    channels = Table(title=f"Deliveries per channel ({data['at']}, broker: {data['broker']})")
    for column in ("channel", "waiting", "oldest", "in progress", "retrying", "next attempt", "dead", "unknown",
                   "sent 1 h", "delivered 1 h", "p50/p90/p99 s"):  # fmt: skip
        channels.add_column(column, justify="left" if column in ("channel", "next attempt", "oldest") else "right")
    for c in data["channels"]:
        lat = data["latencyS"].get(c["channel"])
        at = lambda v: datetime.fromisoformat(v.rstrip("Z")) if v else None  # noqa: E731
        channels.add_row(
            c["channel"], str(c["waiting"]), _ago(now, at(c["oldestWaitingAt"])), str(c["inProgress"]),
            str(c["retrying"]), _ago(now, at(c["nextAttemptAt"])), str(c["dead"]), str(c["unknown"]),
            str(c["sentLastHour"]), str(c["deliveredLastHour"]),
            f"{lat['p50']:.2f}/{lat['p90']:.2f}/{lat['p99']:.2f}" if lat else "-",
        )
    queues = Table(title="Queues")
    for column in ("queue", "waiting (database)", "in progress", "broker waiting", "broker in progress"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    o = data["outbox"]
    waiting = sum(c["waiting"] for c in data["channels"])
    busy = sum(c["inProgress"] for c in data["channels"])
    for name, db_waiting, db_busy in (("outbox", o["waiting"], o["inProgress"]), ("deliveries", waiting, busy)):
        b = data["brokerQueues"].get(name)
        broker_waiting = "-" if not b else (b["error"] or str(b["waiting"]))
        broker_busy = "-" if not b or b["inProgress"] is None else str(b["inProgress"])
        queues.add_row(name, str(db_waiting), str(db_busy), broker_waiting, broker_busy)
    grid.add_row(channels)
    grid.add_row(queues)
    return grid


def _view(row: Any, now: datetime) -> dict[str, Any]:
    waiting = row.status in ("QUEUED", "FAILED")
    return {
        "id": row.id, "channel": row.channel, "status": row.status, "address": row.address,
        "user": row.username, "attempts": row.attempts,
        "nextAttemptAt": _iso(row.next_attempt_at) if waiting else None,
        "lastErrorCode": row.last_error_code, "lastError": row.last_error,
        "created": _iso(row.created), "sentAt": _iso(row.sent_at), "messageConversation": row.conversation_uid,
    }  # fmt: skip


def register(app: typer.Typer, deliveries_app: typer.Typer, settings_of: Callable[[], HeraldSettings]) -> None:
    """Add `status` and `deliveries list|retry|discard` to the herald command."""

    @contextmanager
    def sessions() -> Iterator[tuple[HeraldSettings, Any]]:
        from messaging.db import make_engine, make_sessionmaker

        settings = settings_of()
        engine = make_engine(settings.database_url)
        try:
            yield settings, make_sessionmaker(engine)
        finally:
            engine.dispose()

    @app.command("status")
    def status(
        watch: Annotated[bool, typer.Option("--watch", help="Redraw every --interval seconds until Ctrl-C.")] = False,
        interval: Annotated[float, typer.Option(help="Seconds between redraws with --watch.", min=0.2)] = 2.0,
        as_json: AsJson = False,
    ) -> None:
        """The operations overview: deliveries per channel, queues in the database and the broker, latency."""
        with sessions() as (settings, maker):

            def read() -> dict[str, Any]:
                with maker() as session:
                    return status_data(session, settings)

            if as_json:
                typer.echo(json.dumps(read()))
                return
            console = Console()
            if not watch:
                console.print(_status_tables(read()))
                return
            try:
                with Live(_status_tables(read()), console=console, refresh_per_second=4) as live:
                    while True:
                        time.sleep(interval)
                        live.update(_status_tables(read()))
            except KeyboardInterrupt:
                pass

    @deliveries_app.command("list")
    def deliveries_list(
        channel: Channel = None, status: Status = None, error_code: ErrorCode = None, recipient: Recipient = None,
        user: User = None, conversation: ConversationOpt = None, since: Since = None, until: Until = None,
        limit: Annotated[int, typer.Option(help="Rows to show, newest first.", min=1, max=10_000)] = 20,
        before: Annotated[int | None, typer.Option(help="Only ids below this one (the next page).", min=1)] = None,
        as_json: AsJson = False,
    ) -> None:
        """Deliveries matching the filters, newest first, with the next attempt and the last error."""
        from messaging import deliveries
        from messaging.models import utcnow

        query = _query(channel, status, error_code, recipient, user, conversation, since, until)
        with sessions() as (_, maker), maker() as session:
            total = deliveries.count(session, query)
            rows = deliveries.page(session, query, limit=limit, before_id=before)
        now = utcnow()
        views = [_view(row, now) for row in rows]
        if as_json:
            typer.echo(json.dumps({"total": total, "deliveries": views,
                                   "next": {"before": rows[-1].id} if len(rows) == limit else None}))  # fmt: skip
            return
        console = Console()
        if not console.is_terminal:  # piped or captured: one plain line per row, whole, for grep and scripts
            typer.echo(f"{len(rows)} of {total} deliveries")
            for row in rows:
                waiting = row.status in ("QUEUED", "FAILED")
                error = f"  {row.last_error_code}: {row.last_error}" if row.last_error_code else ""
                typer.echo(f"{row.id:>8} {row.channel:6} {row.status:10} {row.username} <{row.address or '-'}> "
                           f"attempts={row.attempts} next={_ago(now, row.next_attempt_at) if waiting else '-'}{error}")  # fmt: skip
            if len(rows) == limit:
                typer.echo(f"next page: --before {rows[-1].id}")
            return
        table = Table(title=f"{len(rows)} of {total} deliveries")
        for column in ("id", "channel", "status", "recipient", "attempts", "next attempt", "last error"):
            table.add_column(column, justify="right" if column in ("id", "attempts") else "left", overflow="fold")
        for row in rows:
            waiting = row.status in ("QUEUED", "FAILED")
            error = f"{row.last_error_code}: {row.last_error}" if row.last_error_code else ""
            table.add_row(str(row.id), row.channel, row.status, f"{row.username} <{row.address or '-'}>",
                          str(row.attempts), _ago(now, row.next_attempt_at) if waiting else "-", error)  # fmt: skip
        console.print(table)
        if len(rows) == limit:
            typer.echo(f"next page: --before {rows[-1].id}")

    def act(action: str, ids: list[int] | None, every: bool, filters: tuple[Any, ...], as_json: bool) -> None:
        from messaging import deliveries

        channel, status, error_code, recipient, user, conversation, since, until = filters
        query = _query(channel, status, error_code, recipient, user, conversation, since, until, ids=ids)
        narrowed = any(filters) or ids
        if not narrowed and not every:
            typer.echo("herald: name deliveries with --id or filters, or pass --all for every FAILED, DEAD and UNKNOWN one", err=True)
            raise typer.Exit(2)
        bad = sorted(set(query.statuses) - deliveries.RETRYABLE)
        if bad:
            typer.echo(f"herald: only FAILED, DEAD and UNKNOWN deliveries can be acted on, not {bad[0]}", err=True)
            raise typer.Exit(2)
        with sessions() as (_, maker):
            done = _run(maker, action, query, as_json)
        verb = "retried" if action == deliveries.RETRY else "discarded"
        if as_json:
            typer.echo(json.dumps({verb: done}))
        else:
            typer.echo(f"{done} deliveries {verb}")
        if ids and done < len(set(ids)):
            typer.echo(f"herald: {len(set(ids)) - done} of the named deliveries are not FAILED, DEAD or UNKNOWN", err=True)
            raise typer.Exit(1)

    def _run(maker: Any, action: str, query: Any, as_json: bool) -> int:
        from messaging import deliveries

        done, before = 0, None
        with maker() as session:
            target = deliveries.count(session, replace(query, statuses=query.statuses or tuple(sorted(deliveries.RETRYABLE))))
        verb = "retried" if action == deliveries.RETRY else "discarded"
        columns = (TextColumn(f"{verb}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), disable=as_json or target < BATCH_ROWS) as progress:
            task = progress.add_task(verb, total=target)
            while True:
                with maker() as session:
                    batch = deliveries.act(session, action, query, limit=BATCH_ROWS, before_id=before)
                    session.commit()
                if batch.lowest_id is None:
                    break
                done += batch.changed
                before = batch.lowest_id
                progress.update(task, completed=done)
        return done

    @deliveries_app.command("retry")
    def deliveries_retry(
        ids: Ids = None, every: Annotated[bool, typer.Option("--all", help="Every FAILED, DEAD and UNKNOWN delivery.")] = False,
        channel: Channel = None, status: Status = None, error_code: ErrorCode = None, recipient: Recipient = None,
        user: User = None, conversation: ConversationOpt = None, since: Since = None, until: Until = None,
        as_json: AsJson = False,
    ) -> None:
        """Retry now the FAILED, DEAD and UNKNOWN deliveries named by --id or matching the filters."""
        from messaging import deliveries

        act(deliveries.RETRY, ids, every, (channel, status, error_code, recipient, user, conversation, since, until), as_json)

    @deliveries_app.command("discard")
    def deliveries_discard(
        ids: Ids = None, every: Annotated[bool, typer.Option("--all", help="Every FAILED, DEAD and UNKNOWN delivery.")] = False,
        channel: Channel = None, status: Status = None, error_code: ErrorCode = None, recipient: Recipient = None,
        user: User = None, conversation: ConversationOpt = None, since: Since = None, until: Until = None,
        as_json: AsJson = False,
    ) -> None:
        """Discard (never send) the FAILED, DEAD and UNKNOWN deliveries named by --id or matching the filters."""
        from messaging import deliveries

        act(deliveries.DISCARD, ids, every, (channel, status, error_code, recipient, user, conversation, since, until), as_json)
