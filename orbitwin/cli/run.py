"""``orbitwin run``: step the fleet, publish it on MQTT (own broker or yours) and show a live view."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from typing import Any

from orbitwin.cli.fleet_options import add_fleet_options, fleet_options
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args
from orbitwin.cli import arg_types


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="step the fleet and show a live view")
    add_fleet_options(p)
    p.add_argument("--speed", default="real", type=arg_types.speed, help="real, xN (e.g. x10) or max (default real)")
    p.add_argument("--duration", type=arg_types.positive_seconds, help="sim seconds to run (default: until Ctrl-C)")
    p.add_argument("--rows", type=arg_types.positive_int, default=12,
                   help="satellites shown, worst first: red, yellow, lost, safe, nominal (default 12; fewer when "
                        "the terminal is short)")
    p.add_argument("--events", type=arg_types.positive_int, default=8,
                   help="latest events shown (FDIR, faults, commands, limit crossings; default 8)")
    p.add_argument("--refresh", type=arg_types.non_negative, default=1.0,
                   help="wall seconds between refreshes of the view (default 1; 0: none, only the final state)")
    p.add_argument("--plain", action="store_true",
                   help="plain text blocks, one per refresh, no colour or cursor movement (for logs and CI; "
                        "the default when stdout is not a terminal)")
    p.add_argument("--scenario", help="scenario file (TOML/JSON) of timed faults and commands")
    add_mqtt_options(p, required=False, connect_timeout_s=10.0,
                     url_help="broker URL mqtt://host[:port] or mqtts://... (default: start an embedded broker)")
    t = p.add_argument_group("twin on MQTT")
    t.add_argument("--no-mqtt", action="store_true", help="run without MQTT (status view only)")
    t.add_argument("--broker-port", type=broker_port, metavar="N",
                   help="without --mqtt: the embedded broker's port on 127.0.0.1 (0: any free port; default 1883 "
                        "when free, else any free port, said on start); a busy port is an error")
    t.add_argument("--qos", type=int, default=1, choices=(0, 1), help="telemetry QoS (default 1)")
    t.add_argument("--rates", help="rates of the periodic topics in Hz: telemetry packets, summary (default every "
                   "tick), status (default 0.2) and topology (default 0.1; a twin with the network), "
                   "e.g. hk=1,orbit=0.2,summary=0.2")
    t.add_argument("--sat-rates", help="per-satellite rates, e.g. 'STARLINK-1008:hk=10,orbit=1;STARLINK-1012:hk=0'")
    t.add_argument("--replay-mb", type=float, default=256.0, help="telemetry kept for replay requests (MiB)")
    t.add_argument("--state-dir", help="where the birth sequence counter is kept")
    t.add_argument("--overload", default="wait", choices=("wait", "shed"),
                   help="when the broker link cannot keep up: wait (the sim clock waits, nothing is dropped; "
                        "default) or shed (keep pace, shed per-satellite packets lowest priority first, counted)")
    t.add_argument("--max-backlog", type=int,
                   help="messages the broker has not taken yet that the twin allows before it waits or sheds "
                        "(default: two ticks of telemetry)")
    t.add_argument("--shard", type=arg_types.shard, metavar="K/N",
                   help="run shard K of the fleet split into N by whole orbital planes (docs/scaling.md#shards): "
                        "this process steps only its satellites, publishes their topics and its own fleet topics "
                        "under {prefix}/shard/K, and leaves requests for other satellites to their shards; with the "
                        "network model the shards exchange their mesh inputs each tick and step in lockstep; needs "
                        "an external broker (--mqtt) that every shard uses")
    w = p.add_argument_group("telemetry policy and budget (docs/mqtt.md#telemetry-policy-and-budget)")
    w.add_argument("--watch", default="all", metavar="SELECTION",
                   help="satellites that publish per-satellite topics sat/{sat}/tm/{packet}: all (default), none, "
                        "name globs ('STARLINK-10*'), terms 'names=GLOB,GLOB;alt_km=LO:HI;inc_deg=LO:HI;sats=A,B' "
                        "or a JSON selector like a fleet command's select; changed at run time by the set_watch "
                        "command")
    w.add_argument("--frames", default="all", choices=("all", "watched", "off"),
                   help="fleet frames fleet/tm/{packet} (what the InfluxDB bridge stores) carry all satellites "
                        "(default), only the watched ones, or are off")
    w.add_argument("--aggregates", default="off", metavar="on|off|HZ",
                   help="per-shell and per-plane aggregates on fleet/agg/shell/{shell} and "
                        "fleet/agg/plane/{shell}/{plane}: off (default), on (1 Hz) or a rate in Hz")
    w.add_argument("--sink-ceilings", metavar="FILE",
                   help="what the broker and InfluxDB of this deployment hold (TOML: [mqtt] messages_per_s, "
                        "bytes_per_s; [influx] field_values_per_s; default: the shipped twin/data/"
                        "sink_ceilings.toml, measured by orbitwin bench mqtt and influx on a 2-core machine)")
    w.add_argument("--over-budget", action="store_true",
                   help="run even when the policy's budget exceeds a ceiling (a warning instead of a refusal)")
    k = p.add_argument_group("signed requests")
    k.add_argument("--keys", metavar="FILE", help="request key file (TOML: key id -> secret and the commands and "
                   "faults it may issue): only signed requests are taken (docs/mqtt.md#signed-requests)")
    k.add_argument("--allow-unsigned", action="store_true",
                   help="with --keys: take unsigned requests too (their replies say authenticated: false)")
    k.add_argument("--auth-window", type=float, default=30.0, metavar="S",
                   help="how far (s) a signed request's issue time may be from this machine's clock (default 30)")
    p.set_defaults(func=cmd_run)


def broker_port(text: str) -> int:
    """``--broker-port``: a TCP port, 0..65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 0..65535 (0: any free port), got {text!r}")
    return port


