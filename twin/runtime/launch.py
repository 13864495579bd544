"""``orbitwin run`` as one library call: build the fleet, apply a scenario, connect and run.

:func:`run_twin` builds the twin from :class:`RunSpec` (a paced run without ``--start`` starts its
sim clock at the wall clock: :func:`with_default_start`), applies its scenario, starts an embedded
broker when no broker is given, connects through the MQTT door, and steps the fleet on the paced
sim clock until the duration has passed or ``should_stop()`` says so, showing the status view on
``out`` (:mod:`twin.runtime.status_view`: live in a terminal, plain blocks otherwise) and a final
summary. Everything it started is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from twin.contract.topics import iso_utc
from twin.contract.request_auth import RequestVerifier
from twin.core.engine import FleetTwin
from twin.core.ephemeris import jd_to_datetime
from twin.mqtt import MqttSettings
from twin.runtime.clock import Pacer, parse_speed, wall_clock_start
from twin.runtime.embedded_broker import DEFAULT_MQTT_PORT
from twin.runtime.mqtt_link import LinkSettings
from twin.runtime.run_loop import FleetOptions, RunStats, build_twin, describe_tle_epoch, run_loop
from twin.runtime.scenario import apply_scenario, load_scenario
from twin.runtime.fleet_view import Connection, connection_lines
from twin.runtime.status_view import StatusView

EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_PLACEHOLDER_URL = f"mqtt://{EMBEDDED_HOST}"


@dataclass
class RunSpec:
    """Everything ``orbitwin run`` needs, as plain values.

    ``mqtt`` None with ``use_mqtt`` starts an embedded broker; its other settings (keepalive,
    session expiry) then come from ``embedded_template``. ``rates`` and ``sat_rates`` are the
    CLI's rate strings (``hk=1,orbit=0.2`` and ``SAT:hk=10;SAT2:hk=0``), in Hz.
    """

    fleet: FleetOptions = field(default_factory=FleetOptions)
    seed_given: bool = False
    speed: str = "real"
    duration_s: float | None = None
    scenario_path: str | None = None
    use_mqtt: bool = True
    mqtt: MqttSettings | None = None
    embedded_template: MqttSettings | None = None
    link: LinkSettings = field(default_factory=LinkSettings)
    rates: str | None = None
    sat_rates: str | None = None
    replay_bytes: int = 256 * 2**20
    connect_timeout_s: float = 10.0
    rows: int = 12
    refresh_s: float = 1.0
    tty: bool = False
    keys_path: str | None = None  # request key file: signed requests required (twin.runtime.request_keys)
    allow_unsigned: bool = False  # with keys_path: still take unsigned requests (marked authenticated: false)
    auth_window_s: float = 30.0  # how far a signed request's issue time may be from the wall clock (s)
    broker_port: int | None = None  # embedded broker: this port (0: any free one); None: preferred_port if free
    preferred_port: int = DEFAULT_MQTT_PORT  # the embedded broker's port when free and broker_port is None
    events: int = 8  # latest events shown by the status view
    # the telemetry policy (twin.contract.telemetry_policy): --watch, --frames, --aggregates
    watch: str = "all"
    frames: str = "all"
    aggregates: str = "off"
    sink_ceilings: str | None = None  # ceilings file (default: the shipped twin/data/sink_ceilings.toml)
    over_budget: bool = False  # a budget above a ceiling warns instead of refusing


def parse_sat_rates(text: str | None, names: dict[str, int]) -> dict[int, dict[str, float]]:
    """``"STARLINK-1008:hk=10,orbit=1;STARLINK-1012:hk=0"`` -> per-satellite packet rates (Hz)."""
    from twin.contract.telemetry_encoder import RateError, parse_rates

    out: dict[int, dict[str, float]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        sat, sep, rates = part.partition(":")
        if not sep or sat.strip() not in names:
            raise RateError(f"bad --sat-rates entry {part!r}: expected SAT:PACKET=HZ with a selected satellite")
        out[names[sat.strip()]] = parse_rates(rates, topics=False)
    return out


def with_default_start(spec: RunSpec, now_s: float | None = None) -> RunSpec:
    """``spec`` with its sim start decided: a paced run (``real`` or ``xN``) without a start begins
    at the wall clock ``now_s`` (default: now), so sim time and wall time meet and Grafana's
    wall-clock windows and alert rules see it; ``max`` keeps the catalogue's median epoch (the
    TLEs' own time: reproducible, and SGP4 at its most accurate)."""
    if spec.fleet.start is not None or parse_speed(spec.speed) is None:
        return spec
    return dataclasses.replace(spec, fleet=dataclasses.replace(spec.fleet, start=wall_clock_start(now_s)))


