"""``orbitwin dashboards push``: upsert the dashboards and alerting into an existing Grafana (HTTP API).

In order, each read first and written only when it differs (a second push writes nothing):

- the folder by uid (``/api/folders``); a folder of the same title under another uid is an error
  naming that uid, never a second folder of the same title;
- the datasource by uid (``/api/datasources/uid/{uid}``); its token is write-only in Grafana, so it
  counts as unchanged when set, unless ``resend_secrets``;
- the dashboards (``POST /api/dashboards/db`` with ``folderUid`` and ``overwrite``), compared
  without ``id`` and ``version``, which Grafana assigns;
- the contact point (``/api/v1/provisioning/contact-points``; its password is redacted when read,
  compared like the token);
- the alert rule groups (``PUT /api/v1/provisioning/folder/{folderUid}/rule-groups/{group}``: the
  whole group, the rules in the folder by uid); counted per rule;
- the notification policy: one route (``service=orbitwin``) first in the Grafana's policy tree,
  the rest of the tree kept (``/api/v1/provisioning/policies``).

Alert rules and the contact point get provenance ``api`` (read-only in Grafana's UI) unless
``editable`` (header ``X-Disable-Provenance``); the policy tree is always written without
provenance, so the Grafana's own routes stay editable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridges.grafana_api.client import Grafana, GrafanaApiError
from bridges.grafana_api.objects import SERVICE_MATCHER, Objects

MIN_GRAFANA = (10, 0)  # whole rule groups with rules over the provisioning API, dashboards by folderUid
KINDS = ("folder", "datasource", "dashboards", "contact point", "alert rules", "notification policy")
NOTE = "orbitwin dashboards push"
_ASSIGNED = ("id", "version")  # dashboard keys Grafana assigns


@dataclass
class PushReport:
    """created / updated / unchanged per kind (:data:`KINDS`)."""

    grafana: str
    version: str
    dry_run: bool = False
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in KINDS})

    @property
    def changes(self) -> int:
        return sum(c["created"] + c["updated"] for c in self.counts.values())

    def lines(self) -> list[str]:
        """One line per kind, then the summary."""
        would = "would be " if self.dry_run else ""
        out = [f"{k}: " + ", ".join(f"{c[s]} {would if s != 'unchanged' else ''}{s}"
                                    for s in ("created", "updated", "unchanged"))
               for k, c in self.counts.items()]
        head = f"Grafana {self.version} at {self.grafana}: "
        if not self.changes:
            return out + [head + "nothing to change" if self.dry_run else head + "nothing changed"]
        return out + [head + f"{self.changes} objects {would or ''}created or updated"
                      + (" (dry run: nothing written)" if self.dry_run else "")]


def subset(want: Any, have: Any) -> bool:
    """Whether ``have`` holds ``want``: every key of a dict ``want`` equal (recursively), lists item by item."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(subset, want, have))
    return bool(want == have)