def cmd_run(a: argparse.Namespace) -> int:
    from twin.runtime.launch import EMBEDDED_PLACEHOLDER_URL, RunSpec, run_twin
    from twin.runtime.mqtt_link import LinkSettings

    use_mqtt = not a.no_mqtt
    if a.broker_port is not None and (a.mqtt or not use_mqtt):
        raise ValueError("--broker-port sets the embedded broker's port: it cannot go with --mqtt or --no-mqtt")
    if a.shard is not None and not (a.mqtt and use_mqtt):
        raise ValueError("--shard needs --mqtt: the shards of a fleet publish to one broker (or broker cluster)")
    spec = RunSpec(
        fleet=dataclasses.replace(fleet_options(a), shard=a.shard), seed_given=a.seed is not None, speed=a.speed, duration_s=a.duration,
        scenario_path=a.scenario, use_mqtt=use_mqtt,
        # bad options fail before the fleet is built
        mqtt=mqtt_settings_from_args(a) if a.mqtt and use_mqtt else None,
        embedded_template=(mqtt_settings_from_args(a, EMBEDDED_PLACEHOLDER_URL)
                           if use_mqtt and not a.mqtt else None),
        link=LinkSettings(prefix=a.prefix, shard=None if a.shard is None else a.shard.split("/")[0],
                          client_id=a.client_id, qos=a.qos, state_dir=a.state_dir,
                          overload=a.overload, max_backlog=a.max_backlog),
        rates=a.rates, sat_rates=a.sat_rates, replay_bytes=int(a.replay_mb * 2**20),
        connect_timeout_s=a.connect_timeout, rows=a.rows, refresh_s=a.refresh,
        tty=sys.stdout.isatty() and not a.plain, keys_path=a.keys, allow_unsigned=a.allow_unsigned,
        auth_window_s=a.auth_window, broker_port=a.broker_port, events=a.events, watch=a.watch, frames=a.frames,
        aggregates=a.aggregates, sink_ceilings=a.sink_ceilings, over_budget=a.over_budget)
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    run_twin(spec, should_stop=lambda: stopping[0])
    return 0
