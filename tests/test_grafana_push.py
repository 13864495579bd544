"""``orbitwin dashboards push`` and the bridge's annotations against FakeGrafana (tests/grafana_fake.py: a fake
of Grafana's HTTP API, not Grafana), and the generated models against Grafana's own grafana-foundation-sdk."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as sdk_alerting
from grafana_foundation_sdk.models import dashboard as sdk_dashboard

from bridges.grafana_api.annotations import Annotator
from bridges.grafana_api.client import Grafana
from bridges.grafana_api.objects import SERVICE_MATCHER, Target, build_objects
from dashboards import alerts, build
from grafana_fake import FakeGrafana
from mqtt_helpers import wait_for
from orbitwin.cli.main import main

ENV = {"GRAFANA_TOKEN": "glsa_admin", "INFLUXDB_BUCKET": "orbitwin", "INFLUXDB_TOKEN": "influx-tok",
       "GRAFANA_WEBHOOK_USER": "grafana", "GRAFANA_WEBHOOK_PASSWORD": "hook-pw"}
N_RULES = sum(len(g["rules"]) for g in alerts.alert_rules()["groups"])


@pytest.fixture
def grafana():
    fake = FakeGrafana().start()
    yield fake
    fake.stop()


@pytest.fixture
def env(monkeypatch):
    for k in ("GRAFANA_TOKEN", "GRAFANA_USER", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def _push(capsys, url: str, *args: str) -> tuple[int, dict[str, tuple[int, int, int]], str]:
    code = main(["dashboards", "push", "--grafana", url, *args])
    out, err = capsys.readouterr()
    counts = {}
    for line in out.splitlines():
        kind, _, rest = line.removeprefix("orbitwin dashboards push: ").partition(": ")
        if kind in ("folder", "datasource", "dashboards", "contact point", "alert rules", "notification policy"):
            counts[kind] = tuple(int(part.split()[0]) for part in rest.split(", "))
    return code, counts, out + err


# --- the folder duplication (grafana/grafana#125079) -----------------------------------------
def test_file_provisioning_names_one_folder_by_title_on_both_sides():
    """Alerting files take a folder title only and run before the dashboards: a provider with a folderUid
    of its own would make a second folder of the same title; by title it finds the alerting one."""
    [provider] = build.dashboard_provider()["providers"]
    assert "folderUid" not in provider and provider["folder"] == alerts.FOLDER
    assert {g["folder"] for g in alerts.alert_rules()["groups"]} == {alerts.FOLDER}


# --- push --------------------------------------------------------------------------------------
def test_push_creates_everything_in_one_folder_then_changes_nothing(grafana, env, capsys):
    code, counts, out = _push(capsys, grafana.url)
    assert code == 0, out
    assert counts == {"folder": (1, 0, 0), "datasource": (1, 0, 0), "dashboards": (len(build.dashboards()), 0, 0),
                      "contact point": (1, 0, 0), "alert rules": (N_RULES, 0, 0), "notification policy": (1, 0, 0)}
    assert list(grafana.folders) == ["orbitwin"] and grafana.folders["orbitwin"]["title"] == "Orbitwin"
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"orbitwin"}
    assert {r["folderUID"] for r in grafana.rules.values()} == {"orbitwin"} and len(grafana.rules) == N_RULES
    assert {g for _, g in grafana.groups} == {g["name"] for g in alerts.alert_rules()["groups"]}
    assert all(r["provenance"] == "api" for r in grafana.rules.values())
    ds = grafana.datasources["orbitwin-influx"]
    assert ds["jsonData"]["dbName"] == "orbitwin" and ds["secureJsonData"]["httpHeaderValue1"] == "Token influx-tok"
    assert ds["isDefault"] is False and ds["url"] == "http://influxdb:8086"
    cp = grafana.contact_points["orbitwin-webhook"]
    assert (cp["settings"]["username"], cp["settings"]["password"]) == ("grafana", "hook-pw")
    # the Grafana's own policy tree is kept: our route goes first, the root receiver stays
    assert grafana.policy["receiver"] == "grafana-default-email"
    assert [r["object_matchers"] for r in grafana.policy["routes"]] == [[SERVICE_MATCHER]]

    writes = len(grafana.writes())
    code, counts, out = _push(capsys, grafana.url)
    assert code == 0 and "nothing changed" in out, out
    assert all(c[:2] == (0, 0) for c in counts.values()) and counts["alert rules"] == (0, 0, N_RULES)
    assert len(grafana.writes()) == writes  # nothing written the second time
    assert len(grafana.folders) == 1 and len(grafana.datasources) == 1 and len(grafana.contact_points) == 2


def test_push_updates_what_drifted_and_keeps_other_routes(grafana, env, capsys):
    assert _push(capsys, grafana.url)[0] == 0
    grafana.dashboards["orbitwin-fleet"]["dashboard"]["title"] = "edited by hand"
    rule = next(iter(grafana.rules.values()))
    rule["for"] = "5m"
    grafana.policy["routes"].append({"receiver": "grafana-default-email", "object_matchers": [["team", "=", "ops"]]})
    grafana.folders["orbitwin"]["title"] = "Renamed"
    code, counts, out = _push(capsys, grafana.url)
    assert code == 0, out
    assert counts["dashboards"][1] == 1 and counts["alert rules"][1] == 1 and counts["folder"] == (0, 1, 0)
    assert counts["notification policy"] == (0, 0, 1)  # our route still first and equal; theirs kept
    assert grafana.dashboards["orbitwin-fleet"]["dashboard"]["title"] != "edited by hand"
    assert grafana.dashboards["orbitwin-fleet"]["dashboard"]["version"] == 2
    assert rule["uid"] in grafana.rules and grafana.rules[rule["uid"]]["for"] != "5m"
    assert grafana.folders["orbitwin"]["title"] == "Orbitwin"
    assert [r["object_matchers"] for r in grafana.policy["routes"]] == [[SERVICE_MATCHER], [["team", "=", "ops"]]]
    # --editable: provenance off (X-Disable-Provenance), counted as updates
    code, counts, _ = _push(capsys, grafana.url, "--editable")
    assert counts["alert rules"] == (0, N_RULES, 0) and counts["contact point"] == (0, 1, 0)
    assert all(r["provenance"] == "" for r in grafana.rules.values())


def test_dry_run_writes_nothing_and_basic_auth_works(grafana, env, capsys):
    env.delenv("GRAFANA_TOKEN")
    env.setenv("GRAFANA_USER", "admin")
    env.setenv("GRAFANA_PASSWORD", "admin-pw")
    code, counts, out = _push(capsys, grafana.url, "--dry-run")
    assert code == 0 and "dry run: nothing written" in out and counts["alert rules"] == (N_RULES, 0, 0)
    assert grafana.writes() == [] and not grafana.folders


def test_push_into_an_existing_folder_of_the_same_title_is_refused_with_its_uid(grafana, env, capsys):
    grafana.folders["abc123"] = {"id": 1, "uid": "abc123", "title": "Orbitwin", "version": 1}
    code, _, out = _push(capsys, grafana.url)
    assert code == 2 and "folder 'Orbitwin' with uid 'abc123'" in out and "--folder-uid abc123" in out
    assert grafana.writes() == []
    code, counts, out = _push(capsys, grafana.url, "--folder-uid", "abc123")
    assert code == 0 and counts["folder"] == (0, 0, 1), out
    assert len(grafana.folders) == 1 and {r["folderUID"] for r in grafana.rules.values()} == {"abc123"}


@pytest.mark.parametrize("setup, args, message", [
    ({"GRAFANA_TOKEN": "wrong"}, [], "refused the credentials (401 Unauthorized: Invalid API key): check $GRAFANA_TOKEN"),
    ({"GRAFANA_TOKEN": None, "GRAFANA_USER": "admin", "GRAFANA_PASSWORD": "no"}, [],
     "refused the credentials (401 Unauthorized: invalid username or password): check $GRAFANA_USER/$GRAFANA_PASSWORD"),
    ({"GRAFANA_TOKEN": "glsa_viewer"}, [], "forbids creating folder 'orbitwin' (403 Forbidden"),
    ({"GRAFANA_TOKEN": None}, [], "no Grafana credentials: set $GRAFANA_TOKEN"),
    ({"INFLUXDB_TOKEN": None}, [], "set $INFLUXDB_TOKEN in the environment"),
    ({}, ["--folder-uid", "has space"], "folder uid 'has space'"),
])
def test_errors_are_one_line_with_exit_2(grafana, env, capsys, setup, args, message):
    for k, v in setup.items():
        env.delenv(k, raising=False) if v is None else env.setenv(k, v)
    code, _, out = _push(capsys, grafana.url, *args)
    assert code == 2 and message in out and out.count("\n") == 1, out
    assert not grafana.folders and not grafana.datasources and not grafana.rules  # nothing stored


def test_unreachable_and_too_old_grafana(env, capsys):
    old = FakeGrafana(version="9.5.2").start()
    try:
        code, _, out = _push(capsys, old.url)
        assert code == 2 and f"Grafana 9.5.2 at {old.url} is too old: orbitwin dashboards push needs Grafana 10.0" in out
    finally:
        old.stop()
    code, _, out = _push(capsys, old.url)  # stopped: nothing listens there now
    assert code == 2 and f"cannot reach Grafana at {old.url}: Connection refused" in out, out
    code, _, out = _push(capsys, "ftp://grafana")
    assert code == 2 and "an http:// or https:// URL" in out


def test_fake_refuses_what_grafana_refuses(grafana):
    """The fake checks what Grafana checks: rules need their datasource and folder, policies their receivers."""
    g = Grafana(grafana.url, "glsa_admin")
    objs = build_objects(Target(), ENV)
    group = objs.rule_groups[0]
    with pytest.raises(ValueError, match=r"refused saving \(400\): folder with uid 'orbitwin' not found"):
        g.call("saving", g.api.alertingprovisioning.update_rule_group, "orbitwin", group["title"], group)
    g.api.folder.create_folder("Orbitwin", uid="orbitwin")
    with pytest.raises(ValueError, match="data source orbitwin-influx not found"):
        g.call("saving", g.api.alertingprovisioning.update_rule_group, "orbitwin", group["title"], group)
    tree = {"receiver": "grafana-default-email", "routes": [objs.route]}
    with pytest.raises(ValueError, match="receiver 'orbitwin-grafana-bridge' does not exist"):
        g.call("saving", g.api.alertingprovisioning.set_notification_policy_tree, tree)
    with pytest.raises(ValueError, match=r"\(409\): a folder with the same name"):
        g.call("creating", g.api.folder.create_folder, "Orbitwin", uid="other")


# --- annotations from the Grafana bridge -------------------------------------------------------
def _event(name: str, **detail: Any) -> dict[str, Any]:
    return {"v": 1, "name": name, "kind": "bridge", "sat": "STARLINK-1008",
            "detail": {"rule": "payload-temp-red", "alertname": "payload_temp_k red high", "alert_status": "firing",
                       "command": "throttle", "args": {"factor": 0.5}, "request_id": "grafana-ab-1", **detail}}


def test_bridge_events_become_annotations_and_failures_are_counted(grafana, env, capsys):
    assert _push(capsys, grafana.url)[0] == 0
    ann = Annotator(Grafana(grafana.url, "glsa_admin")).start()
    try:
        ann.submit(_event("action_sent"))
        ann.submit(_event("command_completed", reply={"status": "completed", "result": {"factor": 0.5}},
                          latency_ms=12.5))
        ann.submit(_event("command_accepted"))  # not annotated
        wait_for(lambda: ann.status()["annotations_posted"] == 2, 10, what="two annotations")
    finally:
        ann.stop()
    sent, done = grafana.annotations
    assert sent["dashboardUID"] == "orbitwin-fleet" and {"orbitwin", "action_sent", "throttle",
                                                         "STARLINK-1008"} <= set(sent["tags"])
    assert "throttle" in sent["text"] and "payload_temp_k red high firing" in sent["text"]
    assert done["text"] == 'STARLINK-1008 completed throttle {"factor":0.5}: {"factor":0.5} after 12.5 ms'
    assert abs(sent["time"] / 1000 - time.time()) < 60

    bad = Annotator(Grafana(grafana.url, "wrong")).start()
    try:
        bad.submit(_event("action_sent"))
        wait_for(lambda: bad.status()["annotations_failed"] == 1, 10, what="a counted failure")
    finally:
        bad.stop()
    assert "401" in bad.status()["last_error"] and len(grafana.annotations) == 2


def test_bridge_posts_annotations_of_its_actions(grafana, mosquitto, capsys, env):
    from bridges.alerts.rules import load_table
    from bridges.alerts.webhook import GrafanaBridge, GrafanaBridgeSettings

    assert _push(capsys, grafana.url)[0] == 0
    ann = Annotator(Grafana(grafana.url, "glsa_admin")).start()
    bridge = GrafanaBridge(GrafanaBridgeSettings(mosquitto.url, client_id="gb-annotations", listen_port=None,
                                                 annotations=ann), load_table())
    bridge.start(wait_s=10)
    try:
        from bridges.alerts.rules import Alert

        alert = Alert("firing", {"alertname": "payload_temp_k red high", "sat": "STARLINK-1008",
                                 "__alert_rule_uid__": "orbitwin-payload_temp_k-red-high"}, "fp-ann")
        [action] = bridge.handle_alert(alert)
        assert action.get("request_id"), action
        wait_for(lambda: grafana.annotations, 10, what="the action's annotation")
        assert bridge.status()["annotations"]["annotations_posted"] >= 1
        assert action["request_id"] in grafana.annotations[0]["text"]
    finally:
        bridge.stop()
        ann.stop()


# --- the dashboards and alerting against grafana-foundation-sdk ------------------------------------
plugins.register_default_plugins()
# keys of the InfluxDB plugin's own queries, which the SDK (no InfluxDB model) does not model
PLUGIN_KEYS = {"/annotations/list[]/" + k for k in ("query", "titleColumn", "textColumn", "tagsColumn",
                                                     "target/query", "target/rawQuery", "target/refId")} | {
    "/templating/list[]/definition"}


def _dropped(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths of ``a`` that ``b`` lacks or holds with another value (``b`` may add defaults)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k, v in a.items() for p in ([f"{path}/{k}"] if k not in b else _dropped(v, b[k], f"{path}/{k}"))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for x, y in zip(a, b) for p in _dropped(x, y, f"{path}[]")]
    return [] if a == b else [f"{path} changed"]


@pytest.mark.parametrize("name", sorted(build.dashboards()))
def test_dashboards_parse_and_round_trip_through_the_sdk_models(name):
    model = build.dashboards()[name]
    parsed = sdk_dashboard.Dashboard.from_json(model)
    again = json.loads(json.dumps(parsed, cls=JSONEncoder))
    assert set(_dropped(model, again)) <= PLUGIN_KEYS, name
    known = set(runtime.Runtime().panelcfg_variants)
    panels = [p for p in parsed.panels if isinstance(p, sdk_dashboard.Panel)]
    assert panels and all(p.type_val in known for p in panels), {p.type_val for p in panels} - known
    for p in panels:
        refs = [p.datasource] + [t.data.get("datasource") and sdk_dashboard.DataSourceRef.from_json(
            t.data["datasource"]) for t in p.targets or [] if isinstance(t, runtime.UnknownDataquery)]
        assert all(r is None or (r.type_val, r.uid) == ("influxdb", "orbitwin-influx") for r in refs), p.title


def test_alerting_bodies_round_trip_through_the_sdk_models():
    objs = build_objects(Target(), ENV)
    for group in objs.rule_groups:
        again = json.loads(json.dumps(sdk_alerting.RuleGroup.from_json(group), cls=JSONEncoder))
        assert _dropped(group, again) == [], group["title"]
        assert all(r["labels"]["service"] == "orbitwin" for r in group["rules"])  # the route's matcher
    for cp in objs.contact_points:
        assert _dropped(cp, json.loads(json.dumps(sdk_alerting.ContactPoint.from_json(cp), cls=JSONEncoder))) == []
    route = objs.route
    assert _dropped(route, json.loads(json.dumps(sdk_alerting.NotificationPolicy.from_json(route),
                                                 cls=JSONEncoder))) == []
