"""Provider status callbacks: Twilio's message status names and the monotonic move they make."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from messaging.deliveries.states import DEAD, DELIVERED, SENT, SMS
from messaging.deliveries.states import DELIVERIES as _T
from messaging.models import utcnow

# Twilio's message statuses in the order they happen; the final ones share the top rank, so
# nothing moves a delivery once it is delivered, undelivered or failed ("read" follows "delivered").
SMS_STATUS_RANK = {
    "accepted": 1, "scheduled": 1, "queued": 1, "sending": 2, "sent": 3,
    "delivered": 4, "undelivered": 4, "failed": 4, "canceled": 4, "read": 5,
}
_DELIVERED_STATUSES = frozenset({"delivered", "read"})
_FAILED_STATUSES = frozenset({"undelivered", "failed", "canceled"})


def apply_sms_status(db: Session | Connection, provider_id: str, status: str, error_code: str | None = None) -> bool:
    """Move an SMS delivery forward to a Twilio status; False when it is older news or unknown. No commit."""
    status = status.strip().lower()
    rank = SMS_STATUS_RANK.get(status)
    if rank is None or not provider_id:
        return False
    current = case(*((_T.c.provider_status == name, r) for name, r in SMS_STATUS_RANK.items()), else_=0)
    values: dict[str, Any] = {"provider_status": status, "updated": utcnow()}
    if status in _DELIVERED_STATUSES:
        values["status"] = DELIVERED
    elif status in _FAILED_STATUSES:
        code = error_code.strip() if error_code and error_code.strip() else None
        values["status"] = DEAD
        values["last_error_code"] = f"twilio-{code}" if code else f"twilio-{status}"
        values["last_error"] = f"Twilio reported the SMS {status}" + (f" (error {code})" if code else "")
    result = db.execute(
        update(_T)
        .where(
            _T.c.channel == SMS,
            _T.c.provider_id == provider_id,
            _T.c.status.in_((SENT, DELIVERED)),
            current < rank,
        )
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))
