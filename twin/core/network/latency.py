"""The city-pair latency matrix the engine keeps (``FleetTwin.city_rtt``), for telemetry and dashboards.

:func:`city_rtt` takes the matrix of one-way delays over the mesh's last step
(:meth:`Mesh.city_matrix_s`) and adds what a consumer needs with it: the round trip, the
great-circle fibre round trip (docs/network.md#latency) and the stretch. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from twin.core.network.geometry import fibre_rtt_s, great_circle_m
from twin.core.network.ground import GroundSites
from twin.core.network.mesh import Mesh

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class CityRtt:
    """Round-trip latency between every pair of the mesh's cities at sim time ``t_s`` [s].

    ``names`` (c,): the cities; ``rtt_s`` (c, c): twice the one-way propagation delay over the mesh
    [s], inf when no route, 0 on the diagonal; ``fibre_rtt_s`` (c, c): a great-circle fibre between
    the two cities [s]; ``stretch`` (c, c): ``rtt_s / fibre_rtt_s`` (NaN on the diagonal, inf when
    no route).
    """

    t_s: float
    names: tuple[str, ...]
    rtt_s: F64
    fibre_rtt_s: F64
    stretch: F64

    @property
    def reachable_pairs(self) -> int:
        """City pairs (unordered, distinct) with a route."""
        c = len(self.names)
        iu = np.triu_indices(c, 1)
        return int(np.isfinite(self.rtt_s[iu]).sum())


def city_fibre_rtt_s(cities: GroundSites) -> F64:
    """Great-circle fibre round trip between every pair of ``cities`` [s], (c, c); fixed per city list."""
    out: F64 = fibre_rtt_s(great_circle_m(cities.lat_deg[:, None], cities.lon_deg[:, None],
                                          cities.lat_deg[None, :], cities.lon_deg[None, :]))
    return out


def city_rtt(mesh: Mesh, t_s: float, fibre_rtt: F64 | None = None) -> CityRtt:
    """The city-pair matrix over ``mesh``'s last step (taken at sim time ``t_s``); the mesh must have cities.

    ``fibre_rtt``: :func:`city_fibre_rtt_s` of the mesh's cities, when the caller keeps it.
    """
    cities = mesh.cities
    if cities is None:
        raise ValueError("the mesh has no cities")
    rtt = 2.0 * mesh.city_matrix_s()
    fibre = city_fibre_rtt_s(cities) if fibre_rtt is None else fibre_rtt
    with np.errstate(divide="ignore", invalid="ignore"):
        stretch = rtt / fibre
    np.fill_diagonal(stretch, np.nan)
    return CityRtt(float(t_s), cities.names, rtt, fibre, stretch)
