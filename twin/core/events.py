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
