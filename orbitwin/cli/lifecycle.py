"""What long-running subcommands share: stop on SIGTERM/SIGINT, a status line every few seconds."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from typing import Any


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C), so a service can finish cleanly."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    return stopping


def report_until_stopped(stopping: threading.Event, every_s: float, status: Callable[[], dict[str, Any]]) -> None:
    """Print ``status()`` as one JSON line every ``every_s`` seconds until ``stopping`` is set."""
    while not stopping.wait(every_s):
        print(json.dumps(status(), default=str), flush=True)
