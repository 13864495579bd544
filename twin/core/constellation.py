"""Synthetic constellations: Walker shells described in a TOML file, turned into SGP4 mean elements.

A constellation file lists shells (altitude, inclination, planes, satellites per plane, Walker
phasing, eccentricity, epoch). :func:`shell_elements` gives each satellite's mean elements
(vectorised over the shell); :func:`build_catalogue` initialises them with ``sgp4init`` (WGS-72,
like the TLEs) into a :class:`~twin.core.catalogue.Catalogue` that runs through the same SGP4 path
as a real catalogue and can be appended to one. Walker delta ``i: T/P/F``: plane ``p`` has right
ascension of the ascending node ``raan0 + p * spread / P``; slot ``s`` of plane ``p`` has mean
anomaly ``m0 + s * 360 / S + p * F * 360 / T`` (S = T/P). ``spread`` is 360 deg for a delta
pattern and 180 deg for a star (polar) pattern. Sources: docs/physics.md#synthetic-constellations.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from sgp4.earth_gravity import wgs72

from twin.core.catalogue import Catalogue, element_table
from twin.core.constants import JD_J2000, SECONDS_PER_DAY

R_WGS72_M = wgs72.radiusearthkm * 1e3  # the equatorial radius SGP4 uses with WGS-72 (m)
MU_WGS72_M3_S2 = wgs72.mu * 1e9  # WGS-72 gravitational parameter (m^3/s^2)
J2_WGS72 = wgs72.j2
SIDEREAL_YEAR_DAYS = 365.2564  # the node of a sun-synchronous orbit turns once per this (days): its rate
SYNTHETIC_NORAD_BASE = 900_000  # synthetic satellites are numbered from here up (no real object has these)
PATTERNS = {"delta": 360.0, "star": 180.0}
DEFAULT_EPOCH_ISO = "2026-01-01T00:00:00Z"  # the epoch of an ``epoch = "start"`` file in a run given no start
SHIPPED = ("starlink-gen1-shell1", "kuiper-shell1", "dawn-dusk-cluster", "million")


class ConstellationError(ValueError):
    """A constellation file that cannot be used; the message names the shell and the key."""


@dataclass(frozen=True)
class Shell:
    """One Walker shell. Angles in degrees, altitude in km above the WGS-72 equatorial radius.

    ``inclination_deg`` None means sun-synchronous at this altitude (:func:`sso_inclination_deg`);
    ``ltan_h`` (local time of the ascending node, hours) then sets the first plane's RAAN from the
    Sun's right ascension at the epoch instead of ``raan0_deg``.
    """

    name: str
    altitude_km: float
    inclination_deg: float | None
    planes: int
    sats_per_plane: int
    phasing: int = 1
    pattern: str = "delta"
    eccentricity: float = 0.0001
    arg_perigee_deg: float = 0.0
    raan0_deg: float = 0.0
    mean_anomaly0_deg: float = 0.0
    ltan_h: float | None = None
    bstar: float = 0.0
    raan_spread_deg: float | None = None  # the planes' nodes span this (None: the pattern's 360 or 180 deg)
    pending: bool = False  # the shell's slots are not in orbit at the start (launched by command; deployment)

    @property
    def size(self) -> int:
        return self.planes * self.sats_per_plane


@dataclass(frozen=True)
class ConstellationSpec:
    """A named set of shells sharing an epoch (UTC Julian date; None: the run's start)."""

    name: str
    shells: tuple[Shell, ...]
    epoch_jd: float | None = None
    norad_base: int = SYNTHETIC_NORAD_BASE

    @property
    def size(self) -> int:
        return sum(s.size for s in self.shells)


def sso_inclination_deg(altitude_km: float, eccentricity: float = 0.0) -> float:
    """The inclination [deg] whose J2 nodal regression follows the mean Sun (one turn per sidereal year).

    dOmega/dt = -1.5 n J2 (R/p)^2 cos i (Vallado, Fundamentals of Astrodynamics, eq. 9-41).
    """
    a_m = R_WGS72_M + altitude_km * 1e3
    n_rad_s = math.sqrt(MU_WGS72_M3_S2 / a_m**3)
    p_m = a_m * (1.0 - eccentricity**2)
    rate_rad_s = 2.0 * math.pi / (SIDEREAL_YEAR_DAYS * SECONDS_PER_DAY)
    cos_i = -rate_rad_s / (1.5 * n_rad_s * J2_WGS72 * (R_WGS72_M / p_m) ** 2)
    if not -1.0 <= cos_i <= 1.0:
        raise ConstellationError(f"no sun-synchronous orbit at {altitude_km:g} km")
    return math.degrees(math.acos(cos_i))


def sun_right_ascension_deg(jd_utc: float) -> float:
    """The Sun's apparent right ascension [deg] at a UTC Julian date (Astronomical Almanac low-precision
    formula, about 0.01 deg from 1950 to 2050)."""
    d = jd_utc - JD_J2000
    g = math.radians((357.529 + 0.98560028 * d) % 360.0)
    q = (280.459 + 0.98564736 * d) % 360.0
    lam = math.radians(q + 1.915 * math.sin(g) + 0.020 * math.sin(2 * g))
    eps = math.radians(23.439 - 0.00000036 * d)
    return math.degrees(math.atan2(math.cos(eps) * math.sin(lam), math.cos(lam))) % 360.0


def mean_motion_rad_min(altitude_km: float) -> float:
    """The Keplerian mean motion [rad/min] of a circular orbit at ``altitude_km`` (WGS-72)."""
    a_m = R_WGS72_M + altitude_km * 1e3
    return math.sqrt(MU_WGS72_M3_S2 / a_m**3) * 60.0


def shell_elements(shell: Shell, epoch_jd: float) -> dict[str, np.ndarray]:
    """Mean elements of every satellite of ``shell``, plane-major (radians, rad/min).

    Keys: ``plane``, ``slot`` (int), ``inclo``, ``nodeo``, ``mo``, ``argpo``, ``ecco``, ``no_kozai``.
    """
    p_idx, s_idx = np.divmod(np.arange(shell.size), shell.sats_per_plane)
    inc = sso_inclination_deg(shell.altitude_km, shell.eccentricity) if shell.inclination_deg is None \
        else shell.inclination_deg
    raan0 = shell.raan0_deg
    if shell.ltan_h is not None:  # the ascending node at this local solar time: 15 deg per hour from the Sun
        raan0 = sun_right_ascension_deg(epoch_jd) + (shell.ltan_h - 12.0) * 15.0
    spread = PATTERNS[shell.pattern] if shell.raan_spread_deg is None else shell.raan_spread_deg
    raan = raan0 + p_idx * spread / shell.planes
    m = (shell.mean_anomaly0_deg + s_idx * 360.0 / shell.sats_per_plane
         + p_idx * shell.phasing * 360.0 / shell.size)
    n = shell.size
    return {
        "plane": p_idx, "slot": s_idx,
        "inclo": np.full(n, math.radians(inc)), "nodeo": np.radians(raan % 360.0), "mo": np.radians(m % 360.0),
        "argpo": np.full(n, math.radians(shell.arg_perigee_deg)), "ecco": np.full(n, shell.eccentricity),
        "no_kozai": np.full(n, mean_motion_rad_min(shell.altitude_km)),
    }


def build_catalogue(spec: ConstellationSpec, epoch_jd: float | None = None, source: str | None = None) -> Catalogue:
    """The constellation as a catalogue: sgp4init (WGS-72, improved mode) of every satellite.

    ``epoch_jd`` (UTC Julian date) is used when the spec has none. Names ``{shell}-P{plane}-S{slot}``;
    NORAD numbers from ``spec.norad_base`` in order.
    """
    epoch = spec.epoch_jd if spec.epoch_jd is not None else epoch_jd
    if epoch is None:
        raise ConstellationError(f"constellation {spec.name!r}: no epoch in the file and no start time given")
    whole = math.floor(epoch - 0.5) + 0.5
    frac = epoch - whole
    names: list[str] = []
    parts: list[dict[str, np.ndarray]] = []
    for shell in spec.shells:
        el = shell_elements(shell, epoch)
        pw, sw = len(str(shell.planes - 1)), len(str(shell.sats_per_plane - 1))
        names += [f"{shell.name}-P{p:0{pw}d}-S{s:0{sw}d}" for p, s in zip(el["plane"].tolist(), el["slot"].tolist())]
        el["bstar"] = np.full(shell.size, shell.bstar)
        parts.append(el)
    n = spec.size
    table = element_table(n)
    table["satnum"] = spec.norad_base + np.arange(n)
    table["epoch_whole"], table["epoch_frac"] = whole, frac
    for key in ("inclo", "nodeo", "mo", "argpo", "ecco", "no_kozai", "bstar"):
        table[key] = np.concatenate([p[key] for p in parts])
    pending = np.concatenate([np.full(shell.size, shell.pending) for shell in spec.shells])
    return Catalogue.from_elements(tuple(names), table, source or f"constellation:{spec.name}", pending)


def _number(table: dict[str, Any], key: str, where: str, lo: float, hi: float, default: float | None = None,
            integer: bool = False) -> float:
    if key not in table:
        if default is None:
            raise ConstellationError(f"{where}: missing '{key}'")
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise ConstellationError(f"{where}: '{key}' must be {'a whole number' if integer else 'a number'}, got {v!r}")
    if not (lo <= v <= hi) or v != v:
        raise ConstellationError(f"{where}: '{key}' = {v} outside [{lo:g}, {hi:g}]")
    return float(v)


_SHELL_KEYS = {"name", "altitude_km", "inclination_deg", "planes", "sats_per_plane", "phasing", "pattern",
               "eccentricity", "arg_perigee_deg", "raan0_deg", "mean_anomaly0_deg", "ltan_h", "bstar",
               "raan_spread_deg", "pending"}


def parse_shell(t: dict[str, Any], index: int) -> Shell:
    """One ``[[shell]]`` table, checked; errors name the shell and the key."""
    name = t.get("name", f"shell{index + 1}")
    where = f"shell {index + 1} ({name})"
    if not isinstance(name, str) or not name or any(c in name for c in " /#+"):
        raise ConstellationError(f"{where}: 'name' must be a non-empty word without spaces, '/', '#' or '+'")
    unknown = set(t) - _SHELL_KEYS
    if unknown:
        raise ConstellationError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    inc = t.get("inclination_deg")
    if inc == "sso":
        inc_deg = None
    else:
        inc_deg = _number(t, "inclination_deg", where, 0.0, 180.0)
    planes = int(_number(t, "planes", where, 1, 100_000, integer=True))
    per = int(_number(t, "sats_per_plane", where, 1, 100_000, integer=True))
    phasing = int(_number(t, "phasing", where, 0, planes - 1, default=0 if planes == 1 else 1, integer=True))
    pattern = t.get("pattern", "delta")
    if pattern not in PATTERNS:
        raise ConstellationError(f"{where}: 'pattern' must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    ltan = t.get("ltan_h")
    if ltan is not None:
        ltan = _number(t, "ltan_h", where, 0.0, 24.0)
    elif inc_deg is None:
        ltan = 6.0  # dawn-dusk unless told otherwise
    return Shell(name, _number(t, "altitude_km", where, 150.0, 40_000.0), inc_deg, planes, per, phasing, pattern,
                 _number(t, "eccentricity", where, 0.0, 0.2, default=0.0001),
                 _number(t, "arg_perigee_deg", where, 0.0, 360.0, default=0.0),
                 _number(t, "raan0_deg", where, -360.0, 360.0, default=0.0),
                 _number(t, "mean_anomaly0_deg", where, -360.0, 360.0, default=0.0), ltan,
                 _number(t, "bstar", where, 0.0, 1.0, default=0.0),
                 _number(t, "raan_spread_deg", where, 0.0, 360.0) if "raan_spread_deg" in t else None,
                 _flag(t, "pending", where))


def _flag(table: dict[str, Any], key: str, where: str) -> bool:
    v = table.get(key, False)
    if not isinstance(v, bool):
        raise ConstellationError(f"{where}: '{key}' must be true or false, got {v!r}")
    return v


def parse_constellation(data: dict[str, Any], source: str) -> ConstellationSpec:
    """A parsed constellation TOML document, checked (:class:`ConstellationError` names what is wrong)."""
    from twin.core.ephemeris import iso_to_jd

    shells_raw = data.get("shell")
    if not isinstance(shells_raw, list) or not shells_raw:
        raise ConstellationError(f"{source}: no [[shell]] table")
    unknown = set(data) - {"name", "epoch", "norad_base", "shell"}
    if unknown:
        raise ConstellationError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    shells = tuple(parse_shell(t, i) for i, t in enumerate(shells_raw))
    names = [s.name for s in shells]
    if len(set(names)) != len(names):
        raise ConstellationError(f"{source}: shell names repeat")
    epoch = data.get("epoch")
    try:
        epoch_jd = None if epoch in (None, "start") else iso_to_jd(str(epoch))
    except ValueError as exc:
        raise ConstellationError(f"{source}: 'epoch' must be an ISO 8601 UTC time or \"start\", got {epoch!r}") \
            from exc
    base = int(_number(data, "norad_base", source, 0, 999_999_999, default=SYNTHETIC_NORAD_BASE, integer=True))
    return ConstellationSpec(str(data.get("name", Path(source).stem)), shells, epoch_jd, base)


def load_constellation(path: str | Path) -> ConstellationSpec:
    """Read a constellation TOML file, or a shipped one by name (:data:`SHIPPED`)."""
    if str(path) in SHIPPED:
        ref = resources.files("twin") / "data" / "constellations" / f"{path}.toml"
        return parse_constellation(tomllib.loads(ref.read_text()), f"{path}.toml")
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConstellationError(f"{p}: cannot read constellation file: {exc.strerror} (or name a shipped one: "
                                 f"{', '.join(SHIPPED)})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConstellationError(f"{p}: not valid TOML: {exc}") from exc
    return parse_constellation(data, str(p))
