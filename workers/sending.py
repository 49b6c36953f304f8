"""Sending deliveries in one worker process: the channels on their loop, claims paced by slots.

Per worker process (``DeliveryHost``):
- one event loop thread owning one long-lived channel per configured channel (the SMTP pool and
  Twilio's aiohttp session live on that loop for the life of the worker);
- per channel a ``Slots`` counter bounding the rows claimed and not yet finished (four times the
  channel's concurrency: HERALD_SMTP_CONNECTIONS, HERALD_SMS_CONCURRENCY), and for SMS the
  HERALD_SMS_RATE token bucket (in Redis when the broker is Redis);
- one recorder thread writing outcomes in batches (``workers.recorder``).

``DeliveryHost.deliver(channel, ids)``, the body of the ``herald.deliver`` actor, takes slots (and
tokens), claims that many of its rows, starts their sends on the loop and goes on until its ids
are claimed; it returns once every row it claimed is handed to the loop, not when the sends end:
the claim in the database, not the broker's acknowledgement, is what keeps a row from being sent
twice, and a thread that waited for its sends would leave slots idle that the next job could
fill. Rows it could not get slots for within ``SLOT_WAIT_S`` go back to the relay, so a slow
channel never holds every worker thread. ``stop`` lets the sends under way finish, hands the
claimed rows not yet started back (QUEUED, the attempt not counted) and writes every outcome.

The loop is the host's own ``dramatiq.asyncio.EventLoopThread``, not Dramatiq's AsyncIO
middleware: that middleware keeps one global loop per process, so two workers in one process
(the in-process fleet beside a test's Redis worker) would stop each other's loop on shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dramatiq.asyncio import EventLoopThread
from sqlalchemy import Engine

from channels.base import Channel, Envelope
from channels.email import EmailChannel
from channels.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from channels.sms import SmsChannel
from messaging import deliveries
from messaging.deliveries import Claim, Draft, Outcome, Result, RetryPolicy
from workers.outage import Outage
from workers.ratelimit import LocalBucket, RedisBucket, TokenBucket, take_within
from workers.recorder import Recorder
from workers.settings import FleetSettings

log = logging.getLogger("herald.deliveries")
SLOT_WAIT_S = 5.0  # longest a job waits for room on its channel before handing its rows back
FLUSH_S = 0.005  # how often the loop hands finished sends to the recorder and returns their slots
CLAIM_DEPTH = 4  # rows claimed and unfinished per process, in multiples of the channel's concurrency
STATUS_CALLBACK_PATH = "/api/sms/twilio/status"
# Transient failures that say the provider itself is unreachable (not one recipient's trouble).
UNREACHABLE_CODES = frozenset({None, "smtp-connect", "smtp-421", "twilio-connect"})


def build_channels(settings: FleetSettings) -> dict[str, Channel]:
    """The configured channels (unconnected); ValueError naming the key when one is half-configured."""
    channels: dict[str, Channel] = {}
    if settings.smtp_url is not None:
        channels[deliveries.EMAIL] = EmailChannel.from_settings(settings)
    if settings.twilio_account_sid or settings.twilio_auth_token:
        callback = f"{settings.base_url}{STATUS_CALLBACK_PATH}" if settings.base_url else None
        channels[deliveries.SMS] = SmsChannel.from_settings(
            settings,
            max_length=deliveries.SMS_HARD_LIMIT,  # keySmsMaxLength is applied when the row is claimed
            status_callback=callback,
            timeout_s=settings.sms_timeout_s,
        )
    return channels



class Slots:
    """A counting semaphore that hands out several permits at once, to threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._cond = threading.Condition()
        self._needs: Counter[int] = Counter()  # what the waiting threads wait for

    def take(self, want: int, deadline: float, at_least: int = 1) -> int:
        """Up to ``want`` permits once ``min(want, at_least)`` are free; 0 when they were not by ``deadline``."""
        need = max(1, min(want, at_least, self.size))
        with self._cond:
            self._needs[need] += 1
            try:
                while self._free < need:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return 0
                    self._cond.wait(min(remaining, 0.05))  # short waits: Dramatiq's interrupts land between them
            finally:
                self._needs[need] -= 1
                if not self._needs[need]:
                    del self._needs[need]
            granted = min(want, self._free)
            self._free -= granted
            return granted

    def give(self, count: int) -> None:
        """Return permits; wake the waiters only once one of them can go (sends finish one by one)."""
        if count > 0:
            with self._cond:
                self._free += count
                if self._needs and self._free >= min(self._needs):
                    self._cond.notify_all()


