"""Email delivery over SMTP (aiosmtplib) through a small pool of reused connections.

aiosmtplib has neither a pool nor pipelining, so concurrency means several connections:
``smtp_connections`` clients wait in an ``asyncio.LifoQueue``; a send takes one (so at most
that many sends run at once), connects it when it is not connected, and puts it back. LIFO
hands out the most recently used, still open connection first: a quiet channel keeps one
connection, a busy one opens up to the pool size. A pooled connection found dropped at MAIL
FROM (or answering 421 there) is reopened once and the send goes on: nothing of the message
was sent on it, so this cannot deliver twice. ``smtp://`` is plain unless ``?starttls=true``
(then STARTTLS is required); ``smtps://`` is TLS from the first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import html
import secrets
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.errors import HeaderParseError
from email.header import Header
from email.headerregistry import Address
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate
from typing import ClassVar, NoReturn
from urllib.parse import parse_qsl, unquote, urlsplit

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPStatus,
    SMTPTimeoutError,
)

from channels.base import ChannelLimits, Envelope, Receipt
from channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from channels.settings import SmtpSettings

# The compat32 MIME classes build a message in ~0.25 ms where EmailMessage's header registry
# takes ~0.8-1.2 ms (measured): the client CPU is the ceiling of an SMTP fleet (PITFALLS).
# Output is 7bit (quoted-printable for non-ASCII or over-long lines) with CRLF line ends, so
# any server takes it without 8BITMIME or SMTPUTF8. Header values are validated first: a
# compat32 header does not refuse CR or LF itself.
_POLICY = email.policy.compat32.clone(linesep="\r\n", mangle_from_=False)
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP
_MAX_LINE = 998  # RFC 5321 4.5.3.1.6, without the CRLF
# What the email package raises for a malformed address (defects are ValueErrors).
_MALFORMED = (ValueError, IndexError, HeaderParseError)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to connect, parsed from ``SMTP_URL``; repr and errors never show the password."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps://: TLS from the first byte
    start_tls: bool = False  # smtp://...?starttls=true: upgrade after EHLO, required

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """Parse ``smtp://[user:pass@]host[:port][?starttls=true]`` or ``smtps://...``.

        Raises ValueError naming SMTP_URL, never quoting it (it may hold a password).
        """
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("SMTP_URL must be smtp://[user:pass@]host:port or smtps://...")
        start_tls = False
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key != "starttls" or value.lower() not in _TRUE | _FALSE:
                raise ValueError("SMTP_URL accepts only the query parameter starttls=true|false")
            start_tls = value.lower() in _TRUE
        use_tls = parts.scheme == "smtps"
        if use_tls and start_tls:
            raise ValueError("SMTP_URL: smtps:// is TLS already; drop ?starttls=true")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP_URL has an invalid port") from None
        if port is None:
            port = 465 if use_tls else 587 if start_tls else 25
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            start_tls=start_tls,
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class EmailChannel:
    """Sends one email per recipient through a pool of reused SMTP connections."""

    name: ClassVar[str] = "email"

    def __init__(
        self,
        *,
        server: SmtpServer,
        email_from: str,
        app_title: str,
        connections: int = 4,
        timeout_s: float = 30.0,
        local_hostname: str | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("HERALD_SMTP_CONNECTIONS must be at least 1")
        if timeout_s <= 0:
            raise ValueError("HERALD_SMTP_TIMEOUT_S must be positive")
        try:
            sender = Address(addr_spec=email_from)
        except _MALFORMED:
            raise ValueError("HERALD_EMAIL_FROM is not an email address") from None
        self.limits = ChannelLimits(max_text_length=None)
        self.server = server
        self._sender = sender.addr_spec
        self._domain = _ascii_domain(sender.domain) or "herald"
        self._title = _one_line(app_title)
        from_name = f"{self._title} message [No reply]"
        self._from_header = formataddr((from_name, sender.addr_spec), charset="utf-8")
        self._timeout_s = timeout_s
        self._idle: asyncio.LifoQueue[SMTP] = asyncio.LifoQueue()
        for _ in range(connections):
            self._idle.put_nowait(self._new_client(local_hostname))
        self._size = connections

    @classmethod
    def from_settings(cls, settings: SmtpSettings) -> EmailChannel:
        """Build the channel from Herald's settings; ValueError when SMTP_URL is not set."""
        if settings.smtp_url is None:
            raise ValueError("SMTP_URL is not set: the email channel is off")
        return cls(
            server=SmtpServer.from_url(settings.smtp_url.get_secret_value()),
            email_from=settings.email_from,
            app_title=settings.app_title,
            connections=settings.smtp_connections,
            timeout_s=settings.smtp_timeout_s,
        )

    def message_id(self, envelope: Envelope) -> str:
        """The stable Message-ID of one (message, recipient): a resend is recognisably the same mail."""
        return f"<{envelope.message_uid}.{envelope.recipient_uid}@{self._domain}>"

    def render(self, envelope: Envelope) -> MIMEMultipart:
        """The email for one recipient: plain text and HTML alternatives. Raises PermanentDeliveryError."""
        return self._render(envelope, _recipient_address(envelope.address))

    def _render(self, envelope: Envelope, recipient: str) -> MIMEMultipart:
        msg = MIMEMultipart("alternative", boundary=f"=_herald_{secrets.token_hex(12)}")
        msg["Message-ID"] = self.message_id(envelope)
        msg["Date"] = formatdate()
        msg["From"] = self._from_header
        msg["To"] = formataddr((_one_line(envelope.recipient_name), recipient), charset="utf-8")
        subject = f"[{self._title}] {_one_line(envelope.subject)}"
        msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a no-reply sender
        msg.attach(_text_part(_plain_text(envelope), "plain"))
        msg.attach(_text_part(_html_text(envelope), "html"))
        return msg

    async def send(self, envelope: Envelope) -> Receipt:
        """Deliver one email; raise Permanent-, Transient- or UnknownOutcomeError."""
        recipient = _recipient_address(envelope.address)
        payload = self._render(envelope, recipient).as_bytes(policy=_POLICY)
        client = await self._idle.get()
        try:
            await self._transmit(client, recipient, payload)
        except DeliveryError:
            raise  # _transmit left the connection reset (RSET) or closed
        except BaseException:
            client.close()  # cancelled or unexpected mid-transaction: the session state is unknown
            raise
        finally:
            self._idle.put_nowait(client)
        return Receipt(provider_id=self.message_id(envelope), status="SENT")

    async def aclose(self) -> None:
        """Wait for sends in flight, then QUIT every open connection (reopened lazily if used again)."""
        clients = [await self._idle.get() for _ in range(self._size)]
        try:
            await asyncio.gather(*(_quit(client) for client in clients))
        finally:
            for client in clients:
                self._idle.put_nowait(client)

    def _new_client(self, local_hostname: str | None) -> SMTP:
        s = self.server
        return SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=self._timeout_s,
            local_hostname=local_hostname,
        )

    async def _transmit(self, client: SMTP, recipient: str, payload: bytes) -> None:
        """One SMTP transaction; reopen a connection found dropped before anything was sent, once."""
        reconnected = False
        while True:
            reused = client.is_connected
            if not reused:
                await self._connect(client)
            try:
                await client.mail(self._sender)
            except SMTPServerDisconnected as exc:
                if reconnected:
                    raise TransientDeliveryError(f"SMTP server {self.server} dropped the connection") from exc
                reconnected = True
                continue
            except SMTPResponseException as exc:
                # A 421 here on a reused connection is the server's idle-timeout notice: reopen once.
                if exc.code == SMTPStatus.domain_unavailable and reused and not reconnected:
                    reconnected = True
                    continue
                # The sender refused is our configuration, not the recipient's fault: retry later.
                await _reset(client)
                raise TransientDeliveryError(
                    f"SMTP {exc.code} on MAIL FROM: {exc.message}", f"smtp-{exc.code}"
                ) from exc
            except (SMTPException, OSError) as exc:  # timeouts; aiosmtplib closes on those
                client.close()
                raise TransientDeliveryError(f"SMTP server {self.server} failed on MAIL FROM: {exc}") from exc
            break
        try:
            await client.rcpt(recipient)
        except SMTPResponseException as exc:
            await _reset(client)
            _raise_for_reply("RCPT TO", exc)
        except (SMTPException, OSError) as exc:
            client.close()
            raise TransientDeliveryError(f"SMTP server {self.server} failed on RCPT TO: {exc}") from exc
        try:
            await client.data(payload)
        except SMTPResponseException as exc:
            await _reset(client)
            _raise_for_reply("DATA", exc)
        except (SMTPTimeoutError, SMTPServerDisconnected, OSError) as exc:
            client.close()
            raise UnknownOutcomeError(
                f"SMTP server {self.server} went silent during DATA: the message may have been accepted",
                "smtp-unknown",
            ) from exc

    async def _connect(self, client: SMTP) -> None:
        client.close()  # clears a half-closed session so connect() starts afresh
        try:
            await client.connect()
        except SMTPResponseException as exc:
            # Greeting refused, STARTTLS or AUTH failed: the server or our configuration; retry later.
            raise TransientDeliveryError(
                f"SMTP server {self.server} refused the session: {exc.code} {exc.message}", f"smtp-{exc.code}"
            ) from exc
        except (SMTPException, OSError) as exc:
            raise TransientDeliveryError(
                f"cannot reach SMTP server {self.server}: {type(exc).__name__}", "smtp-connect"
            ) from exc


