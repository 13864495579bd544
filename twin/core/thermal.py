"""Lumped-node thermal network of a compute satellite, vectorised over satellites.

Five nodes per satellite (:data:`NODE_NAMES`); temperatures are arrays of shape ``(n, 5)`` in K,
powers ``(n, 5)`` in W. The integrator is backward Euler with radiation linearised around the
current temperature, ``eps sigma A T_new^4 ~ eps sigma A (4 T^3 T_new - 3 T^4)``, so each step
is one symmetric positive-definite linear solve per satellite. The solve is a batched Gaussian
elimination unrolled over the (sparse) 5x5 structure on ``(n,)`` vectors: no pivoting is needed
(the matrix is an M-matrix), zero conductances are skipped and the elimination order is chosen
to avoid fill-in. It is unconditionally stable: as ``dt -> inf`` a step becomes one Newton step
towards the radiative equilibrium, which converges from any positive start.

:class:`NodeNetwork` exposes the same solver for an arbitrary network (used by the closed-form
tests), so the tests validate the very integrator the fleet uses. Figures and sources:
docs/physics.md#thermal; closed-form cases: docs/physics.md#validation-thermal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.core.constants import SIGMA_W_M2_K4, T_SPACE_K
from twin.core.params import DesignError, build, param

FloatArray = NDArray[np.float64]

NODE_NAMES = ("payload", "radiator", "battery", "avionics", "array")
PAYLOAD, RADIATOR, BATTERY, AVIONICS, ARRAY = range(5)
N_NODES = len(NODE_NAMES)
#: Node pairs joined by a conductance, in the order of the ``g_*`` fields of ThermalParams.
LINKS = ((PAYLOAD, RADIATOR), (PAYLOAD, AVIONICS), (RADIATOR, AVIONICS), (AVIONICS, BATTERY), (AVIONICS, ARRAY))

Entry = Any  # float or (n,) array inside the unrolled solver


def _is_zero(x: Entry) -> bool:
    return isinstance(x, float) and x == 0.0


def _elimination_order(cond: list[list[Entry]]) -> list[int]:
    """Minimum-degree elimination order for the sparsity pattern of ``cond`` (no fill-in for trees)."""
    m = len(cond)
    adj = {i: {j for j in range(m) if j != i and not _is_zero(cond[i][j])} for i in range(m)}
    order: list[int] = []
    while adj:
        k = min(adj, key=lambda i: (len(adj[i]), i))
        nbrs = adj.pop(k)
        for i in nbrs:
            adj[i].discard(k)
            adj[i] |= nbrs - {i}
        order.append(k)
    return order


def _solve_sym(diag: list[Entry], off: dict[tuple[int, int], Entry], rhs: list[Entry], order: list[int]) -> list[Entry]:
    """Solve a batch of symmetric systems A x = b, unrolled over node indices.

    ``diag[i]`` is A_ii, ``off[(i, j)]`` (i < j) is A_ij = A_ji (missing means zero), each a float
    or an ``(n,)`` array. Eliminates in ``order``; no pivoting (A is diagonally dominant).
    """
    pos = {node: p for p, node in enumerate(order)}
    m = len(order)
    a: list[list[Entry]] = [[0.0] * m for _ in range(m)]  # upper triangle in elimination order
    for p, node in enumerate(order):
        a[p][p] = diag[node]
    for (i, j), v in off.items():
        if not _is_zero(v):
            p, q = sorted((pos[i], pos[j]))
            a[p][q] = v
    b = [rhs[node] for node in order]
    for k in range(m):
        inv = 1.0 / a[k][k]
        for i in range(k + 1, m):
            if _is_zero(a[k][i]):
                continue
            f = a[k][i] * inv
            for j in range(i, m):
                if not _is_zero(a[k][j]):
                    a[i][j] = a[i][j] - f * a[k][j]
            b[i] = b[i] - f * b[k]
    x: list[Entry] = [0.0] * m
    for i in range(m - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, m):
            if not _is_zero(a[i][j]):
                s = s - a[i][j] * x[j]
        x[i] = s / a[i][i]
    out: list[Entry] = [0.0] * m
    for p, node in enumerate(order):
        out[node] = x[p]
    return out


def implicit_step(
    temp_k: FloatArray,
    heat_w: FloatArray,
    dt_s: float,
    capacitance_j_k: FloatArray,
    cond_w_k: list[list[Entry]],
    eps_area_m2: FloatArray,
    order: list[int] | None = None,
    iterations: int = 1,
) -> FloatArray:
    """One linearised backward-Euler step of ``C dT/dt = Q - L T - eps sigma A (T^4 - T_space^4)``.

    ``temp_k``, ``heat_w``: (n, m); ``capacitance_j_k``: (m,); ``cond_w_k[i][j]``: conductance
    (W/K) between nodes i and j as float or (n,) array (symmetric, diagonal ignored);
    ``eps_area_m2``: (m,) or (n, m) emissivity x radiating area. ``iterations`` > 1 re-linearises
    around the latest iterate (Newton on the backward-Euler residual; worth it for dt >~ 300 s, where
    one tangent step can overshoot when a cold radiating node heats). Returns (n, m) temperatures (K).
    """
    t = np.asarray(temp_k, dtype=float)
    m = t.shape[-1]
    c_dt = np.asarray(capacitance_j_k, dtype=float) / dt_s
    ks = SIGMA_W_M2_K4 * np.asarray(eps_area_m2, dtype=float)
    base_r = c_dt * t + ks * T_SPACE_K**4 + heat_w
    order = order if order is not None else _elimination_order(cond_w_k)
    g_sum: list[Entry] = [sum((cond_w_k[i][j] for j in range(m) if j != i), 0.0) for i in range(m)]
    off = {(i, j): -cond_w_k[i][j] for i in range(m) for j in range(i + 1, m) if not _is_zero(cond_w_k[i][j])}
    lin = t
    for _ in range(max(1, iterations)):
        t3 = lin * lin * lin
        d_cols = (c_dt + 4.0 * ks * t3).T
        r_cols = (base_r + 3.0 * ks * t3 * lin).T
        diag = [d_cols[i] + g_sum[i] if not _is_zero(g_sum[i]) else d_cols[i] for i in range(m)]
        lin = np.stack(_solve_sym(diag, off, list(r_cols), order), axis=-1)
    return lin


@dataclasses.dataclass(frozen=True)
class NodeNetwork:
    """A generic lumped network: capacitances (m,) J/K, conductance matrix (m, m) W/K, eps*A (m,) m^2."""

    capacitance_j_k: FloatArray
    conductance_w_k: FloatArray
    eps_area_m2: FloatArray

    def step(self, temp_k: ArrayLike, heat_w: ArrayLike, dt_s: float, iterations: int = 1) -> FloatArray:
        """Advance temperatures (..., m) K under heat input (..., m) W by ``dt_s`` s (fleet solver)."""
        t = np.atleast_2d(np.asarray(temp_k, dtype=float))
        q = np.broadcast_to(np.asarray(heat_w, dtype=float), t.shape)
        g = np.asarray(self.conductance_w_k, dtype=float)
        cond = [[float(g[i, j]) for j in range(g.shape[1])] for i in range(g.shape[0])]
        out = implicit_step(t, q, dt_s, self.capacitance_j_k, cond, self.eps_area_m2, iterations=iterations)
        return out.reshape(np.shape(temp_k))


def _p(unit: str, desc: str, default: float, lo: float = 0.0, hi: float | None = None) -> Any:
    return param(unit, desc, min=lo, max=hi, default=default)


@dataclasses.dataclass(frozen=True)
class ThermalParams:
    """Thermal design of one satellite (section ``[thermal]``). Node order: :data:`NODE_NAMES`."""

    payload_heat_capacity_j_k: float = _p("J/K", "AI accelerators, cold plates, chassis ~300 kg x 900 J/kg/K; estimate", 2.7e5, 1.0)
    radiator_heat_capacity_j_k: float = _p("J/K", "deployable radiator + loop fluid ~6 kg/m^2 x 26 m^2 x 900 J/kg/K; estimate", 1.4e5, 1.0)
    battery_heat_capacity_j_k: float = _p("J/K", "Li-ion pack ~200 kg x 1000 J/kg/K; estimate", 2.0e5, 1.0)
    avionics_heat_capacity_j_k: float = _p("J/K", "bus structure, avionics, comms ~150 kg x 900 J/kg/K; estimate", 1.35e5, 1.0)
    array_heat_capacity_j_k_m2: float = _p(
        "J/(K m^2)", "wings at ~1.8 kg/m^2 x 900 J/kg/K, per m^2 of array (LEO arrays swing ~20-85 C, "
        "docs/physics.md#thermal); estimate", 1620.0, 1.0)
    g_payload_radiator_w_k: float = _p("W/K", "pumped two-phase loop / heat pipes, ~20 K drop at 15 kW; estimate", 750.0)
    g_payload_avionics_w_k: float = _p("W/K", "structural mounts and harness; estimate", 5.0)
    g_radiator_avionics_w_k: float = _p("W/K", "radiator root hinge and bus loop branch; estimate", 20.0)
    g_avionics_battery_w_k: float = _p("W/K", "battery isolated mounts (kept cool by its own radiator); estimate", 2.0)
    g_avionics_array_w_k: float = _p("W/K", "solar array drive / hinge, thin harness; estimate", 0.5)
    payload_radiating_area_m2: float = _p("m^2", "payload radiates to space only through the radiator; estimate", 0.0)
    radiator_radiating_area_m2: float = _p("m^2", "two faces of a 26 m^2 panel: Starcloud net ~633 W/m^2 at 20 C sizes ~24 m^2 per 15 kW (docs/physics.md#thermal)", 52.0)
    battery_radiating_area_m2: float = _p(
        "m^2", "dedicated battery radiator sized for the beta-0 pack losses (docs/physics.md#battery-thermal-design); estimate", 0.8)
    avionics_radiating_area_m2: float = _p("m^2", "bus side panels 4.1 x 2.7 m class body (docs/physics.md#reference-spacecraft) partly blanketed; estimate", 14.0)
    array_radiating_faces: float = _p(
        "-", "faces of the wings that radiate to space: front and back, x the array area (docs/physics.md#array-area)", 2.0, 0.0, 2.0)
    payload_emissivity: float = _p("-", "black cold-plate surfaces (unused while area is 0); estimate", 0.85, 0.0, 1.0)
    radiator_emissivity: float = _p("-", "white paint / OSR, typical 0.85-0.92; estimate", 0.90, 0.0, 1.0)
    battery_emissivity: float = _p("-", "OSR radiator patch; estimate", 0.80, 0.0, 1.0)
    avionics_emissivity: float = _p("-", "mix of OSR and MLI outer layer; estimate", 0.80, 0.0, 1.0)
    array_emissivity: float = _p("-", "mean of cover-glass front ~0.85 and back ~0.85; estimate", 0.85, 0.0, 1.0)
    payload_absorptivity: float = _p("-", "internal node, no sun view; estimate", 0.5, 0.0, 1.0)
    radiator_absorptivity: float = _p("-", "white paint / OSR beginning of life ~0.1-0.25; estimate", 0.20, 0.0, 1.0)
    battery_absorptivity: float = _p("-", "OSR; estimate", 0.15, 0.0, 1.0)
    avionics_absorptivity: float = _p("-", "MLI/OSR mix; estimate", 0.30, 0.0, 1.0)
    array_absorptivity: float = _p("-", "solar cells + cover glass ~0.90-0.92 (electric output leaves as negative internal heat); estimate", 0.91, 0.0, 1.0)
    payload_sun_area_m2: float = _p("m^2", "enclosed; estimate", 0.0)
    radiator_sun_area_m2: float = _p("m^2", "radiator edge-on to the sun by attitude design; estimate", 0.0)
    battery_sun_area_m2: float = _p("m^2", "battery radiator on the anti-sun side; estimate", 0.0)
    avionics_sun_area_m2: float = _p("m^2", "sunlit bus face (x illumination, attitude-averaged); estimate", 4.0)
    payload_earth_area_m2: float = _p("m^2", "enclosed; estimate", 0.0)
    radiator_earth_area_m2: float = _p("m^2", "nadir-plate equivalent: 2 faces x 26 m^2 x F_vertical 0.258 / F_plate 0.8475 at 550 km; estimate", 15.8)
    battery_earth_area_m2: float = _p(
        "m^2", "side-facing battery radiator, nadir-plate equivalent (docs/physics.md#battery-thermal-design); estimate", 0.24)
    avionics_earth_area_m2: float = _p("m^2", "nadir face of the bus (phased arrays); estimate", 8.0)
    array_earth_view_fraction: float = _p(
        "-", "back of the wings as a nadir-plate equivalent, orbit-averaged, per m^2 of array; estimate", 0.3, 0.0, 1.0)
    payload_heater_w: float = _p("W", "survival heater on the accelerator cold plates; estimate", 1000.0)
    battery_heater_w: float = _p("W", "Li-ion pack heater; estimate", 300.0)
    avionics_heater_w: float = _p("W", "bus survival heaters; estimate", 200.0)
    payload_setpoint_k: float = _p("K", "-20 C accelerator survival limit; estimate", 253.15, 1.0)
    battery_setpoint_k: float = _p("K", "+10 C Li-ion lower operating limit + margin; estimate", 283.15, 1.0)
    avionics_setpoint_k: float = _p("K", "-10 C electronics lower operating limit; estimate", 263.15, 1.0)
    heater_band_k: float = _p("K", "proportional band below the set-point (full power at set-point - band); estimate", 2.0, 1e-3)
    payload_initial_k: float = _p("K", "initial temperature; estimate", 293.15, 1.0)
    radiator_initial_k: float = _p("K", "initial temperature; estimate", 283.15, 1.0)
    battery_initial_k: float = _p("K", "initial temperature; estimate", 293.15, 1.0)
    avionics_initial_k: float = _p("K", "initial temperature; estimate", 293.15, 1.0)
    array_initial_k: float = _p("K", "initial temperature; estimate", 300.0, 1.0)
    # not a [thermal] key: the design sets it from solar_array.area_m2, the one array area of both models
    array_area_m2: float = dataclasses.field(kw_only=True, metadata={
        "unit": "m^2", "description": "area of both wings, from solar_array.area_m2 (docs/physics.md#array-area)",
        "min": 0.0, "max": None})

    @classmethod
    def from_table(cls, table: Mapping[str, Any], section: str = "thermal", *, array_area_m2: float) -> ThermalParams:
        """Build from the ``[thermal]`` TOML table; ``array_area_m2`` is the design's ``solar_array.area_m2``."""
        if "array_area_m2" in table:
            raise DesignError(f"{section}.array_area_m2", "not a thermal key: the array area is solar_array.area_m2")
        return build(cls, {**table, "array_area_m2": array_area_m2}, section)

    @property
    def array_sun_area_m2(self) -> float:
        """Sunlit area of the array node [m^2] (times cos(incidence) in the solar term): the array area."""
        return self.array_area_m2

    @property
    def array_radiating_area_m2(self) -> float:
        """Radiating area of the array node [m^2]: ``array_radiating_faces`` x the array area."""
        return self.array_radiating_faces * self.array_area_m2

    @property
    def array_earth_area_m2(self) -> float:
        """Earth-viewing (nadir-plate equivalent) area of the array node [m^2]."""
        return self.array_earth_view_fraction * self.array_area_m2

    @property
    def array_heat_capacity_j_k(self) -> float:
        """Heat capacity of the array node [J/K]."""
        return self.array_heat_capacity_j_k_m2 * self.array_area_m2

    def _vec(self, suffix: str) -> FloatArray:
        return np.array([getattr(self, f"{name}_{suffix}") for name in NODE_NAMES], dtype=float)

    def validate(self, section: str) -> None:
        """Every node needs a positive heat capacity; at least one node must radiate."""
        if not np.any(self.eps_area_m2 > 0.0):
            raise DesignError(f"{section}.radiator_radiating_area_m2", "no node radiates to space")

    @cached_property
    def heat_capacity_j_k(self) -> FloatArray:
        """Heat capacity per node (5,), J/K."""
        return self._vec("heat_capacity_j_k")

    @cached_property
    def eps_area_m2(self) -> FloatArray:
        """Emissivity x radiating area per node (5,), m^2."""
        return self._vec("emissivity") * self._vec("radiating_area_m2")

    @cached_property
    def conductance_w_k(self) -> FloatArray:
        """Symmetric conductance matrix (5, 5), W/K (zero diagonal)."""
        g = np.zeros((N_NODES, N_NODES))
        names = [f"g_{NODE_NAMES[i]}_{NODE_NAMES[j]}_w_k" for i, j in LINKS]
        for (i, j), name in zip(LINKS, names):
            g[i, j] = g[j, i] = getattr(self, name)
        return g

    @cached_property
    def elimination_order(self) -> list[int]:
        """Fill-in-free elimination order for the conductance pattern (pumped loop always linked)."""
        cond = [[float(v) for v in row] for row in self.conductance_w_k]
        cond[PAYLOAD][RADIATOR] = cond[RADIATOR][PAYLOAD] = 1.0
        return _elimination_order(cond)

    @cached_property
    def heater_max_w(self) -> FloatArray:
        """Heater power per node (5,), W (radiator and array have none)."""
        return np.array([self.payload_heater_w, 0.0, self.battery_heater_w, self.avionics_heater_w, 0.0])

    @cached_property
    def setpoint_k(self) -> FloatArray:
        """Heater set-points per node (5,), K (NaN where there is no heater)."""
        nan = float("nan")
        return np.array([self.payload_setpoint_k, nan, self.battery_setpoint_k, self.avionics_setpoint_k, nan])

    @cached_property
    def initial_temp_k(self) -> FloatArray:
        """Initial temperature per node (5,), K."""
        return self._vec("initial_k")

    @cached_property
    def network(self) -> NodeNetwork:
        """The nominal (fault-free) network of one satellite."""
        return NodeNetwork(self.heat_capacity_j_k, self.conductance_w_k, self.eps_area_m2)


