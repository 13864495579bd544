"""examples/telegraf/telegraf.conf: generated from the schema, and (read as Telegraf's json_v2 reads it) the
same points as the bridge's line protocol. Telegraf itself is not installed here: the checks are structural."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridges.influx.line_protocol import message_lines, runs_line
from bridges.influx.telegraf_conf import render
from twin.contract.topics import Topics
from twin.schema.telemetry import FIELD_BY_NAME, PACKET_FIELDS

CONF = Path(__file__).resolve().parents[1] / "examples" / "telegraf" / "telegraf.conf"
LINE_KIND = {"float": "float", "int": "int", "bool": "bool"}


def _conf() -> dict[str, Any]:
    return tomllib.loads(CONF.read_text())


def _inputs() -> dict[str, dict[str, Any]]:
    return {i["alias"]: i for i in _conf()["inputs"]["mqtt_consumer"]}


def test_the_committed_file_is_the_generated_one() -> None:
    assert CONF.read_text() == render(), "run: python -m bridges.influx.telegraf_conf > examples/telegraf/telegraf.conf"


def test_agent_and_outputs_add_nothing_and_say_the_buffer() -> None:
    conf = _conf()
    assert conf["agent"]["omit_hostname"] is True and conf["agent"]["metric_buffer_limit"] > 0
    assert conf["outputs"]["influxdb_v2"][0]["token"] == "${INFLUX_TOKEN}"
    assert "# [[outputs.influxdb]]" in CONF.read_text()  # the 1.x output, commented


@pytest.mark.parametrize("packet", list(PACKET_FIELDS))
def test_every_packet_has_its_measurement_tags_and_typed_fields(packet: str) -> None:
    i = _inputs()[f"orbitwin_{packet}"]
    assert i["topics"] == [Topics().tm("+", packet)] and i["qos"] == 1 and i["data_format"] == "json_v2"
    assert i["topic_tag"] == "" and i["persistent_session"] is True
    [j] = i["json_v2"]
    assert j["measurement_name"] == packet and j["timestamp_path"] == "t"
    assert [(t["path"], t.get("rename")) for t in j["tag"]] == [("sat", None), ("run|@tostr", "run")]
    fields = {f["rename"]: (f["path"], f["type"]) for f in j["field"]}
    expected = {n: (f"fields.{n}", LINE_KIND[FIELD_BY_NAME[n].dtype]) for n in PACKET_FIELDS[packet]}
    assert fields == expected | {"seq": ("seq", "int")}
    assert not any(f.get("optional") for f in j["field"])  # the twin sends every field (null when not finite)


# --- the same points: json_v2 as Telegraf applies it, against the bridge's line protocol -------------------

def _get(doc: dict[str, Any], path: str) -> Any:
    path, _, modifier = path.partition("|")
    value: Any = doc
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if modifier == "@tostr" and value is not None:
        return json.dumps(value)  # GJSON: the raw JSON text, as a string
    return value


def _convert(value: Any, kind: str) -> Any:
    return {"float": float, "int": int, "bool": bool, "string": str}[kind](value)


def _json_v2(cfg: dict[str, Any], doc: dict[str, Any], layout: str) -> tuple[str, dict[str, str], dict[str, Any], int]:
    """What Telegraf's json_v2 makes of ``doc``: nulls skipped, tags as strings, fields as typed."""
    tags = {t.get("rename") or t["path"]: str(_get(doc, t["path"])) for t in cfg["tag"]}
    fields = {f.get("rename") or f["path"]: _convert(v, f["type"]) for f in cfg["field"]
              if (v := _get(doc, f["path"])) is not None}
    raw = _get(doc, cfg["timestamp_path"])
    if layout == "unix":
        t_ns = round(float(raw) * 1e9)
    else:
        assert layout == "2006-01-02T15:04:05Z07:00"
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        t_ns = round(t.timestamp() * 1e6) * 1000
    return cfg["measurement_name"], tags, fields, t_ns


def _parse_line(line: bytes) -> tuple[str, dict[str, str], dict[str, Any], int]:
    head, body, t = line.decode().split(" ")
    meas, *tag_items = head.split(",")
    fields: dict[str, Any] = {}
    for item in body.split(","):
        k, v = item.split("=")
        fields[k] = (v == "true") if v in ("true", "false") else int(v[:-1]) if v.endswith("i") else float(v)
    return meas, dict(kv.split("=") for kv in tag_items), fields, int(t)


def _value(dtype: str, k: int) -> Any:
    return {"float": 1.5 + k, "int": 3 + k, "bool": k % 2 == 0}[dtype]


@pytest.mark.parametrize("packet", list(PACKET_FIELDS))
def test_json_v2_makes_the_bridges_points_of_each_packet(packet: str) -> None:
    names = PACKET_FIELDS[packet]
    values: dict[str, Any] = {n: _value(FIELD_BY_NAME[n].dtype, k) for k, n in enumerate(names)}
    floats = [n for n in names if FIELD_BY_NAME[n].dtype == "float"]
    if floats:
        values[floats[0]] = None  # a value that was not finite: left out by both
    msg = {"v": 1, "sat": "STARLINK-1008", "norad": 44714, "packet": packet, "t": "2026-02-22T19:04:57.957Z",
           "t_s": 1.0, "seq": 42, "run": 1796219054714926, "bseq": 1, "fields": values}
    doc = json.loads(json.dumps(msg))  # what goes over MQTT
    [(_, _, line)] = message_lines(doc)
    [cfg] = _inputs()[f"orbitwin_{packet}"]["json_v2"]
    got = _json_v2(cfg, doc, cfg["timestamp_format"])
    want = _parse_line(line)
    assert got == want
    for name, value in got[2].items():  # the types too (True == 1 in Python)
        assert type(value) is type(want[2][name]), name
    assert got[1]["run"] == "1796219054714926"  # the raw digits, not 1.796219054714926e+15


def test_json_v2_makes_the_runs_point_of_a_birth() -> None:
    i = _inputs()["orbitwin_runs"]
    assert i["topics"] == [Topics().state] and i["tagpass"] == {"state": ["online"]} and i["tagexclude"] == ["state"]
    birth = {"v": 1, "state": "online", "bseq": 3, "wall_time": 1771787097.5, "run": 1796219054714926, "sats": 5,
             "dt_s": 1.0, "seed": 7, "prefix": "orbitwin/v1"}
    [cfg] = i["json_v2"]
    meas, tags, fields, t_ns = _json_v2(cfg, json.loads(json.dumps(birth)), cfg["timestamp_format"])
    b_meas, b_tags, b_fields, _ = _parse_line(runs_line(birth["run"], {k: birth[k] for k in ("sats", "dt_s", "seed")},
                                                       0))
    assert (meas, {k: v for k, v in tags.items() if k != "state"}, fields) == (b_meas, b_tags, b_fields)
    assert all(type(fields[k]) is type(b_fields[k]) for k in fields)
    assert t_ns == 1771787097500000000
