"""Radiation environment and effects: trapped-particle spectra, total ionising dose, SEU and SEL.

Pure numpy over satellites. The AE8/AP8 integral spectra come from a precomputed grid
(:mod:`twin.core.radiation_grid`; aep8/astropy are imported only to build a grid), so the South
Atlantic Anomaly and the outer-belt electron horns emerge from the models with their local spectra.
At load, :class:`RadiationEnvironment` folds the spectrum of every grid node once into a few
channels on the same axes, so that the engine's per-tick cost stays one trilinear lookup:

* fluxes: omnidirectional integral fluxes [1/(cm^2 s)] of protons above ``proton_energy_mev`` and
  electrons above ``electron_energy_mev`` (telemetry, SAA flag, SEL);
* dose rate [rad(Si)/s] at the centre of a solid aluminium sphere of ``shield_thickness_mm_al``
  (the electronics), and behind a front-only slab of cover glass (the solar cells): straight-ahead
  continuous slowing down of each energy of the local spectrum through the shield (Bragg-Kleeman
  proton range fitted to NIST PSTAR, Katz-Penfold electron range), energy deposited at the residual
  energy's stopping power, plus the electrons' bremsstrahlung (radiation yield after Koch-Motz);
* SEU: the local proton spectrum behind the shield weighted with a Bendel one-parameter
  cross-section shape, relative to its Alsat-1 orbit average, times the per-bit rate measured on
  Alsat-1; ECC splits single-bit (corrected) from multi-bit (uncorrectable) upsets;
* SEL: per-device rate, part proton-driven (SAA) and part flux-independent (heavy ions),
  doubling every ``sel_doubling_k`` above ``sel_reference_temp_k``.

Figures and sources: docs/physics.md#radiation.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core.constants import SECONDS_PER_DAY
from twin.core.sat_random import INVERSION_MAX_MEAN, Draws, poisson_inverse
from twin.core.params import DesignError, build, param
from twin.core.radiation_grid import (
    DEFAULT_GRID_PATH,
    GridSpec,
    LogGrid,
    RadiationGrid,
    build_grid,
    get_grid,
    orbit_average,
    to_log10,
)
from twin.schema import dose_regions

RAD_PER_MEV_PER_G = 1.602176634e-8  # 1 MeV/g = 1.602e-13 J / 1e-3 kg = 1.602e-10 Gy = 1.602e-8 rad
_SOLAR_PHASES = ("min", "max")


@dataclasses.dataclass(frozen=True)
class MemoryParams:
    """One memory type on every device (``[[radiation.memories]]``)."""

    name: str = param("", "memory name, e.g. 'sram' or 'hbm'")
    bits: float = param("bit", "bits of this memory per device", min=0.0)
    upset_rate_per_bit_day: float = param(
        "1/(bit day)", "upset rate per bit at the reference proton flux (Alsat-1 orbit average)", min=0.0)
    ecc: bool = param("", "protected by SECDED ECC: single-bit upsets are corrected")
    multi_bit_fraction: float = param(
        "", "fraction of upsets that are multi-bit (uncorrectable with ECC); Alsat-1: 1 - 0.986",
        min=0.0, max=1.0, default=0.014)

    @property
    def uncorrectable_fraction(self) -> float:
        """Fraction of upsets ECC cannot correct (all of them without ECC)."""
        return self.multi_bit_fraction if self.ecc else 1.0


DEFAULT_MEMORIES: tuple[MemoryParams, ...] = (
    # Alsat-1 commercial SRAM, 4.04e-7 upsets/bit/day at 686 km SSO (docs/physics.md#radiation). Size: estimate
    # (on-chip SRAM/caches of an AI accelerator, 32 MiB); modern FinFET SRAM is likely less sensitive.
    MemoryParams("sram", 2.68e8, 4.04e-7, True, 0.014),
    # HBM (96 GB): per-bit rate UNCONFIRMED, estimate 1e-10 /bit/day (modern DRAM is far less
    # sensitive per bit than early-2000s SRAM); multi-bit fraction assumed equal to Alsat-1's.
    MemoryParams("hbm", 8.2e11, 1.0e-10, True, 0.014),
)


@dataclasses.dataclass(frozen=True)
class RadiationParams:
    """``[radiation]`` section: environment model, shielding, dose, SEU and SEL parameters."""

    solar_phase_protons: str = param(
        "", "AP8 phase 'min'|'max'; AP8-MIN gives the higher LEO flux and is the docs/physics.md#radiation dose reference", default="min")
    solar_phase_electrons: str = param(
        "", "AE8 phase 'min'|'max'; AE8-MAX is the conservative pairing (SPENVIS/ECSS practice)", default="max")
    shield_thickness_mm_al: float = param(
        "mm", "equivalent aluminium solid-sphere shield around the electronics; docs/physics.md#radiation: ~100 mil", min=0.0, max=100.0, default=2.5)
    al_density_g_cm3: float = param("g/cm^3", "aluminium density", min=1.0, max=5.0, default=2.70)
    grid_lat_step_deg: float = param("deg", "flux grid latitude step (estimate: SAA spans ~40 deg)", min=0.25, max=10.0, default=2.0)
    grid_lon_step_deg: float = param("deg", "flux grid longitude step (estimate: SAA spans ~100 deg)", min=0.25, max=20.0, default=4.0)
    grid_alt_min_km: float = param("km", "lowest grid altitude (below: clamped)", min=100.0, max=2000.0, default=250.0)
    grid_alt_max_km: float = param("km", "highest grid altitude (above: clamped)", min=200.0, max=5000.0, default=1350.0)
    grid_alt_step_km: float = param("km", "grid altitude step; log-linear interpolation", min=5.0, max=500.0, default=50.0)
    proton_energy_mev: float = param(
        "MeV", "proton integral-flux threshold of telemetry, SAA flag and SEL; one of proton_spectrum_energies_mev", min=0.1, max=400.0, default=10.0)
    electron_energy_mev: float = param(
        "MeV", "electron integral-flux threshold of telemetry; one of electron_spectrum_energies_mev", min=0.04, max=7.0, default=1.0)
    proton_spectrum_energies_mev: tuple[float, ...] = param(
        "MeV", "AP8 integral-flux thresholds stored at every grid node (AP8 range 0.1-400 MeV; aep8 gives NaN at 400)",
        default=(1.0, 2.0, 4.0, 7.0, 10.0, 15.0, 20.0, 30.0, 50.0, 70.0, 100.0, 150.0, 200.0, 300.0))
    electron_spectrum_energies_mev: tuple[float, ...] = param(
        "MeV", "AE8 integral-flux thresholds stored at every grid node (AE8 range 0.04-7 MeV; 0 everywhere above 6 MeV at LEO)",
        default=(0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0))
    proton_range_a_g_cm2: float = param(
        "g/cm^2", "Bragg-Kleeman R = a E^b (E in MeV) fit to NIST PSTAR Al CSDA range 10-100 MeV (0.170, 9.4 g/cm^2); also used for Si",
        min=1e-4, max=1.0, default=0.0031)
    proton_range_b: float = param("", "Bragg-Kleeman exponent (PSTAR fit, see proton_range_a_g_cm2)", min=1.0, max=2.0, default=1.74)
    photon_energy_absorption_cm2_g: float = param(
        "cm^2/g", "Si mass energy-absorption coefficient at ~0.3 MeV (NIST Hubbell-Seltzer)", min=0.0, max=1.0, default=0.0288)
    seu_reference_proton_flux_cm2_s: float = param(
        "1/(cm^2 s)", "orbit-average proton flux > proton_energy_mev on the Alsat-1 orbit (686 km, 98.2 deg) from the default grid "
        "(reference of the SEL proton term); recompute with twin.core.radiation_grid.orbit_average if the grid model changes",
        min=1e-6, default=79.27)
    seu_bendel_a_mev: float = param(
        "MeV", "Bendel one-parameter proton upset cross-section: threshold-like parameter A (estimate; typical 5-30 MeV for SRAM)",
        min=1.0, max=100.0, default=10.0)
    memories: tuple[MemoryParams, ...] = param("", "memories per device ([[radiation.memories]])", default=DEFAULT_MEMORIES)
    saa_proton_flux_cm2_s: float = param(
        "1/(cm^2 s)", "proton flux > proton_energy_mev above which telemetry flags the satellite as inside the SAA "
        "(estimate: ~10 /cm^2/s, about 5x the 550 km orbit average outside it)", min=0.0, default=10.0)
    sel_rate_per_device_day: float = param(
        "1/day", "latch-up rate per device at reference flux and temperature (estimate; commercial accelerators, UNCONFIRMED)",
        min=0.0, default=1.0e-4)
    sel_proton_fraction: float = param(
        "", "part of the SEL rate that scales with proton flux (rest: flux-independent heavy ions; estimate)", min=0.0, max=1.0, default=0.5)
    sel_reference_temp_k: float = param("K", "temperature at which sel_rate_per_device_day applies (estimate)", min=150.0, max=450.0, default=298.15)
    sel_doubling_k: float = param(
        "K", "SEL rate doubles every this many kelvin (estimate: cross-section rises, threshold LET falls with T)", min=1.0, max=200.0, default=25.0)
    sel_current_jump_a: float = param("A", "supply current increase while latched (estimate; trips the limiter)", min=0.0, default=1.5)

    def validate(self, section: str) -> None:
        """Raise :class:`DesignError` for inconsistent combinations."""
        for name in ("solar_phase_protons", "solar_phase_electrons"):
            if getattr(self, name) not in _SOLAR_PHASES:
                raise DesignError(f"{section}.{name}", f"must be 'min' or 'max', got {getattr(self, name)!r}")
        if self.grid_alt_max_km <= self.grid_alt_min_km + self.grid_alt_step_km / 2:
            raise DesignError(f"{section}.grid_alt_max_km", "must exceed grid_alt_min_km by at least one step")
        for kind in ("proton", "electron"):
            e = np.asarray(getattr(self, f"{kind}_spectrum_energies_mev"), float)
            if e.size < 2 or np.any(np.diff(e) <= 0):
                raise DesignError(f"{section}.{kind}_spectrum_energies_mev", "needs >= 2 increasing energies")
            if getattr(self, f"{kind}_energy_mev") not in getattr(self, f"{kind}_spectrum_energies_mev"):
                raise DesignError(f"{section}.{kind}_energy_mev", f"must be one of {kind}_spectrum_energies_mev")
        names = [m.name for m in self.memories]
        if len(set(names)) != len(names):
            raise DesignError(f"{section}.memories", f"duplicate memory names {names}")

    @classmethod
    def from_table(cls, table: Mapping[str, Any], section: str = "radiation") -> RadiationParams:
        """Build from the ``[radiation]`` TOML table (``[[radiation.memories]]`` included)."""
        return build(cls, table, section)

    def grid_spec(self) -> GridSpec:
        """The flux-grid description these parameters ask for."""
        return GridSpec(self.grid_lat_step_deg, self.grid_lon_step_deg, self.grid_alt_min_km, self.grid_alt_max_km,
                        self.grid_alt_step_km, tuple(self.proton_spectrum_energies_mev), tuple(self.electron_spectrum_energies_mev),
                        self.solar_phase_protons, self.solar_phase_electrons)


def load_grid(params: RadiationParams | None = None) -> RadiationGrid:
    """The flux grid for ``params`` (shipped default, disk cache, or built once with aep8)."""
    return get_grid((params or RadiationParams()).grid_spec())


# ----------------------------------------------------------------------------------------- dose
AL_Z = 13.0  # atomic number of aluminium (bremsstrahlung yield)
SAA_KINDS = ("saa", "horns", "elsewhere")
_SUB_BINS = 12  # fine energy bins per interval between two stored thresholds
_MU_NODES, _MU_WEIGHTS = np.polynomial.legendre.leggauss(24)
_MU_NODES, _MU_WEIGHTS = 0.5 * (_MU_NODES + 1.0), 0.5 * _MU_WEIGHTS  # Gauss-Legendre on cos(angle) in (0, 1)


def proton_range_g_cm2(energy_mev: np.ndarray, params: RadiationParams) -> np.ndarray:
    """CSDA range of protons in Al [g/cm^2]: Bragg-Kleeman R = a E^b (also used for Si)."""
    out: np.ndarray = params.proton_range_a_g_cm2 * np.asarray(energy_mev, float) ** params.proton_range_b
    return out


def electron_range_g_cm2(energy_mev: np.ndarray) -> np.ndarray:
    """Katz-Penfold electron range in Al [g/cm^2]: 0.412 E^(1.265 - 0.0954 ln E) below 2.5 MeV, 0.530 E - 0.106 above."""
    e = np.asarray(energy_mev, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = 0.412 * e ** (1.265 - 0.0954 * np.log(e))
    out: np.ndarray = np.where(e < 2.5, low, 0.530 * e - 0.106)
    return out


def electron_cutoff_energy_mev(areal_density_g_cm2: float) -> float:
    """Electron energy [MeV] whose Katz-Penfold range in Al equals the shield areal density."""
    e = np.geomspace(0.01, 50.0, 4000)
    return float(np.interp(areal_density_g_cm2, electron_range_g_cm2(e), e))


def radiation_yield(energy_mev: np.ndarray, z: float = AL_Z) -> np.ndarray:
    """Fraction of an electron's kinetic energy [MeV] radiated as bremsstrahlung while stopping: 6e-4 Z E / (1 + 6e-4 Z E)."""
    x = 6e-4 * z * np.asarray(energy_mev, float)
    out: np.ndarray = x / (1.0 + x)
    return out


