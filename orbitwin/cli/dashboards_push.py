"""``orbitwin dashboards push``: the dashboards and alerting into an existing Grafana over its HTTP API.

The ``dashboards`` parser is the generator's (:func:`dashboards.build.add_cli`); this module adds
the ``push`` action and its options. Credentials come from the environment only:
``$GRAFANA_TOKEN`` (service-account token) or ``$GRAFANA_USER`` / ``$GRAFANA_PASSWORD``.
"""

from __future__ import annotations

import argparse
from typing import Any

from dashboards.alerts import FOLDER, FOLDER_UID, WEBHOOK_URL
from dashboards.build import add_cli

from bridges.grafana_api.objects import DEFAULT_DATASOURCE_URL, Target, build_objects

DEFAULT_TIMEOUT_S = 10.0


def add_parser(sub: Any) -> None:
    """``orbitwin dashboards {build,push}``: the generator's parser with the push options added."""
    p = add_cli(sub, {"push": cmd_push})
    g = p.add_argument_group(
        "push", f"push: upsert the folder, datasource, dashboards, contact point, alert rules and a notification "
                f"route into an existing Grafana (HTTP API, Grafana 10+). Credentials from the environment: "
                "$GRAFANA_TOKEN (a service-account token, Admin role) or $GRAFANA_USER and $GRAFANA_PASSWORD; the "
                f"datasource and contact point read $INFLUXDB_BUCKET, $INFLUXDB_TOKEN, $GRAFANA_WEBHOOK_USER and "
                f"$GRAFANA_WEBHOOK_PASSWORD, as file provisioning does.")
    g.add_argument("--grafana", metavar="URL", help="Grafana's URL, e.g. https://grafana.example.org (required by push)")
    g.add_argument("--folder-uid", default=FOLDER_UID,
                   help=f"uid of the folder the dashboards and alert rules go to (default {FOLDER_UID})")
    g.add_argument("--folder-title", default=FOLDER, help=f"that folder's title (default {FOLDER})")
    g.add_argument("--datasource-url", default=DEFAULT_DATASOURCE_URL,
                   help=f"InfluxDB's URL as Grafana reaches it (default {DEFAULT_DATASOURCE_URL})")
    g.add_argument("--webhook-url", default=WEBHOOK_URL,
                   help=f"the Grafana bridge's webhook URL as Grafana reaches it (default {WEBHOOK_URL})")
    g.add_argument("--editable", action="store_true",
                   help="let users edit the pushed alert rules and contact point in Grafana's UI "
                        "(X-Disable-Provenance; default: read-only there, like file provisioning)")
    g.add_argument("--resend-secrets", action="store_true",
                   help="send the InfluxDB token and webhook password even when nothing else changed "
                        "(Grafana never returns them, so a changed secret is not seen otherwise)")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help=f"seconds to wait for each Grafana request (default {DEFAULT_TIMEOUT_S:g})")
    g.add_argument("--dry-run", action="store_true", help="read Grafana and print what would change; write nothing")


def cmd_push(a: argparse.Namespace) -> int:
    """Push and print created / updated / unchanged per kind; errors are one line (exit 2)."""
    if not a.grafana:
        raise ValueError("dashboards push: --grafana URL is required")
    target = Target(folder_uid=a.folder_uid, folder_title=a.folder_title, datasource_url=a.datasource_url,
                    webhook_url=a.webhook_url)
    objects = build_objects(target)
    from bridges.grafana_api.client import Grafana, credential_from_env  # grafana-client: only when pushing
    from bridges.grafana_api.push import push

    grafana = Grafana(a.grafana, credential_from_env(), a.timeout)
    report = push(grafana, objects, dry_run=a.dry_run, editable=a.editable, resend_secrets=a.resend_secrets)
    for line in report.lines():
        print(f"orbitwin dashboards push: {line}")
    return 0
