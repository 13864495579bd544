"""Grafana alerts -> twin commands: the rule table, the webhook server, and the loop end to end.

End-to-end tests run real Mosquitto, the real twin (``orbitwin run --mqtt``) and real influxd.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from bridges.alerts.limit_refs import LIMIT_NAMES
from bridges.alerts.rules import DEFAULT_RULES, Alert, Planner, RuleError, load_table, parse_table
from bridges.alerts.poller import InfluxPoller
from bridges.alerts.webhook import GrafanaBridge, GrafanaBridgeSettings
from dashboards.alerts import RULE_LIMITS, alert_rules, limit_rule_title, limit_rule_uid
from mqtt_helpers import Recorder, start_twin, wait_for
from twin.schema.telemetry import FIELD_BY_NAME, LIMITED_FIELDS

P = "orbitwin/v1"
SAT = "STARLINK-1008"
TOKEN = "s3cret-token"
PTEMP_UID = "orbitwin-payload_temp_k-red-high"  # the provisioned Grafana rule (dashboards/alerts.py)


def _table(rules: str, limits: str = "") -> Any:
    import tomllib

    return parse_table(tomllib.loads(limits + rules))


THROTTLE = """
[[rule]]
name = "temp"
match = { alertname = "PayloadTempRed" }
min_interval_s = 60
firing = { command = "throttle", args = { factor = 0.5 } }
resolved = { command = "throttle", args = { factor = 1.0 } }
"""


def _alert(status: str = "firing", fp: str = "fp1", sat: str | None = SAT, starts: str = "2026-01-01T00:00:00Z",
           **labels: str) -> Alert:
    lab = {"alertname": "PayloadTempRed", **({"sat": sat} if sat else {}), **labels}
    return Alert(status, lab, fp, starts_at=starts)


# --- the rule table ------------------------------------------------------------------------
def test_shipped_table_is_valid():
    t = load_table()
    assert [r.name for r in t.rules] == ["payload-temp-red", "battery-low", "payload-latchup", "fleet-red"]
    assert [c["uid"] for c in t.conditions] == [r.match["rule"][0] for r in t.rules]


def test_shipped_table_matches_the_provisioned_grafana_rules():
    dashboards_alerts = pytest.importorskip("dashboards.alerts")
    grafana = {r["uid"]: r for g in dashboards_alerts.alert_rules()["groups"] for r in g["rules"]}
    t = load_table()
    for c in t.conditions:
        assert c["uid"] in grafana and grafana[c["uid"]]["title"] == c["alertname"], c["uid"]
    for r in t.rules:  # every rule matches an alert Grafana raises (a uid written out must not go stale)
        assert r.match["rule"][0] in grafana, r.name


@pytest.mark.parametrize("text, where", [
    ('[[rule]]\nname="r"\nmatch={a="x"}\nfiring={command="warp"}', "rule 'r'.firing.command: unknown command 'warp'"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nfiring={command="throttle",args={factor=2}}', "rule 'r'.firing.args.factor:"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nresolved={command="throttle"}', "rule 'r'.resolved.args.factor: missing"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nfiring={command="throttle",args={speed=1}}', "rule 'r'.firing.args.speed"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nbogus=1', "rule 'r'.bogus: unknown key"),
    ('[[rule]]\nname="r"', "rule 'r'.match: a table of label matchers is required"),
    ('[[rule]]\nname="r"\nmatch={a=1}', "rule 'r'.match.a: must be a string"),
    ('[[rule]]\nname="r"\nmatch_re={sat="(["}', "rule 'r'.match_re.sat: bad regular expression"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\ntarget="fleet"', "rule 'r'.select: a fleet rule needs select"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\ntarget="moon"', "rule 'r'.target: must be 'sat' or 'fleet'"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nmin_interval_s=-1', "rule 'r'.min_interval_s: must be a number >= 0"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\n[[rule]]\nname="r"\nmatch={a="y"}', "rule 'r'.name: duplicate rule name"),
    ('[[rule]]\nmatch={a="x"}', "rule[0].name: a non-empty string is required"),
    ('[[rule]]\nname="r"\nmatch={a="x"}\nfiring={command="power_cycle",args_from_labels={dev="device"}}',
     "rule 'r'.firing.args_from_labels.dev"),
    ('[limits]\nmax_per_hour=3', "limits.max_per_hour: unknown key"),
    ('[limits]\nmax_actions=0', "limits.max_actions: must be a number >= 1"),
    ('[[condition]]\nuid="c"\nquery="DROP DATABASE x"\nthreshold=1', "condition 'c'.query: must be one InfluxQL"),
    ('[[condition]]\nuid="c"\nquery="SELECT 1"\nop="~"\nthreshold=1', "condition 'c'.op: must be one of"),
    ('[[condition]]\nuid="c"\nquery="SELECT 1"', "condition 'c'.threshold: must be a number"),
    # schema limits by field and limit
    ('[[rule]]\nname="r"\nfield="nope"\nlimit="red_high"', "rule 'r'.field: unknown telemetry field 'nope'"),
    ('[[rule]]\nname="r"\nfield="lat_deg"\nlimit="red_high"', "rule 'r'.field: lat_deg has no limits"),
    ('[[rule]]\nname="r"\nlimit="red_high"', "rule 'r'.field: a telemetry field name is required with limit"),
    ('[[rule]]\nname="r"\nfield="battery_soc"', "rule 'r'.limit: must name one of battery_soc's limits "
                                                 "(red_low, yellow_low), not None"),
    ('[[rule]]\nname="r"\nfield="battery_soc"\nlimit="red"', "rule 'r'.limit: must name one of"),
    ('[[rule]]\nname="r"\nfield="battery_soc"\nlimit="red_high"',
     "rule 'r'.limit: battery_soc has no red_high limit (it has red_low, yellow_low)"),
    ('[[rule]]\nname="r"\nfield="battery_soc"\nlimit="red_low"\nmatch={rule="x"}',
     "rule 'r'.match.rule: field and limit already match rule uid 'orbitwin-battery_soc-red-low'"),
    ('[[rule]]\nname="r"\nfield="battery_soc"\nlimit="yellow_low"',
     "rule 'r'.limit: Grafana has alert rules for red limits only: add a [[condition]] with field = 'battery_soc'"),
    ('[[condition]]\nfield="battery_soc"\nlimit="red_low"\nthreshold=0.4',
     "condition[0].threshold: comes from field and limit (battery_soc red_low: uid 'orbitwin-battery_soc-red-low', "
     "< 0.45)"),
    ('[[condition]]\nfield="battery_soc"\nlimit="red_low"\nuid="mine"', "condition[0].uid: comes from field and limit"),
    ('[[condition]]\nfield="battery_sox"\nlimit="red_low"', "condition[0].field: unknown telemetry field 'battery_sox'"),
    ('[[condition]]\nfield="payload_temp_k"\nlimit="red_high"\n[[condition]]\nuid="orbitwin-payload_temp_k-red-high"'
     '\nquery="SELECT 1"\nthreshold=1', "condition 'orbitwin-payload_temp_k-red-high'.uid: duplicate condition uid"),
    ('[[condition]]\nquery="SELECT 1"\nthreshold=1', "condition[0].uid: a non-empty string is required"),
])
def test_table_validation_errors_name_rule_and_key(text, where):
    with pytest.raises(RuleError) as exc:
        _table(text)
    assert where in str(exc.value)


def test_rules_and_conditions_take_limits_and_uids_from_the_schema():
    t = _table("""