class _Csda:
    """Straight-ahead continuous slowing down through a shield, from a range-energy table R(E)."""

    def __init__(self, range_fn: Any) -> None:
        self.e = np.geomspace(1e-5, 1e4, 30000)
        self.r = np.asarray(range_fn(self.e), float)
        self.log_e, self.log_r = np.log(self.e), np.log(self.r)
        self.s = 1.0 / np.gradient(self.r, self.e)  # stopping power dE/dx [MeV cm^2/g]

    def residual(self, energy_mev: np.ndarray, t_g_cm2: float) -> np.ndarray:
        """Energy [MeV] left after ``t_g_cm2``; 0 if the particle stops in the shield."""
        r_left = np.interp(np.log(np.maximum(energy_mev, 1e-5)), self.log_e, self.r) - t_g_cm2
        out: np.ndarray = np.where(r_left > self.r[0], np.exp(np.interp(np.log(np.maximum(r_left, self.r[0])), self.log_r, self.log_e)), 0.0)
        return out

    def stopping(self, energy_mev: np.ndarray) -> np.ndarray:
        """Stopping power [MeV cm^2/g] at ``energy_mev`` (0 at 0)."""
        out: np.ndarray = np.where(energy_mev > 0, np.interp(np.log(np.maximum(energy_mev, 1e-5)), self.log_e, self.s), 0.0)
        return out

    def bin_dose(self, edges_mev: np.ndarray, t_g_cm2: float) -> np.ndarray:
        """Mean deposited stopping power [MeV cm^2/g] over each energy bin, for particles entering with E in the bin.

        The dose per particle is S(E') at the residual energy E'. Over a bin, the integral of
        S(E') dE equals the integral of S(E) dE' (CSDA: dE/S(E) = dE'/S(E')), which has no
        Bragg-peak singularity; it is taken on a fine grid of E'.
        """
        e_hi = float(edges_mev[-1])
        y = np.concatenate([[0.0], np.geomspace(1e-5, max(e_hi, 2e-5), 4000)])  # residual energies
        r_in = np.interp(np.log(np.maximum(y, 1e-5)), self.log_e, self.r) * (y > 0) + t_g_cm2
        r_in = np.maximum(r_in, self.r[0])
        e_in = np.exp(np.interp(np.log(r_in), self.log_r, self.log_e))
        g = np.concatenate([[0.0], np.cumsum(0.5 * (self.stopping(e_in[1:]) + self.stopping(e_in[:-1])) * np.diff(y))])
        g_edges = np.interp(self.residual(edges_mev, t_g_cm2), y, g)
        out: np.ndarray = np.diff(g_edges) / np.diff(edges_mev)
        return out


