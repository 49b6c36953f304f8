"""A real SMTP server on loopback (aiosmtpd) that keeps what it accepts and answers as scripted.

    sink = SmtpSink()                       # picks a free port (aiosmtpd 1.4 cannot bind port 0)
    with sink:                              # start() ... stop()
        sink.script_rcpt(["451 4.3.0 Try again later", "250 OK"])
        ...
        sink.wait_for(lambda: len(sink.messages) == 1)

Scripted answers are consumed one per command, in order; when a script is empty the sink
accepts. Besides SMTP reply lines a script may hold ``DROP`` (close the connection without
answering) and ``STALL`` (never answer, until ``stop``), to make a client meet a vanished or
silent server. ``stop`` and ``start`` again reuse the same port: a server down for a while.
"""

from __future__ import annotations

import asyncio
import email.policy
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

DROP = "DROP"
STALL = "STALL"
_STALL_LIMIT_S = 60.0


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


@dataclass(frozen=True)
class ReceivedMail:
    """One message the sink accepted, as the server saw it."""

    message: EmailMessage  # parsed with email.policy.default
    mail_from: str
    rcpt_tos: list[str]
    peer: tuple[str, int]  # the client end of the connection that carried it
    raw: bytes
    login: str | None = None  # the SMTP AUTH user of the session, when it logged in


class SmtpSink:
    """aiosmtpd handler and controller in one: keeps every accepted message, answers as scripted."""

    def __init__(
        self,
        port: int | None = None,
        *,
        hostname: str = "127.0.0.1",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.port = port if port is not None else free_tcp_port()
        self.hostname = hostname
        self.credentials = credentials
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        self._sessions: list[SMTP] = []  # every connection that said EHLO/HELO
        self._scripts: dict[str, deque[str]] = {"MAIL": deque(), "RCPT": deque(), "DATA": deque()}
        self._released = threading.Event()
        self._controller: Controller | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``self.port`` (again, after ``stop``)."""
        if self._controller is not None:
            raise RuntimeError("the SMTP sink is already running")
        self._released.clear()
        kwargs: dict[str, Any] = {}
        if self.credentials is not None:
            # AUTH offered without TLS (loopback only); not required, since aiosmtpd warns
            # about requiring it without TLS. ``ReceivedMail.login`` shows who logged in.
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": False}
        controller = Controller(self, hostname=self.hostname, port=self.port, ready_timeout=5.0, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Close every connection and stop listening; the port stays ours to start again."""
        if self._controller is None:
            return
        self._released.set()
        self.drop_connections()
        self._controller.stop()
        self._controller = None

    def restart(self) -> None:
        """Stop, then start on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the server listens."""
        return self._controller is not None

    @property
    def url(self) -> str:
        """The server's address as SMTP_URL names it (no credentials, no TLS)."""
        return f"smtp://{self.hostname}:{self.port}"

    # --- scripting -------------------------------------------------------------------------

    def script_mail(self, answers: Iterable[str]) -> None:
        """Answers to the next MAIL FROM commands, in order."""
        self._script("MAIL", answers)

    def script_rcpt(self, answers: Iterable[str]) -> None:
        """Answers to the next RCPT TO commands, in order."""
        self._script("RCPT", answers)

    def script_data(self, answers: Iterable[str]) -> None:
        """Answers to the next messages (after the DATA content), in order."""
        self._script("DATA", answers)

    def _script(self, command: str, answers: Iterable[str]) -> None:
        with self._lock:
            self._scripts[command].extend(answers)

    # --- observation -----------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every accepted message, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def connections_opened(self) -> int:
        """How many SMTP sessions (connections that said EHLO or HELO) clients opened."""
        with self._lock:
            return len(self._sessions)

    @property
    def open_connections(self) -> int:
        """How many of those sessions are still connected."""
        with self._lock:
            return sum(1 for server in self._sessions if _is_open(server))

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
        """Poll until ``predicate()`` holds (for the server thread to catch up), or fail."""
        wait_until(predicate, timeout_s, what)

    def drop_connections(self, timeout_s: float = 5.0) -> None:
        """Close every open connection from the server side, as an idle timeout or a crash would."""
        controller = self._controller
        if controller is None:
            return
        with self._lock:
            servers = [server for server in self._sessions if _is_open(server)]

        async def close_all() -> None:
            for server in servers:
                if server.transport is not None:
                    server.transport.close()

        asyncio.run_coroutine_threadsafe(close_all(), controller.loop).result(timeout_s)
        self.wait_for(lambda: self.open_connections == 0, timeout_s, "the sink's connections to close")

    # --- aiosmtpd hooks (run in the server thread) -----------------------------------------

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            if server not in self._sessions:
                self._sessions.append(server)
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        session.host_name = hostname
        with self._lock:
            if server not in self._sessions:
                self._sessions.append(server)
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        answer = await self._answer("MAIL", server)
        if answer.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
        return answer

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        answer = await self._answer("RCPT", server)
        if answer.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await self._answer("DATA", server)
        if answer.startswith("2"):
            raw = envelope.original_content or b""  # the DATA as received, dot-unstuffed
            mail = ReceivedMail(
                message=message_from_bytes(raw, policy=email.policy.default),
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                peer=session.peer,  # type: ignore[arg-type]
                raw=raw,
                login=_login(session),
            )
            with self._lock:
                self._messages.append(mail)
        return answer

    async def _answer(self, command: str, server: SMTP) -> str:
        with self._lock:
            script = self._scripts[command]
            answer = script.popleft() if script else "250 OK"
        if answer == DROP:
            if server.transport is not None:
                server.transport.close()
            return "421 4.3.2 connection dropped"  # never reaches the client: the socket is closed
        if answer == STALL:
            deadline = time.monotonic() + _STALL_LIMIT_S
            while not self._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return "451 4.3.0 stalled"
        return answer

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        expected = self.credentials
        ok = (
            expected is not None
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == expected[0].encode()
            and auth_data.password == expected[1].encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def _login(session: Session) -> str | None:
    data = session.auth_data if session.authenticated else None
    return data.login.decode() if isinstance(data, LoginPassword) else None


def _is_open(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and not transport.is_closing()
