"""The fleet summary: counts, totals, network and compute figures and the grid, from the current telemetry.

The MQTT summary (``{prefix}/fleet/summary``) and the status view of ``orbitwin run``
(:mod:`twin.runtime.status_view`) both read it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.core.radiation import dose_rate_by_region, dose_region
from twin.schema import fleet_grid as grid
from twin.schema.dose_regions import DOSE_REGIONS
from twin.schema.telemetry import LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_NOMINAL, MODE_SAFE


def fleet_summary(twin, *, with_grid: bool = True) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Fleet-wide counts and totals from the current telemetry, and (``with_grid``) the per-cell ``grid``.

    ``grid``: :func:`fleet_grid`; publishers include it as :class:`GridPacer` says.
    ``boards``: live satellites whose payload is a hardware board (``payload_source`` > 0: bound,
    held or fallen back after losing the link). ``dose_rate_<region>_rad_s``: :func:`fleet_dose_by_region`.
    """
    tm = twin.tm
    live = twin.mode != MODE_LOST
    dep = getattr(twin, "deployment", None)
    in_orbit = None
    extra: dict[str, Any] = {}
    if dep is not None and (dep.version or not dep.all_on_station):
        # a constellation that changes: count satellites in orbit only, and say how many per phase
        in_orbit = dep.in_orbit
        live = live & in_orbit
        extra = {f"deploy_{k}": v for k, v in dep.counts().items()}
    return extra | {
        "sats": twin.n if in_orbit is None else int(in_orbit.sum()),
        "nominal": int(np.sum(live & (twin.mode == MODE_NOMINAL) & (tm["limit_state"] == 0))),
        "yellow": int(np.sum(live & (tm["limit_state"] == LIMIT_YELLOW))),
        "red": int(np.sum(live & (tm["limit_state"] == LIMIT_RED))),
        "safe": int(np.sum(live & (twin.mode == MODE_SAFE))),
        "lost": int(np.sum((twin.mode == MODE_LOST) & (True if in_orbit is None else in_orbit))),
        "sunlit": int(np.sum(live & (tm["illumination"] > 0.5))),
        "in_saa": int(np.sum(live & tm["in_saa"])),
        "array_power_mw": float(np.nansum(tm["array_power_w"][live]) / 1e6),
        "payload_power_mw": float(np.nansum(tm["payload_power_w"][live]) / 1e6),
        "throughput_eops": float(np.nansum(tm["payload_throughput_tops"][live]) / 1e6),
        "mean_soc": float(np.nanmean(tm["battery_soc"][live])) if np.any(live) else float("nan"),
        "latched": int(np.sum(tm["devices_latched"][live] != 0)),
        "boards": int(np.sum(live & (tm["payload_source"] > 0))),
    } | fleet_dose_by_region(twin) | fleet_network(twin) | fleet_compute(twin) | (
        {"grid": fleet_grid(twin)} if with_grid else {})


def fleet_compute(twin) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The fleet's compute-job figures (none for a twin without compute placement).

    :meth:`twin.core.compute.coupling.ComputeCoupling.summary`: ``compute_policy`` (the placement
    policy, a string), job counts since start by end state (``jobs_completed``, ``jobs_failed``,
    ``jobs_rejected``, ``jobs_interactive_completed``), ``jobs_submitted``, ``jobs_queued`` and
    ``jobs_running`` now, ``jobs_deadline_missed``, ``jobs_corrupted``, ``job_migrations``,
    ``job_bytes_moved``, the jobs' accelerator energy from the battery and the arrays
    (``compute_battery_wh``, ``compute_array_wh``), ``throttled_device_h`` and the interactive
    latency p50/p99 [ms] over the last hour (NaN when none completed).
    """
    compute = getattr(twin, "compute", None)
    return {} if compute is None else compute.summary()


def fleet_network(twin) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The fleet's network aggregates of this tick (none for a twin without the network model).

    ``net_partitioned``: live satellites with no route to any gateway; ``net_links_up``: laser links
    up; ``net_overloaded_links``: links (laser and ground) loaded above their capacity;
    ``net_gw_delay_p50_ms``/``net_gw_delay_p99_ms``: median and 99th percentile of the live routed
    satellites' one-way delay to their nearest gateway [ms] (NaN when none is routed).
    """
    net = twin.net
    if net is None:
        return {}
    live = twin.mode != MODE_LOST
    delay_s = net.gw_delay_s[live]
    routed = delay_s[np.isfinite(delay_s)]
    p50, p99 = (np.percentile(routed, (50.0, 99.0)) * 1e3).tolist() if routed.size else (float("nan"),) * 2
    return {"net_partitioned": int(np.count_nonzero(net.gw_hops[live] < 0)),
            "net_links_up": int(net.edges.shape[0]),
            "net_overloaded_links": int(net.overloaded),
            "net_gw_delay_p50_ms": float(p50), "net_gw_delay_p99_ms": float(p99)}


