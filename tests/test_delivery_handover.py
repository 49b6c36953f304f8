"""The hand-over thread: a fan-out chunk's new deliveries go to the broker without holding up its next chunk."""

from __future__ import annotations

import threading

from tests.conftest import wait_until
from workers.delivery import HandOver


def test_the_hand_over_sends_from_its_own_thread_survives_a_failed_dispatch_and_sends_what_is_queued_when_stopped() -> None:
    sent: list[tuple[list[tuple[int, str]], str]] = []
    release = threading.Event()

    def dispatch(created: list[tuple[int, str]]) -> None:
        if created == [(1, "email")]:
            raise ConnectionError("broker down")  # the rows stay enqueued: the relay's sweep sends them again
        release.wait(5)
        sent.append((created, threading.current_thread().name))

    hand_over = HandOver(dispatch)
    release.set()
    hand_over([(0, "sms")])  # not started: sent inline
    assert sent == [([(0, "sms")], threading.current_thread().name)]

    release.clear()
    hand_over.start()
    hand_over([(1, "email")])
    hand_over([(2, "email"), (3, "sms")])  # returns at once, while the dispatch waits
    hand_over([(4, "email")])
    assert len(sent) == 1
    release.set()
    wait_until(lambda: len(sent) == 3, timeout_s=5, what="the queued deliveries to be dispatched")
    assert [created for created, _ in sent[1:]] == [[(2, "email"), (3, "sms")], [(4, "email")]]
    assert {thread for _, thread in sent[1:]} == {HandOver.thread_name}

    # While the broker is slow, at most two chunks wait: the next one waits for room (memory stays flat).
    release.clear()
    for i in (5, 6, 7):  # one being dispatched, two waiting
        hand_over([(i, "email")])
    wait_until(lambda: hand_over._queue.full(), timeout_s=5, what="two chunks to wait")
    blocked = threading.Thread(target=hand_over, args=([(8, "email")],))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive(), "a chunk should wait for room"
    release.set()
    blocked.join(5)
    assert not blocked.is_alive()
    hand_over.stop()  # what was queued goes before the thread ends
    assert [created for created, _ in sent[3:]] == [[(i, "email")] for i in (5, 6, 7, 8)]
