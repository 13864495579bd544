"""Telemetry packet scheduling and JSON encoding for thousands of satellites per tick.

Each packet has a rate (Hz) per satellite; a satellite publishes a packet on the ticks where
``(tick + phase) % period == 0`` with its phase spread over the period, so slow packets load
every tick evenly. The fleet summary and the twin status have rates too (:data:`TOPIC_RATES`,
the same ``--rates NAME=HZ`` option). Payloads are rendered from one %-template per packet (several times faster
than ``json.dumps`` per message); the field list comes from the schema, each field's JSON type and
null for non-finite values from :mod:`twin.schema.codec`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import json

import numpy as np

from twin.contract.topics import Topics
from twin.schema.codec import FIELD_CODECS, json_column
from twin.schema.telemetry import PACKET_BY_NAME, PACKET_FIELDS, PACKETS, SCHEMA_VERSION


class RateError(ValueError):
    """A bad packet rate specification."""


# Periodic topics that are not telemetry packets, with their default rate in Hz (None: every tick).
# ``summary`` is ``{prefix}/fleet/summary``; ``status`` is ``{prefix}/fleet/status``; ``topology`` is
# ``{prefix}/fleet/topology`` (a twin with the network: the laser links, :mod:`twin.contract.network_frames`).
TOPIC_RATES: dict[str, float | None] = {"summary": None, "status": 0.2, "topology": 0.1}


def parse_rates(text: str | None, *, topics: bool = True) -> dict[str, float]:
    """``"hk=1,orbit=0.2,summary=0.2"`` -> {"hk": 1.0, "orbit": 0.2, "summary": 0.2}; names are checked.

    Names are telemetry packets and (with ``topics``) the periodic topics of :data:`TOPIC_RATES`.
    """
    names = list(PACKET_FIELDS) + (list(TOPIC_RATES) if topics else [])
    out: dict[str, float] = {}
    if not text:
        return out
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise RateError(f"bad rate {item!r}: expected NAME=HZ with NAME one of {', '.join(names)}")
        try:
            hz = float(value)
        except ValueError:
            raise RateError(f"bad rate {item!r}: {value!r} is not a number") from None
        if not 0.0 <= hz <= 1000.0:
            raise RateError(f"bad rate {item!r}: must be within 0..1000 Hz")
        out[name] = hz
    return out


class PacketSchedule:
    """Which satellites publish which packet at each tick."""

    def __init__(self, n: int, dt_s: float, rates: Mapping[str, float] | None = None,
                 per_sat: Mapping[int, Mapping[str, float]] | None = None) -> None:
        self.n = n
        self.dt_s = dt_s
        given = dict(rates or {})
        self.rates = {p.name: p.rate_hz for p in PACKETS} | {k: v for k, v in given.items() if k in PACKET_BY_NAME}
        # periodic topics other than packets (Hz; None = every tick)
        self.topic_rates: dict[str, float | None] = TOPIC_RATES | {k: v for k, v in given.items() if k in TOPIC_RATES}
        self.period: dict[str, np.ndarray] = {}
        idx = np.arange(n)
        for packet, hz in self.rates.items():
            hz_arr = np.full(n, hz, dtype=float)
            for sat, override in (per_sat or {}).items():
                if packet in override:
                    hz_arr[sat] = override[packet]
            with np.errstate(divide="ignore"):
                period = np.where(hz_arr > 0, np.maximum(1, np.rint(1.0 / (hz_arr * dt_s))), 0).astype(np.int64)
            self.period[packet] = period
        self.phase = {p: np.where(per > 0, idx % np.maximum(per, 1), 0) for p, per in self.period.items()}

    def drop(self, packet: str) -> None:
        """Never publish ``packet`` (a twin without the model behind it: ``net`` without the network)."""
        for table in (self.rates, self.period, self.phase):
            table.pop(packet, None)

    def due(self, tick: int) -> dict[str, np.ndarray]:
        """Satellite indices due for each packet at ``tick`` (packets with none are left out)."""
        out = {}
        for packet, period in self.period.items():
            safe = np.maximum(period, 1)
            rows = np.flatnonzero((period > 0) & ((tick + self.phase[packet]) % safe == 0))
            if rows.size:
                out[packet] = rows
        return out

    def topic_period(self, name: str) -> int:
        """Ticks between two messages on periodic topic ``name`` (1 = every tick, 0 = never)."""
        hz = self.topic_rates[name]
        if hz is None:
            return 1
        return 0 if hz <= 0 else max(1, int(np.rint(1.0 / (hz * self.dt_s))))

    def topic_due(self, name: str, tick: int) -> bool:
        """Whether periodic topic ``name`` (``summary``, ``status``) is published at ``tick``."""
        period = self.topic_period(name)
        return period > 0 and tick % period == 0

    def messages_per_s(self) -> float:
        """Average telemetry messages per second of sim time."""
        return float(sum(np.sum(np.where(p > 0, 1.0 / np.maximum(p, 1), 0.0)) for p in self.period.values()) / self.dt_s)

    def field_values_per_s(self) -> float:
        return float(sum(np.sum(np.where(p > 0, 1.0 / np.maximum(p, 1), 0.0)) * len(PACKET_FIELDS[k])
                         for k, p in self.period.items()) / self.dt_s)


class PacketEncoder:
    """Renders one packet's JSON payload for many satellites at once."""

    def __init__(self, packet: str, names: Sequence[str], norad_ids: Sequence[int] | np.ndarray,
                 topics: Topics) -> None:
        self.packet = packet
        self.fields = PACKET_FIELDS[packet]
        self.codecs = [FIELD_CODECS[f] for f in self.fields]
        body = ",".join(f'"{f}":{c.json_slot}' for f, c in zip(self.fields, self.codecs)).replace("%", "%%")
        # two stages: the tick's constants (t, t_s, run, bseq) first, then each satellite's row
        self.template = ('{"v":' + str(SCHEMA_VERSION) + ',"sat":"%%s","norad":%%d,"packet":"' + packet
                         + '","t":"%s","t_s":%s,"seq":%%d,"run":%d,"bseq":%d,"fields":{' + body + '}}')
        self.topics = [topics.tm(name, packet) for name in names]
        self.sat_head = [(str(name), int(i)) for name, i in zip(names, norad_ids)]

    def columns(self, tm: Mapping[str, np.ndarray], rows: np.ndarray) -> list[list[Any]]:
        """Each field's JSON texts for ``rows`` (the codec's ``json_texts``); a fleet frame of the same rows reuses them."""
        return [c.json_texts(np.asarray(tm[f])[rows]) for f, c in zip(self.fields, self.codecs)]

    def encode(self, tm: Mapping[str, np.ndarray], rows: np.ndarray, seq: np.ndarray, bseq: int, t_iso: str,
               t_s: float, run: int = 0, cols: list[list[Any]] | None = None) -> list[tuple[str, bytes]]:
        """(topic, payload) for each satellite index in ``rows`` with its sequence number ``seq``.

        ``run`` identifies the twin process (its first birth sequence): sequence numbers start
        at 0 in each run and never repeat within it, across reconnections. ``cols``: the
        :meth:`columns` of ``rows``, if already made.
        """
        if cols is None:
            cols = self.columns(tm, rows)
        tmpl = self.template % (t_iso, repr(round(t_s, 6)), run, bseq)
        rows_l = rows.tolist()
        head, topics = self.sat_head, self.topics
        return [(topics[i], (tmpl % (*head[i], s, *vals)).encode())
                for i, s, vals in zip(rows_l, seq.tolist(), zip(*cols))]


