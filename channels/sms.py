"""SMS delivery through Twilio's Messages API (twilio 9.13, its aiohttp transport).

twilio 9.13's own ``AsyncTwilioHttpClient`` is replaced by a small subclass because it
(1) ignores its ``timeout`` (it passes only the per-request one, which the generated code
never sets), (2) passes ``auth=`` to aiohttp 3.14, which warns it is deprecated, (3) drops the
response headers when it raises: ``TwilioRestException`` has ``status``, ``code``, ``msg``,
``uri``, ``method``, ``details`` and no headers, so ``Retry-After`` is lost, and (4) cannot
tell whether a failed request ever left; besides, (5) aiohttp's ``FormData`` for the form body
costs ~10% of an SMS worker's CPU. The subclass sets the Authorization header itself, encodes the
form body itself, applies connect/read timeouts, records the response headers and an aiohttp
trace mark ("request headers sent") on a per-task ``_Exchange`` that ``send`` reads afterwards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any, ClassVar
from urllib.parse import urlencode

import aiohttp  # twilio's async transport: its timeouts, tracing and errors
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.base import ChannelLimits, Envelope, Receipt
from channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from channels.settings import TwilioSettings

DEFAULT_SMS_MAX_LENGTH = 1071  # DHIS2's keySmsMaxLength default (DECISIONS #17)

_SEPARATORS = re.compile(r"[\s\-.()]")
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
# Twilio errors that are about now, not about the message: 20429 too many requests,
# 21611 the sender's queue is full.
_TRANSIENT_CODES = frozenset({20429, 21611})


def normalise_phone_number(raw: str) -> str | None:
    """The number in E.164 (``+`` and 8-15 digits), or None when it cannot be one.

    Spaces, dashes, dots and parentheses go; a leading ``00`` becomes ``+``. A number without
    a country code cannot be guessed, so it is None (DECISIONS #17).
    """
    number = _SEPARATORS.sub("", raw)
    if number.startswith("00"):
        number = "+" + number[2:]
    return number if _E164.fullmatch(number) else None


class SmsChannel:
    """Sends the message text to a phone number through Twilio, cut to ``max_length``."""

    name: ClassVar[str] = "sms"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        max_length: int = DEFAULT_SMS_MAX_LENGTH,
        status_callback: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not account_sid:
            raise ValueError("TWILIO_ACCOUNT_SID is not set")
        if not auth_token:
            raise ValueError("TWILIO_AUTH_TOKEN is not set")
        if not (from_number or messaging_service_sid):
            raise ValueError("set TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        if timeout_s <= 0:
            raise ValueError("the SMS timeout must be positive")
        self.limits = ChannelLimits(max_text_length=max_length)
        self._http = _HttpClient(timeout_s)
        # An explicit environment: TWILIO_EDGE / TWILIO_REGION in os.environ would rewrite
        # every host (and break TWILIO_API_BASE_URL); Herald's settings are the only source.
        client = Client(
            account_sid,
            auth_token,
            http_client=self._http,
            environment={"TWILIO_ACCOUNT_SID": account_sid},
        )
        if api_base_url:
            # Domain.absolute_url joins base_url, "2010-04-01" and "/Accounts/{sid}/Messages.json".
            client.api.base_url = api_base_url.rstrip("/")
        self._messages = client.api.account.messages
        # A messaging service picks the sender from its pool; otherwise our one number sends.
        sender: dict[str, str] = (
            {"messaging_service_sid": messaging_service_sid} if messaging_service_sid else {"from_": str(from_number)}
        )
        if status_callback:
            sender["status_callback"] = status_callback
        self._sender = sender

    @classmethod
    def from_settings(
        cls,
        settings: TwilioSettings,
        *,
        max_length: int = DEFAULT_SMS_MAX_LENGTH,
        status_callback: str | None = None,
        timeout_s: float = 10.0,
    ) -> SmsChannel:
        """Build the channel from Herald's settings; ValueError naming a missing key."""
        token = settings.twilio_auth_token
        return cls(
            account_sid=settings.twilio_account_sid or "",
            auth_token=token.get_secret_value() if token is not None else "",
            from_number=settings.twilio_from_number,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            api_base_url=settings.twilio_api_base_url,
            max_length=max_length,
            status_callback=status_callback,
            timeout_s=timeout_s,
        )

    async def send(self, envelope: Envelope) -> Receipt:
        """Send one SMS; raise Permanent-, Transient- or UnknownOutcomeError."""
        to = normalise_phone_number(envelope.address)
        if to is None:
            raise PermanentDeliveryError(
                "not a phone number in international form (+ and 8-15 digits)", "invalid-number"
            )
        exchange = _Exchange()
        token = _EXCHANGE.set(exchange)
        try:
            message = await self._messages.create_async(to=to, body=self.limits.fit_text(envelope.text), **self._sender)
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _classify(exc, exchange.headers) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:  # TimeoutError is an OSError
            if exchange.sent:
                raise UnknownOutcomeError(
                    f"no answer from Twilio after the request left ({type(exc).__name__}): the SMS may have been sent",
                    "twilio-unknown",
                ) from exc
            if isinstance(exc, ValueError):
                raise
            raise TransientDeliveryError(f"cannot reach Twilio: {type(exc).__name__}", "twilio-connect") from exc
        finally:
            _EXCHANGE.reset(token)
        return Receipt(provider_id=message.sid, status="SENT")

    async def aclose(self) -> None:
        """Close the HTTP connections (reopened lazily if used again)."""
        await self._http.close()


@dataclass(slots=True)
class _Exchange:
    """What one send saw of its HTTP exchange; per task, so concurrent sends never mix."""

    sent: bool = False  # the request headers were written: Twilio may have the message
    headers: Mapping[str, str] | None = None


_EXCHANGE: ContextVar[_Exchange | None] = ContextVar("herald_twilio_exchange", default=None)


async def _mark_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestHeadersSentParams
) -> None:
    exchange = context.trace_request_ctx
    if isinstance(exchange, _Exchange):
        exchange.sent = True


