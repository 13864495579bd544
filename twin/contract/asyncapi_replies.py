"""JSON Schemas of what the twin says back, for the AsyncAPI document.

Replies to requests (accepted, completed, rejected, and a compute job's life after ``run_job``),
events, and the audit trail of request checks. Units in ``x-unit`` (s, ms, B, Wh).
Re-exported by :mod:`twin.contract.asyncapi_payloads`.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin.contract.asyncapi_common import EVENT_KINDS, SEVERITIES, JSON, _header_props, _ref
from twin.contract.topics import CONTRACT_VERSION
from twin.schema.commands import Reason


# --- replies, events -------------------------------------------------------------------
def _reply_variant(status: str, extra: JSON, required: Sequence[str]) -> JSON:
    props: JSON = {
        "v": {"const": CONTRACT_VERSION, "description": "Contract version"},
        "status": {"const": status},
        "id": {"type": "string", "maxLength": 256,
               "description": "The request's id, else its MQTT 5 correlation data, else r<n> assigned by the twin"},
        "request": {"type": "string", "description": "Command or fault name, when the request named one"},
        "t": {"type": "string", "format": "date-time", "description": "Sim time of the reply"},
        "t_s": {"type": "number", "x-unit": "s", "description": "Sim seconds of the reply"},
        "sat": {"type": "string", "description": "Satellite of a satellite-topic request"},
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Reply sequence number of this run"},
        "authenticated": {"type": "boolean", "description": "Requests (cmd, fault, replay): true when the request "
                                                            "carried a verified signature"},
        "kid": {"type": "string", "description": "The key id of a verified signed request"},
    } | extra
    return {"title": f"Reply {status}", "type": "object", "properties": props, "additionalProperties": False,
            "required": ["v", "status", "id", "t", "t_s", *required]}


def reply_schemas() -> dict[str, JSON]:
    accepted = _reply_variant("accepted", {
        "execute_t_s": {"type": "number", "x-unit": "s", "description": "Sim time the request will execute"},
        "sats": {"type": "integer", "minimum": 1, "description": "Satellites targeted"},
        "late_s": {"type": "number", "exclusiveMinimum": 0, "x-unit": "s",
                   "description": "Only when the request's time had passed on arrival: how far past it the request "
                                  "executes (it runs at once, at execute_t_s)"},
    }, ["execute_t_s", "sats"])
    count = {"type": "integer", "minimum": 0}
    completed = _reply_variant("completed", {
        "result": {"type": ["object", "null"], "description": "What the command or fault did (per request)"},
        "found": count | {"description": "Replay: messages published again"},
        "evicted": count | {"description": "Replay: requested messages no longer in the buffer"},
        "held": count | {"description": "Replay: requested messages the buffer holds (found < held: truncated)"},
        "truncated": {"const": True, "description": "Replay: more were held than one request publishes again; "
                                                   "found are the earliest, ask again for the rest"},
        "limit": count | {"description": "Replay: messages one request publishes again at most"},
        "from_seq": count, "to_seq": count, "ranges": count | {"description": "Replay: ranges served"},
    }, [])
    rejected = _reply_variant("rejected", {
        "reason": {"type": "string", "enum": [r.value for r in Reason], "description": "Machine-readable reason"},
        "message": {"type": "string", "description": "Human-readable explanation"},
        "field": {"type": "string", "description": "The offending key, argument or topic"},
    }, ["reason", "message"])
    out = {"ReplyAccepted": accepted, "ReplyCompleted": completed, "ReplyRejected": rejected} | job_reply_schemas(accepted)
    return out | {"Reply": {"title": "Reply", "description": "accepted then completed, or rejected (at any stage); a "
                                                         "run_job request: queued, then its job's life "
                                                         "(twin.runtime.job_replies)",
                            "oneOf": [_ref(k) for k in out]}}


def job_reply_schemas(accepted: JSON) -> dict[str, JSON]:
    """Replies through a compute job's life (``run_job``; :mod:`twin.runtime.job_replies`)."""
    from twin.core.compute.jobs import END_REASONS, OUTCOMES

    count = {"type": "integer", "minimum": 0}
    wh = {"type": "number", "x-unit": "Wh"}
    job = {"job_id": count | {"description": "The job's id (the same in every reply of its life)"},
           "job_t_s": {"type": "number", "x-unit": "s", "description": "Sim time of the step in the job's life"}}
    queued = dict(accepted, title="Reply queued")
    queued["properties"] = dict(accepted["properties"], status={"const": "queued"})
    placed = _reply_variant("accepted", job | {"placement": {
        "type": "object", "additionalProperties": False, "required": ["sat", "device", "delay_ms", "ready_t_s"],
        "properties": {"sat": {"type": "string"}, "device": count,
                       "delay_ms": {"type": "number", "x-unit": "ms", "description": "One-way delay source to satellite"},
                       "ready_t_s": {"type": "number", "x-unit": "s", "description": "When its input has arrived"}}}},
        ["job_id", "job_t_s", "placement"])
    placed["title"] = "Reply accepted (job placed)"
    migrated = _reply_variant("migrated", job | {
        "from": {"type": "string"}, "to": {"type": "string"}, "bytes": {"type": "number", "x-unit": "B"},
        "arrives_t_s": {"type": "number", "x-unit": "s"}, "done_dev_s": {"type": "number", "x-unit": "s"}},
        ["job_id", "from", "to"])
    requeued = _reply_variant("requeued", job | {
        "sat": {"type": ["string", "null"]}, "why": {"type": "string", "description": "device_failed, "
                                                     "leaving_jurisdiction, or a board's board_<status>"},
        "resume_from_dev_s": {"type": "number", "x-unit": "s"}}, ["job_id", "why"])
    done = _reply_variant("completed", job | {
        "outcome": {"enum": list(OUTCOMES)}, "sat": {"type": ["string", "null"]},
        "latency_ms": {"type": ["number", "null"], "x-unit": "ms", "description": "Interactive: measured round trip"},
        "energy_wh": wh, "battery_wh": wh, "array_wh": wh, "upsets": count, "migrations": count,
        "bytes_moved": {"type": "number", "x-unit": "B"},
        "board_s": {"type": ["number", "null"], "x-unit": "s", "description": "Run time a board in the loop measured"},
        "downlink_gateway": {"type": ["string", "null"], "description": "Jurisdiction: the gateway in it the result "
                                                                         "went down through"}},
        ["job_id", "outcome", "energy_wh", "battery_wh", "array_wh"])
    done["title"] = "Reply completed (job)"
    ended = {"reason": {"enum": list(END_REASONS)}, "message": {"type": "string"}, "sat": {"type": ["string", "null"]},
             "energy_wh": wh}
    failed = _reply_variant("failed", job | ended, ["job_id", "reason", "message"])
    rejected = _reply_variant("rejected", job | ended, ["job_id", "reason", "message"])
    rejected["title"] = "Reply rejected (job)"
    return {"ReplyQueued": queued, "ReplyJobAccepted": placed, "ReplyMigrated": migrated, "ReplyRequeued": requeued,
            "ReplyJobCompleted": done, "ReplyFailed": failed, "ReplyJobRejected": rejected}


