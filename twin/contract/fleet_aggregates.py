"""Per-shell and per-plane aggregates of the fleet's telemetry (pure: arrays in, JSON out).

The overview a constellation of any size can afford: one message per shell on
``{prefix}/fleet/agg/shell/{shell}`` and one per orbital plane on
``{prefix}/fleet/agg/plane/{shell}/{plane}``, at the policy's aggregate rate
(:mod:`twin.contract.telemetry_policy`)::

    {"v", "t", "t_s", "bseq", "run", "level": "shell"|"plane", "shell", "plane" (plane only), "sats",
     "counts": {"nominal", "yellow", "red", "safe", "lost"},
     "fields": {"battery_soc": {"mean", "min", "max"}, ...}}

Shells and planes are those of :func:`twin.core.network.shells.group_planes` (the network's own
grouping, at the twin's start); satellites in no shell (raising or lowering their orbits) are the shell ``other``, with
no planes. A shell is named by its median altitude (to 10 km) and inclination (``550km-53deg``),
made unique with ``-2``, ``-3``; a plane by its number in the shell, ``p00`` east of the lowest
RAAN. Counts as in the fleet summary: ``nominal`` = nominal mode and green limits, ``yellow``/``red``
the worst limit state of live satellites, ``safe`` and ``lost`` the mode. The statistics are over
live satellites and finite values (``null`` when none), of :data:`AGG_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass

import numpy as np

from twin.contract.topics import Topics, dumps, header
from twin.core.catalogue import Catalogue, shell_label
from twin.core.network.shells import Planes, elements_from_catalogue, group_planes
from twin.schema.telemetry import (
    FIELDS, LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_NOMINAL, MODE_SAFE,
)

# the fields aggregated: every float field with limits, and the float fields of the 1 Hz
# housekeeping packet (what operators and alerts watch), in schema order
AGG_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.dtype == "float" and (f.limits is not None
                                                                                       or f.packet == "hk"))
COUNTS = ("nominal", "yellow", "red", "safe", "lost")
OTHER_SHELL = "other"


@dataclass(frozen=True)
class Groups:
    """Each satellite's shell and plane (-1: none), the shells' and planes' names."""

    shell: np.ndarray  # (n,) shell number, -1 = in no shell (the ``other`` group)
    plane: np.ndarray  # (n,) plane number (global), -1 = none
    shell_names: tuple[str, ...]  # by shell number; the last one is ``other`` when any satellite is in none
    plane_shell: np.ndarray  # (planes,) shell number of each plane
    plane_names: tuple[str, ...]  # by plane number, within its shell: p00, p01, ...

    @property
    def count(self) -> int:
        """Messages of one round of aggregates: shells (with ``other``) and planes."""
        return len(self.shell_names) + len(self.plane_names)


def groups_from_planes(planes: Planes) -> Groups:
    """Name the shells and planes of ``planes`` (see the module docstring)."""
    n_shells = planes.n_shells
    names: list[str] = []
    for label in shell_label(planes.shell_altitude_m[:n_shells], planes.shell_inclination_deg[:n_shells]):
        k, base = 2, label
        while label in names:
            label, k = f"{base}-{k}", k + 1
        names.append(label)
    shell = planes.shell.astype(np.int64).copy()
    if np.any(shell < 0):
        shell[shell < 0] = n_shells
        names.append(OTHER_SHELL)
    plane_shell = np.asarray(planes.plane_shell, dtype=np.int64)
    order = np.zeros(plane_shell.size, dtype=np.int64)
    for s in range(n_shells):
        idx = np.flatnonzero(plane_shell == s)
        order[idx] = np.arange(idx.size)
    return Groups(shell, planes.plane.astype(np.int64), tuple(names), plane_shell,
                  tuple(f"p{k:02d}" for k in order.tolist()))


def catalogue_groups(cat: Catalogue, jd_utc: float) -> Groups:
    """The shells and planes of a catalogue at ``jd_utc`` (:func:`twin.core.network.shells.group_planes`)."""
    return groups_from_planes(group_planes(elements_from_catalogue(cat, jd_utc)))


