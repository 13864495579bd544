"""``orbitwin bridge grafana``: Grafana alert webhooks (or InfluxDB-polled conditions) become twin commands."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

from orbitwin.cli.key_options import add_key_options, client_id_and_signer
from orbitwin.cli.lifecycle import stop_on_signals
from orbitwin.cli.mqtt_options import SecretOnCommandLine, add_mqtt_options, mqtt_settings_from_args, secret_from_sources
from orbitwin.cli.status_line import add_status_options, grafana_line, report_until_stopped

ENV_WEBHOOK_USER = "GRAFANA_WEBHOOK_USER"  # the names Grafana's provisioned contact point reads too
ENV_WEBHOOK_PASSWORD = "GRAFANA_WEBHOOK_PASSWORD"
ENV_TOKEN = "ORBITWIN_GRAFANA_TOKEN"
ENV_INFLUX_PASSWORD = "ORBITWIN_INFLUX_PASSWORD"


def add_parser(bsub: Any) -> None:
    g = bsub.add_parser("grafana", help="Grafana alert webhooks (or InfluxDB-polled conditions) -> twin commands")
    add_mqtt_options(g, required=False, client_id="orbitwin-grafana-bridge",
                     url_help="broker URL mqtt://host[:port] or mqtts://... (required unless --check)")
    g.add_argument("--bridge-id", default="grafana", help="events go to {prefix}/bridge/{id}/event")
    g.add_argument("--rules", help="rule table TOML (default: the shipped dashboards/alert-actions.toml)")
    g.add_argument("--check", action="store_true", help="validate the rule table, print its rules and exit")
    w = g.add_argument_group(
        "webhook", "Credentials the webhook expects (what Grafana's contact point sends) come from the "
                   "environment or files, never the command line (ps shows it to every user): basic auth "
                   f"${ENV_WEBHOOK_USER} (or --user) and ${ENV_WEBHOOK_PASSWORD} (or --password-file, "
                   f"${ENV_WEBHOOK_PASSWORD}_FILE); a bearer token ${ENV_TOKEN} (or --token-file, ${ENV_TOKEN}_FILE).")
    w.add_argument("--listen", default="127.0.0.1:8090", help="webhook HOST:PORT (default 127.0.0.1:8090)")
    w.add_argument("--no-http", action="store_true", help="no webhook server (poller only)")
    w.add_argument("--user", help=f"HTTP basic auth user the webhook expects (default ${ENV_WEBHOOK_USER})")
    w.add_argument("--password-file", metavar="FILE", help="file holding the basic auth password")
    w.add_argument("--token-file", metavar="FILE", help="file holding the shared secret for Authorization: Bearer")
    for flag, instead in (("--password", f"${ENV_WEBHOOK_PASSWORD} or --password-file"),
                          ("--token", f"${ENV_TOKEN} or --token-file"),
                          ("--basic-auth", f"${ENV_WEBHOOK_USER} with ${ENV_WEBHOOK_PASSWORD} or --password-file")):
        w.add_argument(flag, action=SecretOnCommandLine, instead=instead, help=argparse.SUPPRESS)
    w.add_argument("--max-body-kb", type=float, default=1024.0,
                   help="largest webhook body; larger ones get 413 (default 1024 KiB)")
    g.add_argument("--reply-timeout", type=float, default=30.0, help="seconds to wait for the twin's reply")
    add_key_options(g)
    p = g.add_argument_group("InfluxDB poller")
    p.add_argument("--poll-influx", help="evaluate the [[condition]] tables against this InfluxDB 1.x URL")
    p.add_argument("--db", default="orbitwin", help="InfluxDB database for --poll-influx (default orbitwin)")
    p.add_argument("--influx-user", help="InfluxDB user for --poll-influx (password from the options below)")
    p.add_argument("--influx-password-file", metavar="FILE",
                   help=f"file holding the InfluxDB password (or ${ENV_INFLUX_PASSWORD})")
    p.add_argument("--influx-password", action=SecretOnCommandLine, instead=f"${ENV_INFLUX_PASSWORD} or "
                   "--influx-password-file", help=argparse.SUPPRESS)
    p.add_argument("--poll-interval", type=float, default=10.0, help="seconds between polls (default 10)")
    p.add_argument("--poll-once", action="store_true", help="poll once, act, wait for the replies, print JSON, exit")
    g.add_argument("--grafana", metavar="URL",
                   help="also post each command sent and the twin's reply as an annotation on the fleet overview "
                        "dashboard of the Grafana at URL (credentials $GRAFANA_TOKEN, or $GRAFANA_USER and "
                        "$GRAFANA_PASSWORD; failures are counted, never stop the bridge)")
    add_status_options(g)
    g.set_defaults(func=cmd_bridge_grafana)


def _webhook_auth(a: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(basic user, basic password, bearer token) from the options' files and the environment."""
    user = a.user or os.environ.get(ENV_WEBHOOK_USER) or None
    password = secret_from_sources(a.password_file, ENV_WEBHOOK_PASSWORD, "webhook password")
    token = secret_from_sources(a.token_file, ENV_TOKEN, "webhook token")
    if password is not None and user is None:
        raise ValueError(f"a webhook password needs a user (--user or ${ENV_WEBHOOK_USER})")
    if user is not None and password is None:
        raise ValueError(f"webhook user {user!r} has no password: set ${ENV_WEBHOOK_PASSWORD} or --password-file")
    return user, password, token


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
    user, password, token = _webhook_auth(a)
    client_id, signer = client_id_and_signer(a, "grafana-bridge")
    annotator = _annotator(a.grafana) if a.grafana else None
    http = not (a.no_http or a.poll_once)
    host, _, port = a.listen.rpartition(":")
    settings = GrafanaBridgeSettings(broker, prefix=a.prefix, client_id=client_id, listen_host=host or "127.0.0.1",
                                     listen_port=int(port) if http else None, basic_user=user,
                                     basic_password=password, token=token, max_body_bytes=int(a.max_body_kb * 1024),
                                     reply_timeout_s=a.reply_timeout, bridge_id=a.bridge_id, signer=signer,
                                     annotations=annotator)
    bridge = GrafanaBridge(settings, table)
    influx_password = secret_from_sources(a.influx_password_file, ENV_INFLUX_PASSWORD, "InfluxDB password")
    poller = (InfluxPoller(a.poll_influx, a.db, table.conditions, a.influx_user, influx_password)
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
              f"poll {a.poll_influx or 'off'}; {len(table.rules)} rules; commands "
              f"{'signed as ' + signer.kid if signer else 'unsigned'}", flush=True)
        report_until_stopped(stopping, a.report_every,
                             lambda: bridge.status() | ({"poller": poller.status()} if poller else {}),
                             grafana_line, a.json)
    finally:
        bridge.stop()
        if annotator is not None:
            annotator.stop()
    return 0


def _annotator(url: str) -> Any:
    """The annotations poster for ``--grafana``; an unreachable Grafana or refused credentials only warn."""
    import sys

    from bridges.grafana_api.annotations import Annotator
    from bridges.grafana_api.client import Grafana, GrafanaApiError, credential_from_env

    grafana = Grafana(url, credential_from_env())
    try:
        grafana.call("checking the credentials", grafana.api.folder.get_all_folders)
    except GrafanaApiError as exc:
        print(f"orbitwin bridge grafana: warning: annotations may fail: {exc}", file=sys.stderr, flush=True)
    return Annotator(grafana).start()