def _bin_mean(edges_mev: np.ndarray, kernel: Any, n_sub: int = 16) -> np.ndarray:
    """Mean of ``kernel(E)`` over each bin (trapezoid on ``n_sub`` log-spaced points)."""
    frac = np.linspace(0.0, 1.0, n_sub)
    e = np.exp(np.log(edges_mev[:-1, None]) + frac * np.diff(np.log(edges_mev))[:, None])
    k = kernel(e)
    out: np.ndarray = np.trapezoid(k, e, axis=1) / np.diff(edges_mev)
    return out


def _slab(kernel_at_depth: Any, t_g_cm2: float) -> np.ndarray:
    """Front-only slab: 0.5 x the mean over mu in (0, 1) of the sphere kernel at depth t / mu (isotropic flux)."""
    out: np.ndarray = 0.5 * sum(w * kernel_at_depth(t_g_cm2 / mu) for mu, w in zip(_MU_NODES, _MU_WEIGHTS))
    return out


def fine_edges(thresholds_mev: tuple[float, ...]) -> np.ndarray:
    """Energy bin edges [MeV]: each interval between stored thresholds cut in ``_SUB_BINS`` log-equal bins."""
    t = np.log(np.asarray(thresholds_mev, float))
    frac = np.arange(_SUB_BINS) / _SUB_BINS
    inner = (t[:-1, None] + frac * np.diff(t)[:, None]).ravel()
    edges: np.ndarray = np.exp(np.concatenate([inner, t[-1:]]))
    return edges


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Per-particle response per unit integral flux, on the fine bins of :func:`fine_edges` plus one for above the last edge.

    Each array has ``len(edges)`` entries: bins then the tail above the last stored threshold
    (evaluated at that threshold). Dose entries are [MeV cm^2/g], SEU entries are the
    dimensionless cross-section shape.
    """

    proton_edges_mev: np.ndarray
    electron_edges_mev: np.ndarray
    proton_dose: np.ndarray
    proton_cover_dose: np.ndarray
    proton_seu: np.ndarray
    electron_dose: np.ndarray
    electron_cover_dose: np.ndarray


def bendel_shape(energy_mev: np.ndarray, a_mev: float) -> np.ndarray:
    """Bendel one-parameter upset cross-section over its saturation: [1 - exp(-0.18 sqrt(Y))]^4, Y = sqrt(18/A) (E - A)."""
    y = np.sqrt(18.0 / a_mev) * np.maximum(np.asarray(energy_mev, float) - a_mev, 0.0)
    out: np.ndarray = (1.0 - np.exp(-0.18 * np.sqrt(y))) ** 4
    return out


def kernels(params: RadiationParams, cover_glass_g_cm2: float) -> Kernels:
    """Dose and SEU responses of the configured shield (solid sphere) and cover glass (front-only slab)."""
    t = params.shield_thickness_mm_al * 0.1 * params.al_density_g_cm3
    pe, ee = fine_edges(params.proton_spectrum_energies_mev), fine_edges(params.electron_spectrum_energies_mev)
    prot = _Csda(lambda e: proton_range_g_cm2(e, params))
    elec = _Csda(electron_range_g_cm2)
    mu_en = params.photon_energy_absorption_cm2_g

    def p_dose(depth: float) -> np.ndarray:
        tail = prot.stopping(prot.residual(pe[-1:], depth))
        return np.concatenate([prot.bin_dose(pe, depth), tail])

    def e_dose(depth: float) -> np.ndarray:
        def brems(e: np.ndarray) -> np.ndarray:  # inward half of the photons made in the shield, unattenuated
            res = elec.residual(e, depth)
            out: np.ndarray = 0.5 * mu_en * (radiation_yield(e) * e - radiation_yield(res) * res)
            return out
        bins = elec.bin_dose(ee, depth) + _bin_mean(ee, brems)
        tail = elec.stopping(elec.residual(ee[-1:], depth)) + brems(ee[-1:])
        return np.concatenate([bins, tail])

    def p_seu(e: np.ndarray) -> np.ndarray:
        return bendel_shape(prot.residual(e, t), params.seu_bendel_a_mev)

    return Kernels(
        proton_edges_mev=pe, electron_edges_mev=ee,
        proton_dose=p_dose(t), proton_cover_dose=_slab(p_dose, cover_glass_g_cm2),
        proton_seu=np.concatenate([_bin_mean(pe, p_seu, 32), p_seu(pe[-1:])]),
        electron_dose=e_dose(t), electron_cover_dose=_slab(e_dose, cover_glass_g_cm2),
    )


def _interp_matrix(thresholds_mev: tuple[float, ...], edges_mev: np.ndarray) -> np.ndarray:
    """(len(edges), len(thresholds)) weights: log10 F at the edges, linear in log E between thresholds."""
    x = np.log(np.asarray(thresholds_mev, float))
    eye = np.eye(x.size)
    return np.stack([np.interp(np.log(edges_mev), x, eye[c]) for c in range(x.size)], axis=1)


def fold_spectra(log10_flux: np.ndarray, thresholds_mev: tuple[float, ...], edges_mev: np.ndarray,
                 responses: np.ndarray, chunk: int = 20000) -> np.ndarray:
    """Sum over energy of (flux in each fine bin) x response: shape (n, responses.shape[1]).

    ``log10_flux``: (n, thresholds) log10 integral flux [1/(cm^2 s)], ``FLOOR_LOG10`` where zero;
    ``responses``: (len(edges), k), one row per fine bin and a last row for the tail above the last edge.
    Between thresholds, log F is linear in log E; the per-bin flux F(E_j) - F(E_j+1) is floored at 0.
    """
    from twin.core.radiation_grid import FLOOR_LOG10

    w = (_interp_matrix(thresholds_mev, edges_mev).T * np.log(10.0)).astype(np.float32)  # (thresholds, edges), to ln F
    resp = responses.astype(np.float32)
    out = np.zeros((log10_flux.shape[0], responses.shape[1]))
    live = np.flatnonzero(np.any(log10_flux > FLOOR_LOG10 + 1e-3, axis=1))
    for s in range(0, live.size, chunk):
        rows = live[s:s + chunk]
        f = np.exp(log10_flux[rows].astype(np.float32) @ w)  # float32: 1e-7 relative, far below the model's accuracy
        f *= f > np.float32(10.0 ** (FLOOR_LOG10 + 1e-3))
        d = np.maximum(f[:, :-1] - f[:, 1:], 0.0)
        out[rows] = d @ resp[:-1] + f[:, -1:] * resp[-1:]
    return out


@dataclasses.dataclass(frozen=True)
class LocalRadiation:
    """Radiation at each satellite, shape (n,) each."""

    proton_flux_cm2_s: np.ndarray  # integral flux above proton_energy_mev
    electron_flux_cm2_s: np.ndarray  # integral flux above electron_energy_mev
    dose_rate_rad_s: np.ndarray  # rad(Si)/s behind the shield (solid sphere)
    cover_dose_rate_rad_s: np.ndarray  # rad(Si)/s behind the solar cells' cover glass (front-only slab)
    seu_scale: np.ndarray  # SEU rate over its Alsat-1 orbit average


class RadiationEnvironment:
    """The spectral grid folded, once, into per-node channels for the configured shield and cover glass.

    Channels: proton flux, electron flux, shield dose rate, cover-glass dose rate, Bendel-weighted
    proton flux behind the shield (SEU). ``sample`` is one trilinear lookup of all five.
    """

    CHANNELS = ("proton_flux_cm2_s", "electron_flux_cm2_s", "dose_rate_rad_s", "cover_dose_rate_rad_s", "seu_flux_cm2_s")
    _SCALES = np.array([1.0, 1.0, 1e8, 1e8, 1.0])  # dose rates stored as 1e-8 rad/s, well above the floor
    ALSAT1_ALT_M, ALSAT1_INC_DEG = 686e3, 98.2  # docs/physics.md#radiation: Alsat-1, the SEU reference orbit

    def __init__(self, grid: RadiationGrid, params: RadiationParams, cover_glass_g_cm2: float) -> None:
        self.params, self.cover_glass_g_cm2 = params, float(cover_glass_g_cm2)
        self.kernels = k = kernels(params, self.cover_glass_g_cm2)
        spec, npr = grid.spec, grid.n_protons
        flat = grid.log10_flux.reshape(-1, spec.n_channels)
        lp, le = flat[:, :npr], flat[:, npr:]
        rad = RAD_PER_MEV_PER_G
        pr = fold_spectra(lp, spec.proton_energies_mev, k.proton_edges_mev,
                          np.stack([k.proton_dose * rad, k.proton_cover_dose * rad, k.proton_seu], axis=1))
        el = fold_spectra(le, spec.electron_energies_mev, k.electron_edges_mev,
                          np.stack([k.electron_dose * rad, k.electron_cover_dose * rad], axis=1))
        ip = spec.proton_energies_mev.index(params.proton_energy_mev)
        ie = spec.electron_energies_mev.index(params.electron_energy_mev)
        values = np.stack([10.0 ** lp[:, ip].astype(np.float64) * (lp[:, ip] > -2.999),
                           10.0 ** le[:, ie].astype(np.float64) * (le[:, ie] > -2.999),
                           pr[:, 0] + el[:, 0], pr[:, 1] + el[:, 1], pr[:, 2]], axis=1)
        self.grid = LogGrid(spec, to_log10(values * self._SCALES).reshape(grid.log10_flux.shape[:3] + (5,)), self._SCALES)
        self.seu_reference_flux_cm2_s = float(orbit_average(self.grid, self.ALSAT1_ALT_M, self.ALSAT1_INC_DEG)[4])

    def sample(self, lat_rad: Any, lon_rad: Any, alt_m: Any) -> LocalRadiation:
        """Radiation at (lat [rad], lon [rad], alt [m]); NaN positions give zeros."""
        v = self.grid.lookup(lat_rad, lon_rad, alt_m)
        return LocalRadiation(v[0], v[1], v[2], v[3], v[4] * (1.0 / self.seu_reference_flux_cm2_s))


PLACEHOLDER_ALT_M = 550e3  # where a satellite without a valid orbit is placed and sampled (its values are zeroed)


def sample_along_orbit(env: RadiationEnvironment, orbit: Any) -> LocalRadiation:
    """``env`` at every satellite of an :class:`~twin.core.orbit.OrbitState`; satellites whose propagation
    failed (``error_code != 0``) get zeros."""
    bad = orbit.error_code != 0
    local = env.sample(np.where(bad, 0.0, orbit.lat_rad), np.where(bad, 0.0, orbit.lon_rad),
                       np.where(bad, PLACEHOLDER_ALT_M, orbit.alt_m))
    if not bad.any():
        return local
    return LocalRadiation(*(np.where(bad, 0.0, v) for v in (local.proton_flux_cm2_s, local.electron_flux_cm2_s,
                                                           local.dose_rate_rad_s, local.cover_dose_rate_rad_s,
                                                           local.seu_scale)))


_ENVIRONMENTS: dict[tuple[RadiationParams, float], RadiationEnvironment] = {}
_MAX_ENVIRONMENTS = 8


def load_environment(params: RadiationParams | None, cover_glass_g_cm2: float) -> RadiationEnvironment:
    """The folded radiation environment for ``params`` and the design's cover glass [g/cm^2] (memoised)."""
    p = params or RadiationParams()
    key = (p, float(cover_glass_g_cm2))
    if key not in _ENVIRONMENTS:
        while len(_ENVIRONMENTS) >= _MAX_ENVIRONMENTS:  # ~35 MB each: keep the most recent few
            del _ENVIRONMENTS[next(iter(_ENVIRONMENTS))]
        _ENVIRONMENTS[key] = RadiationEnvironment(load_grid(p), p, cover_glass_g_cm2)
    return _ENVIRONMENTS[key]


