"""Parsing untrusted request payloads (commands, faults, replay, route) into typed requests.

Any problem raises :class:`~twin.schema.commands.CommandError` with a reason and the offending field,
which the runtime sends back to the requester as a rejection.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from twin.schema.commands import CommandError, Reason

MAX_REQUEST_BYTES = 64 * 1024
_REQUEST_KEYS = {
    "command": {"command", "args", "at", "id", "reply_to", "select"},
    "fault": {"fault", "args", "at", "start", "duration_s", "id", "reply_to", "select"},
}


@dataclass(frozen=True)
class Selector:
    """Which satellites a fleet request targets: all, names/globs, or a shell band."""

    all: bool = False
    sats: tuple[str, ...] = ()
    names: str | None = None
    alt_km: tuple[float, float] | None = None
    inc_deg: tuple[float, float] | None = None


@dataclass(frozen=True)
class ParsedRequest:
    kind: str  # "command" | "fault"
    name: str
    args: dict[str, Any]
    selector: Selector | None  # None: the satellite of the topic
    at: float | str | None  # sim seconds since start, or an ISO 8601 UTC time
    duration_s: float | None
    request_id: str | None
    reply_to: str | None


def decode_json(payload: bytes) -> Any:
    """JSON object from bytes; size, encoding and syntax problems raise CommandError(MALFORMED)."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise CommandError(Reason.MALFORMED, f"payload of {len(payload)} bytes exceeds {MAX_REQUEST_BYTES}", "payload")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(Reason.MALFORMED, "payload is not UTF-8", "payload") from None
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CommandError(Reason.MALFORMED, f"payload is not JSON: {str(exc)[:80]}", "payload") from None
    if not isinstance(obj, dict):
        raise CommandError(Reason.MALFORMED, "payload must be a JSON object", "payload")
    return obj


def finite(v: Any) -> bool:
    """A JSON number that is finite as a float (huge integers are not)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _opt_str(obj: dict[str, Any], key: str, limit: int = 256) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > limit:
        raise CommandError(Reason.BAD_ARGUMENT, f"{key} must be a non-empty string of at most {limit} characters", key)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(Reason.BAD_ARGUMENT, f"{key} is not valid UTF-8 text", key) from None
    if "\x00" in v:
        raise CommandError(Reason.BAD_ARGUMENT, f"{key} must not contain NUL characters", key)
    return v


def valid_reply_topic(topic: str, prefix: str) -> bool:
    """A topic the twin may publish replies to: no wildcards, and under the prefix only reply topics."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic or len(topic.encode("utf-8", "replace")) > 1024:
        return False
    try:
        topic.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if topic.startswith(prefix + "/"):
        return topic.endswith("/reply") or topic == f"{prefix}/errors"
    return True


def _band(v: Any, key: str) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2 or not all(finite(x) for x in v) or float(v[0]) > float(v[1]):
        raise CommandError(Reason.BAD_ARGUMENT, f"{key} must be [low, high]", key)
    return float(v[0]), float(v[1])


def parse_selector(v: Any) -> Selector:
    """``"*"``, ``{"sats": [...]}``, ``{"names": "STARLINK-1*"}`` or ``{"shell": {"alt_km": [lo, hi], "inc_deg": [lo, hi]}}``."""
    if v == "*":
        return Selector(all=True)
    if not isinstance(v, dict) or not v:
        raise CommandError(Reason.BAD_ARGUMENT, 'select must be "*" or an object with sats, names or shell', "select")
    unknown = set(v) - {"sats", "names", "shell"}
    if unknown:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown selector key {sorted(unknown)[0]!r}", "select")
    sats: tuple[str, ...] = ()
    if "sats" in v:
        if not isinstance(v["sats"], list) or not v["sats"] or not all(isinstance(s, str) for s in v["sats"]):
            raise CommandError(Reason.BAD_ARGUMENT, "select.sats must be a non-empty list of names", "select.sats")
        sats = tuple(v["sats"])
    names = None
    if "names" in v:
        if not isinstance(v["names"], str) or not v["names"]:
            raise CommandError(Reason.BAD_ARGUMENT, "select.names must be a glob pattern", "select.names")
        names = v["names"]
    alt = inc = None
    if "shell" in v:
        shell = v["shell"]
        if not isinstance(shell, dict) or not shell or set(shell) - {"alt_km", "inc_deg"}:
            raise CommandError(Reason.BAD_ARGUMENT, "select.shell takes alt_km and/or inc_deg", "select.shell")
        alt = _band(shell["alt_km"], "select.shell.alt_km") if "alt_km" in shell else None
        inc = _band(shell["inc_deg"], "select.shell.inc_deg") if "inc_deg" in shell else None
    return Selector(False, sats, names, alt, inc)


