"""Precomputed AE8/AP8 trapped-particle spectra on a (lat x lon x alt) grid, with trilinear lookup.

The spectral grid holds log10 of the omnidirectional integral flux [1/(cm^2 s)] of trapped protons
(AP8) above each of ``proton_energies_mev`` and of electrons (AE8) above each of
``electron_energies_mev``, evaluated with the ``aep8`` package (IRBEM). AE8/AP8 use fixed internal
geomagnetic field models (Jensen-Cain 1960 / GSFC 12/66), so the flux does not depend on the epoch
and the South Atlantic Anomaly emerges from the model itself (no polygon). Where AE8/AP8 return NaN
or zero (outside the belts), the grid holds ``FLOOR_LOG10`` and lookups return 0.

The engine does not interpolate spectra per tick: :mod:`twin.core.radiation` folds the spectra
once, at load, into a few derived channels (fluxes, dose rates, SEU rate) on the same axes, held in
a :class:`LogGrid` whose lookup is one gather of the 8 cell corners.

Sources of a spectral grid, in order: the shipped ``twin/data/radiation_grid_default.npz`` (when its
parameter key matches), the user cache ``$XDG_CACHE_HOME/orbitwin`` (or ``~/.cache/orbitwin``,
key = parameters + aep8 version), else a fresh build (one geomagnetic-coordinate pass per field
model, ~3 min on a loaded machine; every energy after that is a table lookup) that is then cached.
``aep8`` and ``astropy`` are imported lazily, only to build; astropy is kept from downloading IERS data.

Regenerate the shipped grid: ``python -m twin.core.radiation --out twin/data/radiation_grid_default.npz``.
Sources and accuracy: docs/physics.md#radiation-grid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from twin.core.constants import MU_EARTH_M3_S2, OMEGA_EARTH_RAD_S, R_EARTH_M, SECONDS_PER_DAY

FORMAT_VERSION = 2
FLOOR_LOG10 = -3.0  # log10 of a channel value stored where AE8/AP8 give 0 or NaN; read back as 0
_CELL_TABLE_MAX_CHANNELS = 8  # up to this many channels, lookups use a per-cell corner table (8 x C floats per cell)
_LN10 = float(np.log(10.0))
_MILLIDEX = 1000.0  # the file stores log10 values as int16 thousandths of a decade (0.23 % steps)
DEFAULT_GRID_PATH = Path(__file__).resolve().parents[1] / "data" / "radiation_grid_default.npz"
_BUILD_TIME_ISO = "2025-01-01T00:00:00"  # AE8/AP8 fields are epoch-fixed; any UTC time gives the same flux
_BUILD_CHUNK = 4096  # grid nodes evaluated per aep8 call of a build (each node on its own: same values in any chunk)


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """What a spectral grid contains: axes (deg, km), energy thresholds (MeV) and AE8/AP8 solar phases.

    No defaults here: the values come from ``RadiationParams.grid_spec()`` (the design's ``[radiation]``).
    """

    lat_step_deg: float
    lon_step_deg: float
    alt_min_km: float
    alt_max_km: float
    alt_step_km: float
    proton_energies_mev: tuple[float, ...]
    electron_energies_mev: tuple[float, ...]
    solar_phase_protons: str
    solar_phase_electrons: str

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Latitude [deg], longitude [deg] (-180..180 inclusive) and altitude [km] axes."""
        lat = np.linspace(-90.0, 90.0, int(round(180.0 / self.lat_step_deg)) + 1)
        lon = np.linspace(-180.0, 180.0, int(round(360.0 / self.lon_step_deg)) + 1)
        n_alt = int(round((self.alt_max_km - self.alt_min_km) / self.alt_step_km)) + 1
        alt = np.linspace(self.alt_min_km, self.alt_max_km, n_alt)
        return lat, lon, alt

    @property
    def n_channels(self) -> int:
        """Proton channels first, then electron channels."""
        return len(self.proton_energies_mev) + len(self.electron_energies_mev)

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
    return aep8_spectra(lat_deg, lon_deg, alt_km, (energy_mev,), particle, solar, time_iso)[..., 0]


def aep8_spectra(
    lat_deg: Any, lon_deg: Any, alt_km: Any, energies_mev: tuple[float, ...], particle: str, solar: str,
    time_iso: str = _BUILD_TIME_ISO,
) -> np.ndarray:
    """AE8/AP8 integral fluxes [1/(cm^2 s)] above each energy, shape (..., len(energies_mev)), NaN kept.

    The geomagnetic coordinates (McIlwain L, B/B0) are computed once; each energy is then a table lookup.
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
        model = aep8.model(_particle(particle), _solar_phase(solar))
        big_l, b_b0 = model.geomagnetic_coordinates(loc, Time(time_iso, scale="utc"))
        out = [model.integral_flux_for_geomagnetic_coordinates(big_l, b_b0, e * u.MeV).to_value(u.cm**-2 * u.s**-1)
               for e in energies_mev]
    return np.stack([np.asarray(f, dtype=float) for f in out], axis=-1)


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


def to_log10(values: np.ndarray) -> np.ndarray:
    """log10 of non-negative values as float32, ``FLOOR_LOG10`` where the value is 0, NaN or below the floor."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log10(values)
    return np.where(np.isfinite(out) & (out > FLOOR_LOG10), out, FLOOR_LOG10).astype(np.float32)


class LogGrid:
    """Channels of log10 values on the (lat, lon, alt) axes of a :class:`GridSpec`; trilinear lookup.

    Channel ``c`` holds log10(value x ``scales[c]``): the scale lifts small quantities (dose rates in
    rad/s) clear of ``FLOOR_LOG10``; :meth:`lookup` divides it out again.
    """

    def __init__(self, spec: GridSpec, log10_values: np.ndarray, scales: np.ndarray | None = None) -> None:
        self.spec = spec
        self.lat_deg, self.lon_deg, self.alt_km = spec.axes()
        nla, nlo, nal = self.lat_deg.size, self.lon_deg.size, self.alt_km.size
        if log10_values.ndim != 4 or log10_values.shape[:3] != (nla, nlo, nal):
            raise ValueError(f"grid shape {log10_values.shape} != {(nla, nlo, nal)} + (channels,) for {spec}")
        self.n_channels = int(log10_values.shape[3])
        self.log10_values = np.asarray(log10_values, dtype=np.float32)
        self.scales = np.ones(self.n_channels) if scales is None else np.asarray(scales, dtype=float)
        self._cells: np.ndarray | None = None
        self._n_cells = (nla - 1, nlo - 1, nal - 1)
        self._lat0_rad, self._inv_dlat = np.radians(self.lat_deg[0]), 1.0 / np.radians(spec.lat_step_deg)
        self._inv_dlon = (nlo - 1) / (2.0 * np.pi)
        self._alt0_m, self._inv_dalt = self.alt_km[0] * 1e3, 1.0 / ((self.alt_km[1] - self.alt_km[0]) * 1e3)

    def _cell_table(self) -> np.ndarray:
        """Per-cell table, shape (8 corners x C channels, cells), float32: each of its rows is gathered
        for all points at once (rows (corner, channel), as the interpolation below reads them)."""
        if self._cells is None:
            g = self.log10_values
            nla, nlo, nal = (n + 1 for n in self._n_cells)
            corners = [g[i:nla - 1 + i, j:nlo - 1 + j, k:nal - 1 + k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
            self._cells = np.ascontiguousarray(np.stack(corners, axis=3).reshape(-1, 8 * self.n_channels).T)
        return self._cells

    def lookup(self, lat_rad: Any, lon_rad: Any, alt_m: Any) -> np.ndarray:
        """Trilinear (log-space) values, shape (channels, *lat.shape).

        Longitude wraps; latitude and altitude are clamped to the grid (altitude outside
        ``alt_min_km..alt_max_km`` returns the edge value). NaN inputs and belt-free cells give 0.
        """
        lat = np.asarray(lat_rad, dtype=np.float64)
        shape = lat.shape
        nla, nlo, nal = self._n_cells
        nc = self.n_channels
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
        if nc <= _CELL_TABLE_MAX_CHANNELS:
            c = np.take(self._cell_table(), (i * nlo + j) * nal + k, axis=1)  # (8C, n), rows (corner, ch)
        else:  # many channels (spectra): gather the 8 corners from the node array, no per-cell table
            flat = self.log10_values.reshape(-1, nc)
            base = (i * (nlo + 1) + j) * (nal + 1) + k
            offsets = [(di * (nlo + 1) + dj) * (nal + 1) + dk for di in (0, 1) for dj in (0, 1) for dk in (0, 1)]
            c = np.concatenate([np.take(flat, base + o, axis=0).T for o in offsets], axis=0)
        h = 4 * nc
        a = c[h:] - c[:h]  # along latitude: rows (dj*2+dk)*C+ch
        a *= wi
        a += c[:h]
        h = 2 * nc
        b = a[h:] - a[:h]  # along longitude: rows dk*C+ch
        b *= wj
        b += a[:h]
        v = b[nc:] - b[:nc]  # along altitude: rows ch
        v *= wk
        v += b[:nc]
        out = np.exp(v.astype(np.float64) * _LN10)
        out *= v > FLOOR_LOG10 + 1e-3
        out /= self.scales[:, None]
        if any_bad:
            out[:, bad] = 0.0
        values: np.ndarray = out.reshape((nc, *shape))
        return values


class RadiationGrid(LogGrid):
    """AE8/AP8 integral spectra: channels = ``spec.proton_energies_mev`` then ``spec.electron_energies_mev``."""

    def __init__(self, spec: GridSpec, log10_flux: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        if log10_flux.ndim != 4 or log10_flux.shape[3] != spec.n_channels:
            raise ValueError(f"grid has {log10_flux.shape[-1]} channels, spec asks for {spec.n_channels}")
        super().__init__(spec, log10_flux)
        self.meta = dict(meta or {})

    @property
    def log10_flux(self) -> np.ndarray:
        """log10 integral flux [1/(cm^2 s)], shape (lat, lon, alt, channels), float32."""
        return self.log10_values

    @property
    def n_protons(self) -> int:
        """Number of proton channels (they come first)."""
        return len(self.spec.proton_energies_mev)

    def save(self, path: Path) -> None:
        """Write the grid (int16 thousandths of a decade + spec + metadata) atomically to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "spec": dataclasses.asdict(self.spec), "key": self.spec.key(), "format": FORMAT_VERSION}
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(fd)
        np.savez_compressed(tmp, log10_flux_millidex=_to_millidex(self.log10_values), meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> RadiationGrid:
        """Read a grid written by :meth:`save`; raises ``ValueError`` for another format version."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT_VERSION or "log10_flux_millidex" not in z:
                raise ValueError(f"{path}: radiation grid format {meta.get('format')}, expected {FORMAT_VERSION}")
            spec = meta["spec"]
            spec = GridSpec(**{**spec, "proton_energies_mev": tuple(spec["proton_energies_mev"]),
                               "electron_energies_mev": tuple(spec["electron_energies_mev"])})
            return cls(spec, _from_millidex(z["log10_flux_millidex"]), meta)


def build_grid(spec: GridSpec, progress: Callable[[float, float], None] | None = None) -> RadiationGrid:
    """Evaluate AE8/AP8 spectra on every grid node (lazy aep8 import; ~3 min on a loaded machine).

    ``progress(done, total)``: grid nodes evaluated, after every chunk of :data:`_BUILD_CHUNK`.
    """
    from importlib.metadata import version

    lat, lon, alt = spec.axes()
    la, lo, al = (x.ravel() for x in np.meshgrid(lat, lon, alt, indexing="ij"))
    chunks = []
    for start in range(0, la.size, _BUILD_CHUNK):
        end = min(start + _BUILD_CHUNK, la.size)
        chunks.append(np.concatenate(_spectra_pair(la[start:end], lo[start:end], al[start:end], spec), axis=-1))
        if progress is not None:
            progress(end, la.size)
    log10_flux = to_log10(np.concatenate(chunks)).reshape(lat.size, lon.size, alt.size, spec.n_channels)
    # quantise as the file stores it, so a fresh build and a loaded one give bit-identical results
    log10_flux = _from_millidex(_to_millidex(log10_flux))
    return RadiationGrid(spec, log10_flux, {"aep8_version": version("aep8"), "source": "aep8 (IRBEM AE8/AP8)"})


def _spectra_pair(la: np.ndarray, lo: np.ndarray, al: np.ndarray, spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Proton and electron spectra at the nodes; one geomagnetic-coordinate pass when both models share a field model."""
    import aep8

    pm = aep8.model(_particle("p"), _solar_phase(spec.solar_phase_protons))
    em = aep8.model(_particle("e"), _solar_phase(spec.solar_phase_electrons))
    if getattr(pm, "_geomag", None) is None or getattr(pm, "_geomag", None) is not getattr(em, "_geomag", None):
        return (aep8_spectra(la, lo, al, spec.proton_energies_mev, "p", spec.solar_phase_protons),
                aep8_spectra(la, lo, al, spec.electron_energies_mev, "e", spec.solar_phase_electrons))
    # AP8-MIN and AE8 use the same internal field (Jensen-Cain 1960) in aep8: L and B/B0 once, then table lookups
    import warnings

    from astropy import units as u
    from astropy.coordinates import EarthLocation
    from astropy.time import Time
    from astropy.utils import iers

    with iers.conf.set_temp("auto_download", False), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loc = EarthLocation.from_geodetic(lo * u.deg, la * u.deg, al * u.km)
        big_l, b_b0 = pm.geomagnetic_coordinates(loc, Time(_BUILD_TIME_ISO, scale="utc"))
        out = []
        for model, energies in ((pm, spec.proton_energies_mev), (em, spec.electron_energies_mev)):
            fluxes = [model.integral_flux_for_geomagnetic_coordinates(big_l, b_b0, en * u.MeV).to_value(u.cm**-2 * u.s**-1)
                      for en in energies]
            out.append(np.stack([np.asarray(f, dtype=float) for f in fluxes], axis=-1))
    return out[0], out[1]


def _to_millidex(log10_values: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.round(log10_values.astype(np.float64) * _MILLIDEX).astype(np.int16)
    return out


def _from_millidex(millidex: np.ndarray) -> np.ndarray:
    out: np.ndarray = millidex.astype(np.float32) / np.float32(_MILLIDEX)
    return out


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/orbitwin`` or ``~/.cache/orbitwin``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orbitwin"


_LOADED: dict[GridSpec, RadiationGrid] = {}


def get_grid(spec: GridSpec, progress: Callable[[float, float], None] | None = None) -> RadiationGrid:
    """The spectral grid for ``spec``: memory, shipped default, disk cache, or a fresh (cached) build.

    ``progress``: passed to :func:`build_grid`, so called only when the grid is built.
    """
    if spec in _LOADED:
        return _LOADED[spec]
    grid = None
    if DEFAULT_GRID_PATH.exists():
        try:
            g = RadiationGrid.load(DEFAULT_GRID_PATH)
        except ValueError:
            g = None
        grid = g if g is not None and g.spec == spec else None
    if grid is None:
        from importlib.metadata import version

        path = cache_dir() / f"radiation_grid_{spec.key()}_aep8-{version('aep8')}.npz"
        if path.exists():
            grid = RadiationGrid.load(path)
        else:
            grid = build_grid(spec, progress)
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


def orbit_average(grid: LogGrid, alt_m: float, inclination_deg: float, duration_s: float = SECONDS_PER_DAY) -> np.ndarray:
    """Time average of every channel along a circular orbit, shape (channels,)."""
    out: np.ndarray = grid.lookup(*circular_ground_track(alt_m, inclination_deg, duration_s)).mean(axis=1)
    return out