def absorbed_environment_w(
    params: ThermalParams,
    solar_flux_w_m2: ArrayLike,
    illumination: ArrayLike,
    cos_sun_array: ArrayLike,
    albedo_w_m2: ArrayLike,
    earth_ir_w_m2: ArrayLike,
) -> FloatArray:
    """Absorbed solar + albedo + Earth IR per node (n, 5), W.

    Solar: ``alpha * A_sun * S * illumination`` (array also x max(cos_sun_array, 0); the radiator is
    edge-on). Albedo (W/m^2 on a nadir plate): ``alpha * A_earth * q``. Earth IR: ``eps * A_earth * q``.
    The array's electrical output is not subtracted here: pass it as negative internal heat.
    """
    p = params
    s = np.asarray(solar_flux_w_m2, dtype=float) * np.asarray(illumination, dtype=float)
    alpha, a_sun, a_earth = p._vec("absorptivity"), p._vec("sun_area_m2"), p._vec("earth_area_m2")
    eps = p._vec("emissivity")
    s_n = np.atleast_1d(s)[:, None] * np.ones(N_NODES)
    s_n[:, ARRAY] *= np.clip(np.asarray(cos_sun_array, dtype=float), 0.0, 1.0)
    earth = (np.atleast_1d(np.asarray(albedo_w_m2, dtype=float))[:, None] * (alpha * a_earth)
             + np.atleast_1d(np.asarray(earth_ir_w_m2, dtype=float))[:, None] * (eps * a_earth))
    return s_n * (alpha * a_sun) + earth


