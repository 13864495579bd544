"""An example Telegraf configuration writing the bridge's telemetry measurements, generated from the schema.

``python -m bridges.influx.telegraf_conf > examples/telegraf/telegraf.conf`` (tests/test_telegraf_conf.py
checks the committed file is this output). One ``mqtt_consumer`` per telemetry packet reads the
per-satellite messages (``{prefix}/sat/+/tm/{packet}``) with the ``json_v2`` parser into the
measurement the bridge writes (:mod:`bridges.influx.line_protocol`): tags ``sat`` and ``run``, the
packet's fields typed by the schema (booleans stay booleans, nulls are left out) plus ``seq``, the
timestamp the message's sim time ``t``. A last input turns the twin's births into ``runs`` points
(the dashboards' run variable). What Telegraf does not give (gap replay, spool, dead letters) is in
examples/telegraf/README.md.
"""

from __future__ import annotations

from twin.contract.topics import DEFAULT_PREFIX, Topics
from twin.schema.telemetry import FIELD_BY_NAME, PACKET_FIELDS

# schema dtype -> json_v2 field type (the InfluxDB field types the bridge writes: float, integer, boolean)
TELEGRAF_TYPES = {"float": "float", "int": "int", "bool": "bool"}
# the message's ISO 8601 UTC sim time as a Go layout (Go reads the milliseconds after the seconds by itself)
TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
RUN_PATH = "run|@tostr"  # the raw digits of the 16-digit run id: as a number, Telegraf would write 1.79e+15
RUN_FIELDS = (("sats", "int"), ("dt_s", "float"), ("seed", "int"))  # of a birth, as the bridge's runs point has them

_HEAD = """\
# Telegraf instead of `orbitwin bridge influx`: the twin's telemetry into InfluxDB, in the measurements,
# tags and field types the bridge writes. Generated from the telemetry schema by
#   python -m bridges.influx.telegraf_conf > examples/telegraf/telegraf.conf
# (do not edit: tests/test_telegraf_conf.py checks this file is that output).
# Read README.md beside it first: Telegraf does not replay gaps, its buffer is bounded and in memory.
# Edit the broker (servers), the InfluxDB URL, organization and bucket; the token comes from $INFLUX_TOKEN.

[agent]
  ## no "host" tag (the bridge writes none)
  omit_hostname = true
  flush_interval = "1s"
  metric_batch_size = 5000
  ## points held in memory while InfluxDB is down; beyond this the OLDEST are dropped, for good
  metric_buffer_limit = 100000

[[outputs.influxdb_v2]]
  urls = ["http://localhost:8086"]
  token = "${INFLUX_TOKEN}"
  organization = "orbitwin"
  bucket = "orbitwin"

## InfluxDB 1.x instead:
# [[outputs.influxdb]]
#   urls = ["http://localhost:8086"]
#   database = "orbitwin"
"""


def _consumer(alias: str, topic: str, client_id: str) -> list[str]:
    return ["", "[[inputs.mqtt_consumer]]", f'  alias = "{alias}"', '  servers = ["tcp://localhost:1883"]',
            f'  topics = ["{topic}"]', "  qos = 1", f'  client_id = "{client_id}"',
            "  ## the broker keeps QoS 1 messages while Telegraf is away (up to its own queue limits)",
            "  persistent_session = true", "  ## no topic tag (the bridge writes none)", '  topic_tag = ""',
            "  max_undelivered_messages = 1000", '  data_format = "json_v2"']


def _entry(kind: str, path: str, rename: str | None = None, type_: str | None = None,
           optional: bool = False) -> list[str]:
    out = [f"    [[inputs.mqtt_consumer.json_v2.{kind}]]", f'      path = "{path}"']
    if rename:
        out.append(f'      rename = "{rename}"')
    if type_:
        out.append(f'      type = "{type_}"')
    if optional:
        out.append("      optional = true")
    return out


def packet_input(packet: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The ``mqtt_consumer`` of one telemetry packet: measurement ``packet``, tags ``sat`` and ``run``, its fields and ``seq``."""
    lines = _consumer(f"orbitwin_{packet}", Topics(prefix).tm("+", packet), f"orbitwin-telegraf-{packet}")
    lines += ["  [[inputs.mqtt_consumer.json_v2]]", f'    measurement_name = "{packet}"', '    timestamp_path = "t"',
              f'    timestamp_format = "{TIME_LAYOUT}"']
    lines += _entry("tag", "sat") + _entry("tag", RUN_PATH, "run")
    for name in PACKET_FIELDS[packet]:
        lines += _entry("field", f"fields.{name}", name, TELEGRAF_TYPES[FIELD_BY_NAME[name].dtype])
    return lines + _entry("field", "seq", "seq", "int")


def runs_input(prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Births (``{prefix}/state`` online) as ``runs`` points: tag ``run``; sats, dt_s, seed; the birth's wall time."""
    lines = _consumer("orbitwin_runs", Topics(prefix).state, "orbitwin-telegraf-runs")
    lines += ["  ## births only (a death carries no run); the state tag only selects them", '  tagexclude = ["state"]',
              "  [inputs.mqtt_consumer.tagpass]", '    state = ["online"]', "  [[inputs.mqtt_consumer.json_v2]]",
              '    measurement_name = "runs"', '    timestamp_path = "wall_time"', '    timestamp_format = "unix"']
    lines += _entry("tag", "state") + _entry("tag", RUN_PATH, "run", optional=True)
    for name, type_ in RUN_FIELDS:
        lines += _entry("field", name, name, type_, optional=True)
    return lines


def render(prefix: str = DEFAULT_PREFIX) -> str:
    """The whole ``telegraf.conf``."""
    lines = [_HEAD.rstrip("\n")]
    for packet in PACKET_FIELDS:
        lines += packet_input(packet, prefix)
    lines += runs_input(prefix)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