class Finisher:
    """Hands finished sends on from the loop every ``FLUSH_S``: outcomes to the recorder, slots back.

    One by one, each send's hand-over woke the recorder and the claiming threads, at a cost
    comparable to the send's own work; gathered, it is one wake-up per few milliseconds.
    Called on the loop only.
    """

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.sending: set[asyncio.Task[None]] = set()  # the pumps under way (``DeliveryHost._pump``)
        self._done: list[tuple[Lane, Outcome]] = []

    def add(self, lane: Lane, outcome: Outcome) -> None:
        """A send ended with this outcome."""
        if not self._done:
            asyncio.get_running_loop().call_later(FLUSH_S, self.flush)
        self._done.append((lane, outcome))

    def flush(self) -> None:
        """Hand on what ended since the last flush."""
        done, self._done = self._done, []
        if not done:
            return
        self.recorder.submit(*(outcome for _, outcome in done))
        lanes: dict[str, Lane] = {}
        ended: Counter[str] = Counter()
        for lane, _ in done:
            lanes[lane.name] = lane
            ended[lane.name] += 1
        for name, count in ended.items():
            lanes[name].slots.give(count)


@dataclass
class Lane:
    """One channel in one worker process.

    ``slots`` counts rows claimed and not yet finished: ``CLAIM_DEPTH`` times the channel's
    concurrency, so the channel always has the next rows at hand, and a worker killed mid-send
    leaves at most that many rows UNKNOWN. A claim waits until it can take at least the
    concurrency's worth (or what its job has left) and takes up to twice that, so one
    transaction claims several rows. Claimed rows wait in ``waiting`` for one of at most
    ``concurrency`` pumps (for email that equals the SMTP pool, so a send never waits for a
    connection): a row still waiting has not reached the provider, and a stopping worker gives
    it back. Pumps, not a task per row behind a semaphore: each row's task, semaphore future and
    wake-up cost ~5% of an SMS worker's CPU.
    """

    name: str
    channel: Channel
    concurrency: int
    bucket: TokenBucket | None = None

    slots: Slots = field(init=False)
    waiting: deque[tuple[Claim, contextvars.Context]] = field(init=False)  # with its job's context (request id)
    pumps: int = field(init=False)  # pumps running (touched on the loop only)
    outage: Outage = field(init=False)

    def __post_init__(self) -> None:
        self.slots = Slots(CLAIM_DEPTH * self.concurrency)
        self.outage = Outage(f"{self.name} provider", log)
        self.waiting = deque()
        self.pumps = 0