def parse_request(obj: dict[str, Any], leaf: str, fleet: bool) -> ParsedRequest:
    """Turn a decoded request object from topic leaf ``cmd`` or ``fault`` into a ParsedRequest."""
    kind = "command" if leaf == "cmd" else "fault"
    unknown = set(obj) - _REQUEST_KEYS[kind]
    if unknown:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown key {sorted(unknown)[0]!r} in {kind} request",
                           sorted(unknown)[0])
    name = obj.get(kind)
    if not isinstance(name, str) or not name:
        raise CommandError(Reason.BAD_ARGUMENT, f"missing {kind!r} (its name)", kind)
    args = obj.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CommandError(Reason.BAD_ARGUMENT, "args must be an object", "args")
    at = obj.get("at", obj.get("start"))
    if at is not None:
        if isinstance(at, bool) or not isinstance(at, (int, float, str)):
            raise CommandError(Reason.BAD_ARGUMENT, "at must be sim seconds or an ISO 8601 UTC time", "at")
        if isinstance(at, (int, float)) and (not finite(at) or at < 0):
            raise CommandError(Reason.OUT_OF_RANGE, "at must be >= 0 sim seconds", "at")
    duration = obj.get("duration_s")
    if duration is not None:
        if not finite(duration):
            raise CommandError(Reason.BAD_ARGUMENT, "duration_s must be a number", "duration_s")
        if duration <= 0:
            raise CommandError(Reason.OUT_OF_RANGE, "duration_s must be > 0", "duration_s")
    selector = None
    if fleet:
        if "select" not in obj:
            raise CommandError(Reason.BAD_ARGUMENT, "fleet requests need select", "select")
        selector = parse_selector(obj["select"])
    elif "select" in obj:
        raise CommandError(Reason.BAD_ARGUMENT, "select is for fleet topics only", "select")
    return ParsedRequest(kind, name, dict(args), selector, float(at) if isinstance(at, (int, float)) else at,
                         None if duration is None else float(duration),
                         _opt_str(obj, "id"), _opt_str(obj, "reply_to", 1024))


@dataclass(frozen=True)
class ReplayRequest:
    ranges: tuple[tuple[str, int, int], ...]  # (sat, from_seq, to_seq) inclusive
    request_id: str | None
    reply_to: str | None


MAX_REPLAY_SPAN = 100_000
MAX_REPLAY_RANGES = 20_000


def _replay_range(sat: Any, lo: Any, hi: Any, where: str) -> tuple[str, int, int]:
    if not isinstance(sat, str) or not sat:
        raise CommandError(Reason.BAD_ARGUMENT, f"{where}sat must be a satellite name", "sat")
    for key, v in (("from_seq", lo), ("to_seq", hi)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CommandError(Reason.BAD_ARGUMENT, f"{where}{key} must be an integer >= 0", key)
    if hi < lo or hi - lo > MAX_REPLAY_SPAN:
        raise CommandError(Reason.OUT_OF_RANGE, f"{where}to_seq must be within from_seq..from_seq+{MAX_REPLAY_SPAN}",
                           "to_seq")
    return sat, lo, hi


def parse_replay(obj: dict[str, Any]) -> ReplayRequest:
    """``{"sat": "STARLINK-1008", "from_seq": 10, "to_seq": 20}`` or ``{"ranges": [["SAT", 10, 20], ...]}``."""
    unknown = set(obj) - {"sat", "from_seq", "to_seq", "ranges", "id", "reply_to"}
    if unknown:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown key {sorted(unknown)[0]!r} in replay request",
                           sorted(unknown)[0])
    if "ranges" in obj:
        rs = obj["ranges"]
        if not isinstance(rs, list) or not rs or len(rs) > MAX_REPLAY_RANGES:
            raise CommandError(Reason.BAD_ARGUMENT, f"ranges must be a list of 1..{MAX_REPLAY_RANGES} [sat, from, to]",
                               "ranges")
        ranges = []
        for k, r in enumerate(rs):
            if not isinstance(r, list) or len(r) != 3:
                raise CommandError(Reason.BAD_ARGUMENT, f"ranges[{k}] must be [sat, from_seq, to_seq]", "ranges")
            ranges.append(_replay_range(r[0], r[1], r[2], where=f"ranges[{k}]: "))
    else:
        ranges = [_replay_range(obj.get("sat"), obj.get("from_seq"), obj.get("to_seq"), "")]
    return ReplayRequest(tuple(ranges), _opt_str(obj, "id"), _opt_str(obj, "reply_to", 1024))


