"""Twilio's status callbacks: is an ``X-Twilio-Signature`` right? (twilio's RequestValidator).

The HTTP edge may not import twilio itself (import-linter: the API hands sending to workers), so
the check lives here, beside the SMS channel, as one function of plain values.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator


def valid_signature(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """True when ``signature`` is what Twilio sends with a POST of ``params`` to ``url``."""
    if not auth_token or not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))