class _HttpClient(AsyncTwilioHttpClient):  # twilio ships no type information (Any under our mypy config)
    """twilio's aiohttp client with timeouts, header auth, Retry-After and sent-tracking."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(pool_connections=False, timeout=timeout_s)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._trace = aiohttp.TraceConfig()
        self._trace.on_request_headers_sent.append(_mark_sent)
        self._session: aiohttp.ClientSession | None = None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """One HTTP exchange; the twilio client turns a non-2xx Response into its exception."""
        exchange = _EXCHANGE.get() or _Exchange()
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(auth[0], auth[1])
        if self._session is None or self._session.closed:
            # Created here, inside the running loop (aiohttp binds a session to its loop).
            self._session = aiohttp.ClientSession(trace_configs=[self._trace])
        request_timeout = (
            self._timeout
            if timeout is None
            else aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout)
        )
        body: bytes | None = None
        if data is not None:
            # Encoded here as aiohttp's FormData would (urlencode, doseq): FormData builds a
            # multipart writer and a field table per request, ~10% of an SMS worker's CPU.
            body = urlencode(list(data.items()), doseq=True).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        async with self._session.request(
            method.upper(),
            url,
            params=_plain(params),
            data=body,
            headers=headers,
            timeout=request_timeout,
            allow_redirects=allow_redirects,
            trace_request_ctx=exchange,
        ) as response:
            text = await response.text()
        exchange.headers = response.headers
        return Response(response.status, text, response.headers)

    async def close(self) -> None:
        """Close the aiohttp session."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _plain(values: dict[str, object] | None) -> dict[str, Any] | None:
    return None if values is None else dict(values)


def _classify(exc: TwilioRestException | TwilioServiceException, headers: Mapping[str, str] | None) -> DeliveryError:
    status = int(exc.status)
    code = int(exc.code) if exc.code else None
    detail = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
    label = f"twilio-{code}" if code else f"twilio-http-{status}"
    reason = f"Twilio answered HTTP {status}" + (f" (error {code})" if code else "") + f": {detail}"
    if status == 429 or status >= 500 or code in _TRANSIENT_CODES:
        return TransientDeliveryError(reason, label, _retry_after_s(headers))
    if status == 401:
        # Our credentials refused: a configuration fault, not this message's. Retrying after
        # an operator fixes TWILIO_AUTH_TOKEN delivers; dead-lettering every SMS would not.
        return TransientDeliveryError(reason, label)
    if 400 <= status < 500:
        return PermanentDeliveryError(reason, label)  # 21211, 21408, 21606, 21610, 21612, 21614...
    return TransientDeliveryError(reason, label, _retry_after_s(headers))


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), or None."""
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
