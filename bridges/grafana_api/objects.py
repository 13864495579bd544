"""The Grafana HTTP API bodies of what ``orbitwin dashboards build`` provisions from files.

The same generator functions write ``dashboards/provisioning`` and ``dashboards/json`` (the
committed files equal them: ``tests/test_dashboards.py``); here their objects become API bodies for
one folder by uid: the folder, the InfluxDB datasource, the dashboards, the alert rule groups (each
rule with ``folderUID`` and ``ruleGroup``), the webhook contact point, and the notification policy as
one route (matching the label ``service=orbitwin`` every rule carries) to insert into the Grafana's
existing policy tree rather than replace it.

``${VAR}`` placeholders (Grafana's file provisioning reads them from its environment) are
expanded from ours: ``$INFLUXDB_BUCKET``, ``$INFLUXDB_TOKEN``, ``$GRAFANA_WEBHOOK_USER`` and
``$GRAFANA_WEBHOOK_PASSWORD``; a missing one is an error naming it.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dashboards import alerts, build

SERVICE_MATCHER = [*alerts.SERVICE_LABEL, "=", *alerts.SERVICE_LABEL.values()]  # the label every alert rule has
DEFAULT_DATASOURCE_URL = "http://influxdb:8086"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_S = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Target:
    """Where the objects go: the folder (uid, title), and the URLs Grafana reaches InfluxDB and the bridge at."""

    folder_uid: str = alerts.FOLDER_UID
    folder_title: str = alerts.FOLDER
    datasource_url: str = DEFAULT_DATASOURCE_URL
    webhook_url: str = alerts.WEBHOOK_URL

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.folder_uid):
            raise ValueError(f"folder uid {self.folder_uid!r}: 1-40 letters, digits, '-' or '_' (Grafana's uid rule)")
        if not self.folder_title.strip():
            raise ValueError("folder title: a non-empty title is required")
        for name, url in (("datasource URL", self.datasource_url), ("webhook URL", self.webhook_url)):
            if not re.match(r"https?://[^/\s]+", url):
                raise ValueError(f"{name} {url!r}: an http:// or https:// URL is required")


@dataclass
class Objects:
    """Every API body :func:`bridges.grafana_api.push.push` upserts, in the order it does."""

    folder: dict[str, str]
    datasource: dict[str, Any]
    dashboards: list[dict[str, Any]]
    rule_groups: list[dict[str, Any]]
    contact_points: list[dict[str, Any]]
    route: dict[str, Any]
    secrets: dict[str, list[str]] = field(default_factory=dict)  # kind -> settings Grafana never returns


def expand(obj: Any, env: Mapping[str, str], missing: set[str]) -> Any:
    """``obj`` with every ``${VAR}`` in its strings replaced from ``env``; unset names are added to ``missing``."""
    if isinstance(obj, str):
        def sub(m: re.Match[str]) -> str:
            if m[1] not in env:
                missing.add(m[1])
                return m[0]
            return env[m[1]]
        return _PLACEHOLDER.sub(sub, obj)
    if isinstance(obj, dict):
        return {k: expand(v, env, missing) for k, v in obj.items()}
    if isinstance(obj, list):
        return [expand(v, env, missing) for v in obj]
    return obj


def duration_s(text: str) -> int:
    """``"30s"``, ``"1m"``, ``"2h"`` -> seconds."""
    m = re.fullmatch(r"(\d+)([smh])", text)
    if m is None:
        raise ValueError(f"duration {text!r}: a whole number of s, m or h is required")
    return int(m[1]) * _DURATION_S[m[2]]


def _datasource(t: Target) -> dict[str, Any]:
    [ds] = build.datasource()["datasources"]
    body = {k: v for k, v in ds.items() if k != "editable"}  # file provisioning only
    body["url"] = t.datasource_url
    body["isDefault"] = False  # an existing Grafana keeps its default datasource; the dashboards name this one by uid
    return body


def _rule_groups(t: Target) -> list[dict[str, Any]]:
    out = []
    for g in alerts.alert_rules()["groups"]:
        rules = [{**r, "folderUID": t.folder_uid, "ruleGroup": g["name"], "orgID": g["orgId"]} for r in g["rules"]]
        out.append({"title": g["name"], "folderUid": t.folder_uid, "interval": duration_s(g["interval"]),
                    "rules": rules})
    return out


def _contact_points(t: Target) -> list[dict[str, Any]]:
    out = []
    for cp in alerts.contact_points()["contactPoints"]:
        for r in cp["receivers"]:
            settings = {**r["settings"], "url": t.webhook_url}
            out.append({"uid": r["uid"], "name": cp["name"], "type": r["type"], "settings": settings,
                        "disableResolveMessage": r["disableResolveMessage"]})
    return out


def _route() -> dict[str, Any]:
    """The file-provisioned policy tree's root as one route of an existing tree, for the rules' label."""
    [root] = alerts.notification_policies()["policies"]
    route = {k: v for k, v in root.items() if k != "orgId"}
    return {**route, "object_matchers": [SERVICE_MATCHER]}  # "continue" false: Grafana omits it when read


def build_objects(target: Target | None = None, env: Mapping[str, str] | None = None) -> Objects:
    """Every body for ``target``, placeholders expanded from ``env`` (default the process environment)."""
    t = target or Target()
    env = os.environ if env is None else env
    missing: set[str] = set()
    dashboards = [copy.deepcopy(d) for d in build.dashboards().values()]
    for d in dashboards:
        d.pop("id", None)
    objs = Objects(
        folder={"uid": t.folder_uid, "title": t.folder_title},
        datasource=expand(_datasource(t), env, missing),
        dashboards=dashboards,
        rule_groups=expand(_rule_groups(t), env, missing),
        contact_points=expand(_contact_points(t), env, missing),
        route=_route(),
        secrets={"datasource": ["secureJsonData"], "contact point": ["password", "authorization_credentials"]})
    if missing:
        raise ValueError(f"set {', '.join('$' + m for m in sorted(missing))} in the environment: the values Grafana's "
                         "file provisioning reads from its own (the InfluxDB bucket and token the datasource "
                         "queries, the webhook's basic auth the bridge expects)")
    return objs
