"""The bridge's durable position in the twin's telemetry: per-satellite sequences and the birth it follows.

Why a state file and not a look-up in InfluxDB: the bridge must know, after a restart, every
sequence number it had already made durable, and the gaps it was still waiting for. InfluxDB
knows the first (a ``max(seq)`` per satellite over six measurements, a query that grows with the
fleet and the retention, and that cannot see the points still waiting in the spool) but not the
second (the open gaps, the run that was current, the satellite list). A small JSON file, written
atomically (temporary file, fsync, rename, fsync of the directory) beside the spool, is exact and
costs one write of a few hundred kB every ``save_every_s`` at most.

Why it is exact: the bridge saves it only after a batch is durable (in InfluxDB, the spool or the
dead letters) and acknowledged, so the file never claims a sequence number that could still be
lost. It may lag the acknowledgements by up to ``save_every_s``: then, after a crash, the messages
acknowledged since the last save look like a gap against the saved high-water marks and are
replayed from the twin's buffer; storing them again is idempotent (same series and timestamp).
So what the broker loses while the bridge is down (a SIGKILL'd broker's unsaved queue) is found
as a gap and replayed, and never silently skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["StateFile"]

_VERSION = 1


class StateFile:
    """One JSON document at ``path``, replaced atomically and fsync'd; unreadable files count as absent."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.saves = 0
        self.load_error = ""

    def load(self) -> dict[str, Any] | None:
        """The saved document, or None if there is none (or it cannot be read: ``load_error`` says why)."""
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.load_error = f"{self.path.name}: {str(exc)[:200]}"
            return None
        if not isinstance(doc, dict) or doc.get("v") != _VERSION:
            self.load_error = f"{self.path.name}: not a version {_VERSION} state document"
            return None
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        """Replace the file with ``doc`` (plus ``v``): a crash leaves the old or the new document, whole."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".part")
        data = json.dumps({"v": _VERSION, **doc}, separators=(",", ":")).encode()
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.saves += 1
