"""Section ``network`` of the design TOML: the laser mesh and the ground links.

Figures and sources: docs/physics.md#network; the model: docs/network.md.
"""

from __future__ import annotations

import dataclasses

from twin.core.params import DesignError, param


@dataclasses.dataclass(frozen=True)
class NetworkParams:
    """Laser inter-satellite links (ISL), their geometry limits and the ground links.

    The number of laser terminals per satellite is ``power.isl_terminal_count`` (one source).
    """

    isl_capacity_gbps: float = param("Gbit/s", "capacity of one laser link (one terminal at each end)",
                                     min=0.0, max=1e5)
    isl_max_range_m: float = param("m", "longest laser link the terminals can close", min=1e3, max=1e8)
    grazing_altitude_m: float = param("m", "lowest altitude a laser line of sight may pass over the Earth",
                                      min=0.0, max=1e6)
    acquisition_s: float = param("s", "pointing, acquisition and tracking time before a new or lost link is up",
                                 min=0.0, max=3600.0)
    gateway_min_elevation_deg: float = param("deg", "lowest elevation a gateway links to a satellite at",
                                             min=0.0, max=90.0)
    user_min_elevation_deg: float = param("deg", "lowest elevation a user terminal links to a satellite at",
                                          min=0.0, max=90.0)
    ground_link_capacity_gbps: float = param("Gbit/s", "capacity of one satellite-ground link (gateway or user)",
                                             min=0.0, max=1e5)
    offered_traffic_gbps: float = param(
        "Gbit/s", "total traffic the user endpoints (cities) offer, split by population, routed to the gateways",
        min=0.0, max=1e7)
    cross_plane_hysteresis: float = param(
        "1", "a cross-plane link is kept while its length is at most this times the nearest candidate's",
        min=1.0, max=10.0)
    enabled: bool = param("", "step the laser mesh and nearest-gateway routing every tick (false: terminals draw "
                              "their power as fitted, no network)", default=True)
    city_matrix_interval_s: float = param("s", "sim time between two city-pair latency matrices (0: never)",
                                          min=0.0, max=86400.0, default=60.0)

    def validate(self, section: str = "network") -> None:
        """The grazing altitude must stay below the orbits it protects (checked loosely: < 1,000 km)."""
        if self.grazing_altitude_m >= 1e6:
            raise DesignError(f"{section}.grazing_altitude_m", "must be below 1,000 km")
