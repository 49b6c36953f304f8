"""A local stand-in for Twilio's Messages API: real HTTP, Twilio's JSON, scriptable answers.

    with TwilioStandIn() as twilio:         # aiohttp server in its own thread and loop
        client.api.base_url = twilio.base_url
        twilio.script([(429, error_body(20429), {"Retry-After": "1"}), (201, None, {})])
        ...
        twilio.wait_for_requests(2)

It answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` like Twilio: HTTP Basic auth
(401, error 20003, otherwise), 201 with a message resource, or 400 with Twilio's error body
when ``To`` is not E.164 (21211) or ``Body``/``From`` are missing. Scripted answers take
precedence, one per authorised request in arrival order; ``Answer(stall_s=...)`` holds the
answer back (until ``stop``) so a client times out after its request left. Every request is
recorded with its form fields.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web
from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "f00dfeedf00dfeedf00dfeedf00dfeed"
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")

ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    21211: "The 'To' number {to} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21606: "The 'From' phone number provided is not a valid message-capable Twilio phone number "
    "for this destination/account",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    21614: "'To' number is not a valid mobile number",
}
_STATUS_OF_CODE = {20003: 401, 20404: 404, 20429: 429, 20500: 500}


def error_body(code: int, status: int | None = None, *, to: str = "") -> dict[str, Any]:
    """Twilio's JSON error body for ``code`` (status 400 unless the code implies another)."""
    return {
        "code": code,
        "message": ERROR_MESSAGES.get(code, "Error {code}").format(to=to, code=code),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status or _STATUS_OF_CODE.get(code, 400),
    }


@dataclass(frozen=True)
class Answer:
    """One scripted answer: status, JSON body (None: the natural one), headers, delay."""

    status: int = 201
    body: Mapping[str, Any] | str | None = None  # a str is sent as is (e.g. malformed JSON)
    headers: Mapping[str, str] = field(default_factory=dict)
    stall_s: float = 0.0  # hold the answer this long, or until stop()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    account_sid: str
    form: dict[str, str]
    headers: dict[str, str]
    authorised: bool


class TwilioStandIn:
    """Twilio's Messages API on 127.0.0.1, in a background thread."""

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.port = 0
        self._lock = threading.Lock()
        self._script: deque[Answer] = deque()
        self._requests: list[RecordedRequest] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._released: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._startup_error: BaseException | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to give the client as its API base URL (``TWILIO_API_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_url(self) -> str:
        """The absolute URL of this account's Messages resource."""
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def start(self, timeout_s: float = 5.0) -> None:
        """Serve on a free port (``self.port``) until ``stop``."""
        if self._thread is not None:
            raise RuntimeError("the Twilio stand-in is already running")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="twilio-standin", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or self._startup_error is not None:
            raise RuntimeError("the Twilio stand-in did not start") from self._startup_error

    def stop(self, timeout_s: float = 5.0) -> None:
        """Release stalled answers, close every connection, stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = self._loop = None

    def __enter__(self) -> TwilioStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # reported to start()
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.close()

    async def _open(self) -> None:
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self._create_message)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def _close(self) -> None:
        if self._released is not None:
            self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- scripting and observation ---------------------------------------------------------

    def script(self, answers: Iterable[Answer | tuple[int, Any, Mapping[str, str]]]) -> None:
        """Queue answers for the next authorised requests: ``Answer`` or (status, body, headers)."""
        queued = [a if isinstance(a, Answer) else Answer(a[0], a[1], dict(a[2])) for a in answers]
        with self._lock:
            self._script.extend(queued)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Poll until at least ``count`` requests arrived; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} requests, got {len(self.requests)}")
            time.sleep(0.005)
        return self.requests

    # --- status callbacks ------------------------------------------------------------------

    def signature(self, url: str, params: Mapping[str, str]) -> str:
        """The ``X-Twilio-Signature`` Twilio would send with a POST of ``params`` to ``url``."""
        return str(RequestValidator(self.auth_token).compute_signature(url, dict(params)))

    def status_callback(
        self, url: str, message_sid: str, status: str, *, to: str = "+4722334455", error_code: int | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """A status callback as Twilio would POST it: (form fields, headers with the signature)."""
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "From": "+15005550006",
            "MessageSid": message_sid,
            "MessageStatus": status,
            "SmsSid": message_sid,
            "SmsStatus": status,
            "To": to,
        }
        if error_code is not None:
            form["ErrorCode"] = str(error_code)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self.signature(url, form),
        }
        return form, headers

    # --- HTTP handlers (server thread) -----------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["sid"]
        authorised = sid == self.account_sid and self._authorised(request.headers.get("Authorization", ""))
        form = {key: str(value) for key, value in (await request.post()).items()}
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            account_sid=sid,
            form=form,
            headers=dict(request.headers),
            authorised=authorised,
        )
        with self._lock:
            self._requests.append(record)
            answer = self._script.popleft() if authorised and self._script else None
        if not authorised:
            return _json(401, error_body(20003), {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if answer is None:
            answer = Answer(*self._natural(form))
        if answer.stall_s > 0 and self._released is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), answer.stall_s)
        body = answer.body
        if body is None:
            body = self._message(form) if 200 <= answer.status < 300 else self._error_for(answer.status)
        if isinstance(body, str):
            return web.Response(status=answer.status, text=body, headers=dict(answer.headers))
        return _json(answer.status, body, answer.headers)

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return _json(404, error_body(20404))

    def _authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(password, self.auth_token)

    def _natural(self, form: Mapping[str, str]) -> tuple[int, Mapping[str, Any] | None]:
        """What Twilio answers to this form when nothing is scripted."""
        to = form.get("To", "")
        if not _E164.fullmatch(to):
            return 400, error_body(21211, to=to)
        if not form.get("Body"):
            return 400, error_body(21602)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return 400, error_body(21603)
        return 201, None

    def _error_for(self, status: int) -> dict[str, Any]:
        code = {401: 20003, 404: 20404, 429: 20429}.get(status, 20500 if status >= 500 else 21211)
        return error_body(code, status)

    def _message(self, form: Mapping[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        body = form.get("Body", "")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": str(max(1, -(-len(body) // 153))),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued" if form.get("From") else "accepted",
            "subresource_uris": {"media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": form.get("To"),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }


def _json(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(dict(body), status=status, headers=dict(headers or {}))