def event_schema() -> JSON:
    props, required = _header_props(True)
    props["sat"]["description"] = "Satellite (absent on fleet/event: a request for several satellites)"
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Event sequence number of the satellite (or of "
                                                                "fleet/event) in this run"},
        "kind": {"type": "string", "enum": list(EVENT_KINDS)},
        "name": {"type": "string", "description": "e.g. latchup, safe_mode_entered, command_completed, a limited "
                                                  "field name for kind limit"},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "detail": {"type": "object", "description": "Event-specific data; for requests: request_id (the request's "
                                                    "id), request, args, sats, result"},
    }
    return {"title": "Event", "type": "object", "properties": props, "additionalProperties": False,
            "required": required + ["kind", "name", "severity", "detail"]}


# --- the audit trail ----------------------------------------------------------------------
def audit_schema() -> JSON:
    """One record on ``{prefix}/audit`` (``TwinService._audit``)."""
    props, required = _header_props(False)
    text = {"type": ["string", "null"]}
    props |= {
        "run": {"type": "integer", "description": "Run id of the twin process"},
        "seq": {"type": "integer", "minimum": 0, "description": "Audit sequence number of this run"},
        "wall_time": {"type": "number", "x-unit": "s", "description": "The twin's wall clock (Unix s) at the check"},
        "topic": {"type": "string", "description": "The request's topic"},
        "id": {"type": "string", "description": "The request's id (as in its replies)"},
        "request": text | {"description": "Command or fault name the request gave"},
        "kid": text | {"description": "Key id the request claimed (verified only when result is accepted)"},
        "client": text | {"description": "Client id: auth.client of a signed request, else the MQTT 5 user "
                                         "property client_id (unverified)"},
        "authenticated": {"type": "boolean", "description": "A verified signature"},
        "result": {"type": "string", "enum": ["accepted", "rejected"]},
        "reason": {"type": ["string", "null"], "enum": [*[r.value for r in Reason], None],
                   "description": "Why it was rejected (null when accepted)"},
    }
    return {"title": "Audit record", "type": "object", "properties": props, "additionalProperties": False,
            "required": required + ["run", "seq", "topic", "id", "authenticated", "result", "reason"]}
