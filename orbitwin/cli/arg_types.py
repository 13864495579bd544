"""Checked option values for the command line: each bad value is refused by argparse with the option's
name and what is allowed (``orbitwin run: error: argument --count: must be a whole number >= 1, not '0'``)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _fail(what: str, text: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {what}, not {text!r}")


def positive_int(text: str) -> int:
    """A whole number >= 1 (a count of satellites, rows, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise _fail("a whole number >= 1", text) from None
    if value < 1:
        raise _fail("a whole number >= 1", text)
    return value


def _number(text: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(what, text) from None
    if not (math.isfinite(value) and ok(value)):
        raise _fail(what, text)
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (a duration, a time step)."""
    return _number(text, "a finite number of seconds > 0", lambda v: v > 0)


def non_negative(text: str) -> float:
    """A finite number >= 0 (a scale factor)."""
    return _number(text, "a finite number >= 0", lambda v: v >= 0)


def speed(text: str) -> str:
    """``real``, ``max`` or ``xN`` with N a finite number > 0 (kept as text: the runtime parses it)."""
    from twin.runtime.clock import parse_speed

    try:
        parse_speed(text)
    except ValueError:
        raise _fail("real, max or xN with a finite N > 0 (e.g. x10)", text) from None
    return text


def utc_time(text: str) -> str:
    """An ISO 8601 UTC time (kept as text: the runtime parses it)."""
    from twin.core.ephemeris import iso_to_jd

    try:
        iso_to_jd(text)
    except (ValueError, OverflowError):
        raise _fail("an ISO 8601 UTC time such as 2026-06-21T00:00:00Z", text) from None
    return text


def http_url(text: str) -> str:
    """An http:// or https:// URL with a host (``localhost:8086`` alone is refused: say the scheme)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise _fail("an http:// or https:// URL such as http://localhost:8086", text) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail("an http:// or https:// URL such as http://localhost:8086", text)
    return text


def shard(text: str) -> str:
    """``K/N``: shard K of N, 1 <= K <= N (kept as text ``K/N``)."""
    from twin.core.shards import ShardSpec

    try:
        return ShardSpec.parse(text).label
    except ValueError:
        raise _fail("K/N with 1 <= K <= N (e.g. 1/2)", text) from None
