"""Where the dose comes from: two-depth dose check against SHIELDOSE-2 and the SAA / horns / elsewhere split.

The twin's dose comes from the local AE8/AP8 spectra folded through the shield
(:class:`twin.core.radiation.RadiationEnvironment`). This module checks it against the SPENVIS
SHIELDOSE-2 runs of [SPENVIS-leo] (550 km circular, 5 years, AP8-MIN / AE8-MAX, centre of Al
spheres) at both depths of the physics reference, 2.5 mm and 10 mm, at 50 and 55 deg
inclination, and splits the dose of a 550 km orbit by region (docs/physics.md#validation-radiation):

* SAA: proton flux above ``radiation.saa_proton_flux_cm2_s`` (the telemetry ``in_saa`` flag);
* horns: outside the SAA, centred-dipole L >= 3 (outer electron belt);
* elsewhere: the rest (inner-belt electrons at the SAA's edge).

The regions are :mod:`twin.schema.dose_regions` and the classifier :func:`twin.core.radiation.dose_region`,
the same the twin's fleet summary splits the fleet's dose rate by (the fleet dashboard's radiation panels).

SHIELDOSE-2 splits by particle, not by region; the table prints both, side by side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from twin.core.constants import SECONDS_PER_DAY, SECONDS_PER_YEAR
from twin.core.radiation import (
    RAD_PER_MEV_PER_G,
    RadiationEnvironment,
    RadiationParams,
    fold_spectra,
    kernels,
    load_environment,
    load_grid,
    region_of,
)
from twin.core.radiation_grid import FLOOR_LOG10, circular_ground_track
from twin.schema.dose_regions import DOSE_REGIONS
from twin.validation.physics_checks import Check

ALT_M = 550e3
YEARS = 5.0
# SPENVIS 4.6.11 / SHIELDOSE-2, 550 km circular, 5 years from 2023-01-01, AP8-MIN + AE8-MAX, centre of Al spheres
# [SPENVIS-leo]: compute-failure/cleaned/<inclination>.csv, rad(Si) in 5 years:
# (inclination deg, Al mm) -> (total, trapped electrons, bremsstrahlung, trapped protons)
SPENVIS_5YR_RAD: dict[tuple[float, float], tuple[float, float, float, float]] = {
    (50.0, 2.5): (4935.5, 3437.5, 44.344, 1453.7),
    (50.0, 10.0): (883.02, 2.6725, 12.021, 868.33),
    (55.0, 2.5): (6535.2, 5240.7, 52.765, 1241.7),
    (55.0, 10.0): (764.84, 3.8668, 13.916, 747.05),
}
REGIONS = tuple(r.label for r in DOSE_REGIONS)  # ("SAA", "horns", "elsewhere"), in region index order


def _cover(cover_glass_g_cm2: float | None) -> float:
    """The given cover glass [g/cm^2], else the default design's."""
    if cover_glass_g_cm2 is not None:
        return cover_glass_g_cm2
    from twin.core.design import load_design

    return load_design().solar_array.cover_glass_g_cm2


def _environment(params: RadiationParams, shield_mm: float, cover_glass_g_cm2: float | None) -> RadiationEnvironment:
    return load_environment(dataclasses.replace(params, shield_thickness_mm_al=shield_mm), _cover(cover_glass_g_cm2))


def orbit_dose_5yr_rad(env: RadiationEnvironment, inclination_deg: float, days: float = 5.0, dt_s: float = 10.0) -> float:
    """Dose [rad(Si)] in 5 years on a circular 550 km orbit: the engine's per-node fold, averaged over ``days``."""
    local = env.sample(*circular_ground_track(ALT_M, inclination_deg, days * SECONDS_PER_DAY, dt_s))
    return float(local.dose_rate_rad_s.mean() * SECONDS_PER_YEAR * YEARS)


def dose_by_particle_5yr_rad(params: RadiationParams, inclination_deg: float, days: float = 5.0, dt_s: float = 10.0) -> tuple[float, float]:
    """(protons, electrons incl. bremsstrahlung) dose [rad(Si)] in 5 years, from the orbit-average spectrum."""
    grid = load_grid(params)
    flux = grid.lookup(*circular_ground_track(ALT_M, inclination_deg, days * SECONDS_PER_DAY, dt_s)).mean(axis=1)
    log10 = np.log10(np.maximum(flux, 10.0 ** FLOOR_LOG10))[None, :]
    k = kernels(params, 0.0)
    npr = grid.n_protons
    p = fold_spectra(log10[:, :npr], grid.spec.proton_energies_mev, k.proton_edges_mev, k.proton_dose[:, None])[0, 0]
    e = fold_spectra(log10[:, npr:], grid.spec.electron_energies_mev, k.electron_edges_mev, k.electron_dose[:, None])[0, 0]
    scale = RAD_PER_MEV_PER_G * SECONDS_PER_YEAR * YEARS
    return float(p * scale), float(e * scale)


