"""What the compute scheduler reads: its figures, the fleet's state each tick, and where a job may run.

:class:`PlacementParams` (the figures, from the design), :class:`FleetView` (the twin's state as
arrays over the fleet, one per tick), :class:`Territory` and :class:`Zone` (where a zoned job may
be processed) and :func:`battery_seconds`; shared by :mod:`twin.core.compute.placement` (the
scheduler), :mod:`twin.core.compute.policies` (placing waiting jobs) and
:mod:`twin.core.compute.migration` (moving running jobs), and re-exported by the first. Model,
figures and their basis: docs/physics.md#compute-jobs. Pure numpy: no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from twin.core.design import Design
from twin.core.radiation import seu_rate_per_device_s

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]


@dataclass(frozen=True)
class PlacementParams:
    """Figures the scheduler uses (docs/physics.md#compute-jobs gives each one's basis)."""

    n_devices: int  # accelerators per satellite (payload.n_devices)
    device_dynamic_w: float  # W: peak - idle power of one device at full clock (payload)
    transfer_rate_bps: float  # bit/s a migration gets on the laser links
    uplink_rate_bps: float  # bit/s a job's input gets from the ground
    transfer_j_per_bit: float  # J/bit to move data over one laser link (both terminals)
    user_min_elevation_deg: float  # a ground source reaches satellites above this elevation directly
    route_stretch: float = 1.3  # path length over the straight line to a satellite out of direct view
    soc_floor: float = 0.5  # aware: satellites below this state of charge take no new work
    thermal_margin_k: float = 5.0  # aware: junction headroom below throttling to keep
    saa_upsets_per_device_s: float = 1e-3  # uncorrectable upsets per device-second inside the SAA
    min_health: float = 0.5  # aware: satellites with fewer working devices than this share are avoided
    migrate_margin: float = 1.2  # aware: migrate when the saving exceeds the cost by this factor
    defer_slack_s: float = 1800.0  # aware: a batch job with this much slack waits for sunlight
    distance_j_per_m: float = 1e-4  # aware: tie-break, J of cost per m between source and satellite

    @classmethod
    def from_design(cls, design: Design, **overrides: Any) -> PlacementParams:
        """Figures from the design: payload power, laser link capacity and terminal power, SEU rates."""
        p, net, pw = design.payload, design.network, design.power
        link_bps = net.isl_capacity_gbps * 1e9
        unc = seu_rate_per_device_s(np.array([SAA_SEU_SCALE]), design.radiation)[1]
        base = cls(
            n_devices=p.n_devices,
            device_dynamic_w=p.device_peak_w - p.device_idle_w,
            transfer_rate_bps=TRANSFER_SHARE * link_bps,
            uplink_rate_bps=TRANSFER_SHARE * net.ground_link_capacity_gbps * 1e9,
            transfer_j_per_bit=2.0 * pw.isl_terminal_w / link_bps if link_bps > 0 else 0.0,
            user_min_elevation_deg=net.user_min_elevation_deg,
            saa_upsets_per_device_s=float(unc[0]),
        )
        return dataclasses.replace(base, **overrides)


TRANSFER_SHARE = 0.25  # estimate: share of a link's capacity one job's data gets
SAA_SEU_SCALE = 30.0  # estimate: SEU rate inside the SAA over the Alsat-1 orbit average (docs/physics.md#compute-jobs)


@dataclass(frozen=True)
class FleetView:
    """The twin's state the scheduler reads, arrays over the fleet (n,) unless stated.

    ``pos_m`` (n, 3) Earth-fixed (non-finite rows: lost); ``illum`` 0..1 sunlit; ``soc`` battery
    state of charge; ``time_to_eclipse_s`` (0 in eclipse, inf never) and ``eclipse_left_s`` (in
    eclipse: to its end; sunlit: length of the next one); ``time_to_saa_s``/``saa_left_s`` the same
    for the SAA; ``headroom_k``: junction temperature below the throttling start at full load;
    ``speed``: the devices' clock factor (throttles) 0..1; ``device_ok`` (n, d): powered, not
    latched, not hung; ``available``: nominal and payload powered; ``battery_fraction``: share of
    the payload's power the battery gives now (0 when the arrays cover it).
    """

    pos_m: F64
    illum: F64
    soc: F64
    time_to_eclipse_s: F64
    eclipse_left_s: F64
    time_to_saa_s: F64
    saa_left_s: F64
    headroom_k: F64
    speed: F64
    device_ok: B
    available: B
    battery_fraction: F64
    # (n, 3) Earth-fixed at the other end of the tick's interval (the engine's pos_m is at its end, this at
    # its start); None: the tick is taken at pos_m alone
    track_from_m: F64 | None = None
    # (n,) the highest utilisation of the satellite's loaded network links last tick (> 1 overloaded); None: no
    # network model
    link_util: F64 | None = None

    @classmethod
    def nominal(cls, pos_m: F64, n_devices: int) -> FleetView:
        """Every satellite sunlit, full, cool, healthy, never entering eclipse or the SAA (a base for tests)."""
        n = pos_m.shape[0]
        return cls(pos_m, np.ones(n), np.ones(n), np.full(n, np.inf), np.zeros(n), np.full(n, np.inf),
                   np.zeros(n), np.full(n, 50.0), np.ones(n), np.ones((n, n_devices), bool), np.ones(n, bool),
                   np.zeros(n))


class Territory(Protocol):
    """Where a job's data may be processed (a jurisdiction): decided per tick from the ground track, and
    the gateways its result may be downlinked through."""

    def downlink(self, sat_pos_m: F64) -> tuple[int, float]:
        """The allowed gateway nearest the satellite (index, -1 none) and the straight-line distance to it (m)."""

    def allowed_m(self, pos_m: F64, other_m: F64 | None) -> B:
        """Satellites (n,) whose whole ground track between ``pos_m`` and ``other_m`` (Earth-fixed, m; None:
        the point) lies above allowed territory; non-finite rows False."""


@dataclass(frozen=True)
class Zone:
    """Where a job may run: ``sats`` a fixed selection (bool (n,), None: all) and ``territory`` (None: anywhere)."""

    sats: B | None = None
    territory: Territory | None = None
    key: tuple[Any, ...] = ()


def battery_seconds(run_s: F64, tte_s: F64, ecl_s: F64) -> F64:
    """Seconds of a run of ``run_s`` starting now that fall in the next eclipse (one eclipse counted)."""
    out: F64 = np.clip(run_s - tte_s, 0.0, ecl_s)
    return out
