"""The fleet grid: fleet-summary aggregates per latitude/longitude cell.

A map of 10,000 satellites read from 10,000 series costs InfluxDB about a second per panel. The
twin therefore bins its fleet once per summary onto a fixed grid of ``CELL_DEG`` x ``CELL_DEG``
cells (``ROWS`` x ``COLS`` = ``N_CELLS`` cells, row-major from latitude -90 deg, longitude -180 deg;
cell ``k`` spans latitudes ``-90 + CELL_DEG * (k // COLS)`` to ``+ CELL_DEG`` and longitudes
``-180 + CELL_DEG * (k % COLS)`` to ``+ CELL_DEG``) and publishes, in the fleet summary's ``grid``
object, one array of ``N_CELLS`` values per :data:`GRID_FIELDS` entry (dense: empty cells included,
so the latest value of every cell is current). Only the first summary at or after every
``PERIOD_S`` of sim time carries it: a map needs no 1 Hz update, and ``N_CELLS`` points per
summary would outnumber a small fleet's telemetry. The InfluxDB bridge stores one point per cell in
``MEASUREMENT`` with the tag ``TAG`` = :func:`cell_name` (a fixed set of ``N_CELLS`` values, so the
series count is bounded) and the cell's centre as ``lat_deg``/``lon_deg``; the fleet maps read those
few hundred series. The twin, the bridge, the AsyncAPI document and the dashboards take every name
here; nothing else defines them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

CELL_DEG: Final = 10
"""Cell size in degrees of latitude and longitude (divides 180)."""
ROWS: Final = 180 // CELL_DEG
COLS: Final = 360 // CELL_DEG
N_CELLS: Final = ROWS * COLS
PERIOD_S: Final = 10.0
"""Sim seconds between summaries that carry the grid (at least; a summary rate below 1/PERIOD_S stretches it)."""
MEASUREMENT: Final = "fleet_grid"
TAG: Final = "cell"
CENTRE_FIELDS: Final = ("lat_deg", "lon_deg")
"""Fields the bridge adds to each stored cell: the cell's centre in degrees (derived from the cell index)."""


@dataclass(frozen=True)
class GridField:
    """One per-cell aggregate: name (unit suffix), unit, dtype (``int`` or ``float`` as in the codec), meaning."""

    name: str
    unit: str
    dtype: str
    description: str


GRID_FIELDS: Final[tuple[GridField, ...]] = (
    GridField("sats", "", "int", "Satellites in the cell, lost ones (no position) excluded"),
    GridField("yellow", "", "int", "Of those, satellites whose limit_state is yellow"),
    GridField("red", "", "int", "Of those, satellites whose limit_state is red"),
    GridField("safe", "", "int", "Of those, satellites in safe mode"),
    GridField("limit_state", "", "int", "Worst limit_state in the cell (0 green, 1 yellow, 2 red; 0 when empty)"),
    GridField("dose_rate_mean_rad_s", "rad(Si)/s", "float",
              "Mean dose_rate_rad_s of the cell's satellites (null when none reports one)"),
    GridField("dose_rate_max_rad_s", "rad(Si)/s", "float",
              "Largest dose_rate_rad_s of the cell's satellites (null when none reports one)"),
    # the network (docs/network.md; 0 and null for a twin without the network model)
    GridField("no_route", "", "int", "Of those, satellites with no route to any gateway"),
    GridField("gw_delay_mean_ms", "ms", "float",
              "Mean one-way delay to the nearest gateway of the cell's routed satellites (null when none is routed)"),
    GridField("gw_delay_max_ms", "ms", "float",
              "Largest one-way delay to the nearest gateway of the cell's routed satellites (null when none is "
              "routed)"),
    GridField("link_util_max", "1", "float", "Largest max_link_util of the cell's satellites (null without traffic)"),
    GridField("throughput_gbps", "Gbps", "float",
              "throughput_gbps summed over the cell's satellites (relayed traffic counts on each; null without "
              "traffic)"),
)
GRID_FIELD_BY_NAME: Final[dict[str, GridField]] = {f.name: f for f in GRID_FIELDS}


def cell_of(lat_deg: npt.NDArray[np.float64], lon_deg: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Cell index of each finite position (latitude -90..90, longitude -180..180 deg; the edges clamp in)."""
    row = np.clip(np.floor((np.asarray(lat_deg) + 90.0) / CELL_DEG), 0, ROWS - 1).astype(np.int64)
    col = np.clip(np.floor((np.asarray(lon_deg) + 180.0) / CELL_DEG), 0, COLS - 1).astype(np.int64)
    return row * COLS + col


def cell_centre_deg(cell: int) -> tuple[float, float]:
    """(latitude, longitude) of a cell's centre in degrees."""
    if not 0 <= cell < N_CELLS:
        raise ValueError(f"cell {cell} outside 0..{N_CELLS - 1}")
    row, col = divmod(cell, COLS)
    return -90.0 + CELL_DEG * (row + 0.5), -180.0 + CELL_DEG * (col + 0.5)


def cell_name(cell: int) -> str:
    """The tag value of a cell: its south-west corner, e.g. ``S40W060`` for latitudes -40..-30, longitudes -60..-50."""
    lat, lon = cell_centre_deg(cell)
    lat0, lon0 = int(round(lat - CELL_DEG / 2)), int(round(lon - CELL_DEG / 2))
    return f"{'S' if lat0 < 0 else 'N'}{abs(lat0):02d}{'W' if lon0 < 0 else 'E'}{abs(lon0):03d}"
