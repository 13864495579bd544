"""A durable FIFO of line-protocol batches on disk, for when the database is down or slow.

One batch is one segment file ``<id>.seg`` (ids increase; the order of ids is the FIFO order):

    {"v":1,"n":3,"len":57,"crc":"1a2b3c4d","meta":{...}}\\n      header: JSON, one line
    line1\\nline2\\nline3                                          payload: n lines, len bytes

``append`` writes ``<id>.seg.tmp``, fsyncs it, renames it to ``<id>.seg`` and fsyncs the
directory, so after a crash (SIGKILL, power loss) a segment is either whole or absent.
Leftover ``*.tmp`` files are deleted on open. A segment that fails validation (header, size,
CRC-32 of the payload, line count) is renamed ``*.corrupt`` and counted, never raised.

Size budget: ``max_bytes`` bounds the sum of segment file sizes. When a new batch does not fit,
the oldest whole segments are deleted first (``append``'s ``on_drop`` hears of each one before
its file goes, so a caller can account for what it held); a batch larger than ``max_bytes`` alone
keeps its newest lines that fit. Lines must not contain ``\\n`` (line protocol cannot carry one).
"""

from __future__ import annotations

import json
import os
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Segment", "Spool", "encode_segment"]

_SUFFIX, _TMP, _CORRUPT = ".seg", ".seg.tmp", ".corrupt"
_MAX_HEADER = 1 << 20  # bytes; a longer first line is corruption


@dataclass
class Segment:
    """One spooled batch."""

    id: int
    lines: list[bytes]
    meta: dict[str, Any] = field(default_factory=dict)


def encode_segment(lines: list[bytes], meta: dict[str, Any] | None = None) -> bytes:
    """The file content of a segment holding ``lines`` (at least one) and ``meta``."""
    if not lines:
        raise ValueError("a segment holds at least one line")
    if any(b"\n" in line for line in lines):
        raise ValueError("a line-protocol line must not contain a newline")
    payload = b"\n".join(lines)
    header = {"v": 1, "n": len(lines), "len": len(payload), "crc": f"{zlib.crc32(payload):08x}",
              "meta": meta or {}}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def _decode_header(first: bytes, file_size: int) -> dict[str, Any]:
    h = json.loads(first)
    if not (isinstance(h, dict) and h.get("v") == 1 and isinstance(h.get("n"), int) and h["n"] >= 1
            and isinstance(h.get("len"), int) and isinstance(h.get("meta"), dict)
            and isinstance(h.get("crc"), str)):
        raise ValueError("bad header")
    if len(first) + h["len"] != file_size:
        raise ValueError(f"size {file_size} != header {len(first)} + payload {h['len']}")
    return h