def twin_groups(twin: Any) -> Groups:
    """A twin's shells and planes: its mesh's own grouping when it has the network model, else grouped now."""
    mesh = getattr(twin, "mesh", None)
    if mesh is not None:
        return groups_from_planes(mesh.planes)
    return catalogue_groups(twin.catalogue, twin.now_jd)


def _group_stats(key: np.ndarray, k: int, values: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, ...]:
    """(mean, min, max) per group of ``values`` where ``ok`` (NaN for a group with none)."""
    good = ok & np.isfinite(values)
    kk, v = key[good], values[good].astype(np.float64)
    n = np.bincount(kk, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(kk, weights=v, minlength=k) / n
    lo = np.full(k, np.inf)
    hi = np.full(k, -np.inf)
    np.minimum.at(lo, kk, v)
    np.maximum.at(hi, kk, v)
    empty = n == 0
    mean[empty] = lo[empty] = hi[empty] = np.nan
    return mean, lo, hi


def aggregate(key: np.ndarray, k: int, tm: Mapping[str, np.ndarray], mode: np.ndarray) -> dict[str, np.ndarray]:
    """Counts and statistics per group (``key``: group number per satellite, -1 = left out; ``k`` groups).

    Returns ``{"sats", "nominal", "yellow", "red", "safe", "lost"}`` counts and ``{field}.mean``,
    ``.min``, ``.max`` arrays of length ``k``.
    """
    inc = key >= 0
    key = np.where(inc, key, 0)
    live = mode != MODE_LOST
    limit = np.asarray(tm["limit_state"])
    masks = {"sats": inc, "nominal": inc & (mode == MODE_NOMINAL) & (limit == 0),
             "yellow": inc & live & (limit == LIMIT_YELLOW), "red": inc & live & (limit == LIMIT_RED),
             "safe": inc & (mode == MODE_SAFE), "lost": inc & ~live}
    out = {name: np.bincount(key[m], minlength=k) for name, m in masks.items()}
    for f in AGG_FIELDS:
        if f in tm:
            out[f + ".mean"], out[f + ".min"], out[f + ".max"] = _group_stats(key, k, np.asarray(tm[f]), inc & live)
    return out


class AggregateEncoder:
    """The aggregate messages of one tick: every shell, then every plane."""

    def __init__(self, groups: Groups, topics: Topics) -> None:
        self.groups = groups
        self.shell_topics = [topics.fleet_agg_shell(s) for s in groups.shell_names]
        self.plane_topics = [topics.fleet_agg_plane(groups.shell_names[s], p)
                             for s, p in zip(groups.plane_shell.tolist(), groups.plane_names)]

    def encode(self, tm: Mapping[str, np.ndarray], mode: np.ndarray, t_iso: str, t_s: float, bseq: int,
               run: int) -> list[tuple[str, bytes]]:
        """(topic, payload) of every shell and plane aggregate now."""
        g = self.groups
        head = header(None, t_iso, t_s, bseq, run=run)
        out: list[tuple[str, bytes]] = []
        for level, key, k, topics in (("shell", g.shell, len(g.shell_names), self.shell_topics),
                                      ("plane", g.plane, len(g.plane_names), self.plane_topics)):
            if k == 0:
                continue
            agg = {name: col.tolist() for name, col in aggregate(key, k, tm, mode).items()}
            fields = [f for f in AGG_FIELDS if f + ".mean" in agg]
            for i, topic in enumerate(topics):
                names = {"shell": g.shell_names[i]} if level == "shell" else {
                    "shell": g.shell_names[int(g.plane_shell[i])], "plane": g.plane_names[i]}
                body = head | {"level": level} | names | {
                    "sats": agg["sats"][i], "counts": {c: agg[c][i] for c in COUNTS},
                    "fields": {f: {s: agg[f"{f}.{s}"][i] for s in ("mean", "min", "max")} for f in fields}}
                out.append((topic, dumps(body)))
        return out

