"""The telemetry policy: what the twin publishes, and the budget it costs the broker and InfluxDB (pure).

A policy states, for a fleet of any size:

- ``watch``: the satellites that publish per-satellite topics ``sat/{sat}/tm/{packet}``: ``all``
  (the default), ``none``, or a selector like the ``select`` of fleet commands (name globs, a
  shell by altitude/inclination band); changeable at run time with the ``set_watch`` command;
- ``frames``: the fleet frames ``fleet/tm/{packet}`` carry ``all`` satellites (the default),
  only the ``watched`` ones, or are ``off`` (the InfluxDB bridge archives the frames, so this is
  what InfluxDB stores);
- ``aggregates_hz``: per-shell and per-plane aggregates ``fleet/agg/...``
  (:mod:`twin.contract.fleet_aggregates`) at that rate, 0 = off (the default);
- events, replies, state, summary and status: always.

:func:`budget` turns a policy into MQTT messages/s, MQTT bytes/s and InfluxDB field values/s
(per second of sim time) from the packet schedule and message sizes measured by encoding real
messages (:class:`MessageSizes`); :func:`check_budget` compares it with the sinks' ceilings
(:func:`load_ceilings`: ``twin/data/sink_ceilings.toml``, measured by the benchmarks).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from twin.contract.request_parser import Selector, parse_selector
from twin.contract.telemetry_encoder import PacketSchedule
from twin.schema.commands import CommandError
from twin.schema.telemetry import PACKET_FIELDS

FRAMES_CHOICES = ("all", "watched", "off")
INFLUX_EXTRA_PER_ROW = 3  # values of a frame row besides its fields: seq and the sat and run tags (as the bench counts)
AGGREGATES_ON_HZ = 1.0  # ``--aggregates on``: one aggregate per shell and plane each second of sim time


class PolicyError(ValueError):
    """A policy or ceiling that cannot be used; the message names the option."""


@dataclass(frozen=True)
class TelemetryPolicy:
    """What the twin publishes. ``watch``: None = no satellite, ``Selector(all=True)`` = every one."""

    watch: Selector | None = Selector(all=True)
    watch_text: str = "all"
    frames: str = "all"
    aggregates_hz: float = 0.0

    def describe(self, watched: int | None = None) -> dict[str, Any]:
        """The policy as the birth message carries it (``watched``: satellites watched now)."""
        out: dict[str, Any] = {"watch": self.watch_text, "frames": self.frames, "aggregates_hz": self.aggregates_hz,
                               "events": "always"}
        if watched is not None:
            out["watched"] = watched
        return out


def parse_watch(text: str) -> Selector | None:
    """``--watch``: ``all``, ``none``, a JSON selector (as ``select`` of fleet commands) or
    ``;``-separated terms ``names=GLOB[,GLOB]``, ``sats=NAME[,NAME]``, ``alt_km=LO:HI``,
    ``inc_deg=LO:HI`` (a bare term is name globs). None means no satellite."""
    text = text.strip()
    if text == "all":
        return Selector(all=True)
    if text == "none":
        return None
    try:
        if text.startswith("{"):
            try:
                obj: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                raise PolicyError(f"--watch {text!r}: not JSON ({exc.msg})") from None
            return parse_selector(obj)
        sel: dict[str, Any] = {}
        for term in (t.strip() for t in text.split(";")):
            if not term:
                continue
            key, sep, value = term.partition("=")
            key, value = (key.strip(), value.strip()) if sep else ("names", term)
            if key in ("alt_km", "inc_deg"):
                lo, colon, hi = value.partition(":")
                try:
                    band = [float(lo), float(hi)] if colon else None
                except ValueError:
                    band = None
                if band is None:
                    raise PolicyError(f"--watch {text!r}: {key} takes LO:HI, got {value!r}")
                sel.setdefault("shell", {})[key] = band
            elif key == "names":
                sel["names"] = ",".join(filter(None, (sel.get("names"), value)))
            elif key == "sats":
                sel["sats"] = [s.strip() for s in value.split(",") if s.strip()]
            else:
                raise PolicyError(f"--watch {text!r}: unknown term {key!r} (all, none, names=, sats=, alt_km=, "
                                  "inc_deg= or a JSON selector)")
        return parse_selector(sel or None)
    except CommandError as exc:
        raise PolicyError(f"--watch {text!r}: {exc.message}") from None


def parse_aggregates(text: str) -> float:
    """``--aggregates``: ``off`` (0), ``on`` (:data:`AGGREGATES_ON_HZ`) or a rate in Hz (0 < HZ <= 10)."""
    text = text.strip().lower()
    if text in ("off", "0"):
        return 0.0
    if text == "on":
        return AGGREGATES_ON_HZ
    try:
        hz = float(text)
    except ValueError:
        raise PolicyError(f"--aggregates {text!r}: expected on, off or a rate in Hz") from None
    if not 0.0 < hz <= 10.0:
        raise PolicyError(f"--aggregates {text!r}: a rate must be within 0..10 Hz")
    return hz


def make_policy(watch: str = "all", frames: str = "all", aggregates: str = "off") -> TelemetryPolicy:
    """A policy from the ``orbitwin run`` options; :class:`PolicyError` names the bad one."""
    if frames not in FRAMES_CHOICES:
        raise PolicyError(f"--frames {frames!r}: expected one of {', '.join(FRAMES_CHOICES)}")
    return TelemetryPolicy(parse_watch(watch), watch.strip(), frames, parse_aggregates(aggregates))


# --- budget ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageSizes:
    """Bytes on the wire (topic + payload) measured by encoding real messages.

    ``sat_msg``: mean per-satellite message of each packet; ``frame_head`` and ``frame_row``: a
    frame of a packet is ``frame_head + rows * frame_row``; ``aggregate``: one aggregate message;
    ``summary``: one fleet summary, with ``summary_values`` numbers in it (what InfluxDB keeps).
    """

    sat_msg: dict[str, float]
    frame_head: dict[str, float]
    frame_row: dict[str, float]
    aggregate: float = 0.0
    summary: float = 0.0
    summary_values: int = 0


@dataclass(frozen=True)
class Budget:
    """Per second of sim time: MQTT messages and bytes, InfluxDB field values; ``parts``: per kind."""

    msgs_per_s: float
    bytes_per_s: float
    influx_values_per_s: float
    parts: dict[str, dict[str, float]] = field(default_factory=dict)

    def line(self) -> str:
        """One line: the figures of this budget."""
        return (f"{self.msgs_per_s:,.0f} MQTT messages/s, {human_bytes(self.bytes_per_s)}/s, "
                f"{self.influx_values_per_s:,.0f} InfluxDB field values/s")


def human_bytes(x: float) -> str:
    """``12.3 kB``, ``4.56 MB`` (decimal units)."""
    return f"{x / 1e6:,.2f} MB" if x >= 1e6 else f"{x / 1e3:,.1f} kB"


def _rate(period: np.ndarray, dt_s: float) -> float:
    """Messages per second of sim time of rows with these periods (ticks; 0 = never)."""
    return float(np.sum(np.where(period > 0, 1.0 / np.maximum(period, 1), 0.0)) / dt_s)


def _frames_rate(period: np.ndarray, phase: np.ndarray, dt_s: float) -> float:
    """Frames per second of sim time of a packet over these rows: ticks with at least one row due."""
    per_tick = 0.0
    live = period > 0
    for p in np.unique(period[live]):
        per_tick += np.unique(phase[live & (period == p)]).size / float(p)
    return min(per_tick, 1.0) / dt_s


def budget(schedule: PacketSchedule, watched: np.ndarray, frames: str, sizes: MessageSizes, *,
           aggregate_groups: int = 0, aggregates_hz: float = 0.0) -> Budget:
    """The budget of a policy over ``schedule`` (its packets, rates and periodic topics).

    ``watched``: bool per satellite (per-satellite topics); ``frames``: ``all``/``watched``/``off``;
    ``aggregate_groups``: shells + planes aggregated at ``aggregates_hz``. InfluxDB keeps every
    frame row (the packet's fields, ``seq`` and the ``sat`` and ``run`` tags, counted as
    ``orbitwin bench influx`` counts them; nulls, which it leaves out, counted) and the summary;
    events, replies and status are rare and left out.
    """
    dt = schedule.dt_s
    in_frames = {"all": np.ones_like(watched), "watched": watched, "off": np.zeros_like(watched)}[frames]
    parts: dict[str, dict[str, float]] = {}
    for packet, period in schedule.period.items():
        sat_rate = _rate(period[watched], dt)
        rows_rate = _rate(period[in_frames], dt)
        n_frames = _frames_rate(period[in_frames], schedule.phase[packet][in_frames], dt) if in_frames.any() else 0.0
        parts[packet] = {
            "msgs": sat_rate + n_frames,
            "bytes": sat_rate * sizes.sat_msg.get(packet, 0.0) + n_frames * sizes.frame_head.get(packet, 0.0)
            + rows_rate * sizes.frame_row.get(packet, 0.0),
            "influx": rows_rate * (len(PACKET_FIELDS[packet]) + INFLUX_EXTRA_PER_ROW),
        }
    agg_msgs = aggregate_groups * aggregates_hz
    parts["aggregates"] = {"msgs": agg_msgs, "bytes": agg_msgs * sizes.aggregate, "influx": 0.0}
    other = {name: (1.0 / dt if hz is None else hz) for name, hz in schedule.topic_rates.items()}
    summary_hz = other.pop("summary")
    parts["summary"] = {"msgs": summary_hz, "bytes": summary_hz * sizes.summary,
                        "influx": summary_hz * sizes.summary_values}
    parts["other"] = {"msgs": float(sum(other.values())), "bytes": 0.0, "influx": 0.0}
    return Budget(sum(p["msgs"] for p in parts.values()), sum(p["bytes"] for p in parts.values()),
                  sum(p["influx"] for p in parts.values()), parts)


# --- ceilings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ceilings:
    """What the configured sinks hold, per second: broker messages and bytes, InfluxDB field values."""

    mqtt_msgs_per_s: float
    mqtt_bytes_per_s: float
    influx_values_per_s: float
    source: str = ""


def load_ceilings(path: str | Path | None = None) -> Ceilings:
    """The ceilings of ``path`` (TOML: ``[mqtt] messages_per_s, bytes_per_s``, ``[influx]
    field_values_per_s``), else the shipped ``twin/data/sink_ceilings.toml``."""
    option = "--sink-ceilings"
    try:
        if path is None:
            text = resources.files("twin.data").joinpath("sink_ceilings.toml").read_text()
            source = "twin/data/sink_ceilings.toml"
        else:
            text, source = Path(path).read_text(), str(path)
        doc = tomllib.loads(text)
    except OSError as exc:
        raise PolicyError(f"{option} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{option} {path}: not TOML ({exc})") from None
    values = []
    for table, key in (("mqtt", "messages_per_s"), ("mqtt", "bytes_per_s"), ("influx", "field_values_per_s")):
        v = doc.get(table, {}).get(key) if isinstance(doc.get(table), dict) else None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise PolicyError(f"{option} {source}: [{table}] {key} must be a number > 0, got {v!r}")
        values.append(float(v))
    return Ceilings(values[0], values[1], values[2], source=source)


def check_budget(b: Budget, c: Ceilings) -> list[str]:
    """One line per ceiling the budget exceeds (empty: within every ceiling), naming what to change."""
    advice = "--watch a smaller selection, lower --rates (e.g. hk=0.2)"
    out = []
    for what, figure, ceiling, fmt, change in (
            ("MQTT messages/s", b.msgs_per_s, c.mqtt_msgs_per_s, "{:,.0f}", advice + " or --aggregates off"),
            ("MQTT bytes/s", b.bytes_per_s, c.mqtt_bytes_per_s, "{:,.0f}", advice + ", --frames watched"),
            ("InfluxDB field values/s", b.influx_values_per_s, c.influx_values_per_s, "{:,.0f}",
             "--frames watched (with a smaller --watch) or off, lower --rates (e.g. hk=0.2)")):
        if figure > ceiling:
            out.append(f"the telemetry policy needs {fmt.format(figure)} {what}, above the ceiling of "
                       f"{fmt.format(ceiling)} ({c.source}); use {change}, a --sink-ceilings file for a bigger "
                       "deployment, or --over-budget to run anyway")
    return out