def fleet_dose_by_region(twin) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The fleet's dose rate [rad(Si)/s] summed per region of :mod:`twin.schema.dose_regions` (SAA, horns, elsewhere).

    Live satellites with a finite position and dose rate; the three add up to the fleet's total dose rate.
    """
    tm = twin.tm
    lat, lon, alt = (np.asarray(tm[k], dtype=float) for k in ("lat_deg", "lon_deg", "alt_m"))
    dose = np.asarray(tm["dose_rate_rad_s"], dtype=float)
    here = (twin.mode != MODE_LOST) & np.isfinite(lat) & np.isfinite(lon) & np.isfinite(alt) & np.isfinite(dose)
    region = dose_region(np.asarray(tm["in_saa"])[here], np.radians(lat[here]), np.radians(lon[here]), alt[here])
    by = dose_rate_by_region(dose[here], region)
    return {r.summary_field: float(by[r.index]) for r in DOSE_REGIONS}


class GridPacer:
    """Which summaries carry the grid: the first at or after every ``PERIOD_S`` sim seconds (:mod:`twin.schema.fleet_grid`)."""

    def __init__(self, period_s: float = grid.PERIOD_S) -> None:
        self.period_s = period_s
        self.last_t_s = -np.inf

    def due(self, t_s: float) -> bool:
        """True (and remembered) when ``t_s`` is at least a period after the last grid."""
        if t_s - self.last_t_s < self.period_s - 1e-9:
            return False
        self.last_t_s = t_s
        return True


def _sig(values: np.ndarray, digits: int = 4) -> list[float | None]:
    """Floats rounded to ``digits`` significant digits for the message (None where not finite)."""
    return [float(f"{v:.{digits}g}") if v == v and abs(v) != np.inf else None for v in values.tolist()]


def fleet_grid(twin) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The fleet binned on the grid of :mod:`twin.schema.fleet_grid`: one list of ``N_CELLS`` values per field.

    Only live satellites with a finite position count. Dose rates in rad(Si)/s (mean and maximum of
    the satellites with a finite ``dose_rate_rad_s``; None for a cell without any).
    """
    tm = twin.tm
    lat, lon = np.asarray(tm["lat_deg"], dtype=float), np.asarray(tm["lon_deg"], dtype=float)
    here = (twin.mode != MODE_LOST) & np.isfinite(lat) & np.isfinite(lon)
    cell = grid.cell_of(lat[here], lon[here])
    state = np.asarray(tm["limit_state"])[here]

    def count(mask: np.ndarray | None = None) -> list[int]:
        return np.bincount(cell if mask is None else cell[mask], minlength=grid.N_CELLS).tolist()  # type: ignore[no-any-return]

    worst = np.zeros(grid.N_CELLS, dtype=np.int64)
    np.maximum.at(worst, cell, state.astype(np.int64))
    dose = np.asarray(tm["dose_rate_rad_s"], dtype=float)[here]
    ok = np.isfinite(dose)
    n_dose = np.bincount(cell[ok], minlength=grid.N_CELLS)
    total = np.bincount(cell[ok], weights=dose[ok], minlength=grid.N_CELLS)
    peak = np.full(grid.N_CELLS, -np.inf)
    np.maximum.at(peak, cell[ok], dose[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_dose > 0, total / np.maximum(n_dose, 1), np.nan)
    out: dict[str, Any] = {
        "cell_deg": grid.CELL_DEG,
        "sats": count(),
        "yellow": count(state == LIMIT_YELLOW),
        "red": count(state == LIMIT_RED),
        "safe": count(twin.mode[here] == MODE_SAFE),
        "limit_state": worst.tolist(),
        "dose_rate_mean_rad_s": _sig(mean),
        "dose_rate_max_rad_s": _sig(np.where(n_dose > 0, peak, np.nan)),
    } | _grid_network(getattr(twin, "net", None), here, cell)
    assert set(out) == {"cell_deg", *grid.GRID_FIELD_BY_NAME}, "twin.schema.fleet_grid.GRID_FIELDS drifted"
    return out


def _cell_stats(cell: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per grid cell: count, sum and maximum (NaN when none) of the finite ``values`` of the satellites in ``cell``."""
    ok = np.isfinite(values)
    n = np.bincount(cell[ok], minlength=grid.N_CELLS)
    total = np.bincount(cell[ok], weights=values[ok], minlength=grid.N_CELLS)
    peak = np.full(grid.N_CELLS, -np.inf)
    np.maximum.at(peak, cell[ok], values[ok])
    return n, total, np.where(n > 0, peak, np.nan)


def _grid_network(net, here: np.ndarray, cell: np.ndarray) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The network fields of the fleet grid for the satellites ``here`` (in cells ``cell``) from the tick's mesh.

    ``no_route``: satellites with no gateway route; ``gw_delay_mean_ms``/``gw_delay_max_ms`` [ms] over the
    routed ones; ``link_util_max`` [1]; ``throughput_gbps`` [Gbit/s] summed. Without the network model
    (``net`` None): no satellite is counted cut off and the values are null.
    """
    if net is None:
        return {"no_route": [0] * grid.N_CELLS} | {
            k: [None] * grid.N_CELLS
            for k in ("gw_delay_mean_ms", "gw_delay_max_ms", "link_util_max", "throughput_gbps")}
    cut = np.asarray(net.gw_hops)[here] < 0
    n, total, peak = _cell_stats(cell, np.asarray(net.gw_delay_s, dtype=float)[here] * 1e3)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    _, _, util = _cell_stats(cell, np.asarray(net.sat_max_util, dtype=float)[here])
    n_thr, thr, _ = _cell_stats(cell, np.asarray(net.sat_throughput_gbps, dtype=float)[here])
    return {"no_route": np.bincount(cell[cut], minlength=grid.N_CELLS).tolist(),
            "gw_delay_mean_ms": _sig(mean), "gw_delay_max_ms": _sig(peak), "link_util_max": _sig(util),
            "throughput_gbps": _sig(np.where(n_thr > 0, thr, np.nan))}
