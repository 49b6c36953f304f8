"""What the email and SMS benchmarks share: the fleet run, its polling, and the comparison's report.

A comparison alternates, per run, the raw client's run and the fleet's (POST one message to an org
unit, poll until every delivery is SENT), checks after each that the peer saw every message once,
and reports medians, the fleet's steady rate and first-send latency, and the ratios to raw.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis
from sqlalchemy import Engine, text

from bench._support import REDIS_URL, emit, median, print_table

DEADLINE_S = 600.0


def peer_stats(stats_url: str, reset: bool = False) -> dict[str, int]:
    """The peer's counters (and optionally start them afresh)."""
    with httpx.Client(timeout=10) as client:
        if reset:
            client.post(f"{stats_url}/reset")
            return {"messages": 0, "unique": 0}
        result: dict[str, int] = client.get(f"{stats_url}/stats").json()
        return result


def fleet_run(engine: Engine, api_url: str, ou: str, message: str, count: int) -> tuple[float, dict[str, int], str]:
    """POST to the org unit; seconds until all ``count`` deliveries are SENT, the status counts, the conversation."""
    body = {"subject": "District meeting", "text": message, "organisationUnits": [{"id": ou}]}
    with httpx.Client(timeout=60, auth=("admin", "district")) as client:
        start = time.perf_counter()
        response = client.post(f"{api_url}/api/messageConversations", json=body)
    assert response.status_code == 201, response.text
    conversation = response.headers["Location"].rsplit("/", 1)[1]
    return (*wait_settled(engine, conversation, count, start), conversation)


def wait_settled(engine: Engine, conversation: str, count: int, start: float) -> tuple[float, dict[str, int]]:
    """Poll until the conversation's ``count`` deliveries exist and none is pending; return (seconds, status counts).

    The poll shares the machine with what it measures, so it stays cheap: the rows are counted
    once through the unique index until the fan-out wrote them, then only the pending ones are
    counted, through the small partial index of QUEUED/FAILED/SENDING rows.
    """
    message = text("SELECT m.id FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE c.uid = :uid")
    created = text("SELECT count(*) FROM deliveries WHERE message_id = :mid")
    pending = text("SELECT count(*) FROM deliveries WHERE status IN ('QUEUED', 'FAILED', 'SENDING')")
    by_status = text("SELECT status, count(*) FROM deliveries WHERE message_id = :mid GROUP BY status")
    with engine.connect() as conn:
        message_id = conn.execute(message, {"uid": conversation}).scalar_one()
        conn.commit()
        while conn.execute(created, {"mid": message_id}).scalar_one() < count:
            conn.commit()
            _check_deadline(start)
            time.sleep(0.05)
        while left := conn.execute(pending).scalar_one():
            conn.commit()
            _check_deadline(start)
            time.sleep(0.2 if left > 1000 else 0.02)  # often only near the end, where it sets the figure
        elapsed = time.perf_counter() - start
        return elapsed, {status: n for status, n in conn.execute(by_status, {"mid": message_id})}


def steady_rate(engine: Engine, conversation: str, count: int) -> tuple[float, float]:
    """(seconds from the message's creation to its first SENT delivery, deliveries/s between the 10th and 90th percentile)."""
    query = text(
        "SELECT min(d.sent_at) - min(m.created), percentile_disc(0.1) WITHIN GROUP (ORDER BY d.sent_at), "
        "percentile_disc(0.9) WITHIN GROUP (ORDER BY d.sent_at) FROM deliveries d JOIN messages m ON m.id = d.message_id "
        "JOIN conversations c ON c.id = m.conversation_id WHERE c.uid = :uid"
    )
    with engine.connect() as conn:
        first, p10, p90 = conn.execute(query, {"uid": conversation}).one()
    span = max((p90 - p10).total_seconds(), 1e-3)
    return first.total_seconds(), 0.8 * count / span


def _check_deadline(start: float) -> None:
    if time.perf_counter() - start > DEADLINE_S:
        raise RuntimeError(f"deliveries did not finish in {DEADLINE_S:.0f} s")