[[rule]]
name = "soc"
field = "battery_soc"
limit = "yellow_low"
match = { severity = "warning" }
firing = { command = "throttle", args = { factor = 0.9 } }
[[condition]]
field = "battery_soc"
limit = "yellow_low"
query = 'SELECT last("battery_soc") FROM "hk" WHERE time > now() - 5m GROUP BY "sat"'
labels = { severity = "warning" }
[[condition]]
field = "payload_temp_k"
limit = "red_high"
""")
    soc = FIELD_BY_NAME["battery_soc"].limits
    [r] = t.rules
    assert r.match == {"severity": ("warning",), "rule": ("orbitwin-battery_soc-yellow-low",)}
    c, hot = t.conditions
    assert (c["uid"], c["alertname"], c["op"], c["threshold"]) == \
        ("orbitwin-battery_soc-yellow-low", "battery_soc yellow low", "<", soc.yellow_low)
    assert "now() - 5m" in c["query"]  # a query of one's own is kept
    assert (hot["uid"], hot["op"], hot["threshold"], hot["query"]) == (
        limit_rule_uid("payload_temp_k", "red_high"), ">", FIELD_BY_NAME["payload_temp_k"].limits.red_high,
        'SELECT last("payload_temp_k") FROM "hk" GROUP BY "sat", "run"')
    [a] = Planner(t).plan(Alert("firing", {"sat": SAT, "severity": "warning", "rule_uid": c["uid"]}, "f"), 0)
    assert (a.rule, a.args) == ("soc", {"factor": 0.9})


def test_limit_rule_uids_are_the_provisioned_grafana_uids():
    assert limit_rule_uid("payload_temp_k", "red_high") == PTEMP_UID  # Grafana keeps alert state by uid
    grafana = {r["uid"]: r["title"] for g in alert_rules()["groups"] for r in g["rules"]}
    refs = [(f, n) for f in LIMITED_FIELDS for n in RULE_LIMITS if getattr(f.limits, n) is not None]
    assert {limit_rule_uid(f.name, n): limit_rule_title(f.name, n) for f, n in refs}.items() <= grafana.items()
    assert len({limit_rule_uid(f.name, n) for f in LIMITED_FIELDS for n in LIMIT_NAMES}) == \
        len(LIMITED_FIELDS) * len(LIMIT_NAMES)  # no two limits share a uid


def _numbers(node: Any, path: str = "") -> Any:
    """(path, number) of every number in a decoded table, except command arguments (firing/resolved)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k not in ("firing", "resolved"):
                yield from _numbers(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def test_shipped_table_copies_no_schema_limit_and_no_limit_rule_uid():
    """Drift: the table names limits (field + limit) and never repeats their values or uids."""
    import re
    import tomllib

    text = DEFAULT_RULES.read_text()
    doc = tomllib.loads(text)
    limits = {v: f"{f.name}.{n}" for f in LIMITED_FIELDS for n in LIMIT_NAMES
              if (v := getattr(f.limits, n)) is not None}
    for path, v in _numbers(doc):
        assert v not in limits, f"{path} = {v} is {limits[v]}: name it with field and limit instead"
    # comments: a number of two or more significant digits equal to a limit is a stale copy
    for line in text.splitlines():
        for tok in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:e-?\d+)?", line.partition("#")[2]):
            digits = tok.split("e")[0].replace(".", "").strip("0")
            assert not (len(digits) >= 2 and float(tok) in limits), f"comment quotes {limits[float(tok)]}: {line!r}"
    for f in LIMITED_FIELDS:
        for n in LIMIT_NAMES:
            assert limit_rule_uid(f.name, n) not in text, f"write field = {f.name!r}, limit = {n!r} instead of the uid"
    # every named field and limit exists (load_table checks it) and the limit rules are all named so
    t = load_table()
    named = [(r.ref.field.name, r.ref.limit) for r in t.rules if r.ref is not None]
    assert named == [("payload_temp_k", "red_high"), ("battery_soc", "red_low"), ("devices_latched", "red_high")]
    for section in ("rule", "condition"):
        for i, d in enumerate(doc[section]):
            if "field" in d:
                assert getattr(FIELD_BY_NAME[d["field"]].limits, d["limit"]) is not None, (section, i)


