"""Answering route requests (``{prefix}/fleet/route``) from the last tick's mesh.

A request names its two ends (:class:`~twin.contract.request_parser.RouteEnd`): a satellite by its
catalogue name, a gateway or city by name, or a latitude/longitude. :class:`RouteQuery` turns them
into :class:`~twin.core.network.mesh.Endpoint` s and asks :meth:`Mesh.route` over the mesh of the
tick the engine stepped last, so a reply describes that tick (its ``t_s``). Pure lookups and one
Dijkstra per distinct pair and tick: no clock, no MQTT.

Names: a satellite's is exact (as everywhere in the contract); a gateway's or city's as
:class:`~twin.core.site_names.SiteNames` finds it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.contract.request_parser import ANY_GATEWAY, RouteEnd
from twin.core.compute.territory import Jurisdiction
from twin.core.engine import FleetTwin
from twin.core.network.mesh import Endpoint, Mesh
from twin.core.site_names import SiteNames
from twin.schema.commands import CommandError, Reason


class RouteQuery:
    """Routes over a twin's mesh: resolve the ends of a request, compute (cached per tick) and describe."""

    def __init__(self, twin: FleetTwin) -> None:
        self.twin = twin
        self._gateways: SiteNames | None = None
        self._cities: SiteNames | None = None
        self._cache: dict[tuple[Endpoint, Endpoint], dict[str, Any]] = {}
        self._cache_tick = -1
        self._computed = 0  # routes computed (cache misses) in the tick of the cache
        self._jurisdictions: dict[str, tuple[Jurisdiction, tuple[int, ...]]] = {}

    def jurisdiction(self, spec: str) -> tuple[Jurisdiction, tuple[int, ...]]:
        """A route request's jurisdiction and the twin's gateways in it (cached per spec); CommandError
        when it names nothing known or holds no gateway (no route could reach the ground in it)."""
        hit = self._jurisdictions.get(spec)
        if hit is None:
            try:
                jur = Jurisdiction.parse([e.strip() for e in spec.split(",") if e.strip()])
            except ValueError as exc:
                raise CommandError(Reason.BAD_ARGUMENT, str(exc), "jurisdiction") from None
            gw = self.mesh.gateways
            inside = tuple(int(i) for i in np.flatnonzero(jur.gateways_allowed(gw.lat_deg, gw.lon_deg)))
            hit = self._jurisdictions[spec] = (jur, inside)
        if not hit[1]:
            raise CommandError(Reason.BAD_ARGUMENT, f"no gateway of this twin is in the jurisdiction {spec!r}",
                               "jurisdiction")
        return hit
    @property
    def mesh(self) -> Mesh:
        """The twin's mesh; CommandError(not_now) when the twin runs without the network model."""
        mesh = self.twin.mesh
        if mesh is None or self.twin.net is None:
            raise CommandError(Reason.NOT_NOW, "this twin runs without its network model ([network] enabled = false or "
                               "--no-network): no routes", "topic")
        return mesh

    def endpoint(self, end: RouteEnd, field: str, jurisdiction: str | None = None) -> tuple[Endpoint, dict[str, Any]]:
        """The mesh endpoint of one end and how the reply names it (``{"city": "London"}``, ...).

        ``{"gateway": "*"}`` is any gateway (the nearest reachable); with a ``jurisdiction`` a gateway end
        is only one of the gateways in it (a named one outside is refused), so the route reaches the
        ground only there."""
        mesh = self.mesh
        inside = None if jurisdiction is None else self.jurisdiction(jurisdiction)[1]
        if end.kind == "gateway" and end.name == ANY_GATEWAY:
            every = tuple(range(len(mesh.gateways))) if inside is None else inside
            return Endpoint.gateways(every), {"gateway": ANY_GATEWAY}
        if end.kind == "sat":
            # the mesh numbers the whole fleet: a shard's mesh too (its index is the shard map's)
            i = (self.twin.index if self.twin.shard is None else self.twin.shard.index).get(end.name)
            if i is None:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {end.name!r}", f"{field}.sat")
            return Endpoint.sat(i), {"sat": end.name}
        if end.kind == "gateway":
            if self._gateways is None:
                self._gateways = SiteNames(mesh.gateways.names, "gateway")
            g = self._gateways.find(end.name, f"{field}.gateway")
            if inside is not None and g not in inside:
                raise CommandError(Reason.BAD_ARGUMENT, f"gateway {mesh.gateways.names[g]!r} is outside the "
                                   f"jurisdiction {jurisdiction!r}", f"{field}.gateway")
            return Endpoint.gateway(g), {"gateway": mesh.gateways.names[g]}
        if end.kind == "city":
            if mesh.cities is None:
                raise CommandError(Reason.NOT_NOW, "this twin has no cities configured", f"{field}.city")
            if self._cities is None:
                self._cities = SiteNames(mesh.cities.names, "city")
            c = self._cities.find(end.name, f"{field}.city")
            return Endpoint.city(c), {"city": mesh.cities.names[c]}
        if end.kind == "point":
            return Endpoint.point(end.lat_deg, end.lon_deg), {"lat": end.lat_deg, "lon": end.lon_deg}
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown endpoint kind {end.kind!r}", field)

    def _this_tick(self) -> None:
        if self._cache_tick != self.twin.tick:
            self._cache.clear()
            self._cache_tick = self.twin.tick
            self._computed = 0

    def cached(self, a: Endpoint, b: Endpoint) -> bool:
        """Whether this tick's answer for ``a`` to ``b`` is already known (answering it costs nothing)."""
        self._this_tick()
        return (a, b) in self._cache

    def computed_this_tick(self) -> int:
        """Routes computed (not answered from the cache) since the engine's last step."""
        self._this_tick()
        return self._computed

    def route(self, a: Endpoint, b: Endpoint) -> dict[str, Any]:
        """:meth:`Mesh.route` over the last tick's mesh as reply fields: delays in ms, ``path`` with the
        ground ends as ``kind:name`` and satellites by name; NaN (null in JSON) where not applicable
        (unreachable, or stretch and bounds for a satellite end)."""
        self._this_tick()
        hit = self._cache.get((a, b))
        if hit is not None:
            return hit
        r = self.mesh.route(a, b)
        self._computed += 1
        out = {
            "reachable": r.reachable,
            "path": list(r.path),  # ground ends as kind:name, satellites by name
            "hops": r.hops,
            "one_way_ms": r.one_way_s * 1e3,
            "rtt_ms": r.rtt_s * 1e3,
            "bottleneck_gbps": r.bottleneck_gbps,
            "fibre_rtt_ms": r.fibre_rtt_s * 1e3,
            "stretch": r.stretch,
            "bound_rtt_ms": r.bound_rtt_s * 1e3,
        }
        self._cache[(a, b)] = out
        return out

