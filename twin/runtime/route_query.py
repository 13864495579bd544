"""Answering route requests (``{prefix}/fleet/route``) from the last tick's mesh.

A request names its two ends (:class:`~twin.contract.request_parser.RouteEnd`): a satellite by its
catalogue name, a gateway or city by name, or a latitude/longitude. :class:`RouteQuery` turns them
into :class:`~twin.core.network.mesh.Endpoint` s and asks :meth:`Mesh.route` over the mesh of the
tick the engine stepped last, so a reply describes that tick (its ``t_s``). Pure lookups and one
Dijkstra per distinct pair and tick: no clock, no MQTT.

Names: a satellite's is exact (as everywhere in the contract). A gateway or city matches its name
exactly, else ignoring case, accents and punctuation, else as a run of whole words of the name
(``New York`` is ``New-York-Newark``, ``Mexico City`` is ``Ciudad-de-México-(Mexico-City)``); a
name that matches several sites is rejected with the candidates.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from twin.contract.request_parser import RouteEnd
from twin.core.engine import FleetTwin
from twin.core.network.mesh import Endpoint, Mesh
from twin.schema.commands import CommandError, Reason

MAX_CANDIDATES_SHOWN = 5


def _words(name: str) -> tuple[str, ...]:
    """Lower-case ASCII words of a name: ``São-Paulo`` -> ``("sao", "paulo")``."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return tuple(re.sub(r"[^0-9a-z]+", " ", plain.casefold()).split())


def _contains_run(words: tuple[str, ...], run: tuple[str, ...]) -> bool:
    k = len(run)
    return any(words[i:i + k] == run for i in range(len(words) - k + 1))


class SiteNames:
    """Name lookup over one list of ground sites (gateways or cities)."""

    def __init__(self, names: Sequence[str], what: str) -> None:
        self.names = tuple(names)
        self.what = what
        self.exact = {n: i for i, n in enumerate(self.names)}
        self.words = [_words(n) for n in self.names]

    def find(self, query: str, field: str) -> int:
        """Index of the site ``query`` names; CommandError(bad_argument) when none or several match."""
        if query in self.exact:
            return self.exact[query]
        q = _words(query)
        if q:
            for match in ((lambda w: w == q), (lambda w: _contains_run(w, q))):
                hits = [i for i, w in enumerate(self.words) if match(w)]
                if len(hits) == 1:
                    return hits[0]
                if hits:
                    shown = ", ".join(repr(self.names[i]) for i in hits[:MAX_CANDIDATES_SHOWN])
                    more = f" and {len(hits) - MAX_CANDIDATES_SHOWN} more" if len(hits) > MAX_CANDIDATES_SHOWN else ""
                    raise CommandError(Reason.BAD_ARGUMENT, f"{self.what} {query!r} is ambiguous: {shown}{more}", field)
        raise CommandError(Reason.BAD_ARGUMENT, f"unknown {self.what} {query!r} (none of the twin's {len(self.names)} "
                           f"{self.what} names matches)", field)


class RouteQuery:
    """Routes over a twin's mesh: resolve the ends of a request, compute (cached per tick) and describe."""

    def __init__(self, twin: FleetTwin) -> None:
        self.twin = twin
        self._gateways: SiteNames | None = None
        self._cities: SiteNames | None = None
        self._cache: dict[tuple[Endpoint, Endpoint], dict[str, Any]] = {}
        self._cache_tick = -1
        self._computed = 0  # routes computed (cache misses) in the tick of the cache

    @property
    def mesh(self) -> Mesh:
        """The twin's mesh; CommandError(not_now) when the twin runs without the network model."""
        mesh = self.twin.mesh
        if mesh is None or self.twin.net is None:
            raise CommandError(Reason.NOT_NOW, "this twin runs without its network model ([network] enabled = false or "
                               "--no-network): no routes", "topic")
        return mesh

    def endpoint(self, end: RouteEnd, field: str) -> tuple[Endpoint, dict[str, Any]]:
        """The mesh endpoint of one end and how the reply names it (``{"city": "London"}``, ...)."""
        mesh = self.mesh
        if end.kind == "sat":
            i = self.twin.index.get(end.name)
            if i is None:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {end.name!r}", f"{field}.sat")
            return Endpoint.sat(i), {"sat": end.name}
        if end.kind == "gateway":
            if self._gateways is None:
                self._gateways = SiteNames(mesh.gateways.names, "gateway")
            g = self._gateways.find(end.name, f"{field}.gateway")
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

