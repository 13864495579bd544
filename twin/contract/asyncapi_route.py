"""JSON Schemas of route requests and their replies (``{prefix}/fleet/route``), for the AsyncAPI document.

Built from the parser's constants (:mod:`twin.contract.request_parser`) and the common reply
envelope (``_reply_variant`` of :mod:`twin.contract.asyncapi_payloads`), so the document and the code that
takes the request cannot drift apart (``tests/test_route_request.py`` validates live replies).
"""

from __future__ import annotations

from twin.contract.asyncapi_payloads import JSON, _ref, _reply_variant
from twin.contract.request_parser import (
    ENDPOINT_NAMED, LAT_LIMIT_DEG, LON_LIMIT_DEG, MAX_ENDPOINT_NAME, MAX_JURISDICTION, MAX_REQUEST_BYTES, ROUTE_KEYS,
)

ROUTE_EXAMPLE: JSON = {"from": {"city": "London"}, "to": {"city": "New York"}, "id": "rt-1"}

_NAMED_DOC = {
    "sat": "A satellite, by its catalogue name (exact)",
    "gateway": "A gateway of the twin's gateway file, by name (see the matching rules); \"*\": the nearest reachable "
               "gateway (in the request's jurisdiction when it gives one)",
    "city": "A city of the twin's city file, by name (see the matching rules)",
}


def endpoint_schema() -> JSON:
    """One end of a route: a satellite, gateway or city by name, or a latitude/longitude."""
    named = [{"type": "object", "title": kind, "description": _NAMED_DOC[kind], "additionalProperties": False,
              "required": [kind], "properties": {kind: {"type": "string", "minLength": 1,
                                                        "maxLength": MAX_ENDPOINT_NAME}}}
             for kind in ENDPOINT_NAMED]
    point = {"type": "object", "title": "point", "additionalProperties": False, "required": ["lat", "lon"],
             "description": "Any place on the ground (a user terminal there, at the user minimum elevation)",
             "properties": {"lat": {"type": "number", "minimum": -LAT_LIMIT_DEG, "maximum": LAT_LIMIT_DEG,
                                    "x-unit": "deg", "description": "Geodetic latitude"},
                            "lon": {"type": "number", "minimum": -LON_LIMIT_DEG, "maximum": LON_LIMIT_DEG,
                                    "x-unit": "deg", "description": "Longitude, east positive"}}}
    return {"title": "Route endpoint",
            "description": "A gateway or city name matches exactly, else ignoring case, accents and punctuation, "
                           "else as a run of whole words of one name (New York: New-York-Newark); a name "
                           "matching none or several is rejected (bad_argument, field from.city, ...); an "
                           "unknown satellite is rejected with unknown_satellite.",
            "oneOf": [*named, point]}


def route_request_schema() -> JSON:
    props: JSON = {"from": _ref("RouteEndpoint"), "to": _ref("RouteEndpoint"), "id": _ref("RequestId"),
                   "reply_to": _ref("ReplyTo"),
                   "jurisdiction": {"type": "string", "minLength": 1, "maxLength": MAX_JURISDICTION,
                                    "description": "Data sovereignty: comma-separated ISO 3166-1 alpha-3 codes or "
                                                   "region names (EU, ...); a gateway end must then be in that "
                                                   "territory ({\"gateway\": \"*\"}: the nearest reachable one in it)"}}
    assert set(props) == set(ROUTE_KEYS)
    return {"type": "object", "title": "Route request", "additionalProperties": False,
            "required": ["from", "to"], "properties": props,
            "description": f"The shortest-delay route between two endpoints over the network of the last tick, "
                           f"answered at once with a single completed reply (or rejected); a read-only query, "
                           f"not signed. At most {MAX_REQUEST_BYTES} bytes of UTF-8 JSON."}


def route_result_schema() -> JSON:
    ms = {"type": ["number", "null"], "minimum": 0, "x-unit": "ms"}
    ends = {"type": "object", "description": "The endpoint as resolved (the site's full name, or lat/lon)"}
    props: JSON = {
        "from": ends, "to": ends,
        "reachable": {"type": "boolean", "description": "A route exists over the links and ground links up now"},
        "path": {"type": "array", "items": {"type": "string"},
                 "description": "Nodes from the first end to the second: ground ends as gateway:NAME, city:NAME or "
                                "point:LAT,LON, satellites by name; empty when unreachable"},
        "hops": {"type": "integer", "minimum": 0, "description": "Links on the path (laser and ground links)"},
        "one_way_ms": ms | {"description": "One-way propagation delay; null when unreachable"},
        "rtt_ms": ms | {"description": "Round-trip propagation delay (twice one way); null when unreachable"},
        "bottleneck_gbps": {"type": ["number", "null"], "minimum": 0, "x-unit": "Gbit/s",
                            "description": "Smallest link capacity on the path (design figures); 0 when "
                                           "unreachable, null for a path of no link"},
        "fibre_rtt_ms": ms | {"description": "RTT of a great-circle fibre between the two ground ends; null "
                                             "when an end is a satellite"},
        "stretch": {"type": ["number", "null"], "minimum": 0, "x-unit": "1",
                    "description": "rtt_ms / fibre_rtt_ms (below 1: faster than fibre); null when not applicable"},
        "bound_rtt_ms": ms | {"description": "Light-time lower bound of any route between the two ground ends "
                                             "(great circle at c); null when an end is a satellite"},
    }
    required = list(props)
    props["jurisdiction"] = {"type": "string", "description": "The request's jurisdiction, when it gave one"}
    return {"type": "object", "title": "Route", "additionalProperties": False, "required": required,
            "properties": props}


def route_reply_schemas() -> dict[str, JSON]:
    """``RouteReplyCompleted`` and ``RouteReply`` (completed, or the common rejected reply)."""
    completed = _reply_variant("completed", {"result": _ref("RouteResult")}, ["result"])
    completed["properties"]["request"] = {"const": "route"}
    completed["required"] = [*completed["required"], "request"]
    completed["title"] = "Route reply completed"
    return {"RouteReplyCompleted": completed,
            "RouteReply": {"title": "Route reply", "description": "completed with the route, or rejected",
                           "oneOf": [_ref("RouteReplyCompleted"), _ref("ReplyRejected")]}}


def route_schemas() -> dict[str, JSON]:
    """Every component schema of route requests and replies."""
    return {"RouteEndpoint": endpoint_schema(), "RouteRequest": route_request_schema(),
            "RouteResult": route_result_schema(), **route_reply_schemas()}
