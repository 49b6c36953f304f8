"""The `herald` command: serve, worker, db upgrade, import. A composition root over api and workers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from herald import ops_cli
from herald.settings import HeraldSettings, load_settings
from messaging.settings import SettingsError

app = typer.Typer(help="Herald: DHIS2 messageConversations API and notification delivery workers.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
apps_app = typer.Typer(help="DHIS2 web apps served by Herald (HERALD_APPS_DIR).", no_args_is_help=True)
app.add_typer(apps_app, name="apps")
deliveries_app = typer.Typer(help="Email and SMS deliveries: list, retry now, discard.", no_args_is_help=True)
app.add_typer(deliveries_app, name="deliveries")
log = logging.getLogger("herald")


def _settings() -> HeraldSettings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"herald: {exc}", err=True)
        raise typer.Exit(2) from None
    from messaging.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    return settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    demo: Annotated[bool, typer.Option("--demo", help="Load the demo data (idempotent).")] = False,
) -> None:
    """Upgrade the database and serve the API; with no BROKER_URL, run the workers in-process too."""
    import uvicorn

    from api.app import create_app
    from messaging.bootstrap import ensure_admin
    from messaging.db import make_engine, make_sessionmaker
    from messaging.demo import load_demo
    from messaging.migrate import upgrade
    from workers.runtime import InProcessFleet, build_runtime

    settings = _settings()
    engine = make_engine(settings.database_url, pool_size=20)
    upgrade(engine)
    with make_sessionmaker(engine)() as session:
        if demo:
            load_demo(session)
        generated = ensure_admin(session, settings.admin_password.get_secret_value() if settings.admin_password else None)
        session.commit()
    if generated:
        typer.echo(f"Created user 'admin' with password: {generated}  (shown once; set HERALD_ADMIN_PASSWORD to choose)")
    fleet = None
    wake = None
    if settings.in_process_workers:
        fleet = InProcessFleet(build_runtime(settings, engine=engine))
        fleet.start()
        wake = fleet.runtime.relay.wake
    web = create_app(settings, engine=engine, on_commit=wake)
    typer.echo(f"Herald on http://{host}:{port}/api (workers: {'in-process' if fleet else settings.broker_url})")
    try:
        uvicorn.run(web, host=host, port=port, log_level=settings.log_level.lower(), proxy_headers=True, log_config=None)
    finally:
        if fleet is not None:
            fleet.stop()


@app.command()
def worker(
    processes: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(help="Threads per process.")] = 8,
) -> None:
    """Run the Dramatiq worker fleet for BROKER_URL (each process also runs the outbox relay)."""
    import os

    # Dramatiq reads its idle poll interval at import: 100 ms instead of 1 s keeps fan-out latency low.
    os.environ.setdefault("dramatiq_worker_timeout", "100")
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    settings = _settings()
    if not settings.broker_url:
        typer.echo("herald: worker needs BROKER_URL (redis://... or amqp://...)", err=True)
        raise typer.Exit(2)
    args = make_argument_parser().parse_args(
        ["herald.worker", "--processes", str(processes), "--threads", str(threads)]
    )
    raise typer.Exit(dramatiq_main(args) or 0)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to DATABASE_URL."""
    from messaging.db import make_engine
    from messaging.migrate import upgrade

    upgrade(make_engine(_settings().database_url))
    typer.echo("database is up to date")


@app.command("import")
def import_file(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Import DHIS2 metadata from a JSON file (same as POST /api/metadata)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from messaging.db import make_engine, make_sessionmaker
    from messaging.metadata import MetadataError, import_metadata
    from messaging.migrate import upgrade

    settings = _settings()
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        typer.echo(f"herald: {file} is not JSON: {exc}", err=True)
        raise typer.Exit(1) from None
    engine = make_engine(settings.database_url)
    upgrade(engine)
    body = payload if isinstance(payload, dict) else {}
    users = body.get("users")
    with_password = sum(1 for u in users if isinstance(u, dict) and u.get("password")) if isinstance(users, list) else 0
    columns = (TextColumn("hashing passwords"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with make_sessionmaker(engine)() as session, Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("hashing", total=with_password)
        try:
            report = import_metadata(session, body, progress=lambda n: progress.advance(task, n))
        except MetadataError as exc:
            typer.echo(f"herald: {exc}", err=True)
            raise typer.Exit(1) from None
        progress.update(task, description="writing")
        typer.echo(json.dumps(report.as_response(), indent=2))
        if not report.ok:
            session.rollback()
            engine.dispose()
            raise typer.Exit(1)
        session.commit()
    engine.dispose()


@apps_app.command("install")
def apps_install(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]) -> None:
    """Install (or replace) a DHIS2 web app from its App Hub zip (same as POST /api/apps)."""
    from messaging import apps

    settings = _settings()
    try:
        with file.open("rb") as data:
            installed = apps.install_zip(data, settings.apps_dir, max_bytes=settings.max_app_bytes)
    except apps.AppError as exc:
        typer.echo(f"herald: {file}: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"installed {installed.name} {installed.version} at {installed.launch_path} ({installed.path})")


@deliveries_app.command("requeue")
def deliveries_requeue(
    ids: Annotated[list[int] | None, typer.Option("--id", help="A delivery id (repeatable).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every delivery in the chosen statuses.")] = False,
    status: Annotated[list[str] | None, typer.Option("--status", help="DEAD (default), FAILED and/or UNKNOWN.")] = None,
) -> None:
    """Send FAILED, DEAD or UNKNOWN deliveries again now: attempts restart, the address is read afresh."""
    from messaging import deliveries
    from messaging.db import make_engine, make_sessionmaker

    if bool(ids) == every:
        typer.echo("herald: give --id N (repeatable) or --all", err=True)
        raise typer.Exit(2)
    statuses = [s.upper() for s in status or (["DEAD"] if every else sorted(deliveries.RETRYABLE))]
    engine = make_engine(_settings().database_url)
    with make_sessionmaker(engine)() as session:
        try:
            count = deliveries.requeue(session, ids=ids or None, every=every, statuses=statuses)
        except ValueError as exc:
            typer.echo(f"herald: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            session.commit()
            engine.dispose()
    typer.echo(f"{count} deliveries requeued")
    if ids and count < len(set(ids)):
        typer.echo(f"herald: {len(set(ids)) - count} of the named deliveries are not {', '.join(statuses)}", err=True)
        raise typer.Exit(1)


ops_cli.register(app, deliveries_app, lambda: _settings())


def main() -> None:
    """Console-script entry point."""
    app(prog_name="herald")


if __name__ == "__main__":
    main()