def build_from_spec(spec: RunSpec) -> FleetTwin:
    """The twin of ``spec.fleet`` with its scenario applied (the scenario's seed unless one was given)."""
    scenario = load_scenario(spec.scenario_path) if spec.scenario_path else None
    opts = spec.fleet
    if scenario is not None and scenario.seed is not None and not spec.seed_given:
        opts = dataclasses.replace(opts, seed=scenario.seed)
    twin = build_twin(opts)
    if scenario is not None:
        apply_scenario(twin, scenario)
    return twin


def run_twin(spec: RunSpec, *, out: TextIO = sys.stdout,
             should_stop: Callable[[], bool] = lambda: False) -> RunStats:
    """Run the twin as ``orbitwin run`` does; returns the run's statistics."""
    given = spec.fleet.start is not None
    spec = with_default_start(spec)
    verifier = request_verifier(spec)  # a bad key file fails before the fleet is built
    from twin.contract.telemetry_policy import load_ceilings, make_policy

    policy = make_policy(spec.watch, spec.frames, spec.aggregates)  # so does a bad policy or ceilings file
    ceilings = load_ceilings(spec.sink_ceilings) if spec.use_mqtt else None
    if spec.use_mqtt and spec.mqtt is None and spec.broker_port:
        from twin.runtime.embedded_broker import check_port

        check_port(EMBEDDED_HOST, spec.broker_port)  # so does a busy --broker-port
    twin = build_from_spec(spec)
    pacer = Pacer(parse_speed(spec.speed))
    view = StatusView(out, rows=spec.rows, refresh_s=spec.refresh_s, tty=spec.tty, target=spec.speed,
                      duration_s=spec.duration_s, feed=spec.events)
    origin = "--start" if given else "the wall clock" if spec.fleet.start is not None else "the catalogue epoch"
    print(f"orbitwin: {twin.n} satellites, dt {twin.dt_s:g} s, seed {twin.seed}, speed {spec.speed}, "
          f"sim start {iso_utc(jd_to_datetime(twin.now_jd))} ({origin})", file=out, flush=True)
    print(f"orbitwin: {describe_tle_epoch(twin.catalogue)}", file=out, flush=True)
    if twin.shard is not None:
        m = twin.shard
        print(f"orbitwin: shard {m.spec.label}: {twin.n} of the fleet's {len(m.names)} satellites (by whole orbital "
              f"planes; shards hold {', '.join(map(str, m.counts()))}); fleet topics under "
              f"{spec.link.prefix}/shard/{m.spec.index}", file=out, flush=True)
    broker = link = service = None
    stats = RunStats()
    interrupted = False
    try:
        if not spec.use_mqtt:
            view.begin(twin)
            stats = run_loop(twin, pacer, duration_s=spec.duration_s, on_tick=view.on_tick,
                             should_stop=should_stop, stats=stats)
        else:
            from twin.contract.telemetry_encoder import PacketSchedule, parse_rates
            from twin.contract.topics import Topics
            from twin.runtime.embedded_broker import port_note, start_embedded_broker
            from twin.runtime.mqtt_link import MqttLink
            from twin.runtime.mqtt_service import TwinService
            from twin.runtime.telemetry_out import prune_schedule
            from twin.runtime.telemetry_budget import BudgetError, plan_policy

            schedule = prune_schedule(PacketSchedule(twin.n, twin.dt_s, parse_rates(spec.rates),
                                                     parse_sat_rates(spec.sat_rates, twin.index)), twin)
            assert ceilings is not None
            plan = plan_policy(twin, schedule, policy, ceilings, Topics(spec.link.prefix, spec.link.shard))
            print("\n".join(f"orbitwin: {line}" for line in plan.lines()), file=out, flush=True)
            if plan.over and not spec.over_budget:
                raise BudgetError(plan.over[0])  # before any broker is started or connected to
            for line in plan.over:
                print(f"orbitwin: warning: {line.split('; use ')[0]} (--over-budget)", file=out, flush=True)
            settings = spec.mqtt
            if settings is None:
                broker = start_embedded_broker(spec.broker_port, preferred=spec.preferred_port, host=EMBEDDED_HOST)
                template = spec.embedded_template or MqttSettings(EMBEDDED_PLACEHOLDER_URL)
                settings = dataclasses.replace(template, url=broker.url, protocol=getattr(broker, "protocol", "5"))
                note = port_note(broker)
                if note:
                    print(f"orbitwin: {note}", file=out, flush=True)
            view.connection = Connection(
                settings.redacted_url, settings.host, settings.port, spec.link.prefix, twin.names[0],
                note=f"embedded {broker.kind}" if broker is not None else "",
                username=settings.username, tls=settings.tls, ca_file=settings.ca_file)
            print("\n".join(f"orbitwin: {line}" for line in connection_lines(view.connection)), file=out, flush=True)
            link = MqttLink(settings, spec.link)
            exchange = attach_mesh_exchange(twin, link)
            service = TwinService(twin, link, schedule, replay_bytes=spec.replay_bytes, auth=verifier, policy=policy,
                                  watched=plan.watched, groups=plan.groups)
            print(f"orbitwin: requests: {auth_summary(service.auth)}", file=out, flush=True)
            view.attach(service)
            link.start(wait_s=spec.connect_timeout_s)
            if exchange is not None:
                print(f"orbitwin: shard {twin.shard.spec.label if twin.shard else ''}: the whole fleet's mesh from "  # noqa: E501
                      f"every shard's inputs on {link.topics.base.prefix}/shard/+/mesh; waiting for the other "
                      "shards' first tick", file=out, flush=True)
                twin.start()  # tick 0: the mesh's first step needs every shard's inputs
            print(f"orbitwin: connected to {settings.redacted_url} as run {service.run_id} (bseq {link.bseq}; "
                  f"the run tag in InfluxDB); "
                  f"{schedule.messages_per_s():.0f} telemetry messages/s", file=out, flush=True)
            view.begin(twin)
            stats = service.run(pacer, duration_s=spec.duration_s, on_tick=view.on_tick, should_stop=should_stop)
        view.finish(twin, stats)
    except KeyboardInterrupt:
        interrupted = True
        if service is not None and service.last_stats is not None:
            stats = service.last_stats
    finally:
        view.stop()
        if link is not None:
            link.stop(graceful=True)
        if broker is not None:
            broker.stop()
        twin.close()
    view.print_summary(twin, stats, interrupted)
    return stats