def magnetic_l_dipole(lat_rad: np.ndarray, lon_rad: np.ndarray, alt_m: np.ndarray) -> np.ndarray:
    """McIlwain L of a centred dipole [Earth radii]: r / cos^2(magnetic latitude), IGRF-13 2020 dipole pole."""
    from twin.core.constants import R_EARTH_M

    pole_lat, pole_lon = np.radians(DIPOLE_POLE_LAT_DEG), np.radians(DIPOLE_POLE_LON_DEG)
    sin_mlat = (np.sin(lat_rad) * np.sin(pole_lat)
                + np.cos(lat_rad) * np.cos(pole_lat) * np.cos(np.asarray(lon_rad) - pole_lon))
    out: np.ndarray = (1.0 + np.asarray(alt_m) / R_EARTH_M) / np.maximum(1.0 - sin_mlat**2, 1e-12)
    return out


DIPOLE_POLE_LAT_DEG, DIPOLE_POLE_LON_DEG = 80.65, -72.68  # IGRF-13 geomagnetic north pole, 2020 (Alken et al. 2021)
HORN_MIN_L = dose_regions.HORN_MIN_L  # outer electron belt: L >= 3 (the slot region lies near L 2-3)


def dose_region(in_saa: np.ndarray, lat_rad: np.ndarray, lon_rad: np.ndarray, alt_m: np.ndarray) -> np.ndarray:
    """Region index of each point (:data:`twin.schema.dose_regions.DOSE_REGIONS`): 0 = SAA (``in_saa``),
    1 = outer-belt horns (outside the SAA, dipole L >= ``HORN_MIN_L``), 2 = elsewhere. Shape of ``in_saa``."""
    saa = np.asarray(in_saa, dtype=bool)
    horns = ~saa & (magnetic_l_dipole(lat_rad, lon_rad, alt_m) >= HORN_MIN_L)
    out: np.ndarray = np.where(saa, 0, np.where(horns, 1, 2)).astype(np.int64)
    return out


