"""Value types that go into and come out of the fleet engine: queued requests and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Event:
    """Something that happened on a satellite (``sat`` = fleet index, -1 = several) at sim time ``t_s`` [s]."""

    t_s: float
    sat: int
    kind: str  # limit | fdir | seu | sel | fault | command | hil
    name: str
    severity: str  # info | warning | critical
    detail: dict[str, Any] = field(default_factory=dict)


#: Onboard FDIR events (kind ``fdir``): name -> what the spacecraft did. Thermal rules carry
#: ``level`` (0 released, 1 yellow, 2 red), the node temperature and the response in ``detail``
#: (docs/physics.md#fdir); severity is info when released, warning at yellow, critical at red.
FDIR_EVENTS: dict[str, str] = {
    "payload_throttle": "payload node hot: accelerators throttled (fdir.hot_throttle, red: fdir.red_hot_throttle)",
    "payload_cold": "payload node below its yellow-low limit: payload heater forced to full power",
    "radiator_hot": "radiator hot: payload throttled (fdir.radiator_hot_throttle, red: radiator_red_hot_throttle)",
    "radiator_cold": "radiator below its yellow-low limit: payload heater forced on to warm the pumped loop",
    "battery_hot": "battery hot: charge current limited and payload throttled to cut the discharge current "
                   "(red: payload off)",
    "battery_cold": "battery below its yellow-low limit: battery heater forced on, charge current limited",
    "avionics_hot": "avionics hot: radio power reduced (red: laser terminals off too)",
    "avionics_cold": "avionics below its yellow-low limit: avionics heater forced to full power",
    "radiator_degraded": "radiator efficiency below its yellow-low limit: payload capped at the measured efficiency",
    "payload_shed": "battery SoC below its red-low limit: payload off",
    "payload_restored": "battery SoC above its yellow-low limit: payload back on",
    "power_cycle": "a latched device or a hung payload power-cycled",
    "safe_mode_entered": "safe mode: payload off, sun pointing, radio at a quarter, laser terminals off",
    "satellite_lost": "the orbit cannot be propagated (SGP4 error)",
}


@dataclass(order=True)
class Request:
    """A validated command or fault waiting for its sim time ``at_s`` [s]; ``seq`` orders equal times."""

    at_s: float
    seq: int
    kind: str = field(compare=False)  # "command" | "fault"
    name: str = field(compare=False)
    args: dict[str, Any] = field(compare=False)
    sats: np.ndarray = field(compare=False)  # fleet indices (k,) int
    duration_s: float | None = field(compare=False, default=None)
    request_id: str | None = field(compare=False, default=None)