@dataclass
class Comparison:
    """The runs of one benchmark: raw against fleet, ``count`` messages each, on one peer."""

    count: int
    stats_url: str
    fleet_s: list[float] = field(default_factory=list)
    first_s: list[float] = field(default_factory=list)
    steady: list[float] = field(default_factory=list)
    raw_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def run(self, raw: Callable[[], float], fleet: Callable[[], tuple[float, dict[str, int], str]], engine: Engine) -> None:
        """One raw run, then one fleet run; each checked against what the peer saw."""
        n = self.count
        peer_stats(self.stats_url, reset=True)
        self.raw_s.append(raw())
        got = peer_stats(self.stats_url)
        if (got["messages"], got["unique"]) != (n, n):
            self.problems.append(f"raw: the peer saw {got}")
        peer_stats(self.stats_url, reset=True)
        elapsed, counts, conversation = fleet()
        self.fleet_s.append(elapsed)
        first, rate = steady_rate(engine, conversation, n)
        self.first_s.append(first)
        self.steady.append(rate)
        got = peer_stats(self.stats_url)
        if counts != {"SENT": n} or (got["messages"], got["unique"]) != (n, n):
            self.problems.append(f"fleet: rows {counts}, the peer saw {got}")

    def report(self, title: str, *, noun: str, raw_label: str, goal: float, figures: dict[str, object]) -> None:
        """Print the table, any problem, and the JSON line (``figures`` adds the benchmark's own)."""
        n = self.count
        fleet, raw = median(self.fleet_s), median(self.raw_s)
        steady, first = median(self.steady), median(self.first_s)
        table = [
            ("Herald fleet: POST -> last delivery SENT", f"{fleet:.2f}", f"{n / fleet:,.0f}", f"{raw / fleet:.2f}"),
            (f"  of which POST -> first {noun} accepted", f"{first:.2f}", "-", "-"),
            ("  steady state (10th-90th percentile of sent_at)", "-", f"{steady:,.0f}", f"{steady * raw / n:.2f}"),
            (raw_label, f"{raw:.2f}", f"{n / raw:,.0f}", "1.00"),
        ]
        plural = noun if noun.isupper() else f"{noun}s"  # SMS, mails
        print_table(f"{title}; median of {len(self.raw_s)} runs)", table, ("case", "s", f"{plural}/s", "ratio to raw"))
        for problem in self.problems:
            print(f"PROBLEM: {problem}")
        unit = plural.lower()
        emit({
            "recipients": n,
            f"fleet_{unit}_per_s": round(n / fleet),
            f"raw_{unit}_per_s": round(n / raw),
            "ratio_to_raw": round(raw / fleet, 3),
            f"fleet_steady_{unit}_per_s": round(steady),
            "steady_ratio_to_raw": round(steady * raw / n, 3),
            f"first_{noun.lower()}_s": round(first, 3),
            "goal_ratio": goal,
            **figures,
            "fleet_runs_s": [round(s, 3) for s in self.fleet_s],
            "raw_runs_s": [round(s, 3) for s in self.raw_s],
            "exactly_once": not self.problems,
        })


def forget_namespace(namespace: str) -> None:
    """Delete the benchmark's Redis keys."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{namespace}*"):
        client.delete(key)
    client.close()


def email_fleet(db_url: str, namespace: str, smtp_port: int, stats_port: int, *, connections: int, processes: int,
                threads: int) -> tuple[dict[str, str], list[str], list[str]]:
    """The environment of an email fleet on Redis, the SMTP sink's command and the worker's command."""
    env = {
        "DATABASE_URL": db_url, "BROKER_URL": REDIS_URL, "HERALD_BROKER_NAMESPACE": namespace,
        "HERALD_LOG_LEVEL": "WARNING",
        "SMTP_URL": f"smtp://127.0.0.1:{smtp_port}", "HERALD_SMTP_CONNECTIONS": str(connections),
        "HERALD_EMAIL_FROM": "no-reply@herald.example", "HERALD_BASE_URL": "https://herald.example",
    }  # fmt: skip
    peer = [sys.executable, "-m", "bench._peers", "smtp", "--port", str(smtp_port), "--stats-port", str(stats_port)]
    worker = [sys.executable, "-m", "herald.cli", "worker", "--processes", str(processes), "--threads", str(threads)]
    return env, peer, worker
