"""Partition a fleet into shards: whole orbital planes, in shell and right-ascension order.

A shard is one twin process owning part of the satellites. Planes are kept whole and neighbouring
planes of a shell go to the same shard, so a satellite's intra-plane laser neighbours are always
in its own shard and most cross-plane neighbours are too (only the planes at a shard's two edges
have neighbours across the border). Satellites in no shell (raising or lowering orbits) follow the
planes, in catalogue order. The cut points balance the satellite count to within one plane.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from twin.core.catalogue import Catalogue
from twin.core.network.shells import Planes, elements_from_catalogue, group_planes


class MeshExchange(Protocol):
    """What a shard with the network model needs each tick: every satellite's mesh inputs.

    Called with this shard's tick, its satellites' Earth-fixed positions (k, 3) [m] (NaN: not in the
    mesh) and working terminals (k, terminals) bool, and the network faults it holds: link outages
    (j, 2) satellite pairs numbered over the whole fleet (None: none) and the gateways in service
    (None: all); returns the whole fleet's positions and terminals, in catalogue order, with every
    shard's outages, once every shard has sent its own for the same tick (the runtime carries them
    over the broker)."""

    def __call__(self, tick: int, pos_m: np.ndarray, terminals_ok: np.ndarray, link_outages: np.ndarray | None,
                 gateway_ok: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        ...


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 1 <= self.index <= self.count):
            raise ValueError(f"a shard is K/N with 1 <= K <= N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"K/N"`` (e.g. ``"2/4"``): shard K of N."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if m is None:
            raise ValueError(f"a shard is K/N (e.g. 1/2), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"


def partition(planes: Planes, count: int) -> np.ndarray:
    """The shard (0-based) of every satellite of ``planes``: ``count`` contiguous runs of whole planes."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    n = planes.plane.size
    if count > max(n, 1):
        raise ValueError(f"cannot split {n} satellites into {count} shards")
    no_plane = planes.plane < 0
    key = np.where(no_plane, planes.n_planes + np.arange(n), planes.plane)
    order = np.argsort(key, kind="stable")
    k_sorted = key[order]
    unit_start = np.flatnonzero(np.r_[True, k_sorted[1:] != k_sorted[:-1]])  # where each plane (or lone satellite) begins
    if unit_start.size < count:
        raise ValueError(f"{unit_start.size} planes and unplaned satellites cannot fill {count} shards")
    cuts = [0]
    for k in range(1, count):
        target = n * k / count
        j = int(np.argmin(np.abs(unit_start - target)))
        j = max(j, int(np.searchsorted(unit_start, cuts[-1], side="right")))  # past the previous cut
        j = min(j, unit_start.size - (count - k))  # leave a unit for every later shard
        cuts.append(int(unit_start[j]))
    cuts.append(n)
    shard_sorted = np.zeros(n, dtype=np.int64)
    for k in range(count):
        shard_sorted[cuts[k]:cuts[k + 1]] = k
    out = np.empty(n, dtype=np.int64)
    out[order] = shard_sorted
    return out


def fleet_partition(cat: Catalogue, jd_utc: float, count: int) -> np.ndarray:
    """The shard (0-based) of every satellite of ``cat``, from its shells and planes at ``jd_utc``."""
    if count == 1:
        return np.zeros(len(cat), dtype=np.int64)
    return partition(group_planes(elements_from_catalogue(cat, jd_utc)), count)


@dataclass(frozen=True)
class ShardMap:
    """Which shard owns each satellite of the whole fleet, seen from shard ``spec``.

    Every shard holds this (names and shells of the whole fleet, not their state), so it can tell a
    request for another shard's satellite (left to that shard) from one for no satellite at all,
    and resolve a fleet selector the same way the single twin would.
    """

    spec: ShardSpec
    names: tuple[str, ...]  # the whole fleet, in catalogue order
    owner: np.ndarray  # (n,) 0-based shard of each satellite
    mean_altitude_m: np.ndarray  # (n,) the whole fleet's mean altitudes (fleet selectors' shell bands)
    inclination_deg: np.ndarray  # (n,)

    @classmethod
    def of(cls, cat: Catalogue, owner: np.ndarray, spec: ShardSpec) -> ShardMap:
        return cls(spec, cat.names, np.asarray(owner, dtype=np.int64), cat.mean_altitude_m, cat.inclination_deg)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Whole-fleet row of each satellite name."""
        return {name: i for i, name in enumerate(self.names)}

    @functools.cached_property
    def rows(self) -> np.ndarray:
        """Whole-fleet rows of this shard's satellites, in catalogue order (its twin's rows 0..k-1)."""
        return np.flatnonzero(self.owner == self.spec.index - 1)

    def owned_elsewhere(self, name: str) -> bool:
        """``name`` is a satellite of the fleet that another shard owns."""
        i = self.index.get(name)
        return i is not None and int(self.owner[i]) != self.spec.index - 1

    def local(self, fleet_rows: np.ndarray) -> np.ndarray:
        """This shard's twin rows of those whole-fleet ``fleet_rows`` it owns."""
        fleet_rows = np.asarray(fleet_rows, dtype=np.int64)
        mine = fleet_rows[self.owner[fleet_rows] == self.spec.index - 1]
        out: np.ndarray = np.searchsorted(self.rows, mine)
        return out

    def counts(self) -> list[int]:
        """Satellites per shard."""
        return [int(c) for c in np.bincount(self.owner, minlength=self.spec.count)]