def test_load_table_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]\n")
    with pytest.raises(RuleError, match=r"bad\.toml: not valid TOML"):
        load_table(bad)
    bad.write_text('[[rule]]\nname="r"\nmatch={a="x"}\nfiring={command="throttle",args={factor=-1}}')
    with pytest.raises(RuleError, match=r"bad\.toml: rule 'r'\.firing\.args\.factor"):
        load_table(bad)


# --- plan() --------------------------------------------------------------------------------
def test_plan_firing_resolved_and_duplicates():
    pl = Planner(_table(THROTTLE))
    [a] = pl.plan(_alert(), now=0)
    assert (a.command, a.args, a.sat, a.suppressed) == ("throttle", {"factor": 0.5}, SAT, None)
    assert pl.plan(_alert(), now=1) == []  # the same notification again
    [r] = pl.plan(_alert("resolved"), now=2)
    assert (r.command, r.args, r.suppressed) == ("throttle", {"factor": 1.0}, None)
    assert pl.plan(_alert("resolved"), now=3) == []
    # a new firing episode (new startsAt) acts again, once per rule/sat/status interval
    [again] = pl.plan(_alert(starts="2026-01-01T01:00:00Z"), now=4)
    assert again.suppressed == "rate_limited_rule"
    [later] = pl.plan(_alert(starts="2026-01-01T01:00:00Z"), now=61)  # not marked seen while rate limited
    assert later.suppressed is None
    assert pl.counters["duplicates"] == 2 and pl.counters["actions"] == 3 and pl.counters["suppressed"] == 1
    assert pl.plan(Alert("firing", {"alertname": "Other", "sat": SAT}, "x"), now=5) == []
    assert pl.counters["unmatched"] == 1


