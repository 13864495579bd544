"""Who may publish and read which topics: the roles of a deployment and their Mosquitto ACL (pure: no network).

Six roles, each one MQTT user in the Docker stack (the user name is the role name):

============== ================================================================================
twin           publishes telemetry, events, replies, status; reads requests (cmd, fault,
               replay, route) and the serial bridges' board state, measurements and job ends
influx-bridge  reads what an archive keeps (:attr:`Topics.archive_subscriptions`, birth,
               catalogue); publishes replay requests and its own status and events
grafana-bridge publishes commands (not faults) from alerts; reads its own reply topic
serial-bridge  publishes a bench board's state, measurements, job ends, events and replies; reads the
               board's requests and the catalogue (to check ``--sat``)
operator       publishes commands, faults, replay and route requests (satellite, fleet, board);
               reads everything under the prefix
observer       reads everything under the prefix and ``$SYS``; publishes only route requests
               (read-only queries: the answer is derived from what it may read anyway)
============== ================================================================================

Every topic filter is built by :class:`~twin.contract.topics.Topics` (one topic tree), with
``+`` for a satellite, packet, board or client. :func:`acl_text` renders the rights as a
Mosquitto ``acl_file``; ``python -m twin.contract.roles > docker/mosquitto/acl`` regenerates the
Docker stack's copy and ``--markdown`` the table of docs/security.md (``tests/test_acl.py`` fails
when either is stale). A topic right is not a command
right: which commands and faults a key may sign is the request authenticator's business.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from twin.contract.topics import DEFAULT_PREFIX, Topics

#: The InfluxDB and Grafana bridges' ``--bridge-id`` in the stack (their CLI defaults).
INFLUX_BRIDGE_ID = "influx"
GRAFANA_BRIDGE_ID = "grafana"
#: How deep a private reply topic may be under the prefix: ``{prefix}/a/b/c/d/reply`` at most
#: (``scenario/{me}/reply``, ``bridge/{id}/{client}/reply`` and the per-satellite replies fit).
REPLY_DEPTH_MAX = 4
SYS_TOPICS = "$SYS/#"


@dataclass(frozen=True)
class Role:
    """One role: its name (the MQTT user in the stack), its job, and the topic filters it may use."""

    name: str
    job: str
    publish: tuple[str, ...]
    read: tuple[str, ...]

    @property
    def env_password(self) -> str:
        """The variable of ``.env`` holding this role's password, e.g. ``MQTT_INFLUX_BRIDGE_PASSWORD``."""
        return f"MQTT_{self.name.upper().replace('-', '_')}_PASSWORD"


def reply_topics(topics: Topics) -> tuple[str, ...]:
    """Every reply topic under the prefix the twin may answer on (depth 1..:data:`REPLY_DEPTH_MAX`), and errors."""
    return tuple(topics.private_reply(*["+"] * k) for k in range(1, REPLY_DEPTH_MAX + 1)) + (topics.errors,)