def heater_power_w(
    temp_k: ArrayLike,
    setpoint_k: ArrayLike | None,
    heater_enabled: ArrayLike,
    params: ThermalParams,
    forced: ArrayLike | None = None,
) -> FloatArray:
    """Thermostat heater power per node (n, 5), W.

    Proportional: full power ``params.heater_max_w`` at ``setpoint - heater_band_k`` and below,
    zero at or above the set-point. ``setpoint_k`` broadcasts to (n, 5) (NaN = no heater); None
    uses ``params.setpoint_k``. ``heater_enabled`` (n,) bool switches all heaters of a satellite.
    ``forced`` (n, 5) bool: onboard FDIR overrides the thermostat and runs that node's heater at
    full power (a cold node below its yellow-low limit); nodes without a heater stay at 0 W.
    """
    t = np.asarray(temp_k, dtype=float)
    sp = params.setpoint_k if setpoint_k is None else np.asarray(setpoint_k, dtype=float)
    frac = np.clip((sp - t) / params.heater_band_k, 0.0, 1.0)
    frac = np.where(np.isnan(frac), 0.0, frac)
    if forced is not None:
        frac = np.where(np.asarray(forced, dtype=bool), 1.0, frac)
    on = np.asarray(heater_enabled, dtype=bool)[..., None]
    return np.where(on, frac * params.heater_max_w, 0.0)


