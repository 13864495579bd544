"""``orbitwin bridge grafana``: Grafana alert webhooks (or InfluxDB-polled conditions) become twin commands."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from orbitwin.cli.lifecycle import report_until_stopped, stop_on_signals
from orbitwin.cli.mqtt_options import add_mqtt_options, mqtt_settings_from_args


def add_parser(bsub: Any) -> None:
    g = bsub.add_parser("grafana", help="Grafana alert webhooks (or InfluxDB-polled conditions) -> twin commands")
    add_mqtt_options(g, required=False, client_id="orbitwin-grafana-bridge",
                     url_help="broker URL mqtt://host[:port] or mqtts://... (required unless --check)")
    g.add_argument("--bridge-id", default="grafana", help="events go to {prefix}/bridge/{id}/event")
    g.add_argument("--rules", help="rule table TOML (default: the shipped dashboards/alert-actions.toml)")
    g.add_argument("--check", action="store_true", help="validate the rule table, print its rules and exit")
    w = g.add_argument_group("webhook")
    w.add_argument("--listen", default="127.0.0.1:8090", help="webhook HOST:PORT (default 127.0.0.1:8090)")
    w.add_argument("--no-http", action="store_true", help="no webhook server (poller only)")
    w.add_argument("--token", help="shared secret for Authorization: Bearer (or $ORBITWIN_GRAFANA_TOKEN)")
    w.add_argument("--basic-auth", help="USER:PASS for HTTP basic auth (or $ORBITWIN_GRAFANA_BASIC_AUTH, "
                                        "or $GRAFANA_WEBHOOK_USER and $GRAFANA_WEBHOOK_PASSWORD)")
    w.add_argument("--user", help="HTTP basic auth user the webhook expects (Grafana's contact point)")
    w.add_argument("--password", help="HTTP basic auth password the webhook expects (prefer "
                                      "$GRAFANA_WEBHOOK_PASSWORD: visible in ps)")
    w.add_argument("--max-body-kb", type=float, default=1024.0, help="largest webhook body (default 1024 KiB)")
    g.add_argument("--reply-timeout", type=float, default=30.0, help="seconds to wait for the twin's reply")
    p = g.add_argument_group("InfluxDB poller")
    p.add_argument("--poll-influx", help="evaluate the [[condition]] tables against this InfluxDB 1.x URL")
    p.add_argument("--db", default="orbitwin", help="InfluxDB database for --poll-influx (default orbitwin)")
    p.add_argument("--influx-user")
    p.add_argument("--influx-password")
    p.add_argument("--poll-interval", type=float, default=10.0, help="seconds between polls (default 10)")
    p.add_argument("--poll-once", action="store_true", help="poll once, act, wait for the replies, print JSON, exit")
    g.add_argument("--report-every", type=float, default=10.0, help="seconds between status lines")
    g.set_defaults(func=cmd_bridge_grafana)


def _webhook_auth(a: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(basic user, basic password, bearer token) from the options, else the environment."""
    token = a.token or os.environ.get("ORBITWIN_GRAFANA_TOKEN")
    if a.user:
        user, password = a.user, a.password if a.password is not None else os.environ.get("GRAFANA_WEBHOOK_PASSWORD", "")
    else:
        user, _, password = (a.basic_auth or os.environ.get("ORBITWIN_GRAFANA_BASIC_AUTH") or "").partition(":")
    if not user and os.environ.get("GRAFANA_WEBHOOK_USER"):  # what the provisioned contact point sends
        user, password = os.environ["GRAFANA_WEBHOOK_USER"], os.environ.get("GRAFANA_WEBHOOK_PASSWORD", "")
    return user or None, password or None, token


def cmd_bridge_grafana(a: argparse.Namespace) -> int:
    """Grafana alerts (webhook) and/or InfluxDB-polled conditions -> twin commands, per the rule table."""
    from bridges.alerts.poller import InfluxPoller
    from bridges.alerts.rules import load_table
    from bridges.alerts.webhook import GrafanaBridge, GrafanaBridgeSettings

    table = load_table(a.rules)
    if a.check:
        print(json.dumps({"rules": [r.name for r in table.rules], "conditions": [c["uid"] for c in table.conditions]}))
        return 0
    broker = mqtt_settings_from_args(a)
    if a.poll_once and not a.poll_influx:
        raise ValueError("--poll-once needs --poll-influx")
    if a.poll_influx and not table.conditions:
        raise ValueError("--poll-influx: the rule table has no [[condition]] tables")
    if a.password is not None and not a.user:
        raise ValueError("--password needs --user")
    user, password, token = _webhook_auth(a)
    http = not (a.no_http or a.poll_once)
    host, _, port = a.listen.rpartition(":")
    settings = GrafanaBridgeSettings(broker, prefix=a.prefix, client_id=a.client_id, listen_host=host or "127.0.0.1",
                                     listen_port=int(port) if http else None, basic_user=user,
                                     basic_password=password, token=token, max_body_bytes=int(a.max_body_kb * 1024),
                                     reply_timeout_s=a.reply_timeout, bridge_id=a.bridge_id)
    bridge = GrafanaBridge(settings, table)
    poller = (InfluxPoller(a.poll_influx, a.db, table.conditions, a.influx_user, a.influx_password)
              if a.poll_influx else None)
    stopping = stop_on_signals()
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
        print(f"orbitwin bridge grafana: {broker.redacted_url}; webhook {bridge.url if http else 'off'}; "
              f"poll {a.poll_influx or 'off'}; {len(table.rules)} rules", flush=True)
        report_until_stopped(stopping, a.report_every,
                             lambda: bridge.status() | ({"poller": poller.status()} if poller else {}))
    finally:
        bridge.stop()
    return 0
