"""Shared plumbing for the benchmarks: scratch databases, servers in subprocesses, wrk, tables."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("HERALD_BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("HERALD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def scratch_database() -> Iterator[str]:
    """A PostgreSQL database of this run's own, migrated, dropped afterwards."""
    from messaging.db import make_engine
    from messaging.migrate import upgrade

    name = f"herald_bench_{secrets.token_hex(4)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    """Block until something accepts connections on the port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def process(
    command: Sequence[str], env: dict[str, str], port: int | None = None, *, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a command (a server or a worker) for the duration of the block.

    `log`: append its stdout and stderr to this file (a pipe nobody reads blocks a chatty process).
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "BROKER_", "DATABASE_", "SMTP_", "TWILIO_"))}
    full_env.update(env)
    if log is not None:
        with log.open("ab") as out:
            proc = subprocess.Popen(list(command), env=full_env, cwd=ROOT, stdout=out, stderr=out)
    else:
        proc = subprocess.Popen(list(command), env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if port is not None:
            wait_for_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def uvicorn_command(target: str, port: int, *, factory: bool = False) -> list[str]:
    """uvicorn serving `target` on loopback with one process and access logs off."""
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
    return command + (["--factory"] if factory else [])


def require_wrk() -> str:
    """The wrk load generator (Debian package `wrk`)."""
    path = shutil.which("wrk")
    if not path:
        raise SystemExit("bench needs wrk: apt-get install wrk")
    return path


LUA_TEMPLATE = """
wrk.method = {method}
wrk.body = {body}
{headers}
"""


def wrk(url: str, *, method: str = "GET", body: str = "", headers: dict[str, str] | None = None,
        connections: int = 32, duration_s: int = 10, threads: int = 2) -> dict[str, float]:
    """Run wrk and return requests/s and latency percentiles in ms."""
    script = Path(f"/tmp/herald-bench-{secrets.token_hex(4)}.lua")
    header_lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items())
    script.write_text(LUA_TEMPLATE.format(method=json.dumps(method), body=json.dumps(body), headers=header_lines))
    try:
        out = subprocess.run(
            [require_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{duration_s}s", "--latency",
             "-s", str(script), url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        script.unlink(missing_ok=True)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    return result


def median(values: Sequence[float]) -> float:
    """The median of a few runs."""
    return float(statistics.median(values))


def print_table(title: str, rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """A plain aligned table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def emit(figures: dict[str, Any]) -> None:
    """The last line: one JSON object with the figures."""
    print(json.dumps(figures, sort_keys=True))


def psycopg_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one, for COPY."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def seed_org_unit(
    engine: Engine, ou: str, users: int, *, tag: str, contact: str | None = None, contacts: Sequence[str] = ()
) -> None:
    """Demo data plus org unit ``ou`` with ``users`` users assigned to it, written with COPY.

    Users are ``<tag>user<i>`` with UID ``<TAG initial><i, 10 digits>``; ``contact`` ("email" or
    "phone_number") gives each an address (``user<i>@clinic.example``, ``+25677<i, 7 digits>``);
    ``contacts`` gives each several (both, for email and SMS).
    """
    contacts = [*([contact] if contact is not None else []), *contacts]
    from messaging.db import make_sessionmaker
    from messaging.demo import load_demo

    with make_sessionmaker(engine)() as session:
        load_demo(session)
        session.commit()
    columns = "uid, username, first_name, surname, disabled, created, last_updated"
    columns += "".join(f", {c}" for c in contacts)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO org_units (uid, name, short_name, path, level, created, last_updated) "
                "VALUES (:ou, :name, :short, :path, 1, now(), now())"
            ),
            {"ou": ou, "name": f"{tag.title()} district", "short": tag.title()[:50], "path": f"/{ou}"},
        )
        now = datetime(2026, 1, 1)
        with psycopg_connection(conn).cursor() as cursor, cursor.copy(f"COPY users ({columns}) FROM STDIN") as copy:
            for i in range(users):
                row: tuple[Any, ...] = (f"{tag[0].upper()}{i:010d}", f"{tag}user{i}", tag.title(), f"User {i}", False, now, now)
                for c in contacts:
                    row += (email_address(i) if c == "email" else phone_number(i),)
                copy.write_row(row)
        conn.execute(
            text(
                "INSERT INTO user_org_units (org_unit_id, user_id) "
                "SELECT (SELECT id FROM org_units WHERE uid = :ou), id FROM users WHERE username LIKE :pattern"
            ),
            {"ou": ou, "pattern": f"{tag}user%"},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def email_address(i: int) -> str:
    """The email address of seeded user i."""
    return f"user{i}@clinic.example"


def phone_number(i: int) -> str:
    """The phone number (E.164) of seeded user i."""
    return f"+25677{i:07d}"


def peak_rss_mb(pid: int, *, tree: bool = False) -> float:
    """A process's peak resident memory (VmHWM) in MB; with ``tree``, the largest of it and its descendants."""
    pids = [pid, *(_descendants(pid) if tree else [])]
    peaks = []
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            peaks.append(int(match.group(1)) / 1024)
    return max(peaks, default=0.0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU time used so far by every PostgreSQL process on this machine (the server runs here)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == "postgres":
                total += cpu_seconds(int(comm.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # a backend that ended meanwhile
    return total


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found
