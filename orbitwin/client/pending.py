"""Replies to one request, matched by id as they arrive on the client's own reply topic."""

from __future__ import annotations

import threading
from typing import Any

from orbitwin.client.errors import ReplyTimeout, RequestRejected

FINAL = ("completed", "rejected", "failed")  # a request's last reply (``failed``: a job past its deadline)
REFUSED = ("rejected", "failed")


class PendingRequest:
    """A request sent and its replies so far (``accepted``, ``queued``, ... then one of :data:`FINAL`).

    ``what`` names the request in errors (``fault 'latchup' on STARLINK-1008``).
    """

    def __init__(self, request_id: str, what: str) -> None:
        self.id = request_id
        self.what = what
        self.replies: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def add(self, reply: dict[str, Any]) -> None:
        """Record one reply (called from the network thread); a repeated one (QoS 1 redelivery) is kept once."""
        with self._lock:
            if reply in self.replies:
                return
            self.replies.append(reply)
        if reply.get("status") in FINAL:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def accepted(self) -> dict[str, Any] | None:
        """The ``accepted`` reply (``execute_t_s``: the sim second it runs at), if it came."""
        with self._lock:
            return next((r for r in self.replies if r.get("status") == "accepted"), None)

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The final reply, whatever its status; :class:`ReplyTimeout` if none within ``timeout_s`` (wall s)."""
        if not self._done.wait(timeout_s):
            with self._lock:
                seen = [r.get("status") for r in self.replies]
            raise ReplyTimeout(f"no completed or rejected reply to {self.what} (id {self.id!r}) within "
                               f"{timeout_s:g} s; replies seen: {seen or 'none'}")
        with self._lock:
            return next(r for r in reversed(self.replies) if r.get("status") in FINAL)

    def result(self, timeout_s: float) -> dict[str, Any]:
        """The ``completed`` reply; raises :class:`RequestRejected` on ``rejected``/``failed``, :class:`ReplyTimeout`."""
        reply = self.wait(timeout_s)
        if reply.get("status") in REFUSED:
            raise RequestRejected(reply, self.what)
        return reply
