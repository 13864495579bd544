"""A constellation that changes: launch into a parking orbit, orbit raising, spares, deorbit and re-entry.

Every satellite of the catalogue is a slot with a phase. A ``pending`` slot is not in orbit yet;
``launch`` puts it in a low parking orbit in its slot's plane, from where it raises to the slot's
altitude (``raising``, then ``on_station``) or waits as a spare (``parked``) until ``raise_orbit``
sends it up, to its own slot or to the altitude of a failed satellite's. ``deorbit`` lowers a
satellite until drag takes it (``lowering``, then ``reentered``). Only satellites on station link
into the laser mesh and take compute jobs; pending and re-entered ones publish nothing.

Altitude changes are continuous thrust at a constant rate; the orbit follows through new SGP4
element sets each time the commanded mean altitude has moved :attr:`DeploymentParams.reelement_step_m`
from the element set in use (the engine re-elements those rows). Figures: docs/physics.md#deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sgp4.api import Satrec

from twin.core.catalogue import element_table
from twin.core.constants import SECONDS_PER_DAY
from twin.core.constellation import mean_motion_rad_min

PENDING, PARKED, RAISING, ON_STATION, LOWERING, REENTERED = range(6)
PHASE_NAMES = ("pending", "parked", "raising", "on_station", "lowering", "reentered")
IN_ORBIT = (PARKED, RAISING, ON_STATION, LOWERING)


@dataclass(frozen=True)
class DeploymentParams:
    """Orbit-raising and disposal figures (docs/physics.md#deployment)."""

    parking_alt_m: float = 350e3  # estimate: Starlink deploys low (about 280-350 km) and raises with its thrusters
    raise_rate_m_s: float = 5e3 / SECONDS_PER_DAY  # estimate: 5 km/day, 350 -> 550 km in about 40 days
    lower_rate_m_s: float = 5e3 / SECONDS_PER_DAY  # estimate: propulsive lowering at the raising rate
    reentry_alt_m: float = 200e3  # estimate: below about 200 km drag brings a satellite down within days
    reelement_step_m: float = 1e3  # setting: a new element set each 1 km of altitude change


class DeploymentError(ValueError):
    """A deployment request that does not fit the satellites' phases; ``rows`` are the offending ones."""

    def __init__(self, message: str, rows: np.ndarray) -> None:
        super().__init__(message)
        self.rows = rows


@dataclass
class Moves:
    """What one :meth:`Deployment.advance` changed: rows launched since the last advance, rows to
    re-element at their ``alt_m``, rows that reached their slot, rows that re-entered."""

    launched: np.ndarray
    reelement: np.ndarray
    arrived: np.ndarray
    reentered: np.ndarray


class Deployment:
    """The phase and commanded mean altitude [m] of every slot (arrays over satellites)."""

    def __init__(self, slot_alt_m: np.ndarray, pending: np.ndarray | None = None,
                 params: DeploymentParams | None = None) -> None:
        n = np.size(slot_alt_m)
        self.params = params or DeploymentParams()
        pend = np.zeros(n, dtype=bool) if pending is None else np.asarray(pending, dtype=bool)
        self.phase = np.where(pend, PENDING, ON_STATION).astype(np.int8)
        self.slot_alt_m = np.array(slot_alt_m, dtype=float)  # where the satellite is to operate
        self.alt_m = self.slot_alt_m.copy()  # commanded mean altitude now
        self.elements_alt_m = self.slot_alt_m.copy()  # mean altitude of the element set in use
        self.version = 0  # counts phase changes (the runtime republishes the catalogue when it moves)
        self._changing = not bool(np.all(self.phase == ON_STATION))
        self._launched: list[np.ndarray] = []

    @property
    def in_orbit(self) -> np.ndarray:
        """Satellites that exist in orbit (publish telemetry): parked, raising, on station or lowering."""
        out: np.ndarray = (self.phase >= PARKED) & (self.phase <= LOWERING)
        return out

    @property
    def on_station(self) -> np.ndarray:
        """Satellites at their slot: the only ones in the laser mesh and open to compute jobs."""
        out: np.ndarray = self.phase == ON_STATION
        return out

    @property
    def all_on_station(self) -> bool:
        """Nothing pending, moving or gone (the common case: every mask is all-true)."""
        return not self._changing

    def _require(self, rows: np.ndarray, allowed: tuple[int, ...], what: str) -> None:
        bad = rows[~np.isin(self.phase[rows], allowed)]
        if bad.size:
            names = ", ".join(PHASE_NAMES[p] for p in allowed)
            raise DeploymentError(f"{what} needs satellites that are {names}; {bad.size} are not "
                                  f"(e.g. one is {PHASE_NAMES[int(self.phase[bad[0]])]})", bad)

    def launch(self, rows: np.ndarray, hold: bool = False, parking_alt_m: float | None = None) -> np.ndarray:
        """Pending ``rows`` into the parking orbit: raising to their slot, or ``hold`` as spares (parked)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._require(rows, (PENDING,), "launch")
        alt = self.params.parking_alt_m if parking_alt_m is None else parking_alt_m
        self.alt_m[rows] = np.minimum(alt, self.slot_alt_m[rows])
        self.phase[rows] = PARKED if hold else RAISING
        self._launched.append(rows)
        self._changed()
        return rows

    def raise_to(self, rows: np.ndarray, slot_alt_m: float | None = None) -> np.ndarray:
        """Parked spares ``rows`` raise to their slot, or to ``slot_alt_m`` (a failed satellite's slot)."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._require(rows, (PARKED,), "raise_orbit")
        if slot_alt_m is not None:
            self.slot_alt_m[rows] = slot_alt_m
        self.phase[rows] = RAISING
        self._changed()
        return rows

    def deorbit(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` in orbit start lowering towards re-entry."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        self._require(rows, (PARKED, RAISING, ON_STATION), "deorbit")
        self.phase[rows] = LOWERING
        self._changed()
        return rows

    def advance(self, dt_s: float) -> Moves:
        """Move raising and lowering satellites by ``dt_s`` of thrust; what changed (see :class:`Moves`)."""
        empty = np.zeros(0, dtype=np.int64)
        if not self._changing:
            return Moves(empty, empty, empty, empty)
        launched = np.concatenate(self._launched) if self._launched else empty
        self._launched = []
        p = self.params
        up = np.flatnonzero(self.phase == RAISING)
        self.alt_m[up] = np.minimum(self.alt_m[up] + p.raise_rate_m_s * dt_s, self.slot_alt_m[up])
        arrived = up[self.alt_m[up] >= self.slot_alt_m[up]]
        down = np.flatnonzero(self.phase == LOWERING)
        self.alt_m[down] -= p.lower_rate_m_s * dt_s
        gone = down[self.alt_m[down] <= p.reentry_alt_m]
        self.phase[arrived] = ON_STATION
        self.phase[gone] = REENTERED
        if arrived.size or gone.size:
            self._changed()
        moving = np.flatnonzero(np.isin(self.phase, IN_ORBIT))
        due = moving[np.abs(self.alt_m[moving] - self.elements_alt_m[moving]) >= p.reelement_step_m - 1e-6]
        reelement = np.union1d(due, arrived)
        self.elements_alt_m[reelement] = self.alt_m[reelement]
        self._changing = not bool(np.all(self.phase == ON_STATION))
        return Moves(launched, reelement, arrived, gone)

    def _changed(self) -> None:
        self.version += 1
        self._changing = True

    def counts(self) -> dict[str, int]:
        """Satellites per phase."""
        c = np.bincount(self.phase, minlength=len(PHASE_NAMES))
        return {name: int(c[k]) for k, name in enumerate(PHASE_NAMES)}


def circular_elements(satrecs: Sequence[Satrec], satnums: np.ndarray, jd_utc: float, alt_m: np.ndarray) -> np.ndarray:
    """New element sets (:func:`~twin.core.catalogue.element_table` rows) at epoch ``jd_utc``: each
    satellite's orbital plane and argument of latitude now (its SGP4 mean elements advanced with their
    secular J2 rates), on a circular orbit at mean altitude ``alt_m`` [m]. Drag terms are kept."""
    n = len(satrecs)
    table = element_table(n)
    whole = np.floor(jd_utc - 0.5) + 0.5
    for k, s in enumerate(satrecs):
        dt_min = (jd_utc - (s.jdsatepoch + s.jdsatepochF)) * 1440.0
        raan = s.nodeo + s.nodedot * dt_min
        u = s.argpo + s.mo + (s.argpdot + s.mdot) * dt_min
        table[k] = (int(satnums[k]), whole, jd_utc - whole, s.bstar, 0.0, 0.0, 1e-4, 0.0, s.inclo,
                    float(np.mod(u, 2 * np.pi)), mean_motion_rad_min(float(alt_m[k]) / 1e3), float(np.mod(raan, 2 * np.pi)))
    return table