def two_depth_checks(params: RadiationParams | None = None, cover_glass_g_cm2: float | None = None, days: float = 5.0,
                     progress: Callable[[float, float], None] | None = None) -> list[Check]:
    """5-year dose at 550 km, 50 and 55 deg, behind 2.5 mm and 10 mm Al vs SHIELDOSE-2: pass within a factor of 2.

    ``progress(done, total)``: orbits averaged (one per reference case).
    """
    p = params or RadiationParams()
    out = []
    for done, ((inc, mm), ref) in enumerate(SPENVIS_5YR_RAD.items(), 1):
        dose = orbit_dose_5yr_rad(_environment(p, mm, cover_glass_g_cm2), inc, days)
        ratio = dose / ref[0]
        out.append(Check(f"5-yr dose 550 km / {inc:g} deg behind {mm:g} mm Al", dose, ref[0], 0.0, "rad(Si)",
                         0.5 <= ratio <= 2.0,
                         f"{dose:.0f} rad(Si) vs SHIELDOSE-2 {ref[0]:.0f} (x{ratio:.2f}; pass within a factor of 2, "
                         "docs/physics.md#validation-radiation)"))
        if progress is not None:
            progress(done, len(SPENVIS_5YR_RAD))
    return out


@dataclasses.dataclass(frozen=True)
class Split:
    """Dose of one orbit by region: share [1], peak dose rate [rad/h] and share of time [1] per region."""

    shield_mm: float
    inclination_deg: float
    share: dict[str, float]
    peak_rad_h: dict[str, float]
    time_share: dict[str, float]
    dose_rad_yr: float
    protons_share_spenvis: float
    protons_share_twin: float


def dose_split(params: RadiationParams | None = None, shield_mm: float | None = None, inclination_deg: float = 53.0,
               cover_glass_g_cm2: float | None = None, days: float = 5.0, dt_s: float = 10.0) -> Split:
    """Split the dose of a 550 km orbit into SAA, horns and elsewhere (see the module docstring)."""
    p = params or RadiationParams()
    mm = p.shield_thickness_mm_al if shield_mm is None else shield_mm
    pm = dataclasses.replace(p, shield_thickness_mm_al=mm)
    env = load_environment(pm, _cover(cover_glass_g_cm2))
    track = circular_ground_track(ALT_M, inclination_deg, days * SECONDS_PER_DAY, dt_s)
    local = env.sample(*track)
    region = region_of(local, *track, pm)
    d = local.dose_rate_rad_s
    total = float(d.sum())
    share = {name: float(d[region == i].sum() / total) if total > 0 else 0.0 for i, name in enumerate(REGIONS)}
    peak = {name: float(d[region == i].max() * 3600.0) if np.any(region == i) else 0.0 for i, name in enumerate(REGIONS)}
    time_share = {name: float(np.mean(region == i)) for i, name in enumerate(REGIONS)}
    prot, elec = dose_by_particle_5yr_rad(pm, inclination_deg, days, dt_s)
    near = min(SPENVIS_5YR_RAD, key=lambda k: (abs(k[1] - mm), abs(k[0] - inclination_deg)))
    ref = SPENVIS_5YR_RAD[near]
    return Split(mm, inclination_deg, share, peak, time_share, float(d.mean() * SECONDS_PER_YEAR),
                 ref[3] / ref[0], prot / (prot + elec) if prot + elec > 0 else 0.0)


def split_table(params: RadiationParams | None = None, cover_glass_g_cm2: float | None = None, days: float = 5.0) -> list[str]:
    """Printable lines: dose split by region at 550 km / 53 deg behind the configured shield and 10 mm."""
    p = params or RadiationParams()
    lines = ["dose split, 550 km / 53 deg (twin, AP8-MIN + AE8-MAX local spectra; docs/physics.md#validation-radiation)",
             f"  {'shield':>7} {'rad/yr':>7}  " + "  ".join(f"{r:>21}" for r in REGIONS)
             + "  protons twin / SHIELDOSE-2"]
    for mm in sorted({p.shield_thickness_mm_al, 10.0}):
        s = dose_split(p, mm, 53.0, cover_glass_g_cm2, days)
        cells = "  ".join(f"{100 * s.share[r]:5.1f}% ({s.peak_rad_h[r]:5.2f} rad/h pk)" for r in REGIONS)
        lines.append(f"  {mm:5.1f}mm {s.dose_rad_yr:7.0f}  {cells}  {100 * s.protons_share_twin:4.1f}% / "
                     f"{100 * s.protons_share_spenvis:4.1f}%")
    lines.append("  (share of the dose, peak dose rate; SAA: >10 MeV protons above the in_saa threshold; horns: dipole L >= 3;"
                 " SHIELDOSE-2 splits by particle, at 50/55 deg)")
    return lines


def dose_report(quick: bool = False,
                progress: Callable[[float, float], None] | None = None) -> tuple[list[Check], list[str]]:
    """For ``orbitwin validate``: the two-depth checks and the split table for the default design.

    ``quick`` averages 1 day of orbit instead of 5. ``progress(done, total)``: the two-depth
    checks' (:func:`two_depth_checks`).
    """
    from twin.core.design import load_design

    design = load_design()
    days = 1.0 if quick else 5.0
    cover = design.solar_array.cover_glass_g_cm2
    return two_depth_checks(design.radiation, cover, days, progress), split_table(design.radiation, cover, days)
