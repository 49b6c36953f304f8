"""The operations dashboard in headless Chromium, and who may see /ops and /api/ops at all.

Screenshots go to tests/artifacts/ (gitignored) so a failing run can be looked at.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page
from sqlalchemy import Engine

from tests.conftest import wait_until
from tests.support.browser import browser_page, require_chromium
from tests.support.deliveries import ANA, BEN, herald, post_message, settled
from tests.support.smtp_sink import SmtpSink
from tests.test_deliveries_attempts import history

ARTIFACTS = Path(__file__).parent / "artifacts"
OPS_ENDPOINTS = ("overview", "throughput", "latency", "fanouts", "deliveries")


def screenshot(page: Page, name: str) -> None:
    """Keep what the browser showed, as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


# The browser reaches the server at 127.0.0.1:<port>; with a public HERALD_BASE_URL (the delivery tests'
# https://herald.example) its logins would rightly be refused as cross-site.
BROWSER_REACHABLE = {"HERALD_BASE_URL": ""}


def open_dashboard(page: Page, url: str) -> None:
    """Log in as admin through the dashboard's own form (the session login) and wait for the first refresh."""
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{url}/ops?refresh=0.5")
    page.wait_for_selector("body[data-state=login]")
    page.fill("#username", "admin")
    page.fill("#password", "district")
    page.click("#login")
    page.wait_for_selector("body[data-state=dashboard][data-refreshed]")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page


def row(page: Page, delivery_id: int, status: str) -> str:
    """The selector of a delivery's row in that status."""
    return f"#deliveries tr.delivery[data-id='{delivery_id}'][data-status='{status}']"


@pytest.mark.browser
@pytest.mark.postgres
def test_an_admin_sees_a_dead_delivery_from_a_550_retries_it_and_watches_it_become_sent_without_a_reload(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    require_chromium()
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url, **BROWSER_REACHABLE) as live, browser_page() as page:
        warm_up = post_message(live.client(), BEN, subject="Warm-up")  # one sent mail, so the chart has a bar
        assert settled(engine, warm_up, count=1)["ben"].status == "SENT"
        smtp_sink.script_rcpt(["550 5.1.1 User unknown"])
        dead = settled(engine, post_message(live.client(), ANA), count=1)["ana"]
        assert dead.status == "DEAD" and dead.last_error_code == "smtp-550"
        open_dashboard(page, live.url)
        page.wait_for_selector(row(page, dead.id, "DEAD"))
        assert page.text_content("#channels tr[data-channel=email]") is not None
        page.wait_for_selector("#throughput-chart svg path[data-channel=email]", state="attached")
        page.click(f"#deliveries tr.delivery[data-id='{dead.id}'] td.error-text")  # unfold its attempt history
        page.wait_for_selector(f"tr[data-history='{dead.id}']:has-text('User unknown')")
        screenshot(page, "ops-dead-delivery")
        # The sink has recovered (its one scripted 550 is spent): retry the selection now.
        page.check(f"input[data-id='{dead.id}']")
        page.click("#retry-selected")
        page.wait_for_selector(row(page, dead.id, "SENT"), timeout=20_000)
        assert page.evaluate("window.__sameDocument") is True
        page.wait_for_selector(f"tr[data-history='{dead.id}']:has-text('SENT')")
        screenshot(page, "ops-dead-retried-sent")
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        screenshot(page, "ops-phone")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert [outcome for _, outcome, _, _ in history(engine, dead.id)] == ["DEAD", "SENT"]


@pytest.mark.browser
@pytest.mark.postgres
def test_a_failed_delivery_is_retried_now_during_an_outage_and_again_once_it_is_over(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    require_chromium()
    url, engine = delivery_db
    smtp_sink.stop()
    slow_retries = {"HERALD_RETRY_BASE_S": "3600", "HERALD_RETRY_MAX_S": "3600"}
    with herald(url, engine, SMTP_URL=smtp_sink.url, **slow_retries, **BROWSER_REACHABLE) as live, browser_page() as page:
        failed = settled(engine, post_message(live.client(), ANA), count=1, final=frozenset({"FAILED"}))["ana"]
        open_dashboard(page, live.url)
        page.select_option("#filters select[name=status]", "FAILED")
        page.click("#search")
        page.wait_for_selector(row(page, failed.id, "FAILED"))
        page.click("#retry-matching")  # still down: the attempt is made at once and fails again
        wait_until(lambda: len(history(engine, failed.id)) == 2, timeout_s=15, what="a second attempt, now")
        page.wait_for_selector(row(page, failed.id, "FAILED"))
        smtp_sink.start()
        page.check(f"input[data-id='{failed.id}']")
        page.click("#retry-selected")
        page.select_option("#filters select[name=status]", "")
        page.click("#search")
        page.wait_for_selector(row(page, failed.id, "SENT"), timeout=20_000)
        assert page.evaluate("window.__sameDocument") is True
        screenshot(page, "ops-failed-retried-after-outage")
    assert [outcome for _, outcome, _, _ in history(engine, failed.id)] == ["FAILED", "FAILED", "SENT"]


@pytest.mark.postgres
def test_a_plain_user_gets_403_on_the_dashboard_its_json_and_its_actions_and_a_stranger_the_login(
    delivery_db: tuple[str, Engine], smtp_sink: SmtpSink
) -> None:
    url, engine = delivery_db
    with herald(url, engine, SMTP_URL=smtp_sink.url) as live:
        ben = live.client("ben")
        assert ben.get("/ops").status_code == 403
        for name in OPS_ENDPOINTS:
            answer = ben.get(f"/api/ops/{name}")
            assert answer.status_code == 403 and answer.json()["httpStatusCode"] == 403, name
        for action in ("retry", "discard"):
            assert ben.post(f"/api/ops/deliveries/{action}", json={"ids": [1]}).status_code == 403
        assert ben.post("/api/deliveries/1/requeue").status_code == 403
        stranger = live.client(None)
        page = stranger.get("/ops")
        assert page.status_code == 200 and 'data-state="login"' in page.text
        assert stranger.get("/api/ops/overview").status_code == 401
        assert stranger.post("/api/ops/deliveries/retry", json={"ids": [1]}).status_code == 401