def test_alerts_of_another_run_are_not_acted_on():
    pl = Planner(_table(THROTTLE))
    [old] = pl.plan(_alert(fp="old", run="1764680000000001"), now=0, current_run="1764690000000002")
    assert old.suppressed.startswith("other_run") and pl.counters["actions"] == 0
    [cur] = pl.plan(_alert(fp="cur", run="1764690000000002"), now=1, current_run="1764690000000002")
    assert cur.suppressed is None
    # no run label (a query of one's own), or the twin's run not known yet: acted on as before
    [nolabel] = Planner(_table(THROTTLE)).plan(_alert(fp="a"), now=0, current_run="1764690000000002")
    [unknown] = Planner(_table(THROTTLE)).plan(_alert(fp="b", run="7"), now=0, current_run=None)
    assert nolabel.suppressed is None and unknown.suppressed is None


def test_rate_limits_per_satellite_and_global():
    pl = Planner(_table(THROTTLE, "[limits]\nmax_actions = 3\nwindow_s = 10\n"))
    assert pl.plan(_alert(fp="a"), 0)[0].suppressed is None
    assert pl.plan(_alert(fp="b"), 1)[0].suppressed == "rate_limited_rule"  # same satellite, other alert
    assert pl.plan(_alert(fp="c", sat="STARLINK-1012"), 1)[0].suppressed is None
    assert pl.plan(_alert(fp="d", sat="STARLINK-1017"), 2)[0].suppressed is None
    assert pl.plan(_alert(fp="e", sat="STARLINK-1019"), 3)[0].suppressed == "rate_limited_global"
    assert pl.plan(_alert(fp="e", sat="STARLINK-1019"), 10.5)[0].suppressed is None  # window moved on


def test_matching_targets_and_label_arguments():
    t = _table("""
[[rule]]
name = "by-uid"
match = { rule = "abc123", severity = ["critical", "red"] }
match_re = { sat = "STARLINK-10.*" }
continue = true
firing = { command = "power_cycle", args_from_labels = { device = "device" } }
[[rule]]
name = "fleet"
match = { alertname = "FleetRed" }
target = "fleet"
select = { names = "STARLINK-10*" }
firing = { command = "set_payload_load", args = { load = 0.5 } }
[[rule]]
name = "catch-all"
match_re = { alertname = ".*" }
""")
    pl = Planner(t)
    g = Alert.from_grafana({"status": "firing", "labels": {"alertname": "X", "severity": "red", "sat": SAT,
                                                           "device": "3"}, "fingerprint": "f1",
                            "generatorURL": "http://grafana/alerting/grafana/abc123/view?orgId=1"})
    [a] = pl.plan(g, 0)
    assert (a.rule, a.command, a.args, a.sat) == ("by-uid", "power_cycle", {"device": 3}, SAT)
    [f] = pl.plan(Alert("firing", {"alertname": "FleetRed"}, "f2"), 0)
    assert (f.sat, f.select, f.args) == (None, {"names": "STARLINK-10*"}, {"load": 0.5})
    bad = Alert("firing", {"alertname": "X", "severity": "red", "sat": SAT, "device": "99",
                           "rule_uid": "abc123"}, "f3")
    assert pl.plan(bad, 0)[0].suppressed.startswith("bad_label_argument")
    nosat = Planner(_table(THROTTLE)).plan(_alert(sat=None), 0)
    assert nosat[0].suppressed.startswith("no_sat_label")
    with pytest.raises(ValueError, match="status must be firing or resolved"):
        Alert.from_grafana({"status": "pending", "labels": {}})