class Spool:
    """Durable FIFO of batches in ``directory``, at most ``max_bytes`` of segment files.

    Thread-safe. Counters (``appended_lines_total``, ``dropped_lines_total``,
    ``corrupt_segments_total``, ``temp_files_removed``) count since this object was opened.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int, *, fsync: bool = True) -> None:
        self.dir = Path(directory)
        self.max_bytes = int(max_bytes)
        self.fsync = fsync
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._index: dict[int, tuple[int, int]] = {}  # id -> (file bytes, lines), insertion = FIFO
        self.appended_lines_total = 0
        self.dropped_lines_total = 0
        self.corrupt_segments_total = 0
        self.temp_files_removed = 0
        self.last_corruption: str | None = None
        self.last_append: tuple[int, int] = (0, 0)  # (segment id, lines kept) of the last append; id 0: none
        self._next_id = 1
        self._bytes = self._lines = 0  # totals over _index
        self._scan()

    # ---- state -----------------------------------------------------------------------------
    @property
    def depth_bytes(self) -> int:
        return self._bytes

    @property
    def depth_lines(self) -> int:
        return self._lines

    @property
    def segments(self) -> int:
        return len(self._index)

    def segment_ids(self) -> list[int]:
        """Ids of the stored segments, oldest first."""
        with self._lock:
            return list(self._index)

    # ---- operations ------------------------------------------------------------------------
    def append(self, lines: list[bytes], meta: dict[str, Any] | None = None,
               on_drop: Callable[[int], None] | None = None) -> int:
        """Store ``lines`` as one segment (durably); returns how many lines were dropped.

        Dropped are whole oldest segments (``on_drop(id)`` is called for each while it can still
        be :meth:`read`), then, for a batch larger than ``max_bytes`` alone, its oldest lines.
        """
        if not lines:
            self.last_append = (0, 0)
            return 0
        with self._lock:
            self.appended_lines_total += len(lines)
            data, keep = encode_segment(lines, meta), len(lines)
            if len(data) > self.max_bytes:
                keep = self._fitting_suffix(lines, meta)
                data = encode_segment(lines[-keep:], meta) if keep else b""
            dropped = len(lines) - keep
            while self._index and self.depth_bytes + len(data) > self.max_bytes:
                oldest = next(iter(self._index))
                if on_drop is not None:
                    on_drop(oldest)
                dropped += self._delete(oldest)
            self.last_append = (0, 0)
            if keep:
                seg_id = self._next_id
                self._next_id += 1
                self._write_atomic(seg_id, data)
                self._add_index(seg_id, len(data), keep)
                self.last_append = (seg_id, keep)
            self.dropped_lines_total += dropped
            return dropped

    def oldest(self) -> Segment | None:
        """The oldest valid segment (corrupt ones on the way are moved aside), or None."""
        with self._lock:
            while self._index:
                seg_id = next(iter(self._index))
                try:
                    return self._read(seg_id)
                except (OSError, ValueError) as e:
                    self._quarantine(seg_id, e)
            return None

    def read(self, segment_id: int) -> Segment:
        """A stored segment by id; OSError/ValueError if it is gone or fails validation."""
        with self._lock:
            if segment_id not in self._index:
                raise FileNotFoundError(f"no segment {segment_id} in {self.dir}")
            return self._read(segment_id)

    def remove(self, segment_id: int) -> bool:
        """Delete a segment (after its lines were stored); False if it is already gone."""
        with self._lock:
            if segment_id not in self._index:
                return False
            self._delete(segment_id)
            return True

    # ---- internals -------------------------------------------------------------------------
    def _path(self, seg_id: int) -> Path:
        return self.dir / f"{seg_id:016d}{_SUFFIX}"

    def _scan(self) -> None:
        ids: list[int] = []
        for p in self.dir.iterdir():
            stem = p.name.split(".", 1)[0]
            if p.name.endswith(_TMP):
                p.unlink(missing_ok=True)
                self.temp_files_removed += 1
            elif stem.isdigit():
                self._next_id = max(self._next_id, int(stem) + 1)
                if p.name.endswith(_SUFFIX):
                    ids.append(int(stem))
        for seg_id in sorted(ids):
            try:
                with open(self._path(seg_id), "rb") as f:
                    first = f.readline(_MAX_HEADER)
                    h = _decode_header(first, os.fstat(f.fileno()).st_size)
                self._add_index(seg_id, len(first) + h["len"], h["n"])
            except (OSError, ValueError) as e:
                self._quarantine(seg_id, e)
        if self.temp_files_removed:
            self._sync_dir()

    def _read(self, seg_id: int) -> Segment:
        data = self._path(seg_id).read_bytes()
        first, sep, payload = data.partition(b"\n")
        h = _decode_header(first + sep, len(data))
        if f"{zlib.crc32(payload):08x}" != h["crc"]:
            raise ValueError("payload CRC mismatch")
        lines = payload.split(b"\n")
        if len(lines) != h["n"]:
            raise ValueError(f"{len(lines)} lines, header says {h['n']}")
        return Segment(seg_id, lines, h["meta"])

    def _fitting_suffix(self, lines: list[bytes], meta: dict[str, Any] | None) -> int:
        """Largest k such that the segment of the last k lines fits in max_bytes (0 if none)."""
        lo, hi = 0, len(lines)  # fits(lo) holds (0 = nothing stored), size is monotonic in k
        while lo < hi:
            k = (lo + hi + 1) // 2
            if len(encode_segment(lines[-k:], meta)) <= self.max_bytes:
                lo = k
            else:
                hi = k - 1
        return lo

    def _write_atomic(self, seg_id: int, data: bytes) -> None:
        path = self._path(seg_id)
        tmp = path.with_name(path.name[: -len(_SUFFIX)] + _TMP)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        self._sync_dir()

    def _add_index(self, seg_id: int, size: int, n: int) -> None:
        self._index[seg_id] = (size, n)
        self._bytes += size
        self._lines += n

    def _unindex(self, seg_id: int) -> int:
        size, n = self._index.pop(seg_id, (0, 0))
        self._bytes -= size
        self._lines -= n
        return n

    def _delete(self, seg_id: int) -> int:
        n = self._unindex(seg_id)
        self._path(seg_id).unlink(missing_ok=True)
        self._sync_dir()
        return n

    def _quarantine(self, seg_id: int, reason: BaseException) -> None:
        self._unindex(seg_id)
        path = self._path(seg_id)
        target, i = path.with_name(path.name + _CORRUPT), 1
        while target.exists():
            target, i = path.with_name(f"{path.name}.{i}{_CORRUPT}"), i + 1
        try:
            os.replace(path, target)
        except OSError:
            pass
        self.corrupt_segments_total += 1
        self.last_corruption = f"{path.name}: {reason}"
        self._sync_dir()

    def _sync_dir(self) -> None:
        if not self.fsync:
            return
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"Spool({str(self.dir)!r}, segments={self.segments}, bytes={self.depth_bytes})"
