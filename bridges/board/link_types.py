"""Value types and errors of the serial link (see bridges.board.link)."""
from __future__ import annotations

import errno
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

from orbitwin_fw import messages as m


class LinkError(Exception):
    """Base class of link errors."""


class LinkDown(LinkError):
    """The port is not open (unplugged, or not yet reconnected)."""


class LinkTimeout(LinkError):
    """No reply after all retries."""


class PortUnavailable(LinkError):
    """The serial port cannot be opened (missing, no permission, busy); ``reason`` says which."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot open serial port {url}: {reason}")
        self.url, self.reason = url, reason


_OPEN_HINTS = {
    errno.ENOENT: "no such device: is the board plugged in? `orbitwin boards` lists the serial ports",
    errno.EACCES: "permission denied: add your user to the dialout group (sudo usermod -aG dialout $USER, "
                  "then log in again)",
    errno.EBUSY: "the port is busy: another program has it open",
}


def open_failure(exc: BaseException) -> str:
    """Why opening a port failed, in one line: the OS reason with its errno name, and a hint where one helps."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        name = errno.errorcode.get(code, str(code))
        return f"{_OPEN_HINTS.get(code, os.strerror(code))} ({name})"
    return str(exc).strip() or type(exc).__name__


@dataclass(frozen=True)
class Message:
    """A decoded frame from the board; t_rx is host time.monotonic()."""
    mtype: int
    name: str
    seq: int
    fields: dict
    t_rx: float


@dataclass(frozen=True)
class Ack:
    """ACK of a COMMAND or FAULT."""
    ref_seq: int
    status: int
    detail: int
    rtt_s: float

    @property
    def ok(self) -> bool:
        return self.status == m.ST_OK

    @property
    def status_name(self) -> str:
        return m.STATUS_NAMES.get(self.status, str(self.status))


@dataclass(frozen=True)
class TimeSync:
    """Result of one TIME_SYNC exchange (midpoint method)."""
    rtt_s: float
    host_mono_mid_s: float
    host_sim_s: float
    board_uptime_ms: int
    board_ticks_ms: int

    def board_to_host_mono(self, uptime_ms: int) -> float:
        """Host time.monotonic() at which the board's uptime was `uptime_ms`."""
        return self.host_mono_mid_s + (uptime_ms - self.board_uptime_ms) / 1000.0


class _Waiter:
    def __init__(self, pred: Callable[[Message], bool]) -> None:
        self.pred = pred
        self.msg: Message | None = None
        self.event = threading.Event()


def strings(fields: dict) -> dict:
    """bytes fields -> str."""
    return {k: (v.decode("ascii", "replace") if isinstance(v, bytes) else v) for k, v in fields.items()}


def put_drop_oldest(q: queue.Queue, item: Any) -> bool:
    """Put without blocking; when full drop the oldest item.  False if one was dropped."""
    try:
        q.put_nowait(item)
        return True
    except queue.Full:
        try:
            q.get_nowait()
            q.put_nowait(item)
        except (queue.Empty, queue.Full):
            pass
        return False


def safe_call(fn: Callable[..., Any], *args: Any) -> bool:
    """Call a user callback; False if it raised (the link must not die of it)."""
    try:
        fn(*args)
        return True
    except Exception:
        return False
