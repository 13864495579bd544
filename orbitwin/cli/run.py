"""``orbitwin run``: step the fleet, publish it on MQTT (own broker or yours) and show a live status table."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from orbitwin.cli.fleet_options import add_fleet_options, fleet_options
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="step the fleet and show a live status table")
    add_fleet_options(p)
    p.add_argument("--speed", default="real", help="real, xN (e.g. x10) or max (default real)")
    p.add_argument("--duration", type=float, help="sim seconds to run (default: until Ctrl-C)")
    p.add_argument("--rows", type=int, default=12, help="satellites shown in the table")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between table refreshes")
    p.add_argument("--plain", action="store_true", help="no screen clearing, one block per refresh")
    p.add_argument("--scenario", help="scenario file (TOML/JSON) of timed faults and commands")
    add_mqtt_options(p, required=False, connect_timeout_s=10.0,
                     url_help="broker URL mqtt://host[:port] or mqtts://... (default: start an embedded broker)")
    t = p.add_argument_group("twin on MQTT")
    t.add_argument("--no-mqtt", action="store_true", help="run without MQTT (status table only)")
    t.add_argument("--qos", type=int, default=1, choices=(0, 1), help="telemetry QoS (default 1)")
    t.add_argument("--rates", help="packet rates, e.g. hk=1,orbit=0.2,thermal=0.1 (Hz)")
    t.add_argument("--sat-rates", help="per-satellite rates, e.g. 'STARLINK-1008:hk=10,orbit=1;STARLINK-1012:hk=0'")
    t.add_argument("--replay-mb", type=float, default=256.0, help="telemetry kept for replay requests (MiB)")
    t.add_argument("--state-dir", help="where the birth sequence counter is kept")
    p.set_defaults(func=cmd_run)


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
    from twin.runtime.clock import Pacer, parse_speed
    from twin.runtime.run_loop import build_twin, run_loop
    from twin.runtime.scenario import apply_scenario, load_scenario
    from twin.runtime.status_table import render

    opts = fleet_options(a)
    scenario = load_scenario(a.scenario) if a.scenario else None
    if scenario is not None and scenario.seed is not None and a.seed is None:
        opts.seed = scenario.seed
    broker_settings = mqtt_settings_from_args(a) if a.mqtt and not a.no_mqtt else None  # bad options fail first
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
            text += (f"\nmqtt {service.link.broker.redacted_url}  connected {st['connected']}  bseq {st['bseq']}  "
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
            from twin.contract.telemetry_encoder import PacketSchedule, parse_rates
            from twin.runtime.embedded_broker import start_embedded_broker
            from twin.runtime.mqtt_link import LinkSettings, MqttLink
            from twin.runtime.mqtt_service import TwinService

            schedule = PacketSchedule(twin.n, twin.dt_s, parse_rates(a.rates), _sat_rates(a.sat_rates, twin.index))
            if broker_settings is None:
                broker = start_embedded_broker()
                broker_settings = mqtt_settings_from_args(a, broker.url, getattr(broker, "protocol", "5"))
                print(f"orbitwin: embedded MQTT broker ({broker.kind}) at {broker.url}\n"
                      f"  watch:   mosquitto_sub -h {broker.host} -p {broker.port} -t '{a.prefix}/#' -v\n"
                      f"  command: mosquitto_pub -h {broker.host} -p {broker.port} -t '{a.prefix}/sat/{twin.names[0]}/cmd'"
                      f" -m '{{\"command\":\"throttle\",\"args\":{{\"factor\":0.5}}}}'", flush=True)
            link = MqttLink(broker_settings, LinkSettings(prefix=a.prefix, client_id=a.client_id, qos=a.qos,
                                                          state_dir=a.state_dir))
            service = TwinService(twin, link, schedule, replay_bytes=int(a.replay_mb * 2**20))
            link.start(wait_s=a.connect_timeout)
            print(f"orbitwin: connected to {broker_settings.redacted_url} as bseq {link.bseq}; "
                  f"{schedule.messages_per_s():.0f} telemetry messages/s", flush=True)
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
