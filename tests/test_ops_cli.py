"""`herald status` and `herald deliveries list|retry|discard` (typer's CliRunner) against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from typer.testing import CliRunner

from herald.cli import app
from messaging.models import Delivery, User
from messaging.passwords import verify_password
from tests.support.deliveries import ANA, BEN, MIA
from tests.test_deliveries_attempts import history
from tests.test_deliveries_state import staged, status_of

pytestmark = [pytest.mark.postgres]


def herald(url: str, *args: str) -> tuple[int, str, str]:
    """Run a herald command in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, list(args), env={"DATABASE_URL": url, "BROKER_URL": ""}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def three_states(engine: Engine) -> list[int]:
    """Deliveries to ana (DEAD, smtp-550), ben (FAILED, smtp-451) and mia (SENT)."""
    ids = staged(engine, ANA, BEN, MIA)
    states = [("DEAD", "smtp-550"), ("FAILED", "smtp-451"), ("SENT", None)]
    with engine.begin() as conn:
        for delivery_id, (status, code) in zip(ids, states, strict=True):
            conn.execute(update(Delivery).where(Delivery.id == delivery_id).values(status=status, last_error_code=code))
    return ids


def test_status_shows_the_overview_as_a_table_and_as_json_with_the_databases_figures(
    delivery_db: tuple[str, Engine],
) -> None:
    url, engine = delivery_db
    three_states(engine)
    code, out, _ = herald(url, "status", "--json")
    assert code == 0
    email = next(c for c in json.loads(out)["channels"] if c["channel"] == "email")
    assert (email["dead"], email["retrying"], email["waiting"]) == (1, 1, 0)
    assert json.loads(out)["broker"] == "in-process"
    code, out, _ = herald(url, "status")
    assert code == 0 and "Deliveries per channel" in out and "Queues" in out


def test_deliveries_list_filters_like_the_dashboard_and_refuses_an_invalid_filter(delivery_db: tuple[str, Engine]) -> None:
    url, engine = delivery_db
    dead, failed, _ = three_states(engine)
    code, out, _ = herald(url, "deliveries", "list", "--status", "DEAD", "--status", "FAILED", "--json")
    listed = json.loads(out)
    assert code == 0 and listed["total"] == 2 and [d["id"] for d in listed["deliveries"]] == [failed, dead]
    assert listed["deliveries"][0]["nextAttemptAt"] is not None  # FAILED: when it is tried next
    code, out, _ = herald(url, "deliveries", "list", "--error-code", "smtp-550", "--recipient", "ana", "--json")
    assert [d["id"] for d in json.loads(out)["deliveries"]] == [dead]
    code, out, _ = herald(url, "deliveries", "list", "--limit", "1")
    assert code == 0 and "1 of 3 deliveries" in out and "next page: --before" in out
    for bad in (["--status", "LOST"], ["--channel", "fax"], ["--from", "yesterday"]):
        code, _, err = herald(url, "deliveries", "list", *bad)
        assert code == 2 and "not valid" in err, bad


def test_retry_and_discard_act_on_the_matching_rows_and_exit_non_zero_when_they_cannot(
    delivery_db: tuple[str, Engine],
) -> None:
    url, engine = delivery_db
    dead, failed, sent = three_states(engine)
    code, _, err = herald(url, "deliveries", "retry")
    assert code == 2 and "--all" in err  # nothing named: no accidental retry of everything
    code, _, err = herald(url, "deliveries", "retry", "--status", "SENT")
    assert code == 2 and "not SENT" in err
    code, out, _ = herald(url, "deliveries", "retry", "--status", "FAILED", "--json")
    assert code == 0 and json.loads(out) == {"retried": 1}
    code, out, _ = herald(url, "deliveries", "discard", "--error-code", "smtp-550")
    assert code == 0 and out.strip() == "1 deliveries discarded"
    assert status_of(engine, [dead, failed, sent]) == {dead: ("DISCARDED", 0), failed: ("QUEUED", 0), sent: ("SENT", 0)}
    code, out, err = herald(url, "deliveries", "retry", "--id", str(sent))
    assert code == 1 and out.strip() == "0 deliveries retried" and "not FAILED, DEAD or UNKNOWN" in err
    assert history(engine, sent) == []


def test_import_hashes_every_password_and_reports_progress(delivery_db: tuple[str, Engine], tmp_path: Path) -> None:
    url, engine = delivery_db
    users = [{"id": f"CliImp{i:05d}", "username": f"cliimp{i}", "firstName": "Imp", "surname": str(i),
              "password": f"Secret-{i}!"} for i in range(6)]  # fmt: skip
    file = tmp_path / "users.json"
    file.write_text(json.dumps({"users": users}))
    code, out, err = herald(url, "import", str(file))
    assert code == 0, err
    assert json.loads(out)["stats"]["created"] == 6 if "stats" in json.loads(out) else True
    assert "hashing" in err or "writing" in err
    with engine.connect() as conn:
        hashes = dict(conn.execute(select(User.username, User.password_hash).where(User.username.like("cliimp%"))).all())
    assert len(hashes) == 6 and all(verify_password(hashes[f"cliimp{i}"], f"Secret-{i}!") for i in range(6))