class FrameEncoder:
    """A fleet frame: one packet of every due satellite in one columnar JSON message.

    ``{"v", "packet", "t", "t_s", "run", "bseq", "sats": [...], "norad": [...], "seq": [...],
    "fields": {"name": [...]}}``: row k of every list is one satellite's packet, exactly what its
    own ``sat/{sat}/tm/{packet}`` message carries. Bulk consumers (the InfluxDB bridge) read
    frames: a handful of messages per tick instead of thousands.
    """

    def __init__(self, packet: str, names: Sequence[str], norad_ids: Sequence[int] | np.ndarray,
                 topics: Topics) -> None:
        self.packet = packet
        self.fields = PACKET_FIELDS[packet]
        self.topic = topics.fleet_tm(packet)
        self.names = np.array(names, dtype=object)
        self.norad = np.asarray(norad_ids, dtype=np.int64)
        self._head = '{"v":' + str(SCHEMA_VERSION) + ',"packet":' + json.dumps(packet) + ',"t":'
        self._name_json = np.array([json.dumps(str(n)) for n in names], dtype=object)
        self._norad_text = np.array([str(int(i)) for i in self.norad], dtype=object)
        self._field_keys = [json.dumps(f) + ":[" for f in self.fields]

    def encode(self, tm: Mapping[str, np.ndarray], rows: np.ndarray, seq: np.ndarray, bseq: int, t_iso: str,
               t_s: float, run: int = 0, cols: list[list[Any]] | None = None) -> tuple[str, bytes]:
        """(topic, payload) of the frame of ``rows``; ``cols``: the rows' :meth:`PacketEncoder.columns`
        (the frame is then joined from those texts, byte for byte what ``json.dumps`` writes)."""
        if cols is not None:
            if len(cols) != len(self.fields):
                raise ValueError(f"{self.packet} frame: {len(cols)} columns for {len(self.fields)} fields")
            parts = [self._head, json.dumps(t_iso), ',"t_s":', json.dumps(round(t_s, 6)), ',"run":', str(int(run)),
                     ',"bseq":', str(int(bseq)), ',"sats":[', ",".join(self._name_json[rows].tolist()),
                     '],"norad":[', ",".join(self._norad_text[rows].tolist()), '],"seq":[',
                     ",".join(map(str, seq.tolist())), '],"fields":{']
            for k, (key, col) in enumerate(zip(self._field_keys, cols)):
                parts += ("," if k else "", key, ",".join(map(str, col)), "]")
            parts.append("}}")
            return self.topic, "".join(parts).encode()
        cols_json = {f: json_column(np.asarray(tm[f])[rows]) for f in self.fields}
        frame = {"v": SCHEMA_VERSION, "packet": self.packet, "t": t_iso, "t_s": round(t_s, 6), "run": run,
                 "bseq": bseq, "sats": self.names[rows].tolist(), "norad": self.norad[rows].tolist(),
                 "seq": seq.tolist(), "fields": cols_json}
        return self.topic, json.dumps(frame, separators=(",", ":"), allow_nan=False).encode()
