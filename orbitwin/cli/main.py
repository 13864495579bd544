"""The ``orbitwin`` command line: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence

from twin.core.catalogue import CatalogueError
from twin.runtime.clock import Pacer, parse_speed
from twin.core.params import DesignError


def _fleet_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fleet")
    g.add_argument("--tle", help="TLE file (default: the shipped Starlink catalogue, 9,543 satellites)")
    g.add_argument("--design", help="design TOML (default: the shipped V3 compute satellite)")
    g.add_argument("--names", help="name patterns, comma-separated globs (e.g. 'STARLINK-3*')")
    g.add_argument("--alt-km", help="shell altitude band LO:HI in km (mean altitude)")
    g.add_argument("--inc-deg", help="shell inclination band LO:HI in degrees")
    g.add_argument("--count", type=int, help="keep the first N selected satellites")
    g.add_argument("--start", help="start time, ISO 8601 UTC (default: the catalogue's median epoch)")
    g.add_argument("--dt", type=float, default=1.0, help="time step in seconds (default 1)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0, or the scenario's)")


def _fleet_options(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    from twin.runtime.run_loop import FleetOptions

    return FleetOptions(a.tle, a.design, a.names, a.alt_km, a.inc_deg, a.count, a.start, a.dt,
                        0 if a.seed is None else a.seed)


def _mqtt_settings(a: argparse.Namespace, url: str):  # type: ignore[no-untyped-def]
    from twin.runtime.mqtt_link import MqttSettings

    return MqttSettings(url, a.mqtt_username, a.mqtt_password, a.mqtt_ca, a.mqtt_cert, a.mqtt_key, a.mqtt_insecure,
                        a.keepalive, a.session_expiry, a.qos, a.client_id, a.prefix, state_dir=a.state_dir,
                        protocol=a.mqtt_protocol)


def _sat_rates(text: str | None, names: dict[str, int]) -> dict[int, dict[str, float]]:
    """``"STARLINK-1008:hk=10,orbit=1;STARLINK-1012:hk=0"`` -> per-satellite packet rates."""
    from twin.contract.telemetry_encoder import RateError, parse_rates

    out: dict[int, dict[str, float]] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        sat, sep, rates = part.partition(":")
        if not sep or sat.strip() not in names:
            raise RateError(f"bad --sat-rates entry {part!r}: expected SAT:PACKET=HZ with a selected satellite")
        out[names[sat.strip()]] = parse_rates(rates)
    return out


def cmd_run(a: argparse.Namespace) -> int:
    import signal

    from twin.runtime.run_loop import build_twin, run_loop
    from twin.runtime.scenario import apply_scenario, load_scenario
    from twin.runtime.status_table import render

    opts = _fleet_options(a)
    scenario = load_scenario(a.scenario) if a.scenario else None
    if scenario is not None and scenario.seed is not None and a.seed is None:
        opts.seed = scenario.seed
    twin = build_twin(opts)
    if scenario is not None:
        apply_scenario(twin, scenario)
    pacer = Pacer(parse_speed(a.speed))
    tty = sys.stdout.isatty() and not a.plain
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    last = [0.0, 0.0]
    events = [0]
    service = None

    def on_tick(tw, stats) -> None:  # type: ignore[no-untyped-def]
        if service is None:
            events[0] += len(tw.drain_events())
        now = time.monotonic()
        if a.refresh <= 0 or now - last[0] < a.refresh:
            return
        speed = (tw.t_s - last[1]) / (now - last[0]) if last[0] else 0.0
        last[:] = [now, tw.t_s]
        ev = service.counters["events"] if service is not None else events[0]
        text = render(tw, stats.last_step_s * 1e3, speed, stats.lag_s, a.rows, ev)
        if service is not None:
            st = service.status()["mqtt"]
            text += (f"\nmqtt {service.link.settings.url}  connected {st['connected']}  bseq {st['bseq']}  "
                     f"published {st['published']}  outstanding {st['outstanding']}  "
                     f"refused {st['refused_queue_full']}  requests {service.counters['requests']}  "
                     f"rejected {service.counters['rejected']}")
        print(("\x1b[H\x1b[2J" if tty else "") + text + ("" if tty else "\n"), flush=True)

    print(f"orbitwin: {twin.n} satellites, dt {twin.dt_s:g} s, seed {twin.seed}, speed {a.speed}", flush=True)
    broker = link = None
    try:
        if a.no_mqtt:
            stats = run_loop(twin, pacer, duration_s=a.duration, on_tick=on_tick, should_stop=lambda: stopping[0])
        else:
            from twin.runtime.embedded_broker import start_embedded_broker
            from twin.runtime.mqtt_link import MqttLink
            from twin.runtime.mqtt_service import TwinService
            from twin.contract.telemetry_encoder import PacketSchedule, parse_rates

            schedule = PacketSchedule(twin.n, twin.dt_s, parse_rates(a.rates), _sat_rates(a.sat_rates, twin.index))
            url = a.mqtt
            if url is None:
                broker = start_embedded_broker()
                url = broker.url
                a.mqtt_protocol = getattr(broker, "protocol", "5")
                print(f"orbitwin: embedded MQTT broker ({broker.kind}) at {url}\n"
                      f"  watch:   mosquitto_sub -h {broker.host} -p {broker.port} -t '{a.prefix}/#' -v\n"
                      f"  command: mosquitto_pub -h {broker.host} -p {broker.port} -t '{a.prefix}/sat/{twin.names[0]}/cmd'"
                      f" -m '{{\"command\":\"throttle\",\"args\":{{\"factor\":0.5}}}}'", flush=True)
            link = MqttLink(_mqtt_settings(a, url))
            service = TwinService(twin, link, schedule, replay_bytes=int(a.replay_mb * 2**20))
            link.start(wait_s=a.connect_timeout)
            print(f"orbitwin: connected to {url} as bseq {link.bseq}; {schedule.messages_per_s():.0f} telemetry "
                  f"messages/s", flush=True)
            stats = service.run(pacer, duration_s=a.duration, on_tick=on_tick, should_stop=lambda: stopping[0])
    except KeyboardInterrupt:
        return 0
    finally:
        if link is not None:
            link.stop(graceful=True)
        if broker is not None:
            broker.stop()
        twin.close()
    print(render(twin, stats.last_step_s * 1e3, 0.0, stats.lag_s, a.rows, events[0]))
    print(f"done: {stats.ticks} ticks, mean step {stats.step_s_total / max(stats.ticks, 1) * 1e3:.2f} ms, "
          f"max lag {stats.max_lag_s:.3f} s")
    return 0


def cmd_schema(a: argparse.Namespace) -> int:
    from twin.schema.telemetry import schema_json, schema_markdown

    print(schema_markdown() if a.format == "markdown" else schema_json())
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from twin.validation.physics_checks import run_validation

    results = run_validation(quick=a.quick)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}")
    return 0 if all(r.passed for r in results) else 1


def cmd_bench(a: argparse.Namespace) -> int:
    if a.what == "fleet":
        from orbitwin.bench.fleet import bench_fleet

        result = bench_fleet(count=a.count, steps=a.steps, dt_s=a.dt, naive_sample=a.naive_sample)
    elif a.what == "mqtt":
        from orbitwin.bench.mqtt import bench_mqtt

        result = bench_mqtt(duration_s=a.duration, count=a.count, baseline_s=a.baseline_duration)
    elif a.what == "serial":
        from orbitwin.bench.serial import run_serial_bench

        result = run_serial_bench()
        rows = result["by_baud"].values()
        result = {"benchmark": "serial", "round_trip_p50_ms": max(r["round_trip_p50_ms"] for r in rows),
                  "round_trip_p99_ms": max(r["round_trip_p99_ms"] for r in rows),
                  "frames_per_s": min(r["frames_per_s"] for r in rows), **result}
    elif a.what == "dashboards":
        from orbitwin.bench.dashboards import bench_dashboards

        result = bench_dashboards(ticks=a.window, count=a.count)
    elif a.what == "influx":
        from orbitwin.bench.influx import bench_influx

        result = bench_influx(duration_s=a.duration, count=a.count)
    else:  # pragma: no cover - argparse restricts choices
        raise SystemExit(f"unknown benchmark {a.what}")
    print(json.dumps(result, indent=2))
    return 0


def cmd_catalogue(a: argparse.Namespace) -> int:
    from twin.core.catalogue import shell_label
    from twin.runtime.run_loop import select_catalogue

    cat = select_catalogue(_fleet_options(a))
    shells = shell_label(cat.mean_altitude_m, cat.inclination_deg)
    for name, sid, shell in list(zip(cat.names, cat.norad_ids, shells))[: a.limit]:
        print(f"{name:<20}{sid:>8}  {shell}")
    print(f"{len(cat)} satellites")
    return 0


def cmd_bridge_influx(a: argparse.Namespace) -> int:
    import signal

    from bridges.influx.bridge import BridgeSettings, InfluxBridge
    from bridges.influx.writer import InfluxV1Writer, InfluxV2Writer

    if a.api == "v2":
        if not (a.org and a.bucket and a.token):
            raise ValueError("--api v2 needs --org, --bucket and --token")
        writer = InfluxV2Writer(a.influx, a.org, a.bucket, a.token)
    else:
        writer = InfluxV1Writer(a.influx, a.db, a.rp, a.influx_user, a.influx_password)
    settings = BridgeSettings(a.mqtt, a.client_id, a.prefix, a.mqtt_username, a.mqtt_password,
                              spool_dir=a.spool_dir, spool_max_bytes=int(a.spool_max_mb * 2**20),
                              dead_letter_path=a.dead_letter, bridge_id=a.bridge_id,
                              report_every_s=min(a.report_every, 5.0))
    bridge = InfluxBridge(settings, writer)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    bridge.start(wait_s=a.connect_timeout)
    print(f"orbitwin bridge influx: {a.mqtt} -> {a.influx} ({a.api}); spool {a.spool_dir}; "
          f"dead letters {a.dead_letter}", flush=True)
    while not stopping.wait(a.report_every):
        print(json.dumps(bridge.status()), flush=True)
    bridge.stop()
    return 0


def cmd_bridge_serial(a: argparse.Namespace) -> int:
    import signal

    from bridges.board.bridge import SerialBridge, SerialBridgeSettings

    bridge = SerialBridge(SerialBridgeSettings(a.port, a.sat, a.mqtt, a.board, a.prefix, a.baud)).start()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print(f"orbitwin bridge serial: board {bridge.board} on {a.port} -> satellite {a.sat} via {a.mqtt}", flush=True)
    while not stopping.wait(a.report_every):
        print(json.dumps({"board": bridge.board, "linked": bridge.link.connected, "silent": bridge.link.silent,
                          **bridge.counters, "link": dict(bridge.link.stats)}, default=str), flush=True)
    bridge.stop()
    return 0


def cmd_bridge_grafana(a: argparse.Namespace) -> int:
    """Grafana alerts (webhook) and/or InfluxDB-polled conditions -> twin commands, per the rule table."""
    import os
    import signal

    from bridges.alerts.rules import load_table
    from bridges.alerts.poller import InfluxPoller
    from bridges.alerts.webhook import GrafanaBridge, GrafanaBridgeSettings

    table = load_table(a.rules)
    if a.check:
        print(json.dumps({"rules": [r.name for r in table.rules], "conditions": [c["uid"] for c in table.conditions]}))
        return 0
    if not a.mqtt:
        raise ValueError("--mqtt is required")
    if a.poll_once and not a.poll_influx:
        raise ValueError("--poll-once needs --poll-influx")
    if a.poll_influx and not table.conditions:
        raise ValueError("--poll-influx: the rule table has no [[condition]] tables")
    token = a.token or os.environ.get("ORBITWIN_GRAFANA_TOKEN")
    user, _, password = (a.basic_auth or os.environ.get("ORBITWIN_GRAFANA_BASIC_AUTH") or "").partition(":")
    if not user and os.environ.get("GRAFANA_WEBHOOK_USER"):  # what the provisioned contact point sends
        user, password = os.environ["GRAFANA_WEBHOOK_USER"], os.environ.get("GRAFANA_WEBHOOK_PASSWORD", "")
    http = not (a.no_http or a.poll_once)
    host, _, port = a.listen.rpartition(":")
    settings = GrafanaBridgeSettings(a.mqtt, a.prefix, a.client_id, a.mqtt_username, a.mqtt_password,
                                     host or "127.0.0.1", int(port) if http else None, user or None, password or None,
                                     token, int(a.max_body_kb * 1024), a.reply_timeout, a.bridge_id)
    bridge = GrafanaBridge(settings, table)
    poller = (InfluxPoller(a.poll_influx, a.db, table.conditions, a.influx_user, a.influx_password)
              if a.poll_influx else None)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    bridge.start(wait_s=a.connect_timeout)
    try:
        if a.poll_once and poller is not None:
            alerts = poller.evaluate()
            actions = [s for al in alerts for s in bridge.handle_alert(al)]
            deadline = time.monotonic() + a.reply_timeout
            while bridge.pending and time.monotonic() < deadline and not stopping.is_set():
                time.sleep(0.05)
            print(json.dumps({"alerts": len(alerts), "actions": actions, "poller": poller.status(),
                              **bridge.status()}), flush=True)
            return 1 if poller.counters["query_errors"] else 0
        if poller is not None:
            threading.Thread(target=poller.run, args=(bridge.handle_alert, a.poll_interval, stopping),
                             name="influx-poller", daemon=True).start()
        print(f"orbitwin bridge grafana: {a.mqtt}; webhook {bridge.url if http else 'off'}; "
              f"poll {a.poll_influx or 'off'}; {len(table.rules)} rules", flush=True)
        while not stopping.wait(a.report_every):
            print(json.dumps(bridge.status() | ({"poller": poller.status()} if poller else {})), flush=True)
    finally:
        bridge.stop()
    return 0


def cmd_scenario_publish(a: argparse.Namespace) -> int:
    from twin.runtime.scenario import load_scenario, publish_scenario

    replies = publish_scenario(load_scenario(a.file), a.mqtt, a.prefix, a.wait, a.mqtt_username, a.mqtt_password)
    for r in replies:
        print(json.dumps(r))
    return 0 if all(r.get("status") in ("accepted", "completed") for r in replies) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orbitwin", description="Digital twin of orbital compute constellations")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="step the fleet and show a live status table")
    _fleet_args(p)
    p.add_argument("--speed", default="real", help="real, xN (e.g. x10) or max (default real)")
    p.add_argument("--duration", type=float, help="sim seconds to run (default: until Ctrl-C)")
    p.add_argument("--rows", type=int, default=12, help="satellites shown in the table")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between table refreshes")
    p.add_argument("--plain", action="store_true", help="no screen clearing, one block per refresh")
    p.add_argument("--scenario", help="scenario file (TOML/JSON) of timed faults and commands")
    m = p.add_argument_group("mqtt")
    m.add_argument("--mqtt", help="broker URL mqtt://[user:pass@]host[:port] or mqtts://... "
                                  "(default: start an embedded broker)")
    m.add_argument("--no-mqtt", action="store_true", help="run without MQTT (status table only)")
    m.add_argument("--mqtt-username")
    m.add_argument("--mqtt-password", default=os.environ.get("ORBITWIN_MQTT_PASSWORD"),
                   help="or $ORBITWIN_MQTT_PASSWORD (keeps it out of ps)")
    m.add_argument("--mqtt-ca", help="CA certificate file for mqtts://")
    m.add_argument("--mqtt-cert", help="client certificate file")
    m.add_argument("--mqtt-key", help="client key file")
    m.add_argument("--mqtt-insecure", action="store_true", help="do not verify the broker's certificate")
    m.add_argument("--mqtt-protocol", choices=("5", "3.1.1"), default="5", help="MQTT protocol version (default 5)")
    m.add_argument("--prefix", default="orbitwin/v1", help="topic prefix (default orbitwin/v1)")
    m.add_argument("--qos", type=int, default=1, choices=(0, 1), help="telemetry QoS (default 1)")
    m.add_argument("--keepalive", type=int, default=10, help="MQTT keepalive in seconds (default 10)")
    m.add_argument("--session-expiry", type=int, default=3600, help="MQTT session expiry in seconds (default 3600)")
    m.add_argument("--client-id", help="MQTT client id (default: random; fix it to resume the session)")
    m.add_argument("--rates", help="packet rates, e.g. hk=1,orbit=0.2,thermal=0.1 (Hz)")
    m.add_argument("--sat-rates", help="per-satellite rates, e.g. 'STARLINK-1008:hk=10,orbit=1;STARLINK-1012:hk=0'")
    m.add_argument("--replay-mb", type=float, default=256.0, help="telemetry kept for replay requests (MiB)")
    m.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the first connection")
    m.add_argument("--state-dir", help="where the birth sequence counter is kept")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("schema", help="print the telemetry schema")
    p.add_argument("--format", choices=("json", "markdown"), default="json")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("validate", help="run the physics validation cases and print the results")
    p.add_argument("--quick", action="store_true", help="sample the fleet instead of all satellites")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("bench", help="benchmarks printing JSON")
    p.add_argument("what", choices=("fleet", "mqtt", "serial", "influx", "dashboards"))
    p.add_argument("--window", type=int, default=330, help="dashboards: seconds of fleet data to fill (default 330)")
    p.add_argument("--duration", type=float, default=60.0, help="mqtt: sim = wall seconds to run (default 60)")
    p.add_argument("--baseline-duration", type=float, default=20.0, help="mqtt: seconds of the bare paho baseline")
    p.add_argument("--count", type=int, help="satellites (default: all)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--dt", type=float, default=1.0)
    p.add_argument("--naive-sample", type=int, default=200, help="satellites in the naive skyfield baseline")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bridge", help="bridges between the twin's MQTT contract and other systems")
    bsub = p.add_subparsers(dest="bridge", required=True)
    b = bsub.add_parser("influx", help="store telemetry, events and replies in InfluxDB")
    b.add_argument("--mqtt", required=True, help="broker URL mqtt://[user:pass@]host[:port]")
    b.add_argument("--mqtt-username")
    b.add_argument("--mqtt-password", default=os.environ.get("ORBITWIN_MQTT_PASSWORD"),
                   help="or $ORBITWIN_MQTT_PASSWORD")
    b.add_argument("--influx", required=True, help="InfluxDB URL, e.g. http://localhost:8086")
    b.add_argument("--api", choices=("v1", "v2"), default="v1", help="v1 /write (InfluxDB 1.x) or v2 (2.x/3.x)")
    b.add_argument("--db", default="orbitwin", help="v1: database (default orbitwin)")
    b.add_argument("--rp", help="v1: retention policy")
    b.add_argument("--influx-user", help="v1: user")
    b.add_argument("--influx-password", default=os.environ.get("ORBITWIN_INFLUX_PASSWORD"),
                   help="v1: password (or $ORBITWIN_INFLUX_PASSWORD)")
    b.add_argument("--org", help="v2: organisation")
    b.add_argument("--bucket", help="v2: bucket")
    b.add_argument("--token", default=os.environ.get("ORBITWIN_INFLUX_TOKEN"),
                   help="v2: API token (or $ORBITWIN_INFLUX_TOKEN, which keeps it out of ps)")
    b.add_argument("--prefix", default="orbitwin/v1")
    b.add_argument("--client-id", default="orbitwin-influx-bridge", help="MQTT client id (the persistent session)")
    b.add_argument("--bridge-id", default="influx", help="name in the bridge's own status")
    b.add_argument("--spool-dir", default="orbitwin-spool", help="on-disk spool for InfluxDB outages")
    b.add_argument("--spool-max-mb", type=float, default=1024.0, help="spool size limit (oldest dropped beyond)")
    b.add_argument("--dead-letter", default="orbitwin-dead-letters.jsonl", help="JSONL file of what cannot be stored")
    b.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    b.add_argument("--connect-timeout", type=float, default=30.0)
    b.set_defaults(func=cmd_bridge_influx)
    g = bsub.add_parser("grafana", help="Grafana alert webhooks (or InfluxDB-polled conditions) -> twin commands")
    g.add_argument("--mqtt", help="broker URL mqtt://[user:pass@]host[:port] (required unless --check)")
    g.add_argument("--mqtt-username")
    g.add_argument("--mqtt-password", default=os.environ.get("ORBITWIN_MQTT_PASSWORD"),
                   help="or $ORBITWIN_MQTT_PASSWORD")
    g.add_argument("--prefix", default="orbitwin/v1")
    g.add_argument("--client-id", default="orbitwin-grafana-bridge", help="MQTT client id")
    g.add_argument("--bridge-id", default="grafana", help="events go to {prefix}/bridge/{id}/event")
    g.add_argument("--rules", help="rule table TOML (default: the shipped dashboards/alert-actions.toml)")
    g.add_argument("--check", action="store_true", help="validate the rule table, print its rules and exit")
    g.add_argument("--listen", default="127.0.0.1:8090", help="webhook HOST:PORT (default 127.0.0.1:8090)")
    g.add_argument("--no-http", action="store_true", help="no webhook server (poller only)")
    g.add_argument("--token", help="shared secret for Authorization: Bearer (or $ORBITWIN_GRAFANA_TOKEN)")
    g.add_argument("--basic-auth", help="USER:PASS for HTTP basic auth (or $ORBITWIN_GRAFANA_BASIC_AUTH, "
                                        "or $GRAFANA_WEBHOOK_USER and $GRAFANA_WEBHOOK_PASSWORD)")
    g.add_argument("--max-body-kb", type=float, default=1024.0, help="largest webhook body (default 1024 KiB)")
    g.add_argument("--reply-timeout", type=float, default=30.0, help="seconds to wait for the twin's reply")
    g.add_argument("--poll-influx", help="evaluate the [[condition]] tables against this InfluxDB 1.x URL")
    g.add_argument("--db", default="orbitwin", help="InfluxDB database for --poll-influx (default orbitwin)")
    g.add_argument("--influx-user")
    g.add_argument("--influx-password")
    g.add_argument("--poll-interval", type=float, default=10.0, help="seconds between polls (default 10)")
    g.add_argument("--poll-once", action="store_true", help="poll once, act, wait for the replies, print JSON, exit")
    g.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    g.add_argument("--connect-timeout", type=float, default=30.0)
    g.set_defaults(func=cmd_bridge_grafana)

    b = bsub.add_parser("serial", help="bind a dev board on a serial port to a satellite's payload")
    b.add_argument("--port", required=True, help="device path, rfc2217://host:port, or a firmware-sim port")
    b.add_argument("--sat", required=True, help="the satellite whose payload the board becomes")
    b.add_argument("--mqtt", required=True, help="broker URL mqtt://[user:pass@]host[:port]")
    b.add_argument("--board", help="board name in topics (default: the satellite's name)")
    b.add_argument("--prefix", default="orbitwin/v1")
    b.add_argument("--baud", type=int, default=115200)
    b.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    b.set_defaults(func=cmd_bridge_serial)

    from dashboards.build import add_cli as _add_dashboards_cli

    _add_dashboards_cli(sub)

    p = sub.add_parser("scenario", help="scenario files")
    ssub = p.add_subparsers(dest="scenario_cmd", required=True)
    sp = ssub.add_parser("publish", help="send a scenario's requests to a running twin over MQTT")
    sp.add_argument("file", help="scenario TOML/JSON")
    sp.add_argument("--mqtt", required=True, help="broker URL")
    sp.add_argument("--mqtt-username")
    sp.add_argument("--mqtt-password", default=os.environ.get("ORBITWIN_MQTT_PASSWORD"))
    sp.add_argument("--prefix", default="orbitwin/v1")
    sp.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the replies")
    sp.set_defaults(func=cmd_scenario_publish)

    p = sub.add_parser("catalogue", help="list the selected satellites and their shells")
    _fleet_args(p)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_catalogue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CatalogueError, DesignError, ValueError, ConnectionError) as exc:
        print(f"orbitwin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