def _raise_for_reply(command: str, exc: SMTPResponseException) -> NoReturn:
    error = PermanentDeliveryError if 500 <= exc.code < 600 else TransientDeliveryError
    raise error(f"SMTP {exc.code} on {command}: {exc.message}", f"smtp-{exc.code}") from exc


async def _reset(client: SMTP) -> None:
    """RSET after a refusal so the connection can carry the next message; drop it if that fails."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except (SMTPException, OSError):
        client.close()


async def _quit(client: SMTP) -> None:
    if client.is_connected:
        with contextlib.suppress(SMTPException, OSError):
            await client.quit()
    client.close()


def _recipient_address(address: str) -> str:
    """The address as an ASCII addr-spec (IDNA domain), or PermanentDeliveryError."""
    try:
        parsed = Address(addr_spec=address.strip())
    except _MALFORMED:
        raise PermanentDeliveryError("not a valid email address", "invalid-address") from None
    domain = _ascii_domain(parsed.domain)
    if not parsed.username or not domain or not parsed.username.isascii():
        raise PermanentDeliveryError("not a deliverable email address", "invalid-address")
    return Address(username=parsed.username, domain=domain).addr_spec


def _ascii_domain(domain: str) -> str | None:
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


def _one_line(value: str) -> str:
    """Header text on one line (a CR or LF in a header value is an injection)."""
    return " ".join(value.split()) if ("\n" in value or "\r" in value) else value


def _text_part(text: str, subtype: str) -> MIMEText:
    if text.isascii() and all(len(line) <= _MAX_LINE for line in text.splitlines()):
        return MIMEText(text, subtype, "us-ascii")
    return MIMEText(text, subtype, _UTF8_QP)  # type: ignore[arg-type]


def _plain_text(envelope: Envelope) -> str:
    parts = [envelope.text]
    if envelope.sender_name:
        parts.append(envelope.sender_name)
    if envelope.conversation_url:
        parts.append(envelope.conversation_url)
    return "\n\n".join(parts)


def _html_text(envelope: Envelope) -> str:
    text = html.escape(envelope.text.replace("\r\n", "\n")).replace("\n", "<br>\n")
    body = [f"<p>{text}</p>"]
    if envelope.sender_name:
        body.append(f"<p>{html.escape(envelope.sender_name)}</p>")
    if envelope.conversation_url:
        body.append(f'<p><a href="{html.escape(envelope.conversation_url)}">Respond to this message</a></p>')
    return "<!DOCTYPE html>\n<html><body>\n" + "\n".join(body) + "\n</body></html>\n"