class DeliveryHost:
    """The channels, loop and recorder of one worker process; ``deliver`` is the actor's body."""

    def __init__(self, settings: FleetSettings, engine: Engine, channel_names: Sequence[str]) -> None:
        self.settings, self.engine, self.channel_names = settings, engine, tuple(channel_names)
        self.policy = RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s)
        self._loop: EventLoopThread | None = None
        self._lanes: dict[str, Lane] = {}
        self._recorder: Recorder | None = None
        self._finisher: Finisher | None = None
        self._stopping = False  # read on the loop: rows that have not started are handed back

    def start(self) -> None:
        """Start the loop and the recorder and open the channels (fresh ones each boot: they bind to the loop)."""
        loop = EventLoopThread(log)
        loop.daemon = True
        loop.start(timeout=5.0)
        channels = build_channels(self.settings)
        lanes = {}
        for name in self.channel_names:
            if name == deliveries.EMAIL:
                lanes[name] = Lane(name, channels[name], self.settings.smtp_connections)
            else:
                lanes[name] = Lane(name, channels[name], self.settings.sms_concurrency, self._sms_bucket())
        recorder = Recorder(self.engine, self.policy)
        recorder.start()
        self._stopping = False
        self._loop, self._lanes, self._recorder = loop, lanes, recorder
        self._finisher = Finisher(recorder)

    def _sms_bucket(self) -> TokenBucket:
        url, rate = self.settings.broker_url, self.settings.sms_rate_per_s
        if urlsplit(url).scheme in {"redis", "rediss"}:
            return RedisBucket(url, f"{self.settings.broker_namespace}.sms-rate", rate)
        return LocalBucket(rate)  # in-process, or RabbitMQ: per process (docs/deliveries.md)

    def stop(self) -> None:
        """Finish the sends under way, hand back the rows not started, write every outcome, close the channels."""
        loop, lanes, recorder, finisher = self._loop, self._lanes, self._recorder, self._finisher
        self._loop, self._lanes, self._recorder, self._finisher = None, {}, None, None
        self._stopping = True
        if loop is not None and finisher is not None:
            # Each send ends within its channel's timeout, well inside the lease; past the lease
            # the sweeper would call them UNKNOWN anyway, so cancel (and record UNKNOWN) then.
            try:
                loop.run_coroutine(_finish_tasks(self.settings.delivery_lease_s, finisher, list(lanes.values())))
            except Exception:
                log.warning("finishing the sends under way failed", exc_info=True)
        if recorder is not None:
            recorder.stop()
        for lane in lanes.values():
            if lane.bucket is not None:
                lane.bucket.close()
        if loop is not None:
            try:
                loop.run_coroutine(_close_all([lane.channel for lane in lanes.values()]))
            except Exception:
                log.warning("closing the delivery channels failed", exc_info=True)
            loop.stop()

    def deliver(self, channel: str, ids: Sequence[int]) -> None:
        """Claim these deliveries and start their sends; return once all are handed on. Safe to run twice."""
        loop, lane, recorder, finisher = self._loop, self._lanes.get(channel), self._recorder, self._finisher
        if loop is None or recorder is None or finisher is None:
            raise RuntimeError("the delivery host is not running")
        if lane is None:  # a job from a process with other channels: leave the rows to one that has it
            deliveries.release(self.engine, ids)
            return
        pending = list(ids)
        deadline = time.monotonic() + SLOT_WAIT_S
        while pending:
            room = lane.slots.take(min(len(pending), lane.slots.size), deadline, at_least=lane.slots.size // 2)
            if room and lane.bucket is not None:
                tokens = take_within(lane.bucket, room, deadline)
                lane.slots.give(room - tokens)
                room = tokens
            if not room:
                break
            chunk, pending = pending[:room], pending[room:]
            try:
                claims = deliveries.claim(
                    self.engine, channel, chunk, lease_s=self.settings.delivery_lease_s, base_url=self.settings.base_url
                )
            except BaseException:
                lane.slots.give(room)
                raise
            sending = [c for c in claims if c.draft is not None]
            lane.slots.give(room - len(sending))
            recorder.submit(*(_skipped(c) for c in claims if c.draft is None))
            handed = False
            try:
                if sending:
                    loop.loop.call_soon_threadsafe(self._queue_sends, lane, sending, finisher)
                handed = True
            finally:
                if not handed:
                    # Interrupted (time limit, shutdown) before these reached the loop: not sent, so queue them again.
                    lane.slots.give(len(sending))
                    recorder.submit(
                        *(_outcome(c, Result.RELEASED, code="interrupted", reason="the job stopped first") for c in sending)
                    )
        if pending:
            deliveries.release(self.engine, pending)  # no room in time: the relay hands them out again

    def _queue_sends(self, lane: Lane, claims: Sequence[Claim], finisher: Finisher) -> None:
        """On the loop: queue claimed rows for the lane's pumps, starting pumps up to its concurrency."""
        # The job's context (this callback runs in a copy of it): a pump sends rows of many jobs,
        # and each row's log lines carry its own job's request id.
        context = contextvars.copy_context()
        lane.waiting.extend((claim, context) for claim in claims)
        for _ in range(min(lane.concurrency - lane.pumps, len(lane.waiting))):
            lane.pumps += 1
            task = asyncio.get_running_loop().create_task(self._pump(lane, finisher))
            finisher.sending.add(task)
            task.add_done_callback(finisher.sending.discard)

    async def _pump(self, lane: Lane, finisher: Finisher) -> None:
        """Send the lane's waiting rows one after another; end when none is left."""
        try:
            while lane.waiting:
                await self._send(lane, *lane.waiting.popleft(), finisher)
        finally:
            lane.pumps -= 1

    async def _send(self, lane: Lane, claim: Claim, context: contextvars.Context, finisher: Finisher) -> None:
        """Send one claimed row; queue its outcome, whatever happens (log lines in its job's ``context``)."""
        assert claim.draft is not None
        outcome = _outcome(claim, Result.RELEASED, code="stopping", reason="the worker stopped before the send")
        try:
            if self._stopping:
                return  # never reached the provider: QUEUED again for another worker
            outcome = _outcome(claim, Result.UNKNOWN, code="cancelled", reason="the worker stopped during the send")
            receipt = await lane.channel.send(_envelope(claim.draft))
        except PermanentDeliveryError as exc:
            outcome = _outcome(claim, Result.PERMANENT, code=exc.code, reason=exc.reason)
        except UnknownOutcomeError as exc:
            outcome = _outcome(claim, Result.UNKNOWN, code=exc.code, reason=exc.reason)
        except (TransientDeliveryError, DeliveryError) as exc:
            outcome = _outcome(claim, Result.TRANSIENT, code=exc.code, reason=exc.reason, retry_after_s=exc.retry_after_s)
        except Exception as exc:
            # Outside the channel contract: it may have reached the provider, so never resend it blindly.
            context.run(log.exception, "unexpected error sending delivery %d", claim.delivery_id)
            outcome = _outcome(claim, Result.UNKNOWN, code="internal-error", reason=f"{type(exc).__name__}: {exc}")
        else:
            outcome = _outcome(claim, Result.SENT, provider_id=receipt.provider_id)
        finally:
            context.run(_log_attempt, lane, claim, outcome, self.policy)
            finisher.add(lane, outcome)


def _log_attempt(lane: Lane, claim: Claim, outcome: Outcome, policy: RetryPolicy) -> None:
    """One WARNING per failed attempt (the dead letter's says so); ids and codes only, never the address."""
    result = outcome.result
    if result is Result.SENT:
        lane.outage.ok()
        return
    if result not in {Result.TRANSIENT, Result.PERMANENT, Result.UNKNOWN}:
        return  # released: never reached the provider
    dead = result is Result.PERMANENT or (result is Result.TRANSIENT and claim.attempt >= policy.max_attempts)
    draft = claim.draft
    fields = {
        "channel": lane.name, "code": outcome.code, "delivery_id": claim.delivery_id, "attempt": claim.attempt,
        "message_uid": draft.message_uid if draft else None, "conversation_uid": draft.conversation_uid if draft else None,
        "recipient_uid": draft.recipient_uid if draft else None,
        "outcome": "dead" if dead else ("unknown" if result is Result.UNKNOWN else "retrying"),
    }
    if dead:
        what = "dead letter: delivery %d (%s) gave up on attempt %d [%s]"
    elif result is Result.UNKNOWN:
        what = "delivery %d (%s) attempt %d has an unknown outcome [%s]"
    else:
        what = "delivery %d (%s) attempt %d failed, will retry [%s]"
    log.warning(what, claim.delivery_id, lane.name, claim.attempt, outcome.code, extra=fields)
    if result is Result.TRANSIENT and outcome.code in UNREACHABLE_CODES:
        lane.outage.failed(DeliveryError(outcome.code or "unreachable"), channel=lane.name)


_ENVELOPE_FIELDS = tuple(f.name for f in dataclasses.fields(Envelope))


def _envelope(draft: Draft) -> Envelope:
    # Field by field: dataclasses.asdict deep-copies, which costs more than the SMTP exchange's parsing.
    return Envelope(**{name: getattr(draft, name) for name in _ENVELOPE_FIELDS})


def _outcome(claim: Claim, result: Result, **details: Any) -> Outcome:
    return Outcome(claim.delivery_id, claim.claimed_at, claim.attempt, result, **details)


def _skipped(claim: Claim) -> Outcome:
    code, reason = claim.skip or ("skipped", "nothing to send")
    return _outcome(claim, Result.SKIPPED, code=code, reason=reason)


async def _finish_tasks(grace_s: float, finisher: Finisher, lanes: Sequence[Lane]) -> None:
    """Wait up to ``grace_s`` for the sends under way, cancel what is left, hand on every outcome.

    The pumps hand back the rows still waiting (``_stopping``); rows left behind by a cancelled
    pump never reached the provider either: handed back here.
    """
    tasks = list(finisher.sending)
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    for lane in lanes:
        while lane.waiting:
            claim, _ = lane.waiting.popleft()
            finisher.add(lane, _outcome(claim, Result.RELEASED, code="stopping", reason="the worker stopped before the send"))
    finisher.flush()


async def _close_all(channels: Sequence[Channel]) -> None:
    await asyncio.wait_for(asyncio.gather(*(c.aclose() for c in channels), return_exceptions=True), 10.0)
