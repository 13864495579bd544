"""Replies to one request, matched by id as they arrive on the client's own reply topic."""

from __future__ import annotations

import threading
from typing import Any

from orbitwin.client.errors import ReplyTimeout, RequestRejected

FINAL = ("completed", "rejected", "failed")  # a request's last reply (``failed``: a job past its deadline)
REFUSED = ("rejected", "failed")


class PendingRequest:
    """A request sent and its replies so far (``accepted``, ``queued``, ... then one of :data:`FINAL`).

    ``what`` names the request in errors (``fault 'latchup' on STARLINK-1008``). ``fleet``: a request to
    the whole fleet, which every shard of a sharded twin answers: it ends when every shard named in the
    replies (``shard``: ``K/N``) has sent its final reply.
    """

    def __init__(self, request_id: str, what: str, fleet: bool = False) -> None:
        self.id = request_id
        self.what = what
        self.fleet = fleet
        self.replies: list[dict[str, Any]] = []
        self._done = threading.Event()
        self._lock = threading.Lock()

    def add(self, reply: dict[str, Any]) -> None:
        """Record one reply (called from the network thread); a repeated one (QoS 1 redelivery) is kept once."""
        with self._lock:
            if reply in self.replies:
                return
            self.replies.append(reply)
            finals = [r for r in self.replies if r.get("status") in FINAL]
        if reply.get("status") in FINAL and (not self.fleet or self._every_shard(finals)):
            self._done.set()

    @staticmethod
    def _every_shard(finals: list[dict[str, Any]]) -> bool:
        """Final replies from every shard (the unsharded twin's one reply counts as all)."""
        labels = {r.get("shard") for r in finals}
        if labels == {None}:
            return True
        try:
            count = int(str(next(iter(labels - {None}))).split("/")[1])
        except (IndexError, ValueError):
            return True
        return len(labels - {None}) >= count

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
            finals = [r for r in self.replies if r.get("status") in FINAL]
        if len(finals) == 1:
            return finals[0]
        # a sharded twin's fleet request: one final reply per shard, merged; refused if any shard refused
        refused = [r for r in finals if r.get("status") in REFUSED]
        first = dict(refused[0] if refused else finals[0])
        first["shards"] = sorted(finals, key=lambda r: str(r.get("shard")))
        if not refused and all(isinstance(r.get("sats"), int) for r in finals):
            first["sats"] = sum(r["sats"] for r in finals)
        return first

    def result(self, timeout_s: float) -> dict[str, Any]:
        """The ``completed`` reply; raises :class:`RequestRejected` on ``rejected``/``failed``, :class:`ReplyTimeout`."""
        reply = self.wait(timeout_s)
        if reply.get("status") in REFUSED:
            raise RequestRejected(reply, self.what)
        return reply
