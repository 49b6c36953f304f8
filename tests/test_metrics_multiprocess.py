"""Several API processes on one host: with PROMETHEUS_MULTIPROC_DIR, /metrics of any counts the requests of all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REDIS_URL, free_tcp_port, wait_until


def serve(tmp_path: Path, name: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A `herald serve` process (API only: a broker is configured) and its URL."""
    port = free_tcp_port()
    with (tmp_path / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "herald.cli", "serve", "--port", str(port)],
            env=env, stdout=log, stderr=log, start_new_session=True, cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout_s=60, interval_s=0.2, what=f"{name} to serve")
    return process, url


def live_requests(url: str) -> float:
    """herald_http_requests_total of GET /health/live with status 200, as this process answers it."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "herald_http_requests_total" and sample.labels.get("route") == "/health/live":
                return sample.value
    return 0.0


def test_two_api_processes_sharing_a_multiprocess_directory_report_each_others_requests(
    tmp_path: Path, redis_namespace: str
) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "BROKER_", "DATABASE_", "SMTP_"))}
    env.update({
        "DATABASE_URL": f"sqlite:///{tmp_path}/herald.db", "BROKER_URL": REDIS_URL,
        "HERALD_BROKER_NAMESPACE": f"{redis_namespace}-multi", "HERALD_ADMIN_PASSWORD": "district",
        "HERALD_APPS_DIR": str(tmp_path / "apps"), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    })
    first, first_url = serve(tmp_path, "first", env)
    try:
        second, second_url = serve(tmp_path, "second", env)
        try:
            before = live_requests(first_url)
            for _ in range(2):
                assert httpx.get(f"{first_url}/health/live").status_code == 200
            for _ in range(3):
                assert httpx.get(f"{second_url}/health/live").status_code == 200
            assert live_requests(first_url) - before == 5
            assert live_requests(second_url) - before == 5
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(20)
    finally:
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(20)
