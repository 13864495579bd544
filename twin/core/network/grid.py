"""+Grid laser links: two intra-plane (ahead, behind) and two cross-plane (right, left) per satellite.

Intra-plane: each satellite links to the next satellite of its plane in argument of latitude
(ahead) and so to the previous one (behind); dark satellites (no working terminal: lost, safe
mode, laser terminals shed) are skipped, so their neighbours bridge the gap when in range. The
argument of latitude (from the positions, :func:`twin.core.network.shells.arg_latitude_rad`)
changes the order only when one satellite really overtakes another: no flapping.

Cross-plane: each satellite's right terminal links to a satellite of the next plane east whose
left terminal is free, as a matching between the two planes: an existing link is kept while it
closes and is at most ``cross_plane_hysteresis`` times the nearest candidate's length (for both
ends); free terminals are then paired by mutual nearest neighbours, a few rounds.

A link is up when it is assigned, both terminals work, it closes (range, line of sight above the
grazing altitude), it is not under an outage, and ``acquisition_s`` has passed since it was
(re)assigned or last came back. Model and settings: docs/network.md#grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from twin.core.constants import R_EARTH_M
from twin.core.network.geometry import finite_rows, link_feasible

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
B = NDArray[np.bool_]

AHEAD, BEHIND, RIGHT, LEFT = range(4)
SLOT_NAMES = ("ahead", "behind", "right", "left")
N_SLOTS = 4
MATCH_ROUNDS = 2  # setting: rounds of mutual-nearest matching of free cross-plane terminals
_OFFSETS = np.arange(-3, 3)  # candidates around the same argument of latitude in the other plane
REMATCH_EVERY_TICKS = 10  # setting: each plane's cross links are re-weighed every this many ticks (planes in turn)
_KEY_STRIDE = 8.0  # > 2 pi: sort key plane * stride + argument of latitude


@dataclass
class GridLinks:
    """Assigned links, owned by their first end: ``ahead[i]`` and ``right[i]`` (-1: none).

    ``ready_at_s[:, 0]``/``[:, 1]`` is when the ahead/right link comes up (acquisition), ``-inf``
    for links up from the start, ``+inf`` while the link does not close.
    """

    ahead: I64
    right: I64
    ready_at_s: F64
    cross_ok: B  # (n, 2): right and left terminals usable at that tick (a change re-pairs the plane at once)
    order: I64 | None = None  # satellites in planes sorted by (plane, argument of latitude) at that tick

    @classmethod
    def empty(cls, n: int) -> GridLinks:
        return cls(np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64),
                   np.full((n, 2), -np.inf), np.zeros((n, 2), dtype=bool))


def plane_order(plane: I64, u_rad: F64, prev: I64 | None = None) -> tuple[I64, F64]:
    """Satellites in a plane sorted by (plane, argument of latitude), and the sort keys of all satellites.

    ``prev``: the order of the previous tick; sorting from it (a stable sort of nearly sorted keys)
    is a few times faster than from scratch and gives the same order (ties, which do not occur
    between distinct satellites, keep the previous order instead of the index order).
    """
    key: F64 = plane * _KEY_STRIDE + u_rad
    if prev is None or prev.size != int(np.count_nonzero(plane >= 0)):
        members = np.flatnonzero(plane >= 0)
    else:
        members = prev
    out: I64 = members[np.argsort(key[members], kind="stable")]
    return out, key


def _subset(order: I64, mask: B, key: F64) -> tuple[I64, F64]:
    """The satellites of ``mask`` in the sorted ``order``, and their keys (the same as sorting them afresh)."""
    sub = order[mask[order]]
    return sub, key[sub]


def intra_plane_ahead(plane: I64, u_rad: F64, usable: B, sorted_members: I64 | None = None) -> I64:
    """The next usable satellite in the same plane in argument of latitude (cyclic); -1 when alone.

    A plane of two links once (the first to the second). ``sorted_members``: every satellite in a
    plane sorted by (plane, argument of latitude) (:func:`plane_order`), to skip the sort.
    """
    n = plane.size
    ahead = np.full(n, -1, dtype=np.int64)
    if sorted_members is None:
        idx = np.flatnonzero(usable & (plane >= 0))
        order = idx[np.argsort(plane[idx] * _KEY_STRIDE + u_rad[idx], kind="stable")]
    else:
        order = sorted_members[usable[sorted_members]]
    if order.size < 2:
        return ahead
    m = order.size
    p = plane[order]
    brk = p[1:] != p[:-1]  # a new plane starts after these positions
    first = np.empty(m, dtype=bool)
    first[0], first[1:] = True, brk
    last = np.empty(m, dtype=bool)
    last[-1], last[:-1] = True, brk
    starts = np.flatnonzero(first)  # each plane's run in the order
    run = np.cumsum(first) - 1
    start = starts[run]
    count = np.diff(np.append(starts, m))[run]
    pos = np.arange(m)
    nxt_pos = np.where(last, start, pos + 1)
    keep = (count >= 3) | ((count == 2) & ~last)
    ahead[order[keep]] = order[nxt_pos[keep]]
    return ahead


def _sorted_by_plane(cand: I64, plane: I64, u_rad: F64) -> tuple[I64, F64]:
    """``cand`` sorted by (plane, argument of latitude) and the sort keys."""
    key = plane[cand] * _KEY_STRIDE + u_rad[cand]
    o = np.argsort(key, kind="stable")
    return cand[o], key[o]


def _nearest_in_plane(src: I64, target_plane: I64, cand: I64, plane: I64, u_rad: F64, pos_m: F64,
                      max_range_m: float, grazing_m: float,
                      presorted: tuple[I64, F64] | None = None,
                      cols: tuple[F64, F64, F64] | None = None,
                      key_offset: F64 | None = None) -> tuple[I64, F64]:
    """For each ``src[k]``, the closest satellite of ``cand`` in plane ``target_plane[k]``, if that link closes.

    Candidates are the satellites nearest in argument of latitude; returns (partner or -1, length m).
    When the closest candidate's link does not close, the answer is -1 (never a link that cannot close).
    ``presorted``: ``cand`` sorted by (plane, argument of latitude) and its keys; ``cols``: the x, y, z
    columns of ``pos_m``; ``key_offset`` (per source): added to the query keys (:func:`_nearest_two`).
    """
    best = np.full(src.size, -1, dtype=np.int64)
    best_d = np.full(src.size, np.inf)
    if src.size == 0 or cand.size == 0:
        return best, best_d
    cand_s, key_s = presorted if presorted is not None else _sorted_by_plane(cand, plane, u_rad)
    q = target_plane.astype(np.float64) * _KEY_STRIDE
    if key_offset is not None:
        q += key_offset
    start = np.searchsorted(key_s, q, side="left")
    cnt = np.searchsorted(key_s, q + _KEY_STRIDE, side="left") - start
    pos = np.searchsorted(key_s, q + u_rad[src], side="left")
    has = (cnt > 0) & (target_plane >= 0)
    safe_cnt = np.where(has, cnt, 1)[:, None]
    k = start[:, None] + np.mod((pos - start)[:, None] + _OFFSETS[None, :], safe_cnt)
    j = cand_s[np.minimum(k, cand_s.size - 1)]
    x, y, z = cols if cols is not None else _columns(pos_m)
    d2 = np.zeros(j.shape)
    for c in (x, y, z):
        e = c[j] - c[src][:, None]
        d2 += e * e
    d2[~has[:, None] | (j == src[:, None])] = np.inf
    col = np.argmin(d2, axis=1)
    rows = np.arange(src.size)
    pick = j[rows, col]
    ok, d = link_feasible(x, y, z, src, pick, max_range_m, grazing_m, R_EARTH_M)
    ok &= np.isfinite(d2[rows, col])
    best[ok] = pick[ok]
    best_d[ok] = d[ok]
    return best, best_d


def _nearest_two(a: I64, plane_a: I64, sorted_a: tuple[I64, F64], b: I64, plane_b: I64, sorted_b: tuple[I64, F64],
                 plane: I64, u_rad: F64, pos_m: F64, cols: tuple[F64, F64, F64], max_range_m: float,
                 grazing_m: float) -> tuple[I64, F64, I64, F64]:
    """:func:`_nearest_in_plane` for two sets of sources with their own candidates, in one pass.

    The second set's keys are shifted past every plane's so the two candidate lists sort as one.
    """
    off = float(2.0 ** np.ceil(np.log2((int(plane.max(initial=0)) + 2) * _KEY_STRIDE)))
    src = np.concatenate([a, b])
    tp = np.concatenate([plane_a, plane_b])
    cand_s = np.concatenate([sorted_a[0], sorted_b[0]])
    key_s = np.concatenate([sorted_a[1], sorted_b[1] + off])
    shift = np.concatenate([np.zeros(a.size), np.full(b.size, off)])
    best, d = _nearest_in_plane(src, tp, cand_s, plane, u_rad, pos_m, max_range_m, grazing_m, (cand_s, key_s), cols,
                                shift)
    return best[:a.size], d[:a.size], best[a.size:], d[a.size:]


def _any4(mask: B) -> B:
    """Rows of an (n, 4) bool mask with any True (one 32-bit compare per row; ``any(axis=1)`` is slower)."""
    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim == 2 and m.shape[1] == 4:
        out: B = m.view(np.uint32)[:, 0] != 0
        return out
    anyrow: B = np.asarray(m.any(axis=1))
    return anyrow


def _columns(pos_m: F64) -> tuple[F64, F64, F64]:
    """Contiguous x, y, z columns of (n, 3) positions."""
    return (np.ascontiguousarray(pos_m[:, 0]), np.ascontiguousarray(pos_m[:, 1]),
            np.ascontiguousarray(pos_m[:, 2]))


def _pair_keys(a: I64, b: I64, n: int) -> I64:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    out: I64 = lo * n + hi
    return out


def update_links(prev: GridLinks, t_s: float, plane: I64, right_plane: I64, u_rad: F64, pos_m: F64,
                 term_ok: B, max_range_m: float, grazing_m: float, acquisition_s: float,
                 hysteresis: float, outage_keys: I64 | None = None,
                 first: bool = False, rematch_planes: B | None = None) -> tuple[GridLinks, B]:
    """The +Grid links at ``t_s`` given the previous ones; returns (links, up (n, 2) for ahead/right).

    ``term_ok`` (n, 4): which terminals (ahead, behind, right, left) work and are powered;
    ``outage_keys``: sorted ``min(i, j) * n + max(i, j)`` of pairs forced down; ``first``: links
    that close now are up at once (the constellation starts established); ``rematch_planes``
    (n_planes,) bool: planes whose kept cross-plane links are weighed against the nearest
    candidates (hysteresis) and whose free terminals are paired this tick (default all). Planes that
    lost a link or gained a terminal this tick are re-paired too, in the same tick.
    """
    n = plane.size
    cols = _columns(pos_m)
    finite = finite_rows(pos_m)
    lit: B = finite & _any4(term_ok)
    order, key = plane_order(plane, u_rad, prev.order)
    outages = outage_keys if outage_keys is not None and outage_keys.size else None

    def blocked(a: I64, b: I64) -> B:
        if outages is None:
            return np.zeros(a.size, dtype=bool)
        k = _pair_keys(a, b, n)
        pos = np.minimum(np.searchsorted(outages, k), outages.size - 1)
        out: B = outages[pos] == k
        return out

    # intra-plane
    ahead = intra_plane_ahead(plane, u_rad, lit, order)
    # cross-plane: planes with a right neighbour; left_plane is its inverse
    n_planes = right_plane.size
    left_plane = np.full(n_planes, -1, dtype=np.int64)
    has_right = right_plane >= 0
    left_plane[right_plane[has_right]] = np.flatnonzero(has_right)
    sat_right_plane = np.where(plane >= 0, right_plane[np.maximum(plane, 0)], -1) if n_planes else np.full(n, -1)
    sat_left_plane = np.where(plane >= 0, left_plane[np.maximum(plane, 0)], -1) if n_planes else np.full(n, -1)
    r_ok = finite & term_ok[:, RIGHT] & (sat_right_plane >= 0)
    l_ok = finite & term_ok[:, LEFT] & (sat_left_plane >= 0)
    right = np.full(n, -1, dtype=np.int64)
    # keep the previous cross links that still close (at a re-match: and are not much longer than the nearest)
    i = np.flatnonzero(prev.right >= 0)
    j = prev.right[i]
    ok, d = link_feasible(*cols, i, j, max_range_m, grazing_m, R_EARTH_M)
    ok &= r_ok[i] & l_ok[j] & (plane[j] == sat_right_plane[i]) & ~blocked(i, j)
    # planes re-weighed this tick; index n_planes is a dummy for satellites in no plane
    sel = np.zeros(n_planes + 1, dtype=bool)
    sel[:n_planes] = True if (first or rematch_planes is None) else np.asarray(rematch_planes, dtype=bool)
    plane_idx = np.where(plane >= 0, plane, n_planes)
    plane_sel = sel[plane_idx]
    w = np.flatnonzero(ok & plane_sel[i])  # kept links re-weighed this tick
    if w.size:
        iw, jw = i[w], j[w]
        # candidates: the usable terminals of the planes concerned only
        concerned = np.zeros(n_planes + 1, dtype=bool)
        concerned[sat_right_plane[iw]] = True
        lw = _subset(order, l_ok & concerned[plane_idx], key)
        concerned[:] = False
        concerned[sat_left_plane[jw]] = True
        rw = _subset(order, r_ok & concerned[plane_idx], key)
        _b, near_r, _c, near_l = _nearest_two(iw, sat_right_plane[iw], lw, jw, sat_left_plane[jw], rw, plane, u_rad,
                                              pos_m, cols, max_range_m, grazing_m)
        ok[w] &= (d[w] <= hysteresis * near_r) & (d[w] <= hysteresis * near_l)
    right[i[ok]] = j[ok]
    taken_l = np.zeros(n, dtype=bool)
    taken_l[right[right >= 0]] = True
    free_r = r_ok & (right < 0)
    free_l = l_ok & ~taken_l
    # pair free terminals of the planes re-weighed, that lost a link or that gained a terminal this tick
    src_planes = sel.copy()
    src_planes[plane[i[~ok]]] = True
    src_planes[plane[r_ok & ~prev.cross_ok[:, 0]]] = True
    src_planes[sat_left_plane[l_ok & ~prev.cross_ok[:, 1]]] = True
    src_planes[n_planes] = False
    dst_planes = np.zeros(n_planes + 1, dtype=bool)
    srcs = np.flatnonzero(src_planes[:n_planes])
    dst_planes[right_plane[srcs[right_plane[srcs] >= 0]]] = True
    free_r &= src_planes[plane_idx]
    free_l &= dst_planes[plane_idx]
    for _ in range(MATCH_ROUNDS):
        fr, fl = np.flatnonzero(free_r), np.flatnonzero(free_l)
        if fr.size == 0 or fl.size == 0:
            break
        cr, _d1, cl, _d2 = _nearest_two(fr, sat_right_plane[fr], _subset(order, free_l, key), fl, sat_left_plane[fl],
                                        _subset(order, free_r, key), plane, u_rad, pos_m, cols, max_range_m, grazing_m)
        back = np.full(n, -1, dtype=np.int64)
        back[fl] = cl
        has = cr >= 0
        mutual = np.zeros(fr.size, dtype=bool)
        mutual[has] = back[cr[has]] == fr[has]
        if outages is not None:
            mutual[has] &= ~blocked(fr[has], cr[has])
        if not mutual.any():
            break
        a, b = fr[mutual], cr[mutual]
        right[a] = b
        free_r[a] = False
        free_l[b] = False
    # which assigned links close, work and are free of outages (cross links: checked above, new ones
    # close by construction)
    ready = np.full((n, 2), np.inf)
    up = np.zeros((n, 2), dtype=bool)
    for col, (partner, s_own, s_peer, old) in enumerate(((ahead, AHEAD, BEHIND, prev.ahead),
                                                        (right, RIGHT, LEFT, prev.right))):
        i = np.flatnonzero(partner >= 0)
        j = partner[i]
        if col == 0:
            ok, _d = link_feasible(*cols, i, j, max_range_m, grazing_m, R_EARTH_M)
            ok &= term_ok[i, s_own] & term_ok[j, s_peer] & ~blocked(i, j)
        else:
            ok = np.ones(i.size, dtype=bool)
        was = (old[i] == j) & (prev.ready_at_s[i, col] < np.inf)
        if first:
            r_at = np.where(ok, -np.inf, np.inf)
        else:
            r_at = np.where(ok, np.where(was, prev.ready_at_s[i, col], t_s + acquisition_s), np.inf)
        ready[i, col] = r_at
        up[i, col] = ok & (t_s >= r_at)
    return GridLinks(ahead, right, ready, np.stack([r_ok, l_ok], axis=1), order), up


def slot_arrays(links: GridLinks, up: B) -> tuple[I64, B, B, I64, I64]:
    """Per-terminal views of the owned links, and the up links as an edge list.

    Returns ``partner`` (n, 4) the satellite each terminal (ahead, behind, right, left) is assigned
    to (-1: none), ``slot_up`` (n, 4) that link is up, ``closing`` (n, 4) assigned and closing (up
    or acquiring), and the up links ``lo < hi`` with their owners' order (ahead links, then right).
    The lengths are not computed here: :func:`edge_lengths_m`.
    """
    n = links.ahead.size
    partner = np.full((n, N_SLOTS), -1, dtype=np.int64)
    slot_up = np.zeros((n, N_SLOTS), dtype=bool)
    closing = np.zeros((n, N_SLOTS), dtype=bool)
    for col, (owner_slot, peer_slot, arr) in enumerate(((AHEAD, BEHIND, links.ahead), (RIGHT, LEFT, links.right))):
        i = np.flatnonzero(arr >= 0)
        j = arr[i]
        partner[i, owner_slot] = j
        partner[j, peer_slot] = i
        u = up[i, col]
        slot_up[i, owner_slot] = u
        slot_up[j, peer_slot] = u
        c = links.ready_at_s[i, col] < np.inf
        closing[i, owner_slot] = c
        closing[j, peer_slot] = c
    a = np.concatenate([np.flatnonzero(up[:, 0]), np.flatnonzero(up[:, 1])])
    b = np.concatenate([links.ahead[up[:, 0]], links.right[up[:, 1]]])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return partner, slot_up, closing, lo, hi


def edge_lengths_m(pos_m: F64, lo: I64, hi: I64) -> F64:
    """Lengths (m) of the links ``lo[k]``-``hi[k]`` between (n, 3) positions, component by component."""
    dx = pos_m[:, 0][hi] - pos_m[:, 0][lo]
    dy = pos_m[:, 1][hi] - pos_m[:, 1][lo]
    dz = pos_m[:, 2][hi] - pos_m[:, 2][lo]
    out: F64 = np.sqrt(dx * dx + dy * dy + dz * dz)
    return out


def count4(mask: B) -> NDArray[np.int8]:
    """True values per row of an (n, 4) bool mask, as int8 (four column adds; ``sum(axis=1)`` is slower)."""
    m = np.asarray(mask, dtype=bool)
    out: NDArray[np.int8] = (m[:, 0].astype(np.int8) + m[:, 1] + m[:, 2] + m[:, 3]).astype(np.int8)
    return out
