"""How the twin's MQTT messages become InfluxDB points (the database schema, from the one telemetry schema).

Measurements (tags; fields; timestamp):

* ``hk``, ``orbit``, ``power``, ``thermal``, ``payload``, ``radiation``, ``net``, ``compute`` — one
  per telemetry packet (``net`` from a twin with the network, ``compute`` from one with compute
  placement on) (``sat``, ``run``; the packet's schema fields, typed as the schema says, plus the
  message's ``seq`` integer; the packet's sim time). Null and non-finite values are left out
  (InfluxDB has no null; field types and non-finite handling are :mod:`twin.schema.codec`'s).
  The birth sequence is not stored: it identifies an MQTT session, not data.
* ``events`` (``sat`` or ``fleet``, ``kind``, ``severity``, ``run``; ``name``, ``detail`` (JSON),
  ``seq``; sim time + ``seq mod 10^6`` ns so that events of one tick never overwrite each other).
* ``replies`` (``sat`` or ``fleet``, ``status``, ``request``, ``run``; ``id``, ``reason``, ``field``,
  ``message``, ``result`` (JSON), ``seq``; sim time + ``seq mod 10^6`` ns).
* ``fleet`` (``run``; the fleet summary: counts per state, power, compute; sim time). Its numbers
  and booleans are fields; of its strings only :data:`SUMMARY_TEXT_FIELDS` (``compute_policy``, a
  twin with compute placement on) are stored, as string fields; NaN (a percentile of nothing) is
  left out like every non-finite value.
* ``fleet_grid`` (``cell``: one of a fixed grid's cells; the summary's per-cell counts, worst limit
  state and dose rates, and the cell's centre; sim time): what the fleet maps read, a few hundred
  series instead of one per satellite (:mod:`twin.schema.fleet_grid`).
* ``city_rtt`` (``src``, ``dst``: the two cities of a pair, ``run``; ``rtt_ms`` and ``stretch`` (left
  out when the pair has no route), ``fibre_rtt_ms``, ``reachable``; the matrix's sim time): one
  point per unordered city pair of each ``{prefix}/fleet/latency`` frame (4,950 for 100 cities).
  The network's fleet aggregates (links up, overloaded links, partitioned satellites, gateway
  delay percentiles) are fields of ``fleet``; the topology frame (every link) is not stored.
* ``twin`` (``run``; the twin's runtime status counters; sim time).
* ``bridge`` (``bridge``, ``run``: the run the bridge follows; the bridge's own counters; wall time).
* ``runs`` (``run``; the run's sim window ``sim_start_ms`` .. ``sim_latest_ms``, its wall-clock
  start ``wall_start_ms``, ``sats``, ``dt_s``, ``seed``, the measured ``speed``; one point per
  run at its wall-clock start, rewritten as the run advances): what the dashboards' run variable
  and "Runs" table read.

``run`` (every point has it) is the twin run (:func:`twin.runtime.clock.new_run_id`: unique per
process start, 16 digits, sortable by start time). Two runs with the same inputs write the same
sim timestamps; the tag keeps the second from overwriting the first. It multiplies the series by
the runs kept (a full-fleet run adds ~60,000), so the retention policy, or ``DROP SERIES WHERE
"run" = '...'``, bounds the total (dashboards/README.md, "Runs and the sim clock").

Only ``sat`` is a per-satellite tag: a 10,000-satellite fleet makes 10,000 series per telemetry
measurement (60,000 in all) plus events; anything else per satellite (shell, NORAD id) stays out
of tags. Events and replies naming a satellite outside the twin's catalogue (a request on a
made-up ``sat/{name}/cmd`` topic is answered on ``sat/{name}/reply``) get the tag ``unknown`` and
keep the name in a ``sat_given`` field, so no client can grow the series count.
Timestamps come from the message itself, so a message stored twice is one point
(InfluxDB overwrites same series + timestamp): writes are idempotent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from twin.schema import fleet_grid
from twin.schema.codec import CODECS, FIELD_CODECS, CodecError, line_literal
from twin.schema.telemetry import PACKET_FIELDS


class MappingError(ValueError):
    """A message that cannot become points; the message says why (it goes to the dead letters)."""


_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEAS_ESCAPE = str.maketrans({",": r"\,", " ": r"\ "})


def tag(value: str) -> str:
    """Escape a tag key or value."""
    if not value:
        raise MappingError("empty tag value")
    if "\n" in value or "\\" in value:
        raise MappingError(f"tag value {value[:40]!r} contains a newline or backslash")
    return value.translate(_TAG_ESCAPE)


def field_str(value: str) -> str:
    """A string field value in double quotes, escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def time_ns(iso: Any) -> int:
    """``2026-02-23T07:12:00.000Z`` -> ns since the Unix epoch."""
    if not isinstance(iso, str):
        raise MappingError("t must be an ISO 8601 UTC time string")
    try:
        t = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError(f"t {iso[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _int(v: Any, name: str) -> int:
    if type(v) is not int:
        raise MappingError(f"{name} must be an integer")
    return v


def _column(name: str, values: list[Any]) -> list[str | None]:
    """A schema field's column in line protocol (typed by :mod:`twin.schema.codec`); None: leave it out."""
    try:
        return FIELD_CODECS[name].line_values(values)
    except CodecError as exc:
        raise MappingError(f"field {name} {exc}") from None


def telemetry_lines(packet: str, sats: list[Any], seqs: list[Any], run: Any, bseq: Any, t_ns: int,
                    fields: dict[str, list[Any]]) -> list[tuple[str, int, bytes]]:
    """(sat, seq, line) for each row of a telemetry packet (a fleet frame or a single message)."""
    if packet not in PACKET_FIELDS:
        raise MappingError(f"unknown packet {packet!r}")
    expected = PACKET_FIELDS[packet]
    unknown = sorted(set(fields) - set(expected))
    if unknown:
        raise MappingError(f"unknown field {unknown[0]!r} in packet {packet}")
    missing = [f for f in expected if f not in fields]
    if missing:
        raise MappingError(f"missing field {missing[0]!r} in packet {packet}")
    n = len(sats)
    if len(seqs) != n or any(not isinstance(c, list) or len(c) != n for c in fields.values()):
        raise MappingError("sats, seq and every field column must have the same length")
    run_text = f",run={_int(run, 'run')}"
    _int(bseq, "bseq")
    tail = f" {t_ns}"
    cols = [_column(f, fields[f]) for f in expected]
    out = []
    for k in range(n):
        sat = sats[k]
        if not isinstance(sat, str):
            raise MappingError("sat must be a string")
        seq = _int(seqs[k], "seq")
        body = ",".join(f"{f}={c[k]}" for f, c in zip(expected, cols) if c[k] is not None)
        line = f"{packet},sat={tag(sat)}{run_text} {body}{',' if body else ''}seq={seq}i{tail}"
        out.append((sat, seq, line.encode()))
    return out


def frame_lines(frame: dict[str, Any]) -> list[tuple[str, int, bytes]]:
    """Lines of a fleet frame (``{prefix}/fleet/tm/{packet}``)."""
    try:
        return telemetry_lines(frame["packet"], frame["sats"], frame["seq"], frame["run"], frame["bseq"],
                               time_ns(frame["t"]), frame["fields"])
    except KeyError as exc:
        raise MappingError(f"frame lacks {exc.args[0]!r}") from None
    except TypeError as exc:
        raise MappingError(f"frame has the wrong shape: {exc}") from None


def message_lines(msg: dict[str, Any]) -> list[tuple[str, int, bytes]]:
    """Lines of one satellite's telemetry message (``sat/{sat}/tm/{packet}`` or a replay)."""
    try:
        fields = msg["fields"]
        if not isinstance(fields, dict):
            raise MappingError("fields must be an object")
        return telemetry_lines(msg["packet"], [msg["sat"]], [msg["seq"]], msg["run"], msg["bseq"],
                               time_ns(msg["t"]), {k: [v] for k, v in fields.items()})
    except KeyError as exc:
        raise MappingError(f"message lacks {exc.args[0]!r}") from None


class TelemetryPoint(NamedTuple):
    """Who a telemetry line is: its InfluxDB identity (measurement, ``sat`` tag, time) and its ``seq`` field."""

    measurement: str
    sat: str  # the tag value, unescaped
    seq: int
    t_ns: int


def telemetry_point(line: bytes) -> TelemetryPoint:
    """Parse a line made by :func:`telemetry_lines` (``{packet},sat={sat},run={run} {fields},seq={seq}i {t_ns}``).

    Raises ValueError for any other line.
    """
    head, sep, t_text = line.rpartition(b" ")
    comma = head.find(b",sat=")
    at = head.rfind(b"seq=")
    if not sep or comma < 1 or at < 0 or not head.endswith(b"i"):
        raise ValueError(f"not a telemetry line: {line[:80]!r}")
    end = comma + 5
    while True:  # the sat tag ends at the first comma (the run tag) or space that is not escaped
        end = min((i for i in (head.find(b" ", end), head.find(b",", end)) if i >= 0), default=-1)
        if end < 0:
            raise ValueError(f"not a telemetry line: {line[:80]!r}")
        if head[end - 1:end] != b"\\":
            break
        end += 1
    sat = head[comma + 5:end].decode().replace("\\", "")  # tag() escapes with a backslash and forbids one
    return TelemetryPoint(head[:comma].decode(), sat, int(head[at + 4:-1]), int(t_text))


def _json_field(v: Any) -> str:
    return field_str(json.dumps(v, separators=(",", ":"), sort_keys=True, default=str))


UNKNOWN_SAT = "unknown"  # the ``sat`` tag of events and replies naming no satellite of the catalogue
NO_RUN = "none"  # the ``run`` tag of a point whose run is not known (no birth seen yet)


def run_tag(run: Any) -> str:
    """The ``run`` tag value of a twin run id (an integer); :data:`NO_RUN` for anything else."""
    return str(run) if type(run) is int else NO_RUN


def _sat_tag(sat: str, known: Callable[[str], bool | None] | None) -> tuple[str, str]:
    """(tag value, extra field) for a satellite name: a name ``known`` rejects is stored as the tag
    :data:`UNKNOWN_SAT` with the name in a ``sat_given`` field, so made-up names in topics cannot
    create series (``fleet`` and names while no catalogue is known pass)."""
    if sat == "fleet" or known is None or known(sat) is not False:
        return sat, ""
    return UNKNOWN_SAT, f",sat_given={field_str(sat[:200])}"


def event_line(ev: dict[str, Any], known: Callable[[str], bool | None] | None = None) -> bytes:
    """One event (``sat/{sat}/event`` or ``fleet/event``); ``known`` bounds the ``sat`` tag (see :func:`_sat_tag`)."""
    try:
        seq = _int(ev["seq"], "seq")
        run = _int(ev["run"], "run")
        sat, given = _sat_tag(str(ev.get("sat") or "fleet"), known)
        fields = f"name={field_str(str(ev['name']))},detail={_json_field(ev.get('detail', {}))},seq={seq}i{given}"
        return (f"events,sat={tag(str(sat))},kind={tag(str(ev['kind']))},severity={tag(str(ev['severity']))},"
                f"run={run} {fields} {time_ns(ev['t']) + seq % 1_000_000}").encode()
    except KeyError as exc:
        raise MappingError(f"event lacks {exc.args[0]!r}") from None


def reply_line(r: dict[str, Any], sat_from_topic: str | None,
               known: Callable[[str], bool | None] | None = None, run: int | None = None) -> bytes:
    """One request reply (``sat/{sat}/reply``, ``fleet/reply`` or ``errors``); ``known`` bounds the ``sat`` tag.

    Its ``run`` tag is the reply's own ``run``, else ``run`` (the run the bridge follows), else :data:`NO_RUN`.
    """
    try:
        seq = _int(r["seq"], "seq")
        sat, given = _sat_tag(str(r.get("sat") or sat_from_topic or "fleet"), known)
        fields = [f"id={field_str(str(r['id']))}", f"seq={seq}i" + given]
        for key in ("reason", "field", "message"):
            if isinstance(r.get(key), str):
                fields.append(f"{key}={field_str(r[key])}")
        if "result" in r:
            fields.append(f"result={_json_field(r['result'])}")
        rtag = run_tag(r.get("run") if type(r.get("run")) is int else run)
        return (f"replies,sat={tag(str(sat))},status={tag(str(r['status']))},request={tag(str(r.get('request') or 'none'))},"
                f"run={rtag} {','.join(fields)} {time_ns(r['t']) + seq % 1_000_000}").encode()
    except KeyError as exc:
        raise MappingError(f"reply lacks {exc.args[0]!r}") from None


def numeric_fields(d: dict[str, Any], prefix: str = "") -> Iterable[str]:
    """Flatten numbers and booleans of a (nested) object into ``key=value`` line protocol fields."""
    for k, v in d.items():
        key = f"{prefix}{k}".translate(_TAG_ESCAPE)
        text = line_literal(v)
        if text is not None:
            yield f"{key}={text}"
        elif isinstance(v, dict):
            yield from numeric_fields(v, f"{prefix}{k}_")


# Fleet summary keys stored as string fields of the ``fleet`` point (every other string is left out):
# the compute placement policy (twin/runtime/status_table.py fleet_compute), at most TEXT_FIELD_MAX characters.
SUMMARY_TEXT_FIELDS = ("compute_policy",)
TEXT_FIELD_MAX = 64


def summary_lines(summary: dict[str, Any], t_ns: int, tags: dict[str, str] | None = None) -> list[bytes]:
    """A fleet summary (``{prefix}/fleet/summary``): the ``fleet`` point of its numbers (and of
    :data:`SUMMARY_TEXT_FIELDS`, as strings), then its grid's points."""
    return [flat_line("fleet", summary, t_ns, tags, skip=("v", "t", "t_s", "bseq", "grid"), texts=SUMMARY_TEXT_FIELDS),
            *grid_lines(summary, t_ns, tags)]


def grid_lines(summary: dict[str, Any], t_ns: int, tags: dict[str, str] | None = None) -> list[bytes]:
    """One ``fleet_grid`` point per cell of a fleet summary's ``grid`` (:mod:`twin.schema.fleet_grid`); none without one.

    Tag ``cell`` (one of the grid's fixed ``N_CELLS`` names, so a message cannot add series), the
    cell's centre (``lat_deg``, ``lon_deg``) and each grid field typed by its dtype's codec.
    """
    g = summary.get("grid")
    if g is None:
        return []
    if not isinstance(g, dict) or g.get("cell_deg") != fleet_grid.CELL_DEG:
        raise MappingError(f"grid must be an object with cell_deg {fleet_grid.CELL_DEG}")
    cols = []
    for f in fleet_grid.GRID_FIELDS:
        col = g.get(f.name)
        if not isinstance(col, list) or len(col) != fleet_grid.N_CELLS:
            raise MappingError(f"grid.{f.name} must be a list of {fleet_grid.N_CELLS} values")
        try:
            cols.append((f.name, CODECS[f.dtype].line_values(col)))
        except CodecError as exc:
            raise MappingError(f"grid.{f.name} {exc}") from None
    tagtext = "".join(f",{tag(k)}={tag(v)}" for k, v in (tags or {}).items())
    out = []
    for k in range(fleet_grid.N_CELLS):
        lat, lon = fleet_grid.cell_centre_deg(k)
        body = ",".join([f"lat_deg={lat!r},lon_deg={lon!r}", *(f"{n}={c[k]}" for n, c in cols if c[k] is not None)])
        out.append(f"{fleet_grid.MEASUREMENT},{fleet_grid.TAG}={fleet_grid.cell_name(k)}{tagtext} {body} {t_ns}".encode())
    return out


CITY_RTT = "city_rtt"  # measurement of the city-pair latency frames


def latency_lines(frame: dict[str, Any]) -> list[bytes]:
    """One ``city_rtt`` point per city pair of a latency frame (``{prefix}/fleet/latency``).

    Tags ``src`` and ``dst`` (city names, src before dst in the frame's list) and ``run``; fields
    ``rtt_ms`` and ``stretch`` (absent for a pair without a route), ``fibre_rtt_ms`` and ``reachable``.
    """
    try:
        cities, pairs, run = frame["cities"], frame["pairs"], _int(frame["run"], "run")
        t_ns = time_ns(frame["t"])
        if not isinstance(cities, list) or not all(isinstance(c, str) for c in cities):
            raise MappingError("cities must be a list of names")
        if not isinstance(pairs, dict):
            raise MappingError("pairs must be an object")
        src, dst = pairs["src"], pairs["dst"]
        cols = {k: pairs[k] for k in ("rtt_ms", "fibre_rtt_ms", "stretch")}
    except KeyError as exc:
        raise MappingError(f"latency frame lacks {exc.args[0]!r}") from None
    n = len(src) if isinstance(src, list) else -1
    if n < 0 or not isinstance(dst, list) or any(not isinstance(c, list) or len(c) != n for c in (dst, *cols.values())):
        raise MappingError("pairs.src, dst, rtt_ms, fibre_rtt_ms and stretch must be lists of one length")
    try:
        texts = {k: CODECS["float"].line_values(v) for k, v in cols.items()}
    except CodecError as exc:
        raise MappingError(f"latency frame {exc}") from None
    names = [tag(c) for c in cities]
    out = []
    for k in range(n):
        i, j = src[k], dst[k]
        if type(i) is not int or type(j) is not int or not 0 <= i < j < len(names):
            raise MappingError(f"pair {k}: src and dst must be indices into cities with src < dst")
        rtt = texts["rtt_ms"][k]
        body = ",".join(f"{f}={v}" for f, v in (("rtt_ms", rtt), ("stretch", texts["stretch"][k]),
                                                ("fibre_rtt_ms", texts["fibre_rtt_ms"][k])) if v is not None)
        body += f"{',' if body else ''}reachable={'true' if rtt is not None else 'false'}"
        out.append(f"{CITY_RTT},src={names[i]},dst={names[j]},run={run} {body} {t_ns}".encode())
    return out


def flat_line(measurement: str, d: dict[str, Any], t_ns: int, tags: dict[str, str] | None = None,
              skip: tuple[str, ...] = ("v", "t", "t_s"), texts: tuple[str, ...] = ()) -> bytes:
    """A lightly tagged point of every number in ``d`` (fleet summary, twin and bridge status, runs).

    A key that is also a tag (``run``) is not repeated as a field. Keys in ``texts`` are string
    fields when present (a string of at most :data:`TEXT_FIELD_MAX` characters, else MappingError:
    one key must keep one InfluxDB field type); other strings are left out.
    """
    keep = {k: v for k, v in d.items() if k not in skip and k not in (tags or {})}
    text_fields = []
    for k in texts:
        if k not in keep:
            continue
        v = keep.pop(k)
        if not isinstance(v, str) or len(v) > TEXT_FIELD_MAX:
            raise MappingError(f"{measurement}: {k} must be a string of at most {TEXT_FIELD_MAX} characters")
        text_fields.append(f"{k.translate(_TAG_ESCAPE)}={field_str(v)}")
    fields = ",".join([*numeric_fields(keep), *text_fields])
    if not fields:
        raise MappingError(f"{measurement}: no numeric fields")
    tagtext = "".join(f",{tag(k)}={tag(v)}" for k, v in (tags or {}).items())
    return f"{measurement.translate(_MEAS_ESCAPE)}{tagtext} {fields} {t_ns}".encode()


def runs_line(run: int, info: dict[str, Any], t_ns: int) -> bytes:
    """The ``runs`` point of one twin run (its sim window and identity; see the module docstring)."""
    return flat_line("runs", info, t_ns, tags={"run": run_tag(run)}, skip=())