# --- route requests ({prefix}/fleet/route) ------------------------------------------------------
ROUTE_KEYS = ("from", "to", "id", "reply_to", "jurisdiction")
ANY_GATEWAY = "*"  # {"gateway": "*"}: the nearest reachable gateway (in the jurisdiction when one is given)
MAX_JURISDICTION = 256  # characters of a route request's jurisdiction
#: an endpoint is one of these objects: a satellite, gateway or city by name, or a latitude/longitude
ENDPOINT_NAMED = ("sat", "gateway", "city")
ENDPOINT_POINT = ("lat", "lon")
MAX_ENDPOINT_NAME = 128  # characters of a satellite, gateway or city name
LAT_LIMIT_DEG = 90.0
LON_LIMIT_DEG = 180.0


@dataclass(frozen=True)
class RouteEnd:
    """One end of a route request: ``kind`` sat, gateway or city with ``name``, or point with ``lat_deg``/``lon_deg``."""

    kind: str
    name: str = ""
    lat_deg: float = 0.0
    lon_deg: float = 0.0


@dataclass(frozen=True)
class RouteRequest:
    """A route between two endpoints (``a`` is the request's ``from``, ``b`` its ``to``)."""

    a: RouteEnd
    b: RouteEnd
    request_id: str | None
    reply_to: str | None
    jurisdiction: str | None = None  # comma-separated ISO-3 codes or region names: ground ends only in it


def _route_end(v: Any, key: str) -> RouteEnd:
    """``{"sat": name}`` | ``{"gateway": name}`` | ``{"city": name}`` | ``{"lat": deg, "lon": deg}``."""
    shape = (f'{key} must be one of {{"sat": name}}, {{"gateway": name}}, {{"city": name}} or '
             f'{{"lat": deg, "lon": deg}}')
    if not isinstance(v, dict) or not v:
        raise CommandError(Reason.BAD_ARGUMENT, shape, key)
    keys = set(v)
    if keys == set(ENDPOINT_POINT):
        for k, limit in (("lat", LAT_LIMIT_DEG), ("lon", LON_LIMIT_DEG)):
            if not finite(v[k]):
                raise CommandError(Reason.BAD_ARGUMENT, f"{key}.{k} must be a finite number of degrees", f"{key}.{k}")
            if abs(float(v[k])) > limit:
                raise CommandError(Reason.OUT_OF_RANGE, f"{key}.{k} must be within -{limit:g}..{limit:g} deg",
                                   f"{key}.{k}")
        return RouteEnd("point", lat_deg=float(v["lat"]), lon_deg=float(v["lon"]))
    if len(keys) != 1 or not keys <= set(ENDPOINT_NAMED):
        raise CommandError(Reason.BAD_ARGUMENT, shape, key)
    (kind,) = keys
    try:
        name = _opt_str(v, kind, MAX_ENDPOINT_NAME)
    except CommandError as exc:
        raise CommandError(exc.reason, f"{key}.{exc.message}", f"{key}.{kind}") from None
    if name is None:
        raise CommandError(Reason.BAD_ARGUMENT, f"{key}.{kind} must be a name", f"{key}.{kind}")
    return RouteEnd(kind, name=name)


def parse_route(obj: dict[str, Any]) -> RouteRequest:
    """``{"from": endpoint, "to": endpoint, "id": ..., "reply_to": ...}`` (see :func:`_route_end`)."""
    unknown = set(obj) - set(ROUTE_KEYS)
    if unknown:
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown key {sorted(unknown)[0]!r} in route request",
                           sorted(unknown)[0])
    for key in ("from", "to"):
        if key not in obj:
            raise CommandError(Reason.BAD_ARGUMENT, f"route requests need {key!r} (an endpoint)", key)
    return RouteRequest(_route_end(obj["from"], "from"), _route_end(obj["to"], "to"), _opt_str(obj, "id"),
                        _opt_str(obj, "reply_to", 1024), _opt_str(obj, "jurisdiction", MAX_JURISDICTION))
