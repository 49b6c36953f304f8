"""The request id across the broker: into each message sent while it is set, back around each job.

``before_enqueue`` copies the current request id (``messaging.context``) into the message's
options; ``before_process_message`` sets it for the job's thread and ``after_*`` restores it,
so every log line of the job, and every message the job sends in turn (the fan-out's delivery
jobs), carries the id of the HTTP request that started it all.
"""

from __future__ import annotations

import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from messaging import context

OPTION = "herald_request_id"


class RequestIdMiddleware(Middleware):
    """Carries ``messaging.context``'s request id in message options."""

    def __init__(self) -> None:
        self._tokens = threading.local()

    def before_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message[Any], delay: int) -> None:
        """Stamp the message with the current request id (a retry keeps the one it has)."""
        request_id = context.request_id()
        if request_id and OPTION not in message.options:
            message.options[OPTION] = request_id

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Make the message's request id the thread's for the job."""
        self._tokens.token = context.set_request_id(context.sane_request_id(message.options.get(OPTION)))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any | None = None,
        exception: BaseException | None = None,
    ) -> None:
        """Restore the thread's request id."""
        self._reset()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Restore the thread's request id."""
        self._reset()

    def _reset(self) -> None:
        token = getattr(self._tokens, "token", None)
        if token is not None:
            self._tokens.token = None
            context.reset_request_id(token)
