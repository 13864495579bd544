"""FakeGrafana: a FAKE of Grafana's HTTP API, protocol level, for the endpoints Orbitwin uses. Not Grafana.

Grafana cannot run here, so the tests of ``orbitwin dashboards push`` and the bridge's annotations
talk HTTP to this stand-in: a ``ThreadingHTTPServer`` on a free port with in-memory state, following
Grafana 11's documented HTTP API (grafana.com/docs/grafana/latest/developers/http_api/) for exactly:

- ``GET /api/health`` (no auth), ``GET /api/frontend/settings``;
- ``GET/POST /api/folders``, ``GET/PUT /api/folders/{uid}`` (409 same uid or same title, 412 stale version);
- ``GET/PUT /api/datasources/uid/{uid}``, ``POST /api/datasources`` (409 same name or uid; secrets write-only:
  ``secureJsonFields`` when read);
- ``GET /api/dashboards/uid/{uid}``, ``POST /api/dashboards/db`` (``folderUid``, ``overwrite``; 412
  ``version-mismatch`` / ``name-exists``; 400 unknown folder; Grafana assigns ``id`` and ``version``);
- ``GET/PUT /api/v1/provisioning/folder/{folderUid}/rule-groups/{group}`` (whole group; folder must
  exist; every query's datasource must exist; uid <= 40; rule titles unique in a folder; provenance
  ``api`` unless ``X-Disable-Provenance``);
- ``GET/POST /api/v1/provisioning/contact-points``, ``PUT .../contact-points/{uid}`` (202; ``password``
  read back as ``[REDACTED]``);
- ``GET/PUT /api/v1/provisioning/policies`` (202; every receiver must exist);
- ``POST/GET /api/annotations``.

Authentication as Grafana: ``Authorization: Bearer <token>`` (service-account tokens with a role) or
basic auth (users with a role); anything else 401; a Viewer writing 403. Writes need
``Content-Type: application/json``. ``requests`` records (method, path) of every call.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REDACTED = "[REDACTED]"
SECURE_SETTINGS = {"password", "authorization_credentials"}  # the webhook integration's secure fields
NO_DATA = {"NoData", "Alerting", "OK"}
EXEC_ERR = {"Error", "Alerting", "OK"}


class HttpError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, **extra}


class FakeGrafana:
    """The fake's state and server. ``url`` once started; ``tokens``/``users`` map credentials to roles."""

    def __init__(self, version: str = "11.6.0", tokens: dict[str, str] | None = None,
                 users: dict[str, tuple[str, str]] | None = None) -> None:
        self.version = version
        self.tokens = tokens if tokens is not None else {"glsa_admin": "Admin", "glsa_viewer": "Viewer"}
        self.users = users if users is not None else {"admin": ("admin-pw", "Admin")}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.requests: list[tuple[str, str]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"dashboard", "folderUid"}
        self.rules: dict[str, dict[str, Any]] = {}
        self.groups: dict[tuple[str, str], int] = {}  # (folderUid, title) -> interval s
        self.contact_points: dict[str, dict[str, Any]] = {
            "default-email": {"uid": "default-email", "name": "grafana-default-email", "type": "email",
                              "settings": {"addresses": "<example@email.com>"}, "disableResolveMessage": False,
                              "provenance": ""}}
        self.policy: dict[str, Any] = {"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]}
        self.annotations: list[dict[str, Any]] = []
        self.httpd: ThreadingHTTPServer | None = None

    # --- server ---------------------------------------------------------------------------------
    def start(self) -> FakeGrafana:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="fake-grafana", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    # --- auth -----------------------------------------------------------------------------------
    def role(self, header: str | None) -> str:
        scheme, _, cred = (header or "").partition(" ")
        if scheme.lower() == "bearer" and cred in self.tokens:
            return self.tokens[cred]
        if scheme.lower() == "basic":
            try:
                user, _, pw = base64.b64decode(cred, validate=True).decode().partition(":")
            except ValueError:
                raise HttpError(401, "invalid username or password") from None
            if user in self.users and self.users[user][0] == pw:
                return self.users[user][1]
            raise HttpError(401, "invalid username or password")
        raise HttpError(401, "Unauthorized" if not header else "Invalid API key", messageId="auth.unauthorized")

    # --- routes ---------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return 200, {"commit": "fake", "database": "ok", "version": self.version}
        role = self.role(headers.get("Authorization"))
        if method != "GET" and role == "Viewer":
            raise HttpError(403, "You'll need additional permissions to perform this action. "
                                 "Permissions needed: any of folders:create")
        if method != "GET" and (not (headers.get("Content-Type") or "").startswith("application/json")
                                or not isinstance(body, dict)):
            raise HttpError(400, "bad request data")
        provenance = "" if headers.get("X-Disable-Provenance") == "true" else "api"
        with self.lock:
            for pattern, want, fn in self._routes:
                m = re.fullmatch(pattern, path)
                if m and method == want:
                    return fn(self, *m.groups(), body=body, query=query, provenance=provenance)
        raise HttpError(404, "Not found")

    def _settings(self, *_: Any, **__: Any) -> tuple[int, Any]:
        return 200, {"buildInfo": {"version": self.version, "edition": "Open Source"}}

    def _folders(self, **_: Any) -> tuple[int, Any]:
        return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()]

    def _folder(self, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.folders:
            raise HttpError(404, "folder not found")
        return 200, self.folders[uid]

    def _create_folder(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        title, uid = body.get("title"), body.get("uid")
        if not isinstance(title, str) or not title.strip():
            raise HttpError(400, "folder title cannot be empty")
        if uid in self.folders:
            raise HttpError(409, "a folder with the same uid already exists")
        if any(f["title"] == title for f in self.folders.values()):
            raise HttpError(409, "a folder with the same name already exists in the current location")
        uid = uid or f"gen{next(self.ids)}"
        self.folders[uid] = {"id": next(self.ids), "uid": uid, "title": title, "version": 1, "url": f"/dashboards/f/{uid}"}
        return 200, self.folders[uid]

    def _update_folder(self, uid: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        f = self.folders.get(uid)
        if f is None:
            raise HttpError(404, "folder not found")
        if not body.get("overwrite") and body.get("version") != f["version"]:
            raise HttpError(412, "the folder has been changed by someone else", status="version-mismatch")
        f.update(title=body.get("title", f["title"]), version=f["version"] + 1)
        return 200, f

    def _datasource(self, uid: str, **_: Any) -> tuple[int, Any]:
        if uid not in self.datasources:
            raise HttpError(404, "Data source not found")
        ds = copy.deepcopy(self.datasources[uid])
        ds["secureJsonFields"] = {k: True for k in ds.pop("secureJsonData", {})}
        return 200, ds

    def _check_datasource(self, body: dict[str, Any], uid: str | None) -> None:
        for key in ("name", "type", "access"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise HttpError(400, f"bad request data: {key} is required")
        if any(d["name"] == body["name"] and d["uid"] != uid for d in self.datasources.values()):
            raise HttpError(409, "data source with the same name already exists")

    def _create_datasource(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        self._check_datasource(body, None)
        uid = body.get("uid") or f"ds{next(self.ids)}"
        if uid in self.datasources:
            raise HttpError(409, "data source with the same uid already exists")
        self.datasources[uid] = {**body, "uid": uid, "id": next(self.ids), "orgId": 1, "version": 1, "readOnly": False}
        return 200, {"datasource": self._datasource(uid)[1], "id": self.datasources[uid]["id"],
                     "message": "Datasource added", "name": body["name"]}

    def _update_datasource(self, uid: str, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        cur = self.datasources.get(uid)
        if cur is None:
            raise HttpError(404, "Data source not found")
        self._check_datasource(body, uid)
        if body.get("version") is not None and body["version"] != cur["version"]:
            raise HttpError(409, "Datasource has already been updated by someone else")
        secure = {**cur.get("secureJsonData", {}), **body.get("secureJsonData", {})}
        self.datasources[uid] = {**body, "uid": uid, "id": cur["id"], "orgId": 1, "version": cur["version"] + 1,
                                 "readOnly": False, "secureJsonData": secure}
        return 200, {"datasource": self._datasource(uid)[1], "id": cur["id"], "message": "Datasource updated",
                     "name": body["name"]}

    def _dashboard(self, uid: str, **_: Any) -> tuple[int, Any]:
        d = self.dashboards.get(uid)
        if d is None:
            raise HttpError(404, "Dashboard not found")
        f = self.folders[d["folderUid"]] if d["folderUid"] else None
        return 200, {"dashboard": d["dashboard"], "meta": {
            "folderUid": d["folderUid"], "folderTitle": f["title"] if f else "General", "version":
            d["dashboard"]["version"], "provisioned": False, "slug": d["dashboard"]["title"].lower()}}

    def _save_dashboard(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        dash, folder = body.get("dashboard"), body.get("folderUid") or ""
        if not isinstance(dash, dict):
            raise HttpError(400, "bad request data: dashboard is required")
        title, uid = dash.get("title"), dash.get("uid")
        if not isinstance(title, str) or not title.strip():
            raise HttpError(400, "Dashboard title cannot be empty")
        if not isinstance(uid, str) or len(uid) > 40:
            raise HttpError(400, "uid too long, max 40 characters")
        if folder and folder not in self.folders:
            raise HttpError(400, "folder not found")
        cur = self.dashboards.get(uid)
        same_title = [u for u, d in self.dashboards.items() if u != uid and d["folderUid"] == folder
                      and d["dashboard"]["title"] == title]
        if same_title:
            raise HttpError(412, "A dashboard with the same name in the folder already exists", status="name-exists")
        if cur is not None and not body.get("overwrite") and dash.get("version") != cur["dashboard"]["version"]:
            raise HttpError(412, "The dashboard has been changed by someone else", status="version-mismatch")
        did = cur["dashboard"]["id"] if cur else next(self.ids)
        version = cur["dashboard"]["version"] + 1 if cur else 1
        self.dashboards[uid] = {"dashboard": {**copy.deepcopy(dash), "id": did, "uid": uid, "version": version},
                                "folderUid": folder}
        return 200, {"id": did, "uid": uid, "url": f"/d/{uid}", "status": "success", "version": version,
                     "slug": title.lower()}

    def _rule_group(self, folder: str, group: str, **_: Any) -> tuple[int, Any]:
        if (folder, group) not in self.groups:
            raise HttpError(404, "rule group does not exist")
        rules = [r for r in self.rules.values() if (r["folderUID"], r["ruleGroup"]) == (folder, group)]
        return 200, {"title": group, "folderUid": folder, "interval": self.groups[(folder, group)],
                     "rules": copy.deepcopy(rules)}

    def _check_rule(self, r: Any, folder: str) -> None:
        if not isinstance(r, dict):
            raise HttpError(400, "invalid rule specification: a rule must be an object")
        uid = r.get("uid")
        if not isinstance(uid, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            raise HttpError(400, f"invalid rule specification: cannot create rule with UID '{uid}': UID is invalid")
        for key in ("title", "condition"):
            if not isinstance(r.get(key), str) or not r[key]:
                raise HttpError(400, f"invalid rule specification: rule {uid}: {key} is required")
        if not r.get("data"):
            raise HttpError(400, f"invalid rule specification: rule {uid}: no queries or expressions are found")
        if r["condition"] not in {q.get("refId") for q in r["data"]}:
            raise HttpError(400, f"invalid rule specification: rule {uid}: condition {r['condition']} does not exist")
        for q in r["data"]:
            if q.get("datasourceUid") != "__expr__" and q.get("datasourceUid") not in self.datasources:
                raise HttpError(400, f"invalid rule specification: rule {uid}: data source "
                                     f"{q.get('datasourceUid')} not found")
        if r.get("noDataState") not in NO_DATA or r.get("execErrState") not in EXEC_ERR:
            raise HttpError(400, f"invalid rule specification: rule {uid}: bad noDataState or execErrState")
        if r.get("folderUID", folder) != folder:
            raise HttpError(400, f"invalid rule specification: rule {uid}: folderUID differs from the group's")

    def _put_rule_group(self, folder: str, group: str, body: dict[str, Any], provenance: str,
                        **_: Any) -> tuple[int, Any]:
        if folder not in self.folders:
            raise HttpError(400, f"folder with uid '{folder}' not found", messageId="alerting.folder-not-found")
        interval = body.get("interval")
        if not isinstance(interval, int) or interval <= 0 or interval % 10:
            raise HttpError(400, "invalid rule group: interval must be a positive multiple of 10 s")
        rules = body.get("rules") or []
        for r in rules:
            self._check_rule(r, folder)
        uids = [r["uid"] for r in rules]
        titles = [r["title"] for r in rules] + [o["title"] for o in self.rules.values() if o["folderUID"] == folder
                                                 and o["ruleGroup"] != group and o["uid"] not in uids]
        if len(set(uids)) < len(uids) or len(set(titles)) < len(titles):
            raise HttpError(409, "conflicting alert rule found: rule title under the same organisation and folder "
                                 "should be unique", messageId="alerting.alert-rule.conflict")
        for uid in [u for u, r in self.rules.items() if (r["folderUID"], r["ruleGroup"]) == (folder, group)]:
            if uid not in uids:
                del self.rules[uid]
        for r in rules:
            old = self.rules.get(r["uid"])
            self.rules[r["uid"]] = {**copy.deepcopy(r), "id": old["id"] if old else next(self.ids), "orgID": 1,
                                    "folderUID": folder, "ruleGroup": group, "provenance": provenance,
                                    "updated": "2026-01-01T00:00:00Z"}
        self.groups[(folder, group)] = interval
        return 200, self._rule_group(folder, group)[1]

    def _redacted(self, cp: dict[str, Any]) -> dict[str, Any]:
        return {**cp, "settings": {k: REDACTED if k in SECURE_SETTINGS else v for k, v in cp["settings"].items()}}

    def _contact_points(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        name = query.get("name", [None])[0]
        return 200, [self._redacted(c) for c in self.contact_points.values() if name in (None, c["name"])]

    def _check_contact_point(self, body: dict[str, Any]) -> None:
        for key in ("name", "type"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise HttpError(400, f"invalid object specification: {key} is required")
        if not isinstance(body.get("settings"), dict) or (body["type"] == "webhook" and not body["settings"].get("url")):
            raise HttpError(400, "invalid object specification: settings: url is required for a webhook")

    def _create_contact_point(self, body: dict[str, Any], provenance: str, **_: Any) -> tuple[int, Any]:
        self._check_contact_point(body)
        uid = body.get("uid") or f"cp{next(self.ids)}"
        if uid in self.contact_points:
            raise HttpError(409, "contact point with the same uid already exists")
        self.contact_points[uid] = {**copy.deepcopy(body), "uid": uid, "provenance": provenance}
        return 202, self._redacted(self.contact_points[uid])

    def _update_contact_point(self, uid: str, body: dict[str, Any], provenance: str, **_: Any) -> tuple[int, Any]:
        cur = self.contact_points.get(uid)
        if cur is None:
            raise HttpError(404, "contact point not found")
        self._check_contact_point(body)
        settings = {k: cur["settings"].get(k) if v == REDACTED else v for k, v in body["settings"].items()}
        self.contact_points[uid] = {**copy.deepcopy(body), "settings": settings, "uid": uid, "provenance": provenance}
        return 202, {"message": "contactpoint updated"}

    def _policies(self, **_: Any) -> tuple[int, Any]:
        return 200, copy.deepcopy(self.policy)

    def _put_policies(self, body: dict[str, Any], provenance: str, **_: Any) -> tuple[int, Any]:
        names = {c["name"] for c in self.contact_points.values()}

        def check(route: Any, root: bool) -> None:
            if not isinstance(route, dict) or (root and not route.get("receiver")):
                raise HttpError(400, "invalid object specification: root route must specify a default receiver")
            if route.get("receiver") and route["receiver"] not in names:
                raise HttpError(400, f"invalid object specification: receiver '{route['receiver']}' does not exist")
            for m in route.get("object_matchers") or []:
                if not (isinstance(m, list) and len(m) == 3 and m[1] in ("=", "!=", "=~", "!~")):
                    raise HttpError(400, f"invalid object specification: bad matcher {m!r}")
            for child in route.get("routes") or []:
                check(child, False)
        check(body, True)
        self.policy = {**copy.deepcopy(body), "provenance": provenance}
        return 202, {"message": "policies updated"}

    def _add_annotation(self, body: dict[str, Any], **_: Any) -> tuple[int, Any]:
        if not isinstance(body.get("text"), str) or not body["text"]:
            raise HttpError(400, "Failed to save annotation: text is required")
        uid = body.get("dashboardUID")
        if uid is not None and uid not in self.dashboards:
            raise HttpError(400, "Invalid dashboard UID in annotation request")
        a = {"id": next(self.ids), "dashboardUID": uid, "panelId": body.get("panelId") or 0,
             "time": body.get("time") or 0, "timeEnd": body.get("timeEnd") or body.get("time") or 0,
             "tags": list(body.get("tags") or []), "text": body["text"]}
        self.annotations.append(a)
        return 200, {"message": "Annotation added", "id": a["id"]}

    def _annotations(self, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        tags = set(query.get("tags", []))
        return 200, [a for a in self.annotations if tags <= set(a["tags"])]

    _routes = [
        (r"/api/frontend/settings", "GET", _settings),
        (r"/api/folders", "GET", _folders), (r"/api/folders", "POST", _create_folder),
        (r"/api/folders/([^/]+)", "GET", _folder), (r"/api/folders/([^/]+)", "PUT", _update_folder),
        (r"/api/datasources/uid/([^/]+)", "GET", _datasource), (r"/api/datasources", "POST", _create_datasource),
        (r"/api/datasources/uid/([^/]+)", "PUT", _update_datasource),
        (r"/api/dashboards/uid/([^/]+)", "GET", _dashboard), (r"/api/dashboards/db", "POST", _save_dashboard),
        (r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", "GET", _rule_group),
        (r"/api/v1/provisioning/folder/([^/]+)/rule-groups/([^/]+)", "PUT", _put_rule_group),
        (r"/api/v1/provisioning/contact-points", "GET", _contact_points),
        (r"/api/v1/provisioning/contact-points", "POST", _create_contact_point),
        (r"/api/v1/provisioning/contact-points/([^/]+)", "PUT", _update_contact_point),
        (r"/api/v1/provisioning/policies", "GET", _policies), (r"/api/v1/provisioning/policies", "PUT", _put_policies),
        (r"/api/annotations", "POST", _add_annotation), (r"/api/annotations", "GET", _annotations),
    ]


def _handler(fake: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with fake.lock:
                fake.requests.append((method, parts.path))
            try:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    raise HttpError(400, "bad request data") from None
                status, doc = fake.route(method, unquote(parts.path), parse_qs(parts.query), body, self.headers)
            except HttpError as exc:
                status, doc = exc.status, exc.body
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's names
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._serve("PUT")

    return Handler