def _without(d: dict[str, Any], keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


class Pusher:
    """One push into one Grafana: each ``_<kind>`` reads, compares, writes when needed and counts."""

    def __init__(self, grafana: Grafana, objects: Objects, *, dry_run: bool = False, editable: bool = False,
                 resend_secrets: bool = False) -> None:
        self.g, self.o, self.api = grafana, objects, grafana.api
        self.dry_run, self.editable, self.resend_secrets = dry_run, editable, resend_secrets
        self.report = PushReport(grafana.url, "?", dry_run)

    def run(self) -> PushReport:
        self.report.version = self.g.require_version(MIN_GRAFANA, "orbitwin dashboards push")
        self._folder()
        self._datasource()
        for d in self.o.dashboards:
            self._dashboard(d)
        for cp in self.o.contact_points:
            self._contact_point(cp)
        for group in self.o.rule_groups:
            self._rule_group(group)
        self._policy()
        return self.report

    def _count(self, kind: str, status: str, n: int = 1) -> None:
        self.report.counts[kind][status] += n

    def _write(self, what: str, fn: Any, *args: Any, **kw: Any) -> None:
        if not self.dry_run:
            self.g.call(what, fn, *args, **kw)

    def _folder(self) -> None:
        uid, title = self.o.folder["uid"], self.o.folder["title"]
        cur = self.g.call(f"reading folder {uid!r}", self.api.folder.get_folder, uid, missing_ok=True)
        if cur is None:
            folders = self.g.call("listing the folders", self.api.folder.get_all_folders) or []
            other = [f["uid"] for f in folders if f.get("title") == title]
            if other:
                raise GrafanaApiError(f"Grafana at {self.g.url} has a folder {title!r} with uid {other[0]!r}, not "
                                      f"{uid!r} (file provisioning gives it a generated uid): push into it with "
                                      f"--folder-uid {other[0]} rather than make a second {title!r}")
            self._write(f"creating folder {uid!r}", self.api.folder.create_folder, title, uid=uid)
            self._count("folder", "created")
        elif cur.get("title") == title:
            self._count("folder", "unchanged")
        else:
            self._write(f"renaming folder {uid!r}", self.api.folder.update_folder, uid, title=title,
                        version=cur.get("version"))
            self._count("folder", "updated")

    def _datasource(self) -> None:
        body = self.o.datasource
        uid = body["uid"]
        cur = self.g.call(f"reading datasource {uid!r}", self.api.datasource.get_datasource_by_uid, uid,
                          missing_ok=True)
        if cur is None:
            self._write(f"creating datasource {uid!r}", self.api.datasource.create_datasource, body)
            self._count("datasource", "created")
            return
        secrets_set = all((cur.get("secureJsonFields") or {}).get(k) for k in body.get("secureJsonData", {}))
        if subset(_without(body, ["secureJsonData"]), cur) and secrets_set and not self.resend_secrets:
            self._count("datasource", "unchanged")
            return
        if cur.get("readOnly"):
            raise GrafanaApiError(f"datasource {uid!r} in Grafana at {self.g.url} is provisioned from files "
                                  "(read-only): change it in its provisioning file")
        self._write(f"updating datasource {uid!r}", self.api.datasource.update_datasource_by_uid, uid,
                    {**body, "version": cur.get("version")})
        self._count("datasource", "updated")

    def _dashboard(self, model: dict[str, Any]) -> None:
        uid, folder = model["uid"], self.o.folder["uid"]
        cur = self.g.call(f"reading dashboard {uid!r}", self.api.dashboard.get_dashboard, uid, missing_ok=True)
        if cur is not None and _without(cur.get("dashboard", {}), _ASSIGNED) == _without(model, _ASSIGNED) \
                and cur.get("meta", {}).get("folderUid") == folder:
            self._count("dashboards", "unchanged")
            return
        self._write(f"saving dashboard {uid!r}", self.api.dashboard.update_dashboard,
                    {"dashboard": _without(model, ("id",)), "folderUid": folder, "overwrite": True, "message": NOTE})
        self._count("dashboards", "created" if cur is None else "updated")

    @property
    def _provenance(self) -> str:
        return "" if self.editable else "api"

    def _contact_point(self, body: dict[str, Any]) -> None:
        secret = self.o.secrets.get("contact point", [])
        found = self.g.call("reading the contact points", self.api.alertingprovisioning.get_contactpoints,
                            name=body["name"]) or []
        cur = next((c for c in found if c.get("uid") == body["uid"]), None)
        if cur is None:
            self._write(f"creating contact point {body['name']!r}", self.api.alertingprovisioning.create_contactpoint,
                        body, disable_provenance=self.editable)
            self._count("contact point", "created")
            return
        plain = {**body, "settings": _without(body["settings"], secret)}
        secrets_set = all(cur.get("settings", {}).get(k) for k in body["settings"] if k in secret)
        if subset(plain, cur) and secrets_set and not self.resend_secrets \
                and (cur.get("provenance") or "") == self._provenance:
            self._count("contact point", "unchanged")
            return
        self._write(f"updating contact point {body['name']!r}", self.api.alertingprovisioning.update_contactpoint,
                    body["uid"], body, disable_provenance=self.editable)
        self._count("contact point", "updated")

    def _rule_group(self, group: dict[str, Any]) -> None:
        folder, title = group["folderUid"], group["title"]
        cur = self.g.call(f"reading rule group {title!r}", self.api.alertingprovisioning.get_rule_group, folder, title,
                          missing_ok=True)
        stored = {r.get("uid"): r for r in (cur or {}).get("rules") or []}
        changed = cur is None or cur.get("interval") != group["interval"] or set(stored) - {
            r["uid"] for r in group["rules"]}
        for rule in group["rules"]:
            have = stored.get(rule["uid"])
            if have is None:
                status = "created"
            elif subset(rule, have) and (have.get("provenance") or "") == self._provenance:
                status = "unchanged"
            else:
                status = "updated"
            self._count("alert rules", status)
            changed = changed or status != "unchanged"
        if changed:
            self._write(f"saving rule group {title!r}", self.api.alertingprovisioning.update_rule_group, folder,
                        title, group, disable_provenance=self.editable)

    def _policy(self) -> None:
        tree = self.g.call("reading the notification policy tree",
                           self.api.alertingprovisioning.get_notification_policy_tree)
        if not isinstance(tree, dict) or not tree.get("receiver"):
            raise GrafanaApiError(f"Grafana at {self.g.url} returned no notification policy tree")
        routes = list(tree.get("routes") or [])
        ours = [i for i, r in enumerate(routes) if r.get("object_matchers") == [SERVICE_MATCHER]]
        if ours and ours[0] == 0 and subset(self.o.route, routes[0]):
            self._count("notification policy", "unchanged")
            return
        others = [r for i, r in enumerate(routes) if i not in ours]
        new = {**_without(tree, ["provenance"]), "routes": [self.o.route, *others]}
        self._write("saving the notification policy tree",
                    self.api.alertingprovisioning.set_notification_policy_tree, new, disable_provenance=True)
        self._count("notification policy", "updated" if ours else "created")


def push(grafana: Grafana, objects: Objects, *, dry_run: bool = False, editable: bool = False,
         resend_secrets: bool = False) -> PushReport:
    """Upsert ``objects`` into ``grafana`` (nothing written with ``dry_run``); GrafanaApiError on any failure."""
    return Pusher(grafana, objects, dry_run=dry_run, editable=editable, resend_secrets=resend_secrets).run()
