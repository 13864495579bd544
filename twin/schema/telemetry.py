"""The one telemetry schema: every field's name, unit, type, packet, description and limits.

The twin computes these fields, the MQTT contract groups them into packets, the InfluxDB
bridge maps them to fields, and the dashboards and alert rules are generated from them.
Nothing else lists telemetry fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

SCHEMA_VERSION = 1

MODE_NOMINAL, MODE_SAFE, MODE_LOST = 0, 1, 2
MODES = {MODE_NOMINAL: "nominal", MODE_SAFE: "safe", MODE_LOST: "lost"}
LIMIT_GREEN, LIMIT_YELLOW, LIMIT_RED = 0, 1, 2
LIMIT_STATES = {LIMIT_GREEN: "green", LIMIT_YELLOW: "yellow", LIMIT_RED: "red"}
ATT_SUN_TRACK, ATT_NADIR_FIXED, ATT_SAFE_SUN, ATT_TUMBLING = 0, 1, 2, 3
ATTITUDE_MODES = {ATT_SUN_TRACK: "sun_track", ATT_NADIR_FIXED: "nadir_fixed", ATT_SAFE_SUN: "safe_sun",
                  ATT_TUMBLING: "tumbling"}


@dataclass(frozen=True)
class Limits:
    """Yellow (caution) and red (alarm) limits; ``None`` where a side has no limit."""

    red_low: float | None = None
    yellow_low: float | None = None
    yellow_high: float | None = None
    red_high: float | None = None


@dataclass(frozen=True)
class Packet:
    """A telemetry packet: fields sent together at one default rate."""

    name: str
    rate_hz: float
    description: str


@dataclass(frozen=True)
class Field:
    """One telemetry field."""

    name: str
    unit: str
    packet: str
    description: str
    dtype: str = "float"  # float | int | bool
    limits: Limits | None = None
    enum: dict[int, str] | None = None


# Default rates: the whole fleet (9,543 satellites) then publishes ~14,300 telemetry messages/s
# (~126,000 field values/s into InfluxDB), which one Mosquitto, one bridge and one InfluxDB 1.x
# sustain on a 2-core machine beside the twin (see the mqtt and influx benchmarks). ``net`` is
# published only by a twin that steps the network (docs/network.md), ``compute`` only by a twin with
# compute placement on (``orbitwin run --compute POLICY``; docs/physics.md#compute-jobs).
PACKETS: tuple[Packet, ...] = (
    Packet("hk", 1.0, "Fast housekeeping: mode, limit state, battery, payload headline, light"),
    Packet("orbit", 0.1, "Position and orbit geometry"),
    Packet("power", 0.1, "Electrical power system: generation, loads, battery"),
    Packet("thermal", 0.05, "Lumped thermal node temperatures and heaters"),
    Packet("payload", 0.1, "Compute payload: load, throughput, devices, errors"),
    Packet("radiation", 0.05, "Trapped radiation environment, dose and single-event effects"),
    Packet("net", 0.1, "Laser mesh and ground segment: links up, gateways in view, route to the nearest gateway, traffic"),
    Packet("compute", 0.1, "Compute jobs placed by the scheduler: jobs running, their power and battery share, results "
                           "and upsets"),
)

FIELDS: tuple[Field, ...] = (
    # hk
    Field("mode", "", "hk", "Spacecraft mode", "int", enum=MODES),
    Field("limit_state", "", "hk", "Worst limit state over all fields", "int", enum=LIMIT_STATES),
    Field("fault_flags", "", "hk", "Bit mask of active injected faults (bit = fault kind index)", "int"),
    Field("battery_soc", "1", "hk", "Battery state of charge", limits=Limits(0.45, 0.55, None, None)),

    Field("payload_util", "1", "hk", "Mean accelerator utilisation"),
    Field("payload_temp_k", "K", "hk", "Compute payload node temperature", limits=Limits(263.15, 273.15, 353.15, 363.15)),
    Field("illumination", "1", "hk", "Fraction of the solar disc visible (0 umbra, 1 sunlit)"),
    # orbit
    Field("lat_deg", "deg", "orbit", "Geodetic latitude (WGS-84)"),
    Field("lon_deg", "deg", "orbit", "Longitude, -180..180"),
    Field("alt_m", "m", "orbit", "Height above the WGS-84 ellipsoid", limits=Limits(300e3, 350e3, None, None)),
    Field("speed_m_s", "m/s", "orbit", "Inertial speed"),
    Field("beta_deg", "deg", "orbit", "Sun beta angle (Sun above the orbit plane)"),
    Field("attitude_mode", "", "orbit", "Attitude mode", "int", enum=ATTITUDE_MODES),
    Field("sgp4_error", "", "orbit", "SGP4 error code, 0 when propagation succeeded", "int"),
    # power
    Field("array_power_w", "W", "power", "Solar array electrical output"),
    Field("net_power_w", "W", "power", "Generation minus loads (positive charges the battery)"),
    Field("load_power_w", "W", "power", "Total load power supplied"),
    Field("shunt_power_w", "W", "power", "Excess generation shunted"),
    Field("battery_power_w", "W", "power", "Battery terminal power (positive discharging)"),
    Field("battery_voltage_v", "V", "power", "Battery terminal voltage"),
    Field("battery_current_a", "A", "power", "Battery current (positive discharging)"),
    Field("payload_power_w", "W", "power", "Compute payload power"),
    Field("avionics_power_w", "W", "power", "Bus avionics power"),
    Field("isl_power_w", "W", "power", "Laser inter-satellite link terminals power"),
    Field("radio_power_w", "W", "power", "RF user/gateway radio power"),
    Field("heater_power_w", "W", "power", "Heater power"),
    Field("loads_shed", "", "power", "Bit mask of loads shed (bit i = power.LOAD_NAMES[i])", "int"),
    Field("array_strings_failed", "", "power", "Solar array strings lost", "int"),
    Field("battery_strings_failed", "", "power", "Battery cell strings lost", "int"),
    # thermal
    Field("radiator_temp_k", "K", "thermal", "Radiator node temperature", limits=Limits(213.15, 223.15, 343.15, 353.15)),
    Field("battery_temp_k", "K", "thermal", "Battery node temperature", limits=Limits(268.15, 273.15, 308.15, 318.15)),
    Field("avionics_temp_k", "K", "thermal", "Avionics node temperature", limits=Limits(243.15, 253.15, 333.15, 343.15)),
    Field("array_temp_k", "K", "thermal", "Solar array node temperature", limits=Limits(113.15, 133.15, 373.15, 393.15)),
    Field("heatpipe_efficiency", "1", "thermal", "Payload-to-radiator link conductance fraction", limits=Limits(0.5, 0.8, None, None)),
    Field("radiator_efficiency", "1", "thermal", "Radiator effective emissive area fraction", limits=Limits(0.5, 0.8, None, None)),
    # payload
    Field("payload_load_setpoint", "1", "payload", "Requested accelerator load"),
    Field("payload_power_cap_w", "W", "payload", "Commanded payload power cap"),
    Field("payload_throttle", "1", "payload", "Effective throttle (1 = none; thermal, FDIR and command)"),
    Field("payload_throughput_tops", "TOPS", "payload", "Delivered compute throughput"),
    Field("payload_backlog_top", "TOP", "payload", "Queued work not yet done (tera-operations)"),
    Field("devices_online", "", "payload", "Accelerators powered and working", "int"),
    Field("devices_latched", "", "payload", "Bit mask of accelerators in latch-up", "int", limits=Limits(None, None, 0.5, 0.5)),
    Field("ecc_corrected_total", "", "payload", "ECC-corrected upsets since start", "int"),
    Field("ecc_uncorrectable_total", "", "payload", "Uncorrectable upsets since start", "int"),
    Field("payload_hung", "", "payload", "Payload not responding (hang)", "bool", limits=Limits(None, None, 0.5, 0.5)),
    Field("payload_source", "", "payload", "Payload source", "int",
          enum={0: "simulated", 1: "board", 2: "board_lost_fallback", 3: "board_held"}),
    Field("hil_divergence", "", "payload", "The bound board's utilisation departs from what the twin commanded",
          "bool", limits=Limits(None, None, 0.5, 0.5)),
    # radiation
    Field("proton_flux_cm2_s", "1/(cm2 s)", "radiation", "Trapped proton integral flux above the shield energy (AP8)"),
    Field("electron_flux_cm2_s", "1/(cm2 s)", "radiation", "Trapped electron integral flux (AE8)"),
    Field("dose_rate_rad_s", "rad(Si)/s", "radiation", "Ionising dose rate behind the shielding", limits=Limits(None, None, 3e-3, 1e-2)),  # docs/physics.md#dose-rate-limits
    Field("dose_total_rad", "rad(Si)", "radiation", "Total ionising dose since start of life", limits=Limits(None, None, 2000.0, 10000.0)),
    Field("seu_total", "", "radiation", "Single-event upsets since start", "int"),
    Field("sel_total", "", "radiation", "Single-event latch-ups since start", "int"),
    Field("in_saa", "", "radiation", "Inside the South Atlantic Anomaly (proton flux above threshold)", "bool"),
    # net (docs/network.md): lost satellites have no links, no gateway and no route
    Field("links_up", "", "net", "Laser inter-satellite links up (0 to the terminal count)", "int"),
    Field("gateways_visible", "", "net", "Gateways in service in view at or above the gateway minimum elevation", "int"),
    Field("gw_hops", "", "net", "Links on the route to the nearest reachable gateway (laser hops plus the ground "
          "link; 1 = a gateway in view); -1 when no gateway is reachable", "int"),
    Field("gw_delay_ms", "ms", "net", "One-way propagation delay to the nearest reachable gateway; null when none "
          "is reachable"),
    Field("max_link_util", "1", "net", "Largest utilisation (offered load / capacity) of the satellite's loaded "
          "links (laser, gateway, user); above 1 overloaded", limits=Limits(None, None, 0.8, 1.0)),  # docs/network.md#telemetry
    Field("throughput_gbps", "Gbps", "net", "Traffic through the satellite: relayed plus its ground up/down links, "
          "counted once"),
    # compute (docs/physics.md#compute-jobs; twin.core.compute.coupling.ComputeCoupling.telemetry): no limits, the
    # scheduler itself keeps jobs off low-charge, hot and unhealthy satellites
    Field("jobs_running", "", "compute", "Jobs holding an accelerator on this satellite now (running, or arriving "
          "by migration)", "int"),
    Field("compute_power_w", "W", "compute", "Accelerator dynamic power (above idle) the jobs drew over the last "
          "tick, averaged over the tick"),
    Field("compute_battery_w", "W", "compute", "The battery's part of compute_power_w (the jobs' power times the "
          "battery's share of the satellite's loads over the last tick)"),
    Field("jobs_completed_total", "", "compute", "Jobs that completed on this satellite since start (corrupt results "
          "included)", "int"),
    Field("jobs_corrupted_total", "", "compute", "Of jobs_completed_total, those whose result an uncorrectable upset "
          "corrupted", "int"),
    Field("job_upsets_total", "", "compute", "Uncorrectable upsets on this satellite's accelerators that hit a running "
          "job since start (rolled back to a checkpoint or re-run under the aware policy, else the result is "
          "corrupt)", "int"),
)

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
PACKET_BY_NAME: dict[str, Packet] = {p.name: p for p in PACKETS}
PACKET_FIELDS: dict[str, tuple[str, ...]] = {
    p.name: tuple(f.name for f in FIELDS if f.packet == p.name) for p in PACKETS
}
LIMITED_FIELDS: tuple[Field, ...] = tuple(f for f in FIELDS if f.limits is not None)


def schema_dict() -> dict[str, Any]:
    """The schema as JSON-able data."""
    return {
        "schema_version": SCHEMA_VERSION,
        "packets": [asdict(p) | {"fields": list(PACKET_FIELDS[p.name])} for p in PACKETS],
        "fields": [
            {k: v for k, v in asdict(f).items() if v is not None}
            | ({"enum": {str(k): v for k, v in f.enum.items()}} if f.enum else {})
            for f in FIELDS
        ],
    }


def schema_json() -> str:
    return json.dumps(schema_dict(), indent=2)


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def schema_markdown() -> str:
    """The schema as a Markdown reference (one table per packet)."""
    out = [f"# Orbitwin telemetry schema (version {SCHEMA_VERSION})", ""]
    for p in PACKETS:
        out += [f"## `{p.name}` — {p.description} (default {p.rate_hz:g} Hz)", ""]
        out += ["| field | unit | type | description | red low | yellow low | yellow high | red high |",
                "|---|---|---|---|---|---|---|---|"]
        for f in FIELDS:
            if f.packet != p.name:
                continue
            lim = f.limits or Limits()
            desc = f.description + (f" ({', '.join(f'{k}={v}' for k, v in f.enum.items())})" if f.enum else "")
            out.append(f"| `{f.name}` | {f.unit} | {f.dtype} | {desc} | {_fmt(lim.red_low)} | "
                       f"{_fmt(lim.yellow_low)} | {_fmt(lim.yellow_high)} | {_fmt(lim.red_high)} |")
        out.append("")
    return "\n".join(out)
