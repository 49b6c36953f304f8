"""Prometheus metrics: HTTP requests measured in this process, the fleet's figures read from the database.

HTTP counts and latencies live in the process that served the request, so each API process is
its own scrape target (or, with PROMETHEUS_MULTIPROC_DIR set, every process of one host writes
them to that directory and any of them answers for all). Deliveries, queues, fan-out and the
trigger-to-sent latency come from the database at scrape time (``messaging.metrics``: open rows
through partial indexes, counters folded incrementally from the delivery attempts): the same from
every target, whatever process did the work, and they survive restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker

from messaging import metrics as figures

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Any], Callable[[dict[str, Any]], Any]], Any]
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"  # requests no route answered: one label, so scanners cannot grow the series


class HttpMetrics:
    """This process's HTTP request counter and latency histogram, by method, route template and status."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "herald_http_requests", "HTTP requests answered, by route template and status.",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "herald_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
            ["method", "route"], buckets=HTTP_BUCKETS_S, registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """Times each HTTP request and labels it with its route's template (installed innermost: the router's scope)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


class DatabaseCollector(Collector):
    """Reads the fleet's figures from the database on each collect (each scrape)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Families for deliveries, attempts, retries, dead letters, queues, fan-out and trigger-to-sent latency."""
        with self.sessions() as session:
            data = figures.figures(session)
        deliveries = GaugeMetricFamily("herald_deliveries", "Open deliveries by channel and status (SENT ones: attempts).",
                                       labels=["channel", "status"])
        attempts = CounterMetricFamily("herald_delivery_attempts", "Delivery attempts by channel and outcome.",
                                       labels=["channel", "outcome"])
        retries = CounterMetricFamily("herald_delivery_retries", "Attempts beyond each delivery's first, by channel.",
                                      labels=["channel"])
        retrying = GaugeMetricFamily("herald_deliveries_retrying", "Deliveries FAILED and waiting for their next attempt.",
                                     labels=["channel"])
        dead = GaugeMetricFamily("herald_deliveries_dead", "Dead deliveries (gave up), by channel.", labels=["channel"])
        per_channel: dict[str, dict[str, int]] = {}
        for row in data.deliveries:
            deliveries.add_metric([row.channel, row.status], row.count)
            totals = per_channel.setdefault(row.channel, {"FAILED": 0, "DEAD": 0})
            if row.status in totals:
                totals[row.status] += row.count
        for (channel, outcome), n in sorted(data.attempts.outcomes.items()):
            attempts.add_metric([channel, outcome], n)
            per_channel.setdefault(channel, {"FAILED": 0, "DEAD": 0})
        for channel, totals in sorted(per_channel.items()):
            retries.add_metric([channel], data.attempts.retries.get(channel, 0))
            retrying.add_metric([channel], totals["FAILED"])
            dead.add_metric([channel], totals["DEAD"])
        depth = GaugeMetricFamily("herald_queue_depth", "Work waiting per queue (outbox events, due deliveries).",
                                  labels=["queue"])
        age = GaugeMetricFamily("herald_queue_oldest_age_seconds", "Age of the oldest waiting item per queue.",
                                labels=["queue"])
        for queue in data.queues:
            depth.add_metric([queue.queue], queue.depth)
            age.add_metric([queue.queue], queue.oldest_age_s)
        fanout = GaugeMetricFamily("herald_fanout_recipients", "Inbox rows written: recipients messages reached.",
                                   value=data.fanout_recipients)
        latency = HistogramMetricFamily("herald_trigger_to_sent_seconds",
                                        "From the message's creation to its delivery's sending, by channel.",
                                        labels=["channel"])
        for h in data.latency:
            buckets = [(_bound(bound), count) for bound, count in h.buckets] + [("+Inf", h.count)]
            latency.add_metric([h.channel], buckets, h.sum_s)
        yield from (deliveries, attempts, retries, retrying, dead, depth, age, fanout, latency)


def _bound(value: float) -> str:
    return repr(float(value))


def exposition(http: HttpMetrics, sessions: sessionmaker[Session]) -> bytes:
    """The Prometheus text of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # every process's HTTP figures, from their files
        output = generate_latest(registry)
    else:
        output = generate_latest(http.registry)
    db = CollectorRegistry(auto_describe=False)
    db.register(DatabaseCollector(sessions))
    return output + generate_latest(db)