def thermal_step(
    temp_k: FloatArray,
    internal_heat_w: FloatArray,
    absorbed_w: FloatArray,
    dt_s: float,
    params: ThermalParams,
    radiator_efficiency: ArrayLike | None = None,
    heatpipe_efficiency: ArrayLike | None = None,
    iterations: int = 1,
) -> FloatArray:
    """Advance node temperatures (n, 5) K by ``dt_s`` s (linearised backward Euler, one solve).

    ``internal_heat_w`` (dissipation + heaters; array: minus its electric output) and
    ``absorbed_w`` are (n, 5) W. ``radiator_efficiency`` (n,) in 0..1 multiplies the radiator's
    emissive area; ``heatpipe_efficiency`` (n,) in 0..1 multiplies the payload-radiator conductance.
    ``iterations``: Newton re-linearisations (1 is enough for dt <= 60 s; see :func:`implicit_step`).
    """
    g = params.conductance_w_k
    cond: list[list[Entry]] = [[float(v) for v in row] for row in g]
    if heatpipe_efficiency is not None:
        gpr = g[PAYLOAD, RADIATOR] * np.asarray(heatpipe_efficiency, dtype=float)
        cond[PAYLOAD][RADIATOR] = cond[RADIATOR][PAYLOAD] = gpr
    ea: FloatArray = params.eps_area_m2
    if radiator_efficiency is not None:
        ea = np.broadcast_to(ea, np.shape(temp_k)).copy()
        ea[:, RADIATOR] *= np.asarray(radiator_efficiency, dtype=float)
    q = np.asarray(internal_heat_w, dtype=float) + absorbed_w
    return implicit_step(temp_k, q, dt_s, params.heat_capacity_j_k, cond, ea, params.elimination_order, iterations)
