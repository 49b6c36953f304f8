"""Email and SMS deliveries: created with the fan-out, claimed, recorded, swept and re-driven.

One row per (message, recipient, channel), moved only by guarded UPDATEs (docs/deliveries.md):

    QUEUED --claim--> SENDING --accepted--------------> SENT --Twilio callback--> DELIVERED
      ^  ^               |----transient, attempts left--> FAILED --due, claim--> SENDING
      |  |               |----permanent / last attempt--> DEAD
      |  |               '----unknown outcome / lease---> UNKNOWN
      |  '-- retry now (operator) -- FAILED, DEAD, UNKNOWN --discard--> DISCARDED
    SKIPPED at creation: opted out, no address (disabled users get no row at all)

One concept per module: ``states`` (the shared names every statement is built from),
``creation`` (the fan-out hook), ``claiming`` (QUEUED/FAILED -> SENDING and the drafts),
``outcomes`` (retry policy and the batch recorder), ``relay`` (hand-over, lost jobs, leases),
``actions`` (retry now, discard), ``search`` (the operators' keyset search and attempt
history), ``listing`` (the older list shape), ``provider_status``
(Twilio's callbacks). Everything public is importable from ``messaging.deliveries``.
"""

from messaging.deliveries.actions import ACTIONS, DISCARD, RETRY, Batch, act, requeue
from messaging.deliveries.claiming import (
    ELLIPSIS,
    SMS_HARD_LIMIT,
    SMS_MAX_LENGTH_KEY,
    Claim,
    Draft,
    claim,
    conversation_url,
    fit_text,
)
from messaging.deliveries.creation import OPT_IN_KEYS, Dispatch, create_for_event, notifier
from messaging.deliveries.listing import counts, list_deliveries
from messaging.deliveries.outcomes import MAX_RETRY_AFTER_S, Outcome, Result, RetryPolicy, record
from messaging.deliveries.provider_status import SMS_STATUS_RANK, apply_sms_status
from messaging.deliveries.relay import LEASE_EXPIRED, claim_due, expire_leases, release
from messaging.deliveries.search import PROPERTIES, AttemptView, DeliveryQuery, DeliveryView, attempts_of, count, page
from messaging.deliveries.states import CHANNELS, EMAIL, REQUEUEABLE, RETRYABLE, SMS, STATUSES

__all__ = [
    "ACTIONS",
    "CHANNELS",
    "DISCARD",
    "ELLIPSIS",
    "EMAIL",
    "LEASE_EXPIRED",
    "MAX_RETRY_AFTER_S",
    "OPT_IN_KEYS",
    "PROPERTIES",
    "REQUEUEABLE",
    "RETRY",
    "RETRYABLE",
    "SMS",
    "SMS_HARD_LIMIT",
    "SMS_MAX_LENGTH_KEY",
    "SMS_STATUS_RANK",
    "STATUSES",
    "AttemptView",
    "Batch",
    "Claim",
    "DeliveryQuery",
    "DeliveryView",
    "Dispatch",
    "Draft",
    "Outcome",
    "Result",
    "RetryPolicy",
    "act",
    "apply_sms_status",
    "attempts_of",
    "claim",
    "claim_due",
    "conversation_url",
    "count",
    "counts",
    "create_for_event",
    "expire_leases",
    "fit_text",
    "list_deliveries",
    "notifier",
    "page",
    "record",
    "release",
    "requeue",
]