# --- the webhook server --------------------------------------------------------------------
def _post(url: str, body: bytes | dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers={k: v for k, v in h.items() if v is not None}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _webhook(status: str, sat: str = SAT, fp: str = "c0ffee0123456789") -> dict:
    """A Grafana 10/11 webhook notification (the documented payload)."""
    labels = {"alertname": "payload_temp_k red high", "grafana_folder": "Orbitwin", "sat": sat,
              "severity": "critical", "scope": "satellite", "service": "orbitwin"}
    alert = {"status": status, "labels": labels,
             "annotations": {"summary": f"{sat} payload hot"}, "startsAt": "2026-02-22T19:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-02-22T19:10:00Z",
             "generatorURL": f"http://grafana:3000/alerting/grafana/{PTEMP_UID}/view?orgId=1", "fingerprint": fp,
             "silenceURL": "", "dashboardURL": "", "panelURL": "", "values": {"A": 365.2, "C": 1}, "valueString": ""}
    return {"receiver": "orbitwin", "status": status, "orgId": 1, "alerts": [alert],
            "groupLabels": {"alertname": "payload_temp_k red high", "grafana_folder": "Orbitwin"},
            "commonLabels": alert["labels"], "commonAnnotations": {}, "externalURL": "http://grafana:3000/",
            "version": "1", "groupKey": '{}:{alertname="payload_temp_k red high"}', "truncatedAlerts": 0,
            "title": f"[{status.upper()}] payload_temp_k red high", "state": "alerting", "message": "..."}


def _bridge(url: str, **kw: Any) -> GrafanaBridge:
    s = GrafanaBridgeSettings(url, client_id=f"gb-{uuid.uuid4().hex[:6]}", listen_port=0, token=TOKEN, **kw)
    b = GrafanaBridge(s, load_table())
    b.start(wait_s=10)
    return b


def test_http_rejections_are_4xx_with_reasons_and_counted(mosquitto):
    b = _bridge(mosquitto.url, basic_user="grafana", basic_password="pw", max_body_bytes=4096)
    try:
        u = b.url + "/webhook"
        basic = "Basic " + base64.b64encode(b"grafana:pw").decode()
        cases = [
            (_post(u, _webhook("firing"), {"Authorization": None}), 401, "unauthorized"),
            (_post(u, _webhook("firing"), {"Authorization": "Bearer wrong"}), 401, "unauthorized"),
            (_post(u, _webhook("firing"), {"Authorization": "Basic " + base64.b64encode(b"grafana:no").decode()}),
             401, "unauthorized"),
            (_post(u, b'{"alerts": [', {"Authorization": basic}), 400, "malformed_json"),
            (_post(u, {"status": "firing"}), 400, "invalid_payload"),
            (_post(u, {"alerts": [{"status": "firing", "labels": {"a": 1}}]}), 400, "invalid_payload"),
            (_post(u, b"x" * 10_000), 413, "body_too_large"),
            (_post(u, b"alertname=x", {"Content-Type": "application/x-www-form-urlencoded"}), 415,
             "unsupported_media_type"),
            (_post(b.url + "/nope", {}), 404, "not_found"),
        ]
        for (code, body), want_code, reason in cases:
            assert (code, body["ok"], body["reason"]) == (want_code, False, reason), body
        ok, body = _post(u, {"receiver": "x", "status": "firing", "alerts": []}, {"Authorization": basic})
        assert ok == 200 and body == {"ok": True, "alerts": 0, "duplicates": 0, "actions": []}
        with urllib.request.urlopen(b.url + "/metrics", timeout=5) as r:
            c = json.loads(r.read())["counters"]
        assert (c["http_401"], c["http_400"], c["http_413"], c["http_415"], c["http_404"], c["http_200"]) == \
            (3, 3, 1, 1, 1, 1)
        assert c["http_rejected"] == 9 and c["rejected_unauthorized"] == 3 and c["rejected_malformed_json"] == 1
        with urllib.request.urlopen(b.url + "/healthz", timeout=5) as r:
            assert json.loads(r.read())["ok"] is True
    finally:
        b.stop()


# --- end to end ----------------------------------------------------------------------------
def _events(rec: Recorder, name: str, rid: str | None = None) -> list[dict]:
    return [p for _, p in rec.find(lambda t, p: t.endswith("/bridge/grafana/event") and p["name"] == name
                                   and (rid is None or p["detail"].get("request_id") == rid))]


def _throttles_after(rec: Recorder, t_s: float, sat: str = SAT) -> list[float]:
    return [p["fields"]["payload_throttle"] for _, p in rec.find(lambda t, p: t == f"{P}/sat/{sat}/tm/payload")
            if p["t_s"] > t_s]


def test_webhook_end_to_end_with_the_twin(mosquitto, tmp_path):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/tm/payload", f"{P}/sat/+/cmd", f"{P}/bridge/#"])
    twin = start_twin(mosquitto.url, "--count", "3", "--speed", "x2", "--sat-rates", f"{SAT}:payload=1",
                      state_dir=str(tmp_path))
    b = _bridge(mosquitto.url)
    try:
        wait_for(lambda: _throttles_after(rec, -1), 30)
        code, body = _post(b.url + "/grafana/webhook", _webhook("firing"))
        assert code == 200 and body["alerts"] == 1 and len(body["actions"]) == 1
        rid = body["actions"][0]["request_id"]
        [(topic, cmd)] = rec.find(lambda t, p: t.endswith("/cmd")) or wait_for(
            lambda: rec.find(lambda t, p: t.endswith("/cmd")), 10)
        assert topic == f"{P}/sat/{SAT}/cmd" and cmd == {"command": "throttle", "args": {"factor": 0.5}, "id": rid}
        wait_for(lambda: _events(rec, "command_accepted", rid), 10)
        done = wait_for(lambda: _events(rec, "command_completed", rid), 10)[0]
        assert done["sat"] == SAT and done["kind"] == "bridge" and done["detail"]["reply"]["result"]["factor"] == 0.5
        assert done["detail"]["rule"] == "payload-temp-red" and _events(rec, "action_sent", rid)
        t_done = done["detail"]["reply"]["t_s"]
        wait_for(lambda: _throttles_after(rec, t_done), 10)
        assert set(_throttles_after(rec, t_done)) == {0.5}

        code, body = _post(b.url, _webhook("firing"))  # Grafana repeating the same notification
        assert code == 200 and body["duplicates"] == 1 and body["actions"] == []

        code, body = _post(b.url, _webhook("resolved"))
        rid2 = body["actions"][0]["request_id"]
        done2 = wait_for(lambda: _events(rec, "command_completed", rid2), 10)[0]
        assert done2["detail"]["reply"]["result"]["factor"] == 1.0
        t2 = done2["detail"]["reply"]["t_s"]
        wait_for(lambda: _throttles_after(rec, t2), 10)
        assert set(_throttles_after(rec, t2)) == {1.0}

        # the bridge knows the twin's run from its retained birth; an earlier run's alert is not acted on
        run = wait_for(lambda: b.status()["twin_run"], 10)
        stale = _webhook("firing", fp="oldrun")
        stale["alerts"][0]["labels"]["run"] = str(int(run) - 1)
        code, body = _post(b.url, stale)
        assert code == 200 and body["actions"][0]["suppressed"].startswith("other_run")
        code, body = _post(b.url, _webhook("firing", sat="STARLINK-9999", fp="badsat"))  # the twin rejects it
        rej = wait_for(lambda: _events(rec, "command_rejected", body["actions"][0]["request_id"]), 10)[0]
        assert rej["detail"]["reply"]["reason"] == "unknown_satellite"
        # exactly three commands went out: the duplicate did nothing
        assert len(rec.find(lambda t, p: t.endswith("/cmd"))) == 3
        st = b.status()
        assert st["counters"]["commands_published"] == 3 and st["planner"]["duplicates"] == 1
        assert st["pending_replies"] == 0
    finally:
        b.stop()
        twin.terminate()
        twin.wait(10)
        rec.close()


def test_poller_conditions_on_schema_limits(influxd):
    """Conditions naming limits read each satellite's latest value: floats, integers and booleans (as 1/0)."""
    db = f"g{uuid.uuid4().hex[:10]}"
    influxd.create_database(db)
    ts = 1_770_000_000_000_000_000
    influxd.write([f"payload,sat=A payload_hung=true,devices_latched=0i {ts}",
                   f"payload,sat=B payload_hung=false,devices_latched=2i {ts}",
                   f"hk,sat=A battery_soc=0.5 {ts}", f"hk,sat=B battery_soc=0.9 {ts}"], db)
    t = _table("".join(f'[[condition]]\nfield="{f}"\nlimit="{n}"\n' for f, n in
                       (("payload_hung", "red_high"), ("devices_latched", "red_high"), ("battery_soc", "yellow_low"))))
    fired = {(a.labels["alertname"], a.labels["sat"], a.values["A"]) for a in
             InfluxPoller(influxd.url, db, t.conditions).evaluate(now=0.0)}
    assert fired == {("payload_hung red high", "A", 1.0), ("devices_latched red high", "B", 2.0),
                     ("battery_soc yellow low", "A", 0.5)}


def test_influx_poller_end_to_end(mosquitto, influxd, tmp_path):
    db = f"g{uuid.uuid4().hex[:10]}"
    influxd.create_database(db)
    sat2 = "STARLINK-1012"
    ts = 1_770_000_000_000_000_000
    influxd.write([f"hk,sat={sat2} payload_temp_k=365.5,battery_soc=0.9 {ts}",
                   f"hk,sat={sat2} payload_temp_k=370.1,battery_soc=0.9 {ts + 10**9}",
                   f"hk,sat={SAT} payload_temp_k=300.0,battery_soc=0.9 {ts + 10**9}",
                   f"payload,sat={SAT} devices_latched=0i {ts}"], db)
    rules = tmp_path / "rules.toml"
    text = DEFAULT_RULES.read_text()
    rules.write_text(text.replace("for_s = 30", "for_s = 0"))
    assert "for_s = 30" in text

    # the poller alone: one firing alert with a stable fingerprint; no change on the next poll
    poller = InfluxPoller(influxd.url, db, load_table(rules).conditions)
    [a] = poller.evaluate(now=100.0)
    assert (a.status, a.labels["sat"], a.labels["alertname"], a.values["A"]) == \
        ("firing", sat2, "payload_temp_k red high", 370.1)
    assert a.rule_uid == PTEMP_UID
    assert poller.evaluate(now=101.0) == [] and poller.counters["query_errors"] == 0

    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/cmd", f"{P}/bridge/#", f"{P}/sat/+/tm/hk"])
    twin = start_twin(mosquitto.url, "--count", "3", "--speed", "x2", state_dir=str(tmp_path))
    try:
        wait_for(lambda: rec.find(lambda t, p: t.endswith("/tm/hk")), 30)  # the twin is up
        out = subprocess.run([sys.executable, "-m", "orbitwin.cli", "bridge", "grafana", "--mqtt", mosquitto.url,
                              "--rules", str(rules), "--poll-influx", influxd.url, "--db", db, "--poll-once",
                              "--reply-timeout", "15", "--client-id", "gb-poll"],
                             capture_output=True, text=True, timeout=40)
        assert out.returncode == 0, out.stderr
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["alerts"] == 1 and res["actions"][0]["sat"] == sat2
        [(topic, cmd)] = wait_for(lambda: rec.find(lambda t, p: t.endswith("/cmd")), 10)
        assert topic == f"{P}/sat/{sat2}/cmd" and cmd["command"] == "throttle" and cmd["args"] == {"factor": 0.5}
        assert res["counters"]["replies_completed"] == 1 and res["pending_replies"] == 0, res
        assert wait_for(lambda: _events(rec, "command_completed", cmd["id"]), 10)
    finally:
        twin.terminate()
        twin.wait(10)
        rec.close()
