"""Shortest paths by propagation delay over the current mesh (scipy.sparse.csgraph Dijkstra).

Node numbering: satellites ``0..n-1``, then ground nodes. Ground nodes are ends only: a gateway
or city node has edges out to the satellites it sees (as a source) or in from them (as a sink),
never both, so no route passes through the ground. Delays are lengths over c (vacuum).
Model: docs/network.md#routing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra

from twin.core.network.geometry import C_M_S

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class Edges:
    """Directed edges ``src[k] -> dst[k]`` with their one-way delay (s)."""

    src: I64
    dst: I64
    delay_s: F64

    @classmethod
    def isl(cls, a: I64, b: I64, length_m: F64) -> Edges:
        """Both directions of undirected laser links ``a[k]``-``b[k]``."""
        d = length_m / C_M_S
        return cls(np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([d, d]))

    def __add__(self, other: Edges) -> Edges:
        return Edges(np.concatenate([self.src, other.src]), np.concatenate([self.dst, other.dst]),
                     np.concatenate([self.delay_s, other.delay_s]))

    def graph(self, n_nodes: int) -> csr_matrix:
        """The CSR adjacency matrix, delay as weight (the edges must be unique pairs: +Grid and ground edges are).

        Built from COO marked canonical: the conversion is a counting sort by row; summing duplicates
        and sorting each row's columns (which Dijkstra does not need) are skipped.
        """
        coo = coo_matrix((self.delay_s, (self.src, self.dst)), shape=(n_nodes, n_nodes))
        coo.has_canonical_format = True
        out: csr_matrix = coo.tocsr()
        return out


@dataclass(frozen=True)
class GatewayRoutes:
    """Per satellite: delay (s, inf when unreachable), links to (including the ground link), nearest gateway
    index and next satellite toward it (-1: the satellite downlinks itself, or is unreachable)."""

    delay_s: F64
    hops: I64
    gateway: I64
    next_sat: I64


def shortest_per_group(group: I64, value: F64) -> I64:
    """Index of the least ``value`` of each run of equal ``group`` values, in order of the groups' first appearance
    when ``group`` is sorted (ties: the first); for unsorted ``group``, per distinct group in increasing order.

    Pairs grouped by satellite (as :func:`twin.core.network.ground.visible_pairs` gives them) need no sort.
    """
    if group.size > 1 and bool(np.any(group[1:] < group[:-1])):
        order = np.lexsort((value, group))
        first = np.r_[True, group[order][1:] != group[order][:-1]]
        out: I64 = order[first]
        return out
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    counts = np.diff(np.r_[starts, group.size])
    at_min = np.flatnonzero(value == np.repeat(np.minimum.reduceat(value, starts), counts))
    run = np.searchsorted(starts, at_min, side="right")
    out = at_min[np.r_[True, run[1:] != run[:-1]]]
    return out


def nearest_gateway(n_sats: int, isl: Edges, gw_site: I64, gw_sat: I64, gw_delay_s: F64,
                    n_gateways: int) -> GatewayRoutes:
    """One Dijkstra from a virtual source joined to every satellite in view of a gateway in service.

    ``gw_site``/``gw_sat``/``gw_delay_s``: the (gateway, satellite) pairs in view and their ground-link delay (s).
    """
    # one virtual source: an edge to every satellite in view of a gateway, weighted by its shortest
    # ground link (the same shortest paths as gateway nodes, with fewer edges)
    if gw_sat.size == 0:
        inf = np.full(n_sats, np.inf)
        neg = np.full(n_sats, -1, dtype=np.int64)
        return GatewayRoutes(inf, neg, neg.copy(), neg.copy())
    best = shortest_per_group(gw_sat, gw_delay_s)
    sat_in_view, ground_s, ground_gw = gw_sat[best], gw_delay_s[best], gw_site[best]
    root = n_sats
    edges = isl + Edges(np.full(sat_in_view.size, root, dtype=np.int64), sat_in_view, ground_s)
    dist, pred = dijkstra(edges.graph(n_sats + 1), directed=True, indices=root, return_predecessors=True)
    sat_gw = np.full(n_sats, -1, dtype=np.int64)
    sat_gw[sat_in_view] = ground_gw
    dist = dist[:n_sats]
    pred = pred[:n_sats].astype(np.int64)
    reach = np.isfinite(dist)
    next_sat = np.where(reach & (pred >= 0) & (pred < n_sats), pred, -1).astype(np.int64)
    # links to the gateway and the gateway by pointer jumping over the shortest-path tree: each
    # satellite jumps to its ancestor's ancestor, adding the links between, until it reaches the tree's
    # first satellite (the one that downlinks: its own pointer); log2(depth) rounds
    par = np.where(next_sat >= 0, next_sat, np.arange(n_sats))
    links = (next_sat >= 0).astype(np.int64)
    while True:
        grand = par[par]
        if np.array_equal(grand, par):
            break
        links += links[par]
        par = grand
    hops = np.where(reach, links + 1, -1).astype(np.int64)  # + the ground link
    gateway = np.where(reach, sat_gw[par], -1).astype(np.int64)
    return GatewayRoutes(dist, hops, gateway, next_sat)


def ground_matrix_s(n_sats: int, isl: Edges, site: I64, sat: I64, delay_s: F64, n_sites: int) -> F64:
    """One-way delay (s) between every pair of ground sites over the mesh, (n_sites, n_sites), inf if none.

    Each site is split into a source (edges up to what it sees) and a sink (edges down), so routes
    never pass through the ground.
    """
    n_nodes = n_sats + 2 * n_sites
    up = Edges(site + n_sats, sat, delay_s)
    down = Edges(sat, site + n_sats + n_sites, delay_s)
    src_nodes = np.arange(n_sites) + n_sats
    dist = dijkstra((isl + up + down).graph(n_nodes), directed=True, indices=src_nodes)
    out: F64 = dist[:, n_sats + n_sites:]
    np.fill_diagonal(out, 0.0)
    return out


def shortest_path(graph: csr_matrix, source: int, target: int) -> tuple[float, list[int]]:
    """Delay (s) and node path from ``source`` to ``target`` (inf and [] when unreachable)."""
    dist, pred = dijkstra(graph, directed=True, indices=source, return_predecessors=True)
    if not np.isfinite(dist[target]):
        return float("inf"), []
    path = [target]
    while path[-1] != source:
        path.append(int(pred[path[-1]]))
    return float(dist[target]), path[::-1]
