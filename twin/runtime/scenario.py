"""Scenario files: timed faults and commands, replayable with a seed.

A scenario is a TOML (or JSON) file whose ``[[request]]`` entries are exactly the MQTT request
payloads of the contract plus where they go (``sat = "NAME"``, or ``select = ...`` for the fleet)::

    seed = 7
    [[request]]
    at = 60                      # sim seconds after start, or an ISO 8601 UTC time
    sat = "STARLINK-1008"
    fault = "latchup"
    args = { device = 3 }

    [[request]]
    at = 300
    select = { names = "STARLINK-3*" }
    command = "throttle"
    args = { factor = 0.5 }

``orbitwin run --scenario FILE`` submits them to the twin directly; ``orbitwin scenario publish``
sends the same payloads over MQTT, so any client can replay a scenario against a running twin.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.contract.request_auth import Signer
from twin.contract.request_parser import parse_request
from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.core.engine import FleetTwin
from twin.core.events import Request
from twin.mqtt import MqttSettings
from twin.schema.commands import CommandError


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the entry and the problem."""


@dataclass(frozen=True)
class ScenarioStep:
    leaf: str  # "cmd" | "fault"
    sat: str | None  # None: fleet request (payload has "select")
    payload: dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    seed: int | None
    steps: tuple[ScenarioStep, ...]
    source: str


def load_scenario(path: str | Path) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc.strerror}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{p}: {exc}") from exc
    return scenario_from_dict(data, str(p))


def scenario_from_dict(data: Any, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a table with [[request]] entries")
    unknown = set(data) - {"seed", "request", "description"}
    if unknown:
        raise ScenarioError(f"{source}: unknown key {sorted(unknown)[0]!r} (allowed: seed, description, request)")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ScenarioError(f"{source}: seed must be an integer")
    steps = []
    for k, entry in enumerate(data.get("request", [])):
        where = f"{source}: request[{k}]"
        if not isinstance(entry, dict):
            raise ScenarioError(f"{where}: expected a table")
        entry = dict(entry)
        sat = entry.pop("sat", None)
        if ("command" in entry) == ("fault" in entry):
            raise ScenarioError(f"{where}: needs exactly one of command or fault")
        if (sat is None) == ("select" not in entry):
            raise ScenarioError(f"{where}: needs exactly one of sat or select")
        leaf = "cmd" if "command" in entry else "fault"
        try:
            parse_request(entry, leaf, fleet=sat is None)
        except CommandError as exc:
            raise ScenarioError(f"{where}: {exc.message}" + (f" (field {exc.field})" if exc.field else "")) from None
        steps.append(ScenarioStep(leaf, sat, entry))
    return Scenario(seed, tuple(steps), source)


def apply_scenario(twin: FleetTwin, scenario: Scenario) -> list[Request]:
    """Submit every step to the twin (time-tagged); errors name the step. A shard submits the steps for
    its own satellites (a step whose satellites are all another shard's is that shard's)."""
    from twin.runtime.fleet_selection import select_sats, sim_seconds

    queued = []
    for k, step in enumerate(scenario.steps):
        req = parse_request(step.payload, step.leaf, fleet=step.sat is None)
        if twin.shard is not None and step.sat is not None and twin.shard.owned_elsewhere(step.sat):
            continue
        try:
            target: Any = step.sat if req.selector is None else select_sats(twin, req.selector)
            if isinstance(target, np.ndarray) and target.size == 0:
                continue
            queued.append(twin.submit(req.kind, req.name, req.args, target, at_s=sim_seconds(twin, req.at),
                                      duration_s=req.duration_s, request_id=req.request_id or f"scenario-{k}"))
        except CommandError as exc:
            raise ScenarioError(f"{scenario.source}: request[{k}]: {exc}") from None
    return queued


def publish_scenario(scenario: Scenario, broker: MqttSettings, prefix: str = DEFAULT_PREFIX, wait_s: float = 10.0,
                     *, connect_timeout_s: float = 10.0, client_id: str | None = None,
                     signer: Signer | None = None, final: bool = False) -> list[dict[str, Any]]:
    """Send every step to a running twin as requests; returns the first reply of each (by request id), or
    with ``final`` the last one (``completed`` or ``rejected``, else the latest within ``wait_s``).

    ``wait_s``: seconds to wait for the replies; ``connect_timeout_s``: for the broker at start.
    ``signer``: sign every request (:mod:`twin.contract.request_auth`); its client should be ``client_id``.

    Replies come to this client's own reply topic: named as the MQTT 5 response topic (with the
    request id as correlation data), or, over MQTT 3.1.1, in the payload's ``reply_to``. The requests
    go out once the twin's birth (``online`` on its retained state topic) has been seen, or after
    ``wait_s`` without one: a twin still starting has not subscribed yet and would miss them.
    """
    import threading
    import uuid

    from twin.mqtt import MqttConnection, reply_properties

    topics = Topics(prefix)
    me = uuid.uuid4().hex[:8]
    reply_topic = topics.private_reply("scenario", me)
    replies: dict[str, dict[str, Any]] = {}
    finished: set[str] = set()
    done = threading.Event()
    subscribed = threading.Event()
    twin_up = threading.Event()

    def on_message(msg: Any) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic == topics.state:
            if isinstance(body, dict) and body.get("state") == "online":
                twin_up.set()
            return
        if isinstance(body, dict):
            rid = str(body.get("id"))
            if final:
                replies[rid] = body
                if body.get("status") in ("completed", "rejected"):
                    finished.add(rid)
            else:
                replies.setdefault(rid, body)
                finished.add(rid)
        if len(finished) >= len(scenario.steps):
            done.set()

    conn = MqttConnection(broker, client_id=client_id or f"orbitwin-scenario-{me}", on_message=on_message,
                          on_connect=lambda c: c.subscribe([reply_topic, topics.state], qos=1))
    conn.client.on_subscribe = lambda *a: subscribed.set()
    conn.start(connect_timeout_s)
    try:
        subscribed.wait(wait_s)
        twin_up.wait(wait_s)
        ids = []
        for k, step in enumerate(scenario.steps):
            rid = step.payload.get("id") or f"{Path(scenario.source).stem}-{k}"
            ids.append(rid)
            topic = topics.sat(step.sat, step.leaf) if step.sat else topics.fleet(step.leaf)
            body = {**step.payload, "id": rid} | ({} if conn.v5 else {"reply_to": reply_topic})
            payload = json.dumps(body) if signer is None else signer(topic, body)
            conn.publish(topic, payload, qos=1,
                         properties=reply_properties(reply_topic, rid.encode())).wait_for_publish(wait_s)
        done.wait(wait_s)
    finally:
        conn.stop()
    return [replies.get(rid, {"id": rid, "status": "no reply"}) for rid in ids]
