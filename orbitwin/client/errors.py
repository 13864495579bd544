"""What the client raises: a request the twin (or the client's own check) refused, a reply that never came."""

from __future__ import annotations

from typing import Any


class RequestRejected(Exception):
    """A request was refused: ``reply`` is the ``rejected`` (or ``failed``) reply as the twin sent it.

    ``reason`` (e.g. ``out_of_range``, ``unknown_satellite``, ``not_now``), ``field`` (the argument or
    key at fault, or None) and ``message`` come from the reply; ``request_id`` is the request's id.
    A request the client refused before sending (a bad argument it can check itself) carries a reply
    with ``"source": "client"``.
    """

    def __init__(self, reply: dict[str, Any], what: str) -> None:
        self.reply = reply
        self.reason: str | None = reply.get("reason")
        self.field: str | None = reply.get("field")
        self.message: str | None = reply.get("message")
        self.request_id: str | None = reply.get("id")
        where = f" (field {self.field})" if self.field else ""
        status = reply.get("status", "rejected")
        super().__init__(f"{what} {status}: {self.reason}{where}: {self.message}")


class ReplyTimeout(TimeoutError):
    """No final reply within the timeout; the message names the request and the replies seen."""