def attach_mesh_exchange(twin: FleetTwin, link: Any) -> Any:
    """A shard with the network model steps the whole mesh from every shard's inputs, carried by its
    link (:mod:`twin.runtime.mesh_exchange`); returns the exchange, or None for any other twin."""
    if twin.shard is None or twin.mesh is None:
        return None
    from twin.runtime.mesh_exchange import MqttMeshExchange

    exchange = MqttMeshExchange(twin.shard, lambda topic, payload: link.publish(topic, payload, qos=1),
                                link.topics.mesh, twin.design.power.isl_terminal_count)
    link.mesh_sink = exchange.on_message
    twin.mesh_exchange = exchange
    return exchange


def request_verifier(spec: RunSpec) -> RequestVerifier:
    """The twin's request verifier: the keys of ``spec.keys_path`` (signed requests required unless
    ``allow_unsigned``), else none (unsigned requests taken, every reply saying ``authenticated: false``)."""
    if spec.keys_path is None:
        return RequestVerifier({}, require=False, window_s=spec.auth_window_s)
    from twin.runtime.request_keys import load_keyring

    return RequestVerifier(load_keyring(spec.keys_path), require=not spec.allow_unsigned,
                           window_s=spec.auth_window_s)


def auth_summary(v: RequestVerifier) -> str:
    """One line saying what the twin takes."""
    if not v.keys:
        return "unsigned taken (no --keys: anyone who can publish on the broker can command the fleet)"
    return (f"signed with one of {len(v.keys)} keys ({', '.join(sorted(v.keys))}), issue time within "
            f"{v.window_s:g} s of this machine's clock" + ("; unsigned taken too" if not v.require else
                                                           "; unsigned rejected"))

