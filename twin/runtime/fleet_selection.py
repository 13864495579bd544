"""Which satellites a request, a scenario step or a telemetry policy names, and when a request runs.

A fleet selector (:class:`~twin.contract.request_parser.Selector`) is resolved here the same way for
MQTT requests, scenarios and the watched selection; a shard resolves it over the whole fleet (the
same answer and errors as one twin) and keeps its own satellites.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from twin.contract.request_parser import Selector
from twin.contract.telemetry_policy import TelemetryPolicy
from twin.core.constants import SECONDS_PER_DAY
from twin.core.engine import FleetTwin
from twin.core.ephemeris import iso_to_jd
from twin.schema.commands import CommandError, Reason


def select_sats(twin: FleetTwin, s: Selector) -> np.ndarray:
    """Fleet indices matching a selector (all criteria must hold); raise if none match. A shard
    resolves the selector over the whole fleet (the same answer and errors as one twin) and keeps
    its own satellites: possibly none."""
    m = twin.shard
    if m is None:
        cat = twin.catalogue
        return select_rows(twin.names, twin.index, cat.mean_altitude_m, cat.inclination_deg, s)
    return m.local(select_rows(m.names, m.index, m.mean_altitude_m, m.inclination_deg, s))


def select_rows(names: tuple[str, ...], index: dict[str, int], alt_m: np.ndarray, inc_deg: np.ndarray,
                s: Selector) -> np.ndarray:
    """Rows of ``names`` (with their row ``index``, mean altitudes [m] and inclinations [deg]) that
    a selector matches; raise if none do."""
    n = len(names)
    if s.all:
        return np.arange(n)
    mask = np.ones(n, dtype=bool)
    if s.sats:
        for name in s.sats:
            if name not in index:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {name!r}", "sat")
        mask &= np.isin(np.arange(n), [index[name] for name in s.sats])
    if s.names:
        pats = [p.strip() for p in s.names.split(",")]
        mask &= np.array([any(fnmatch.fnmatchcase(n, p) for p in pats) for n in names])
    if s.alt_km:
        alt = alt_m / 1e3
        mask &= (alt >= s.alt_km[0]) & (alt <= s.alt_km[1])
    if s.inc_deg:
        mask &= (inc_deg >= s.inc_deg[0]) & (inc_deg <= s.inc_deg[1])
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        raise CommandError(Reason.UNKNOWN_SATELLITE, "the selector matches no satellite", "select")
    return idx


def watch_mask(twin: FleetTwin, policy: TelemetryPolicy) -> np.ndarray:
    """The satellites a policy watches (bool per satellite); a selector that matches none raises CommandError."""
    mask = np.zeros(twin.n, dtype=bool)
    if policy.watch is not None:
        mask[select_sats(twin, policy.watch)] = True
    return mask


def sim_seconds(twin: FleetTwin, at: float | str | None) -> float | None:
    """A request's ``at``: sim seconds since start as given, or an ISO 8601 UTC time converted."""
    if at is None or isinstance(at, (int, float)):
        return None if at is None else float(at)
    try:
        jd = iso_to_jd(at)
    except ValueError:
        raise CommandError(Reason.BAD_ARGUMENT, f"at {at!r} is not an ISO 8601 time", "at") from None
    return max((jd - twin.jd0 - twin.fr0) * SECONDS_PER_DAY, 0.0)
