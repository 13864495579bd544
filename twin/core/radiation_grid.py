"""Precomputed AE8/AP8 trapped-particle flux grid (lat x lon x alt) with fast trilinear lookup.

The grid holds log10 of the omnidirectional integral flux [1/(cm^2 s)] of trapped protons above
``proton_energy_mev`` (AP8) and electrons above ``electron_energy_mev`` (AE8), evaluated with the
``aep8`` package (IRBEM). AE8/AP8 use fixed internal geomagnetic field models (Jensen-Cain 1960 /
GSFC 12/66), so the flux does not depend on the epoch and the South Atlantic Anomaly emerges from
the model itself (no polygon). Where AE8/AP8 return NaN or zero (outside the belts), the grid holds
``FLOOR_LOG10`` and :meth:`RadiationGrid.lookup` returns 0.

Sources of a grid, in order: the shipped ``twin/data/radiation_grid_default.npz`` (when its
parameter key matches), the user cache ``$XDG_CACHE_HOME/orbitwin`` (or ``~/.cache/orbitwin``,
key = parameters + aep8 version), else a fresh build (~25 s) that is then cached. ``aep8`` and
``astropy`` are imported lazily, only to build; astropy is kept from downloading IERS data.

Regenerate the shipped grid: ``python -m twin.core.radiation --out twin/data/radiation_grid_default.npz``.
Sources and accuracy: docs/physics.md#radiation-grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from twin.core.constants import MU_EARTH_M3_S2, OMEGA_EARTH_RAD_S, R_EARTH_M, SECONDS_PER_DAY

FORMAT_VERSION = 1
FLOOR_LOG10 = -3.0  # log10 flux [1/(cm^2 s)] stored where AE8/AP8 give 0 or NaN; read back as 0
DEFAULT_GRID_PATH = Path(__file__).resolve().parents[1] / "data" / "radiation_grid_default.npz"
_BUILD_TIME_ISO = "2025-01-01T00:00:00"  # AE8/AP8 fields are epoch-fixed; any UTC time gives the same flux


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """What a grid contains: axes (deg, km), energy thresholds (MeV) and AE8/AP8 solar phases.

    No defaults here: the values come from ``RadiationParams.grid_spec()`` (the design's ``[radiation]``).
    """

    lat_step_deg: float
    lon_step_deg: float
    alt_min_km: float
    alt_max_km: float
    alt_step_km: float
    proton_energy_mev: float
    electron_energy_mev: float
    solar_phase_protons: str
    solar_phase_electrons: str

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latitude [deg], longitude [deg] (-180..180 inclusive) and altitude [km] axes."""
        lat = np.linspace(-90.0, 90.0, int(round(180.0 / self.lat_step_deg)) + 1)
        lon = np.linspace(-180.0, 180.0, int(round(360.0 / self.lon_step_deg)) + 1)
        n_alt = int(round((self.alt_max_km - self.alt_min_km) / self.alt_step_km)) + 1
        alt = np.linspace(self.alt_min_km, self.alt_max_km, n_alt)
        return lat, lon, alt

    def key(self) -> str:
        """Stable hash of the grid contents (format version + spec), independent of aep8 version."""
        blob = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def aep8_integral_flux(
    lat_deg: Any, lon_deg: Any, alt_km: Any, energy_mev: float, particle: str, solar: str,
    time_iso: str = _BUILD_TIME_ISO,
) -> np.ndarray:
    """Direct AE8/AP8 integral flux [1/(cm^2 s)] above ``energy_mev`` via aep8 (slow; NaN kept).

    ``particle``: ``"p"`` (AP8) or ``"e"`` (AE8); ``solar``: solar phase ``"min"`` or ``"max"``.
    """
    import warnings

    import aep8
    from astropy import units as u
    from astropy.coordinates import EarthLocation
    from astropy.time import Time
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # IRBEM NaN outside the belts
        loc = EarthLocation.from_geodetic(
            np.asarray(lon_deg, float) * u.deg, np.asarray(lat_deg, float) * u.deg,
            np.asarray(alt_km, float) * u.km)
        t = Time(time_iso, scale="utc")
        flux = aep8.model(_particle(particle), _solar_phase(solar)).integral_flux(loc, t, energy_mev * u.MeV)
    return np.asarray(flux.to_value(u.cm**-2 * u.s**-1), dtype=float)


_PARTICLES: dict[str, Literal["e", "p"]] = {"e": "e", "p": "p"}
_SOLAR_PHASES: dict[str, Literal["min", "max"]] = {"min": "min", "max": "max"}


def _particle(name: str) -> Literal["e", "p"]:
    if name not in _PARTICLES:
        raise ValueError(f"particle must be 'e' or 'p', got {name!r}")
    return _PARTICLES[name]


def _solar_phase(name: str) -> Literal["min", "max"]:
    if name not in _SOLAR_PHASES:
        raise ValueError(f"solar phase must be 'min' or 'max', got {name!r}")
    return _SOLAR_PHASES[name]


def _to_log10(flux: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(flux)
    return np.where(np.isfinite(out) & (out > FLOOR_LOG10), out, FLOOR_LOG10).astype(np.float32)


class RadiationGrid:
    """log10 integral flux on a regular (lat, lon, alt) grid; channel 0 protons, 1 electrons."""

    def __init__(self, spec: GridSpec, log10_flux: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.lat_deg, self.lon_deg, self.alt_km = spec.axes()
        shape = (self.lat_deg.size, self.lon_deg.size, self.alt_km.size, 2)
        if log10_flux.shape != shape:
            raise ValueError(f"grid shape {log10_flux.shape} != {shape} for {spec}")
        self.log10_flux = np.asarray(log10_flux, dtype=np.float32)
        self.meta = dict(meta or {})
        nla, nlo, nal = shape[:3]
        # Per-cell table of the 8 corners x 2 channels (float32) -> one contiguous 16-float gather per point.
        g = self.log10_flux
        corners = [g[i:nla - 1 + i, j:nlo - 1 + j, k:nal - 1 + k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
        self._cells = np.ascontiguousarray(np.stack(corners, axis=3).reshape(-1, 16))  # col = (di*4+dj*2+dk)*2+ch
        self._n_cells = (nla - 1, nlo - 1, nal - 1)
        self._lat0_rad, self._inv_dlat = np.radians(self.lat_deg[0]), 1.0 / np.radians(spec.lat_step_deg)
        self._inv_dlon = (nlo - 1) / (2.0 * np.pi)
        self._alt0_m, self._inv_dalt = self.alt_km[0] * 1e3, 1.0 / ((self.alt_km[1] - self.alt_km[0]) * 1e3)

    def lookup(self, lat_rad: np.ndarray, lon_rad: np.ndarray, alt_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Trilinear (log-space) integral flux [1/(cm^2 s)]: (protons > E_p, electrons > E_e).

        Longitude wraps; latitude and altitude are clamped to the grid (altitude outside
        ``alt_min_km..alt_max_km`` returns the edge value). NaN inputs and belt-free cells give 0.
        """
        lat = np.asarray(lat_rad, dtype=np.float64)
        shape = lat.shape
        nla, nlo, nal = self._n_cells
        fi = (lat.ravel() - self._lat0_rad) * self._inv_dlat
        fj = (np.asarray(lon_rad, dtype=np.float64).ravel() + np.pi) * self._inv_dlon
        fk = (np.asarray(alt_m, dtype=np.float64).ravel() - self._alt0_m) * self._inv_dalt
        bad = ~np.isfinite(fi + fj + fk)
        any_bad = bool(bad.any())
        if any_bad:
            fi, fj, fk = (np.where(bad, 0.0, f) for f in (fi, fj, fk))
        fj -= nlo * np.floor(fj * (1.0 / nlo))  # wrap to [0, nlo)
        np.clip(fi, 0.0, nla, out=fi)
        np.clip(fk, 0.0, nal, out=fk)
        i = np.minimum(fi.astype(np.intp), nla - 1)
        j = np.minimum(fj.astype(np.intp), nlo - 1)
        k = np.minimum(fk.astype(np.intp), nal - 1)
        wi, wj, wk = ((f - n).astype(np.float32) for f, n in ((fi, i), (fj, j), (fk, k)))
        c = np.take(self._cells, (i * nlo + j) * nal + k, axis=0).T.copy()  # (16, n), contiguous rows
        a = c[8:] - c[:8]  # along latitude: rows (dj*2+dk)*2+ch
        a *= wi
        a += c[:8]
        b = a[4:] - a[:4]  # along longitude: rows dk*2+ch
        b *= wj
        b += a[:4]
        v = b[2:] - b[:2]  # along altitude: rows ch
        v *= wk
        v += b[:2]
        flux = np.power(10.0, v.astype(np.float64))
        flux *= v > FLOOR_LOG10 + 1e-3
        if any_bad:
            flux[:, bad] = 0.0
        return flux[0].reshape(shape), flux[1].reshape(shape)

    def save(self, path: Path) -> None:
        """Write the grid (float32 log10 flux + spec + metadata) atomically to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "spec": dataclasses.asdict(self.spec), "key": self.spec.key(), "format": FORMAT_VERSION}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        np.savez_compressed(tmp, log10_flux=self.log10_flux, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> RadiationGrid:
        """Read a grid written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(GridSpec(**meta["spec"]), z["log10_flux"], meta)


def build_grid(spec: GridSpec) -> RadiationGrid:
    """Evaluate AE8/AP8 on every grid node (lazy aep8 import; ~25 s for the default spec)."""
    from importlib.metadata import version

    lat, lon, alt = spec.axes()
    la, lo, al = np.meshgrid(lat, lon, alt, indexing="ij")
    p = aep8_integral_flux(la.ravel(), lo.ravel(), al.ravel(), spec.proton_energy_mev, "p", spec.solar_phase_protons)
    e = aep8_integral_flux(la.ravel(), lo.ravel(), al.ravel(), spec.electron_energy_mev, "e", spec.solar_phase_electrons)
    log10_flux = np.stack([_to_log10(p), _to_log10(e)], axis=-1).reshape(la.shape + (2,))
    return RadiationGrid(spec, log10_flux, {"aep8_version": version("aep8"), "source": "aep8 (IRBEM AE8/AP8)"})


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/orbitwin`` or ``~/.cache/orbitwin``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orbitwin"


_LOADED: dict[GridSpec, RadiationGrid] = {}


def get_grid(spec: GridSpec) -> RadiationGrid:
    """The grid for ``spec``: memory, shipped default, disk cache, or a fresh (cached) build."""
    if spec in _LOADED:
        return _LOADED[spec]
    grid = None
    if DEFAULT_GRID_PATH.exists():
        g = RadiationGrid.load(DEFAULT_GRID_PATH)
        grid = g if g.spec == spec else None
    if grid is None:
        from importlib.metadata import version

        path = cache_dir() / f"radiation_grid_{spec.key()}_aep8-{version('aep8')}.npz"
        if path.exists():
            grid = RadiationGrid.load(path)
        else:
            grid = build_grid(spec)
            try:
                grid.save(path)
            except OSError:
                pass  # read-only home: keep the grid in memory only
    _LOADED[spec] = grid
    return grid


def circular_ground_track(
    alt_m: float, inclination_deg: float, duration_s: float = SECONDS_PER_DAY, dt_s: float = 10.0, raan_deg: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geodetic-ish (spherical) lat [rad], lon [rad], alt [m] of a circular orbit over a rotating Earth."""
    t = np.arange(0.0, duration_s, dt_s)
    u = np.sqrt(MU_EARTH_M3_S2 / (R_EARTH_M + alt_m) ** 3) * t
    inc = np.radians(inclination_deg)
    lat = np.arcsin(np.sin(inc) * np.sin(u))
    lon = np.arctan2(np.cos(inc) * np.sin(u), np.cos(u)) + np.radians(raan_deg) - OMEGA_EARTH_RAD_S * t
    return lat, np.mod(lon + np.pi, 2.0 * np.pi) - np.pi, np.full_like(t, alt_m)


def orbit_average_flux(grid: RadiationGrid, alt_m: float, inclination_deg: float, duration_s: float = SECONDS_PER_DAY) -> tuple[float, float]:
    """Time-averaged (protons, electrons) integral flux [1/(cm^2 s)] along a circular orbit."""
    p, e = grid.lookup(*circular_ground_track(alt_m, inclination_deg, duration_s))
    return float(p.mean()), float(e.mean())
