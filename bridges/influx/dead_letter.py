"""Dead letters: an append-only JSONL file of what could not be stored, with the reason.

One record per line::

    {"ts": 1767225600.123, "reason": "bad_line", "topic": "orbitwin/tm/...", "payload": "...",
     "payload_encoding": "utf-8", "payload_size": 812, "line": "...", "detail": "..."}

``payload``/``line`` are text when they are valid UTF-8, else base64 (``*_encoding: "base64"``);
beyond ``max_bytes`` they are cut, ``*_truncated: true``, with the original ``*_size`` kept.
Every record is written and flushed to the OS at once (a process crash loses nothing); fsync is
batched: every ``fsync_every`` records, on ``flush()`` and on ``close()`` (a power loss can lose
the records since the last fsync). Reopening counts the existing records and keeps appending;
a torn last line from a crash is terminated so new records start on their own line.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

__all__ = ["DeadLetters", "decode_field", "read_dead_letters"]


def _encode(name: str, data: bytes, limit: int) -> dict[str, Any]:
    try:
        data.decode("utf-8")
        # valid UTF-8: a cut can only split the last character, which "ignore" drops
        text, enc = data[:limit].decode("utf-8", "ignore"), "utf-8"
    except UnicodeDecodeError:
        text, enc = base64.b64encode(data[:limit]).decode("ascii"), "base64"
    rec: dict[str, Any] = {name: text, f"{name}_encoding": enc, f"{name}_size": len(data)}
    if len(data) > limit:
        rec[f"{name}_truncated"] = True
    return rec


def decode_field(record: dict[str, Any], name: str) -> bytes | None:
    """The bytes stored under ``name`` (``payload`` or ``line``) of a record (possibly truncated)."""
    if name not in record:
        return None
    text = record[name]
    return base64.b64decode(text) if record.get(f"{name}_encoding") == "base64" else text.encode()


def read_dead_letters(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All readable records of a dead-letter file (torn lines skipped)."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
    return out


class DeadLetters:
    """Append-only JSONL dead-letter file at ``path`` (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 65536, fsync_every: int = 100,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.fsync_every = max(1, fsync_every)
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.unreadable = 0  # torn/garbled lines found on open
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self._load()
        self._f = open(self.path, "ab")
        if torn:
            self._f.write(b"\n")
        self._unsynced = 0

    def _load(self) -> bool:
        """Count existing records; True if the file ends in a torn (unterminated) line."""
        if not self.path.exists():
            return False
        last = b""
        with open(self.path, "rb") as f:
            for raw in f:
                last = raw
                try:
                    self._counts[json.loads(raw)["reason"]] += 1
                except (ValueError, KeyError, TypeError):
                    self.unreadable += raw.strip() != b""
        return bool(last) and not last.endswith(b"\n")

    @property
    def count(self) -> int:
        return sum(self._counts.values())

    @property
    def counts_by_reason(self) -> dict[str, int]:
        return dict(self._counts)

    def add(self, reason: str, *, topic: str | None = None, payload: bytes | None = None,
            line: bytes | None = None, detail: Any = None) -> None:
        """Append one record (flushed to the OS now, fsync'ed in batches)."""
        rec: dict[str, Any] = {"ts": round(self._clock(), 6), "reason": reason}
        if topic is not None:
            rec["topic"] = topic
        if payload is not None:
            rec.update(_encode("payload", bytes(payload), self.max_bytes))
        if line is not None:
            rec.update(_encode("line", bytes(line), self.max_bytes))
        if detail is not None:
            rec["detail"] = detail
        data = json.dumps(rec, default=str, ensure_ascii=False).encode() + b"\n"
        with self._lock:
            self._f.write(data)
            self._f.flush()
            self._counts[reason] += 1
            self._unsynced += 1
            if self._unsynced >= self.fsync_every:
                self._sync()

    def flush(self) -> None:
        """Flush and fsync everything added so far."""
        with self._lock:
            self._f.flush()
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._f.fileno())
        self._unsynced = 0

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                self._sync()
                self._f.close()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