def roles(topics: Topics | None = None) -> tuple[Role, ...]:
    """The six roles for one prefix (default :data:`~twin.contract.topics.DEFAULT_PREFIX`)."""
    t = topics or Topics(DEFAULT_PREFIX)
    ts = Topics(t.prefix, "+")  # the fleet-level topics of every shard of a sharded twin: {prefix}/shard/+/...
    everything = f"{t.prefix}/#"
    requests = (t.sat("+", "cmd"), t.sat("+", "fault"), t.fleet("cmd"), t.fleet("fault"))
    shard_requests = (ts.fleet("cmd"), ts.fleet("fault"))
    board_requests = (t.board("+", "cmd"), t.board("+", "fault"))
    return (
        Role("twin", "steps the fleet: publishes telemetry, events, replies and status; takes requests",
             publish=(t.state, t.catalogue, t.status, t.summary, t.fleet_tm("+"), t.tm("+", "+"),
                      t.fleet("topology"), t.fleet("latency"), t.fleet("agg/#"),
                      t.replayed("+", "+"), t.sat("+", "event"), t.fleet("event"), *board_requests,
                      t.board("+", "event"), t.audit, *reply_topics(t),
                      ts.state, ts.catalogue, ts.status, ts.summary, ts.fleet_tm("+"), ts.fleet("topology"),
                      ts.fleet("latency"), ts.fleet("agg/#"), ts.fleet("event"), ts.fleet("reply"), ts.errors,
                      ts.audit, ts.mesh),
             # a shard reads the other shards' mesh inputs and births (twin.runtime.mesh_exchange)
             read=(*requests, t.replay, t.route, t.state, t.board("+", "state"), t.board("+", "tm"),
                   t.board("+", "job"), *shard_requests, ts.replay, ts.route, ts.state, ts.mesh)),
        Role("influx-bridge", "stores telemetry, events and replies in InfluxDB; asks the twin for replays",
             publish=(t.replay, t.bridge(INFLUX_BRIDGE_ID, "status"), t.bridge(INFLUX_BRIDGE_ID, "event"),
                      ts.replay, ts.bridge(INFLUX_BRIDGE_ID, "status"), ts.bridge(INFLUX_BRIDGE_ID, "event")),
             # its own status too: the container's health check reads it with the bridge's credentials
             read=(*t.archive_subscriptions, t.state, t.catalogue, t.bridge(INFLUX_BRIDGE_ID, "status"),
                   *(f for f in ts.archive_subscriptions if f.startswith(ts.root)), ts.state, ts.catalogue,
                   ts.bridge(INFLUX_BRIDGE_ID, "status"))),
        Role("grafana-bridge", "turns Grafana alerts into commands (not faults) and awaits the replies",
             publish=(t.sat("+", "cmd"), t.fleet("cmd"), t.bridge(GRAFANA_BRIDGE_ID, "event")),
             read=(t.private_reply("bridge", GRAFANA_BRIDGE_ID, "+"),)),
        Role("serial-bridge", "binds a bench board to a satellite's payload",
             publish=(t.board("+", "state"), t.board("+", "tm"), t.board("+", "job"), t.board("+", "event"),
                      t.board("+", "reply")),
             # the catalogue (each shard's too): `bridge serial --sat` is checked against the twin's satellites
             read=(*board_requests, t.catalogue, ts.catalogue)),
        Role("operator", "sends commands, faults, replay and route requests; reads everything",
             publish=(*requests, *shard_requests, *board_requests, t.replay, t.route, ts.replay, ts.route),
             read=(everything,)),
        Role("observer", "reads everything (dashboards, debugging, health checks); asks for routes (read-only)",
             publish=(t.route, ts.route), read=(everything, SYS_TOPICS)),
    )


def role(name: str, topics: Topics | None = None) -> Role:
    """The role called ``name``; KeyError naming the known roles otherwise."""
    for r in roles(topics):
        if r.name == name:
            return r
    raise KeyError(f"no role {name!r}; roles: {', '.join(r.name for r in roles(topics))}")


def acl_text(topics: Topics | None = None, users: Mapping[str, str] | None = None) -> str:
    """A Mosquitto ``acl_file``: one ``user`` section per role granting exactly its topics.

    ``users`` maps a role to its MQTT user name (default: the role's name). Nothing is granted
    outside the sections, so a client that is not one of these users may do nothing.
    """
    t = topics or Topics(DEFAULT_PREFIX)
    lines = ["# Generated by `python -m twin.contract.roles` from twin/contract/topics.py: do not edit by hand.",
             f"# Topic prefix {t.prefix}. One section per role; anything not granted here is denied."]
    for r in roles(t):
        lines += ["", f"# {r.name}: {r.job}", f"user {(users or {}).get(r.name, r.name)}"]
        both = [f for f in r.publish if f in r.read]
        lines += [f"topic readwrite {f}" for f in both]
        lines += [f"topic write {f}" for f in r.publish if f not in both]
        lines += [f"topic read {f}" for f in r.read if f not in both]
    return "\n".join(lines) + "\n"


def markdown_table(topics: Topics | None = None) -> str:
    """The roles as a Markdown table (docs/security.md), topic filters relative to the prefix."""
    t = topics or Topics(DEFAULT_PREFIX)

    def filters(fs: tuple[str, ...]) -> str:
        return ", ".join(f"`{f.removeprefix(t.prefix + '/')}`" for f in fs) or "nothing"

    rows = ["| Role (MQTT user) | Job | Publishes | Reads |", "|---|---|---|---|"]
    rows += [f"| `{r.name}` | {r.job} | {filters(r.publish)} | {filters(r.read)} |" for r in roles(t)]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m twin.contract.roles [--markdown] [PREFIX] > docker/mosquitto/acl
    args = [a for a in sys.argv[1:] if a != "--markdown"]
    render = markdown_table if "--markdown" in sys.argv[1:] else acl_text
    sys.stdout.write(render(Topics(args[0]) if args else None))
