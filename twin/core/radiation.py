"""Radiation environment and effects: trapped-particle flux, total ionising dose, SEU and SEL.

Pure numpy over satellites. Fluxes come from a precomputed AE8/AP8 grid
(:mod:`twin.core.radiation_grid`; aep8/astropy are imported only to build a grid), so the South
Atlantic Anomaly emerges from AP8. All fluxes are omnidirectional integral fluxes in
1/(cm^2 s): protons above ``proton_energy_mev``, electrons above ``electron_energy_mev``.

Model summary (docs/physics.md#radiation):

* Dose: solid-sphere shield of ``shield_thickness_mm_al`` aluminium, dose point in silicon.
  Protons: continuous-slowing-down through the shield with a Bragg-Kleeman range law
  R = a E^b, spectrum shape from an AP8 orbit-average table; D = integral of phi(E) S_Si(E').
  Electrons: transmitted if the Katz-Penfold CSDA range exceeds the shield (AE8 spectrum table),
  depositing an effective stopping power; bremsstrahlung from the shield is a small added term.
  Result at 550 km / 53 deg: ~0.9 krad(Si)/yr behind 2.5 mm Al, ~0.13 krad/yr behind 10 mm
  (reference SHIELDOSE-2: ~1.0-1.3 and ~0.16 krad/yr).
* SEU: per-bit rate measured on Alsat-1 (686 km SSO) scaled by the local proton flux over the
  Alsat-1 orbit-average flux from the same grid; ECC splits single-bit (corrected) from
  multi-bit (uncorrectable) upsets. GCR upsets outside the SAA are not modelled.
* SEL: per-device rate, part proton-driven (SAA) and part flux-independent (heavy ions),
  doubling every ``sel_doubling_k`` above ``sel_reference_temp_k``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core.constants import SECONDS_PER_DAY
from twin.core.params import DesignError, build, param
from twin.core.radiation_grid import DEFAULT_GRID_PATH, GridSpec, RadiationGrid, build_grid, get_grid, orbit_average_flux

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
    proton_energy_mev: float = param("MeV", "proton integral-flux threshold of the grid (SEU-relevant)", min=0.1, max=400.0, default=10.0)
    electron_energy_mev: float = param("MeV", "electron integral-flux threshold of the grid", min=0.04, max=7.0, default=1.0)
    proton_spectrum_energy_mev: tuple[float, ...] = param(
        "MeV", "energies of the proton integral-spectrum shape table",
        default=(1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 70.0, 100.0, 150.0, 200.0, 300.0, 400.0))
    proton_spectrum_fraction: tuple[float, ...] = param(
        "", "F(>E)/F(>proton_energy_mev): AP8-MIN orbit average at 550 km/53 deg (aep8; same within ~15% at 550-1200 km)",
        default=(5.359, 2.959, 1.459, 1.0, 0.8686, 0.7924, 0.7023, 0.569, 0.4569, 0.3264, 0.1828, 0.1051, 0.03627, 0.0))
    electron_spectrum_energy_mev: tuple[float, ...] = param(
        "MeV", "energies of the electron integral-spectrum shape table",
        default=(0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 7.0))
    electron_spectrum_fraction: tuple[float, ...] = param(
        "", "F(>E)/F(>electron_energy_mev): AE8-MAX orbit average at 550 km/53 deg (aep8)",
        default=(3.497, 1.643, 1.0, 0.4507, 0.2018, 0.09344, 0.03673, 0.01436, 0.005034, 0.001565,
                 0.0004709, 0.0001069, 1.579e-05, 0.0))
    proton_range_a_g_cm2: float = param(
        "g/cm^2", "Bragg-Kleeman R = a E^b (E in MeV) fit to NIST PSTAR Al CSDA range 10-100 MeV (0.170, 9.4 g/cm^2); also used for Si",
        min=1e-4, max=1.0, default=0.0031)
    proton_range_b: float = param("", "Bragg-Kleeman exponent (PSTAR fit, see proton_range_a_g_cm2)", min=1.0, max=2.0, default=1.74)
    electron_stopping_power_mev_cm2_g: float = param(
        "MeV cm^2/g", "effective electron stopping power in Si behind the shield: NIST ESTAR 1.6 at 1 MeV, ~2 for degraded electrons (estimate)",
        min=0.5, max=10.0, default=1.8)
    bremsstrahlung_yield: float = param(
        "", "fraction of electron energy radiated as bremsstrahlung in Al, ~1 MeV (NIST ESTAR radiation yield; estimate)", min=0.0, max=0.2, default=0.005)
    photon_energy_absorption_cm2_g: float = param(
        "cm^2/g", "Si mass energy-absorption coefficient at ~0.3 MeV (NIST Hubbell-Seltzer)", min=0.0, max=1.0, default=0.0288)
    seu_reference_proton_flux_cm2_s: float = param(
        "1/(cm^2 s)", "orbit-average proton flux > proton_energy_mev on the Alsat-1 orbit (686 km, 98.2 deg) from the default grid; "
        "recompute with twin.core.radiation_grid.orbit_average_flux if the grid model changes", min=1e-6, default=79.27)
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
            e = np.asarray(getattr(self, f"{kind}_spectrum_energy_mev"))
            f = np.asarray(getattr(self, f"{kind}_spectrum_fraction"))
            if e.size != f.size or e.size < 2:
                raise DesignError(f"{section}.{kind}_spectrum_fraction", "needs >= 2 values, as many as the energies")
            if np.any(np.diff(e) <= 0) or np.any(np.diff(f) > 0) or np.any(f < 0):
                raise DesignError(f"{section}.{kind}_spectrum_fraction", "energies must increase and fractions not increase")
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
                        self.grid_alt_step_km, self.proton_energy_mev, self.electron_energy_mev,
                        self.solar_phase_protons, self.solar_phase_electrons)


def load_grid(params: RadiationParams | None = None) -> RadiationGrid:
    """The flux grid for ``params`` (shipped default, disk cache, or built once with aep8)."""
    return get_grid((params or RadiationParams()).grid_spec())


# ----------------------------------------------------------------------------------------- dose
def _spectrum_log_interp(e_tab: np.ndarray, f_tab: np.ndarray, e: np.ndarray) -> np.ndarray:
    """F(>E) from a shape table, log F linear in log E, 0 above the last nonzero energy."""
    lf = np.log(np.maximum(f_tab, 1e-30))
    out = np.exp(np.interp(np.log(e), np.log(e_tab), lf))
    return np.where(e > e_tab[-1], 0.0, np.where(out < 1e-25, 0.0, out))


def electron_cutoff_energy_mev(areal_density_g_cm2: float) -> float:
    """Electron energy [MeV] whose Katz-Penfold CSDA range in Al equals the shield areal density."""
    e = np.geomspace(0.01, 50.0, 4000)
    r = np.where(e < 2.5, 0.412 * e ** (1.265 - 0.0954 * np.log(e)), 0.530 * e - 0.106)
    return float(np.interp(areal_density_g_cm2, r, e))


@functools.lru_cache(maxsize=64)
def dose_coefficients(params: RadiationParams) -> tuple[float, float]:
    """(k_p, k_e) [rad cm^2]: dose rate [rad/s] = k_p F_p + k_e F_e for the configured shield.

    Protons: with E' the energy after the shield, R(E') = R(E) - t, and dE/S(E) = dE'/S(E'),
    D/F_p = int phi(E) S_Si(E') dE = int phi(E(E')) S(E(E')) dE' (no Bragg-peak singularity),
    phi = -dF/dE from the AP8 shape table. Electrons: S_eff * F(>E_cut)/F(>E_ref) plus
    bremsstrahlung 0.5 * yield * (energy flux above E_ref) * mu_en (inward half, unattenuated).
    """
    t = params.shield_thickness_mm_al * 0.1 * params.al_density_g_cm3  # g/cm^2
    a, b = params.proton_range_a_g_cm2, params.proton_range_b
    e_tab = np.asarray(params.proton_spectrum_energy_mev, float)
    f_tab = np.asarray(params.proton_spectrum_fraction, float)
    f_tab = f_tab / _spectrum_log_interp(e_tab, f_tab, np.array([params.proton_energy_mev]))[0]
    e_out = np.geomspace(1e-4, e_tab[-1], 6000)  # energy after the shield [MeV]
    e_in = ((a * e_out**b + t) / a) ** (1.0 / b)
    f_in = _spectrum_log_interp(e_tab, f_tab, e_in)
    slope = np.gradient(np.log(np.maximum(f_in, 1e-300)), np.log(e_in))
    phi = np.where(f_in > 0, -f_in * slope / e_in, 0.0)  # per MeV per unit F(>E_ref)
    s_in = e_in ** (1.0 - b) / (a * b)  # MeV cm^2/g
    k_p = float(np.trapezoid(phi * s_in, e_out)) * RAD_PER_MEV_PER_G

    ee = np.asarray(params.electron_spectrum_energy_mev, float)
    fe = np.asarray(params.electron_spectrum_fraction, float)
    fe = fe / _spectrum_log_interp(ee, fe, np.array([params.electron_energy_mev]))[0]
    e_cut = max(electron_cutoff_energy_mev(t), 1e-3)
    trans = float(_spectrum_log_interp(ee, fe, np.array([max(e_cut, ee[0])]))[0])
    grid = np.geomspace(params.electron_energy_mev, ee[-1], 2000)
    energy_flux = params.electron_energy_mev + float(np.trapezoid(_spectrum_log_interp(ee, fe, grid), grid))  # MeV per electron > E_ref
    brems = 0.5 * params.bremsstrahlung_yield * energy_flux * params.photon_energy_absorption_cm2_g
    k_e = (params.electron_stopping_power_mev_cm2_g * trans + brems) * RAD_PER_MEV_PER_G
    return k_p, k_e


def dose_rate_rad_s(proton_flux: np.ndarray, electron_flux: np.ndarray, params: RadiationParams) -> np.ndarray:
    """Total ionising dose rate [rad(Si)/s] behind the configured Al shield, shape (n,).

    ``proton_flux`` / ``electron_flux``: integral fluxes [1/(cm^2 s)] above the grid energies.
    """
    k_p, k_e = dose_coefficients(params)
    return k_p * np.asarray(proton_flux, float) + k_e * np.asarray(electron_flux, float)


# ------------------------------------------------------------------------------------------ SEU
def seu_rate_per_device_s(proton_flux: np.ndarray, params: RadiationParams) -> tuple[np.ndarray, np.ndarray]:
    """Expected (corrected, uncorrectable) upset rates [1/s] per device, each shape (n,)."""
    corr, unc = _seu_rates_at_reference(params)
    scale = np.asarray(proton_flux, float) / params.seu_reference_proton_flux_cm2_s
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
    rng: np.random.Generator, proton_flux: np.ndarray, dt_s: float, params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse Poisson upsets in ``dt_s``: (rows hit (k,), corrected (k, n_devices), uncorrectable (k, n_devices)).

    Exact and fast: one Poisson draw per satellite for all devices and both classes, then the
    (rare) nonzero totals are split uniformly over devices (multinomial) and into
    uncorrectable ones (binomial thinning). Same generator state -> identical events.
    """
    flux = np.nan_to_num(np.asarray(proton_flux, float), nan=0.0, posinf=0.0)
    corr_ref, unc_ref = _seu_rates_at_reference(params)
    total_ref = corr_ref + unc_ref
    empty = np.zeros((0, max(n_devices, 0)), dtype=np.int64)
    if total_ref <= 0.0 or n_devices <= 0:
        return np.zeros(0, dtype=np.intp), empty, empty
    lam = np.maximum(flux, 0.0) * (total_ref * dt_s * n_devices / params.seu_reference_proton_flux_cm2_s)
    counts = rng.poisson(lam)
    hit = np.flatnonzero(counts)
    if not hit.size:
        return hit, empty, empty
    per_dev = rng.multinomial(counts[hit], np.full(n_devices, 1.0 / n_devices))
    unc = rng.binomial(per_dev, unc_ref / total_ref)
    return hit, per_dev - unc, unc


def seu_events(
    rng: np.random.Generator, proton_flux: np.ndarray, dt_s: float, params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson upset counts in ``dt_s``: (corrected, uncorrectable), each (n, n_devices) int64 (see :func:`seu_hits`)."""
    n = np.size(proton_flux)
    corrected = np.zeros((n, max(n_devices, 0)), dtype=np.int64)
    uncorrectable = np.zeros((n, max(n_devices, 0)), dtype=np.int64)
    hit, corr, unc = seu_hits(rng, proton_flux, dt_s, params, n_devices)
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
    rng: np.random.Generator, proton_flux: np.ndarray, temp_k: np.ndarray, dt_s: float,
    params: RadiationParams, n_devices: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sparse latch-up onsets in ``dt_s``: (rows, devices), each (k,) int, by row then device.

    Each device latches independently with P = 1 - exp(-rate dt). Exact and fast: one uniform
    per satellite, inverted through P(first onset at device <= d) = 1 - exp(-sum_{j<=d} rate_j dt),
    gives whether any device latches and which is the first; the (rare) devices after a first onset
    get their own independent draws. ``temp_k``: (n, 1) when all devices of a satellite share a
    temperature, else (n, n_devices); a NaN temperature gives no onset. Same generator state ->
    identical events.
    """
    n = np.size(proton_flux)
    empty = np.zeros(0, dtype=np.intp)
    if n_devices <= 0 or n == 0:
        return empty, empty
    temp = np.asarray(temp_k, float).reshape(n, -1)
    rate = sel_rate_per_device_s(proton_flux, temp, params)
    rate = np.where(np.isnan(rate), 0.0, rate)
    total = rate[:, 0] * n_devices if rate.shape[1] == 1 else rate.sum(axis=1)
    u = rng.random(n)
    rows = np.flatnonzero(u < -np.expm1(-total * dt_s))
    if not rows.size:
        return empty, empty
    log_stay = np.broadcast_to(-rate[rows] * dt_s, (rows.size, n_devices))  # log P(no onset), per device
    first = (u[rows, None] >= -np.expm1(np.cumsum(log_stay, axis=1))).sum(axis=1)
    first = np.minimum(first, n_devices - 1)  # rounding at the last device
    later = (np.arange(n_devices) > first[:, None]) & (rng.random((rows.size, n_devices)) < -np.expm1(log_stay))
    hit = later
    hit[np.arange(rows.size), first] = True
    r, dev = np.nonzero(hit)
    return rows[r], dev


def sel_events(
    rng: np.random.Generator, proton_flux: np.ndarray, temp_k: np.ndarray, dt_s: float,
    params: RadiationParams, n_devices: int,
) -> np.ndarray:
    """Latch-up onsets in ``dt_s``: bool (n, n_devices); P = 1 - exp(-rate dt) (see :func:`sel_hits`)."""
    out = np.zeros((np.size(proton_flux), max(n_devices, 0)), dtype=bool)
    rows, devs = sel_hits(rng, proton_flux, temp_k, dt_s, params, n_devices)
    out[rows, devs] = True
    return out


# ---------------------------------------------------------------------------------- grid build
def main(argv: list[str] | None = None) -> None:
    """CLI: build the flux grid for the default ``[radiation]`` parameters and write it to ``--out``."""
    ap = argparse.ArgumentParser(description="Build the AE8/AP8 flux grid for the default [radiation] parameters.")
    ap.add_argument("--out", type=Path, default=DEFAULT_GRID_PATH)
    args = ap.parse_args(argv)
    grid = build_grid(RadiationParams().grid_spec())
    grid.save(args.out)
    p, _ = orbit_average_flux(grid, 686e3, 98.2)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, key {grid.spec.key()}); "
          f"Alsat-1 (686 km, 98.2 deg) orbit-average proton flux {p:.4g} /cm^2/s")


if __name__ == "__main__":
    main()