def dose_rate_by_region(dose_rate_rad_s: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Dose rates [rad(Si)/s] summed per region index (:func:`dose_region`), non-finite rates left out; shape (regions,)."""
    d = np.asarray(dose_rate_rad_s, dtype=float)
    ok = np.isfinite(d)
    out: np.ndarray = np.bincount(np.asarray(region)[ok], weights=d[ok], minlength=len(dose_regions.DOSE_REGIONS))
    return out


def region_of(local: LocalRadiation, lat_rad: np.ndarray, lon_rad: np.ndarray, alt_m: np.ndarray, params: RadiationParams) -> np.ndarray:
    """:func:`dose_region` of sampled points, ``in_saa`` as the telemetry sets it (proton flux above ``saa_proton_flux_cm2_s``)."""
    return dose_region(local.proton_flux_cm2_s > params.saa_proton_flux_cm2_s, lat_rad, lon_rad, alt_m)


# ------------------------------------------------------------------------------------------ SEU
def seu_rate_per_device_s(seu_scale: np.ndarray, params: RadiationParams) -> tuple[np.ndarray, np.ndarray]:
    """Expected (corrected, uncorrectable) upset rates [1/s] per device, each shape (n,).

    ``seu_scale``: the local SEU rate over its Alsat-1 orbit average (:attr:`LocalRadiation.seu_scale`).
    """
    corr, unc = _seu_rates_at_reference(params)
    scale = np.asarray(seu_scale, float)
    return corr * scale, unc * scale


@functools.lru_cache(maxsize=64)
def _seu_rates_at_reference(params: RadiationParams) -> tuple[float, float]:
    """(corrected, uncorrectable) upsets per device per second at the reference flux."""
    corr = unc = 0.0
    for m in params.memories:
        r = m.bits * m.upset_rate_per_bit_day / SECONDS_PER_DAY
        unc += r * m.uncorrectable_fraction
        corr += r * (1.0 - m.uncorrectable_fraction)
    return corr, unc


def uncorrectable_fraction(params: RadiationParams) -> float:
    """Share of upsets ECC cannot correct, weighted by each memory's upset rate (0 without memories)."""
    corr, unc = _seu_rates_at_reference(params)
    return unc / (corr + unc) if corr + unc > 0.0 else 0.0


def seu_hits(
    draws: Draws, seu_scale: np.ndarray, dt_s: float, params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse Poisson upsets in ``dt_s``: (rows hit (k,), corrected (k, n_devices), uncorrectable (k, n_devices)).

    ``draws``: this tick's SEU stream of the satellites (:mod:`twin.core.sat_random`), row i of
    ``seu_scale`` being satellite i of the stream. ``seu_scale``: local SEU rate over its Alsat-1
    orbit average (:attr:`LocalRadiation.seu_scale`). Exact and fast: one uniform per satellite
    inverted through the Poisson CDF of all devices and both classes gives whether and how many
    upsets; each upset of the (rare) hit satellites then draws its device (uniform: a multinomial
    split) and whether ECC corrects it (binomial thinning). Same seed, satellite and tick ->
    identical events, whichever other satellites are stepped alongside.
    """
    scale = np.nan_to_num(np.asarray(seu_scale, float), nan=0.0, posinf=0.0)
    corr_ref, unc_ref = _seu_rates_at_reference(params)
    total_ref = corr_ref + unc_ref
    empty = np.zeros((0, max(n_devices, 0)), dtype=np.int64)
    if total_ref <= 0.0 or n_devices <= 0:
        return np.zeros(0, dtype=np.intp), empty, empty
    lam = np.maximum(scale, 0.0) * (total_ref * dt_s * n_devices)
    u = draws.uniform()
    hit = np.flatnonzero(u >= np.exp(-lam))  # P(at least one upset) = 1 - exp(-lam)
    if not hit.size:
        return hit, empty, empty
    counts = np.maximum(poisson_inverse(lam[hit], u[hit]), 1)
    for j in np.flatnonzero(lam[hit] > INVERSION_MAX_MEAN):
        counts[j] = max(1, draws.generator(int(hit[j])).poisson(lam[hit[j]]))
    row = np.repeat(np.arange(hit.size), counts)
    k = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)  # upset number within its satellite
    sats = hit[row]
    dev = np.minimum((draws.uniform(sats, 1 + 2 * k) * n_devices).astype(np.int64), n_devices - 1)
    is_unc = draws.uniform(sats, 2 + 2 * k) < unc_ref / total_ref
    corr = np.zeros((hit.size, n_devices), dtype=np.int64)
    unc = np.zeros((hit.size, n_devices), dtype=np.int64)
    np.add.at(unc, (row[is_unc], dev[is_unc]), 1)
    np.add.at(corr, (row[~is_unc], dev[~is_unc]), 1)
    return hit, corr, unc


def seu_events(
    draws: Draws, seu_scale: np.ndarray, dt_s: float, params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson upset counts in ``dt_s``: (corrected, uncorrectable), each (n, n_devices) int64 (see :func:`seu_hits`)."""
    n = np.size(seu_scale)
    corrected = np.zeros((n, max(n_devices, 0)), dtype=np.int64)
    uncorrectable = np.zeros((n, max(n_devices, 0)), dtype=np.int64)
    hit, corr, unc = seu_hits(draws, seu_scale, dt_s, params, n_devices)
    corrected[hit] = corr
    uncorrectable[hit] = unc
    return corrected, uncorrectable


# ------------------------------------------------------------------------------------------ SEL
def sel_rate_per_device_s(proton_flux: np.ndarray, temp_k: np.ndarray, params: RadiationParams) -> np.ndarray:
    """Latch-up rate [1/s] per device, shape (n, n_devices) for ``temp_k`` (n, n_devices)."""
    flux = np.nan_to_num(np.asarray(proton_flux, float), nan=0.0, posinf=0.0)
    f = params.sel_proton_fraction
    env = (1.0 - f) + f * np.maximum(flux, 0.0) / params.seu_reference_proton_flux_cm2_s
    temp = np.exp2((np.asarray(temp_k, float) - params.sel_reference_temp_k) / params.sel_doubling_k)
    rate: np.ndarray = (params.sel_rate_per_device_day / SECONDS_PER_DAY) * env[:, None] * temp
    return rate


def sel_hits(
    draws: Draws, proton_flux: np.ndarray, temp_k: np.ndarray, dt_s: float,
    params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse latch-up onsets in ``dt_s``: (rows, devices), each (k,) int, by row then device.

    Each device latches independently with P = 1 - exp(-rate dt). Exact and fast: one uniform
    per satellite, inverted through P(first onset at device <= d) = 1 - exp(-sum_{j<=d} rate_j dt),
    gives whether any device latches and which is the first; the (rare) devices after a first onset
    get their own independent draws. ``draws``: this tick's SEL stream of the satellites
    (:mod:`twin.core.sat_random`). ``temp_k``: (n, 1) when all devices of a satellite share a
    temperature, else (n, n_devices); a NaN temperature gives no onset. Same seed, satellite and
    tick -> identical events.
    """
    n = np.size(proton_flux)
    empty = np.zeros(0, dtype=np.intp)
    if n_devices <= 0 or n == 0:
        return empty, empty
    temp = np.asarray(temp_k, float).reshape(n, -1)
    rate = sel_rate_per_device_s(proton_flux, temp, params)
    rate = np.where(np.isnan(rate), 0.0, rate)
    total = rate[:, 0] * n_devices if rate.shape[1] == 1 else rate.sum(axis=1)
    u = draws.uniform()
    rows = np.flatnonzero(u < -np.expm1(-total * dt_s))
    if not rows.size:
        return empty, empty
    log_stay = np.broadcast_to(-rate[rows] * dt_s, (rows.size, n_devices))  # log P(no onset), per device
    first = (u[rows, None] >= -np.expm1(np.cumsum(log_stay, axis=1))).sum(axis=1)
    first = np.minimum(first, n_devices - 1)  # rounding at the last device
    u_dev = draws.uniform(np.repeat(rows, n_devices), 1 + np.tile(np.arange(n_devices), rows.size))
    later = (np.arange(n_devices) > first[:, None]) & (u_dev.reshape(rows.size, n_devices) < -np.expm1(log_stay))
    hit = later
    hit[np.arange(rows.size), first] = True
    r, dev = np.nonzero(hit)
    return rows[r], dev


def sel_events(
    draws: Draws, proton_flux: np.ndarray, temp_k: np.ndarray, dt_s: float,
    params: RadiationParams, n_devices: int,
) -> np.ndarray:
    """Latch-up onsets in ``dt_s``: bool (n, n_devices); P = 1 - exp(-rate dt) (see :func:`sel_hits`)."""
    out = np.zeros((np.size(proton_flux), max(n_devices, 0)), dtype=bool)
    rows, devs = sel_hits(draws, proton_flux, temp_k, dt_s, params, n_devices)
    out[rows, devs] = True
    return out


# ---------------------------------------------------------------------------------- grid build
def main(argv: list[str] | None = None) -> None:
    """CLI: build the spectral grid for the default ``[radiation]`` parameters and write it to ``--out``."""
    ap = argparse.ArgumentParser(description="Build the AE8/AP8 spectral grid for the default [radiation] parameters.")
    ap.add_argument("--out", type=Path, default=DEFAULT_GRID_PATH)
    args = ap.parse_args(argv)
    params = RadiationParams()
    started = time.monotonic()
    shown = [-1]

    def progress(done: float, total: float) -> None:  # a line per 10 %, with the time left at this rate
        tenth = int(10 * done / total)
        if tenth > shown[0]:
            shown[0] = tenth
            elapsed = time.monotonic() - started
            left = f"~{elapsed * (total - done) / done:.0f} s left" if done else "time left ?"
            print(f"grid: {done:,.0f} of {total:,.0f} nodes ({100 * done / total:.0f} %), {elapsed:.0f} s, {left}",
                  file=sys.stderr, flush=True)

    grid = build_grid(params.grid_spec(), progress)
    grid.save(args.out)
    env = RadiationEnvironment(grid, params, 0.0)  # the flux channels do not depend on the cover glass
    p = orbit_average(env.grid, 686e3, 98.2)[0]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, key {grid.spec.key()}); "
          f"Alsat-1 (686 km, 98.2 deg) orbit-average proton flux > {params.proton_energy_mev:g} MeV {p:.4g} /cm^2/s")


if __name__ == "__main__":
    main()
