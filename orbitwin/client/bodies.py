"""Request payloads as the contract takes them (docs/mqtt.md, "Requests and replies"), checked before sending.

Pure: no network. Commands and faults are checked with the twin's own parser and the schema's
argument checks (:func:`twin.contract.request_parser.parse_request`,
:func:`twin.schema.commands.validate`), so a bad name or argument fails here with the reason and
field the twin would give.
"""

from __future__ import annotations

from typing import Any

from twin.contract.request_parser import parse_request
from twin.schema.commands import COMMANDS, FAULTS, CommandError, validate

from orbitwin.client.errors import RequestRejected

ROUTE_END_KINDS = ("sat", "gateway", "city", "point")


def request_body(kind: str, name: str, args: dict[str, Any] | None = None, *, fleet: bool = False,
                 select: Any = None, at: float | str | None = None, duration_s: float | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    """The payload of a command (``kind`` ``command``) or fault (``fault``), checked against the schema.

    ``at``: sim seconds since the twin's start, or an ISO 8601 UTC time on the sim clock; ``duration_s``:
    how long a fault lasts (sim s; None: until ``clear_fault``). Raises :class:`RequestRejected` (its
    reply marked ``"source": "client"``) for what the twin would reject whatever its state.
    """
    if kind not in ("command", "fault"):
        raise ValueError(f"kind must be 'command' or 'fault', not {kind!r}")
    body: dict[str, Any] = {kind: name}
    if args:
        body["args"] = dict(args)
    if select is not None:
        body["select"] = select
    if at is not None:
        body["at"] = at
    if duration_s is not None:
        body["duration_s"] = duration_s
    if request_id is not None:
        body["id"] = request_id
    try:
        parse_request(body, "cmd" if kind == "command" else "fault", fleet=fleet)
        validate(COMMANDS if kind == "command" else FAULTS, name, args or {})
    except CommandError as exc:
        reply = {"status": "rejected", "id": request_id, "request": name, "source": "client", **exc.as_dict()}
        raise RequestRejected(reply, f"{kind} {name!r}") from None
    return body


def route_end(text: str | dict[str, Any], option: str = "end") -> dict[str, Any]:
    """A route end: ``city:London`` -> ``{"city": "London"}``, ``point:51.5,-0.12`` -> ``{"lat": 51.5,
    "lon": -0.12}`` (degrees); a dict is taken as it is."""
    if isinstance(text, dict):
        return dict(text)
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ROUTE_END_KINDS or not rest:
        raise ValueError(f"{option} {text!r}: expected sat:NAME, gateway:NAME, city:NAME or point:LAT,LON")
    if kind != "point":
        return {kind: rest}
    try:
        lat, lon = (float(x) for x in rest.split(","))
    except ValueError:
        raise ValueError(f"{option} {text!r}: point:LAT,LON takes two numbers in degrees") from None
    return {"lat": lat, "lon": lon}


def route_body(a: str | dict[str, Any], b: str | dict[str, Any], jurisdiction: str | None = None) -> dict[str, Any]:
    """A route request between two ends (see :func:`route_end`), optionally within a jurisdiction."""
    body: dict[str, Any] = {"from": route_end(a, "from"), "to": route_end(b, "to")}
    if jurisdiction is not None:
        body["jurisdiction"] = jurisdiction
    return body


def replay_body(sat: str | None = None, from_seq: int | None = None, to_seq: int | None = None,
                ranges: list[tuple[str, int, int]] | None = None) -> dict[str, Any]:
    """A replay request: one ``sat`` with ``from_seq..to_seq`` (inclusive), or several ``ranges``."""
    if ranges is not None:
        if sat is not None or from_seq is not None or to_seq is not None:
            raise ValueError("give either ranges or sat with from_seq and to_seq, not both")
        return {"ranges": [[s, int(lo), int(hi)] for s, lo, hi in ranges]}
    if sat is None or from_seq is None or to_seq is None:
        raise ValueError("a replay needs sat, from_seq and to_seq (or ranges)")
    if from_seq > to_seq:
        raise ValueError(f"from_seq {from_seq} is after to_seq {to_seq}")
    return {"sat": sat, "from_seq": int(from_seq), "to_seq": int(to_seq)}
