"""A nominal day: the default design flown for 24 h of sim time on representative satellites.

``orbitwin validate`` and the test suite run :func:`run_nominal_day`: the fleet engine, vectorised
over a handful of satellites picked from the shipped catalogue (each main shell at beta near 0
and near 60 deg, plus one in full sun), at maximum speed with no MQTT. It checks that

- every limited telemetry field stays out of red (limits from ``twin.schema``, the one source),
  and the battery (temperature and state of charge) stays green;
- the thermal network reaches a periodic steady state: over the last orbit of each satellite no
  node temperature differs from its value one orbital period earlier by more than
  :data:`PERIODIC_TOL_K`;
- energy balances over the day: generated - loads - shunt - battery losses equals the change of
  the energy stored in the battery, to :data:`ENERGY_TOL_FRACTION` of the energy generated.

Figures and tolerances: docs/physics.md#validation-nominal-day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from twin.core import thermal
from twin.core.fdir import limit_states
from twin.core.battery import stored_energy_j
from twin.core.catalogue import Catalogue, load_catalogue, shell_label
from twin.core.constants import R_EARTH_M
from twin.core.design import Design, load_design
from twin.core.engine import FleetTwin, julian_split
from twin.core.ephemeris import SunEphemeris
from twin.core.orbit import FleetPropagator, beta_angle_rad
from twin.schema.telemetry import LIMIT_GREEN, LIMIT_RED, LIMITED_FIELDS, MODE_NOMINAL, Field

#: A shell is "main" when it holds at least this share of the catalogue.
MAIN_SHELL_SHARE = 0.03
#: Target beta angles of the representative satellites, deg.
BETA_TARGETS_DEG = (0.0, 60.0)
#: Largest accepted change of a node's orbit-mean temperature between the last two orbits, K.
PERIODIC_TOL_K = 0.5
#: Nodes whose relaxation time is below this fraction of an orbit follow their environment
#: within minutes (the array): their orbit-to-orbit change is the environment's own drift
#: (beta, eclipse length, eclipse edges sampled at the step), reported but not judged.
JUDGED_TAU_FRACTION = 0.1
#: Largest accepted energy residual over the day, as a fraction of the energy generated.
ENERGY_TOL_FRACTION = 1e-3
#: Fields that must stay green all day (the battery), not only out of red.
GREEN_FIELDS = ("battery_temp_k", "battery_soc")


@dataclass(frozen=True)
class Representative:
    """One satellite of the nominal day: catalogue index, name, shell, beta at the start, why chosen."""

    index: int
    name: str
    shell: str
    beta_deg: float
    role: str


@dataclass(frozen=True)
class FieldWorst:
    """The worst value of one limited field over the day, across every representative."""

    name: str
    unit: str
    side: str  # "high" or "low": the side nearest its limits
    value: float
    sat: str
    limit: float | None  # the red limit on that side
    yellow: float | None  # the yellow limit on that side
    state: int  # worst limit state reached (0 green, 1 yellow, 2 red)


@dataclass
class NominalDayResult:
    """What :func:`run_nominal_day` measured."""

    hours: float
    dt_s: float
    sats: list[Representative]
    worst: list[FieldWorst]
    red_s: dict[str, float]  # field -> satellite-seconds in red
    periodic_change_k: np.ndarray  # (n, 5) |change of the orbit-mean temperature| between the last two orbits, K
    swing_change_k: np.ndarray  # (n, 5) change of the orbit's minimum and maximum between them (sampled), K
    temp_range_k: np.ndarray  # (n, 5, 2) lowest and highest node temperature over the day, K
    energy_residual_fraction: np.ndarray  # (n,)
    energy_generated_kwh: np.ndarray  # (n,)
    heater_mean_w: np.ndarray  # (n, 5) heater power per node, day mean, W
    illumination_min: np.ndarray  # (n,) lowest illumination fraction seen (1: never in shadow)
    tau_s: np.ndarray = field(default_factory=lambda: np.full(thermal.N_NODES, np.inf))  # (5,) relaxation time
    period_s: float = 5700.0  # shortest orbital period of the representatives, s
    events: Counter[str] = field(default_factory=Counter)

    @property
    def red_free(self) -> bool:
        return all(w.state < LIMIT_RED for w in self.worst)

    @property
    def battery_green(self) -> bool:
        return all(w.state == LIMIT_GREEN for w in self.worst if w.name in GREEN_FIELDS)

    @property
    def judged_nodes(self) -> np.ndarray:
        """(5,) bool: nodes whose periodic steady state is judged (relaxation time > a tenth of an orbit)."""
        return self.tau_s > JUDGED_TAU_FRACTION * self.period_s

    @property
    def periodic(self) -> bool:
        return bool(np.all(self.periodic_change_k[:, self.judged_nodes] <= PERIODIC_TOL_K))

    @property
    def energy_balanced(self) -> bool:
        return bool(np.all(np.abs(self.energy_residual_fraction) <= ENERGY_TOL_FRACTION))


def relaxation_time_s(params: thermal.ThermalParams, temp_k: float = 293.15, share: float = 0.05) -> np.ndarray:
    """Each node's relaxation time (5,), s: the slowest mode of the linearised network it takes part in.

    The network linearised at ``temp_k`` is ``C dT/dt = -K T`` with K the conductance Laplacian
    plus ``4 eps A sigma T^3`` on the diagonal; its modes are the eigenvectors of
    ``C^-1/2 K C^-1/2``. A node takes part in a mode when its share of the mode's (mass-weighted)
    vector is at least ``share``; strongly coupled nodes (payload and radiator) share a slow mode.
    """
    from twin.core.constants import SIGMA_W_M2_K4

    g = params.conductance_w_k
    k = np.diag(g.sum(axis=1) + 4.0 * params.eps_area_m2 * SIGMA_W_M2_K4 * temp_k**3) - g
    c_inv_sqrt = 1.0 / np.sqrt(params.heat_capacity_j_k)
    lam, w = np.linalg.eigh(c_inv_sqrt[:, None] * k * c_inv_sqrt[None, :])
    tau = 1.0 / np.maximum(lam, 1e-300)
    return np.array([float(tau[w[i] ** 2 >= share].max()) for i in range(len(lam))])


def _period_s(catalogue: Catalogue) -> np.ndarray:
    n_rad_s = np.array([s.no_kozai for s in catalogue.satrecs]) / 60.0
    return 2 * np.pi / n_rad_s


def representative_satellites(
    catalogue: Catalogue | None = None, start_jd: float | None = None, share: float = MAIN_SHELL_SHARE,
) -> list[Representative]:
    """Pick the nominal day's satellites from the catalogue by beta angle at ``start_jd``.

    For each main shell (at least ``share`` of the catalogue, by :func:`shell_label`): the
    satellite whose |beta| is nearest each of :data:`BETA_TARGETS_DEG`; plus, over the whole
    catalogue, the satellite with the largest |beta| among those in full sun (|beta| above
    beta* = asin(R / (R + h)), no eclipse at all).
    """
    cat = load_catalogue() if catalogue is None else catalogue
    jd = cat.median_epoch_jd() if start_jd is None else start_jd
    whole, frac = julian_split(jd)
    sun_m, _ = SunEphemeris().at(whole, frac)
    r_m, v_m_s, err = FleetPropagator(cat).teme(whole, frac)
    beta = np.degrees(beta_angle_rad(r_m, v_m_s, sun_m / np.linalg.norm(sun_m)))
    alt_m = cat.mean_altitude_m
    ok = (err == 0) & np.isfinite(beta)
    labels = np.array(shell_label(alt_m, cat.inclination_deg))
    counts = Counter(labels[ok].tolist())
    out: list[Representative] = []
    taken: set[int] = set()
    for shell, count in counts.most_common():
        if count < share * len(cat):
            break
        members = np.flatnonzero(ok & (labels == shell))
        for target in BETA_TARGETS_DEG:
            i = int(members[np.argmin(np.abs(np.abs(beta[members]) - target))])
            if i in taken:
                continue
            taken.add(i)
            out.append(Representative(i, cat.names[i], shell, float(beta[i]), f"beta ~{target:g} deg"))
    beta_star = np.degrees(np.arcsin(R_EARTH_M / (R_EARTH_M + alt_m)))
    full_sun = np.flatnonzero(ok & (np.abs(beta) > beta_star + 1.0))
    if full_sun.size:
        i = int(full_sun[np.argmax(np.abs(beta[full_sun]))])
        if i not in taken:
            out.append(Representative(i, cat.names[i], str(labels[i]), float(beta[i]), "full sun"))
    return out


def run_nominal_day(
    hours: float = 24.0,
    dt_s: float = 10.0,
    *,
    design: Design | None = None,
    catalogue: Catalogue | None = None,
    start_jd: float | None = None,
    sats: list[Representative] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> NominalDayResult:
    """Fly the representative satellites for ``hours`` of sim time with ``dt_s`` steps, no commands.

    Every limited field's worst value and state, the orbit-to-orbit temperature change over the
    last orbit and the day's energy balance are measured (see the module docstring).
    ``progress(done, total)``: after every step, sim seconds flown of the day's.
    """
    cat = load_catalogue() if catalogue is None else catalogue
    jd = cat.median_epoch_jd() if start_jd is None else start_jd
    reps = representative_satellites(cat, jd) if sats is None else sats
    sub = cat.subset([r.index for r in reps])
    des = load_design() if design is None else design
    steps = int(round(hours * 3600.0 / dt_s))
    period_s = _period_s(sub)
    lag = np.maximum(np.round(period_s / dt_s).astype(int), 1)
    hist_len = int(lag.max()) * 2 + 2
    # representatives of their shells, not a mesh: without the network their laser terminals draw the
    # power of all terminals in use, as inside the full fleet (the conservative heat and energy case)
    with FleetTwin(sub, des, start_jd=jd, dt_s=dt_s, seed=0, orbit_worker=False, network=False) as twin:
        n = twin.n
        lo = {f.name: np.full(n, np.inf) for f in LIMITED_FIELDS}
        hi = {f.name: np.full(n, -np.inf) for f in LIMITED_FIELDS}
        state = {f.name: np.zeros(n, dtype=np.int8) for f in LIMITED_FIELDS}
        red_s = {f.name: 0.0 for f in LIMITED_FIELDS}
        # per-orbit statistics of every node: (orbit number, sat, node) mean, min, max
        orbit_no = np.zeros(n, dtype=int)
        n_orbits = int(steps * dt_s / period_s.min()) + 2
        # integral of T dt at each orbit boundary k P (linear interpolation within the step)
        cum = np.zeros((n, thermal.N_NODES))
        cum_at = np.full((n_orbits, n, thermal.N_NODES), np.nan)
        cum_at[0] = 0.0
        o_cnt = np.zeros((n_orbits, n))
        o_min = np.full((n_orbits, n, thermal.N_NODES), np.inf)
        o_max = np.full((n_orbits, n, thermal.N_NODES), -np.inf)
        rows = np.arange(n)
        temp_prev = twin.temp_k.copy()
        b = des.battery
        e0 = stored_energy_j(twin.soc, b, twin.faults.battery_strings_failed, twin.v_rc_v)
        gen = np.zeros(n)
        resid_flow = np.zeros(n)
        heater_j = np.zeros((n, thermal.N_NODES))
        illum_min = np.ones(n)
        events: Counter[str] = Counter()
        for k in range(steps):
            twin.step()
            tm = twin.tm
            states = twin.limit_state
            assert states is not None
            for f in LIMITED_FIELDS:
                v = tm[f.name]
                np.fmin(lo[f.name], v, out=lo[f.name])
                np.fmax(hi[f.name], v, out=hi[f.name])
                st = states[f.name]
                np.maximum(state[f.name], st, out=state[f.name])
                if st.any():
                    red_s[f.name] += float(np.count_nonzero(st == LIMIT_RED)) * dt_s
            orbit_no = np.minimum((twin.t_s / period_s).astype(int), n_orbits - 1)
            temp = twin.temp_k
            t_prev = twin.t_s - dt_s
            cum_new = cum + 0.5 * (temp_prev + temp) * dt_s
            crossed = np.flatnonzero(orbit_no > np.minimum((t_prev / period_s).astype(int), n_orbits - 1))
            for j in crossed:
                w = (orbit_no[j] * period_s[j] - t_prev) / dt_s
                cum_at[orbit_no[j], j] = cum[j] + w * (cum_new[j] - cum[j])
            cum, temp_prev = cum_new, temp.copy()
            o_cnt[orbit_no, rows] += 1
            o_min[orbit_no, rows] = np.minimum(o_min[orbit_no, rows], temp)
            o_max[orbit_no, rows] = np.maximum(o_max[orbit_no, rows], temp)
            gen += tm["array_power_w"] * dt_s
            resid_flow += (tm["array_power_w"] - tm["load_power_w"] - tm["shunt_power_w"]
                           - twin.last_battery_heat_w) * dt_s
            heater_j += twin.last_heater_w * dt_s
            np.fmin(illum_min, tm["illumination"], out=illum_min)
            for ev in twin.drain_events():
                if ev.kind in ("fdir", "limit"):
                    events[f"{ev.kind}:{ev.name}"] += 1
            if progress is not None:
                progress((k + 1) * dt_s, steps * dt_s)
        e1 = stored_energy_j(twin.soc, b, twin.faults.battery_strings_failed, twin.v_rc_v)
        if not np.all(twin.mode == MODE_NOMINAL):
            events["mode:not_nominal_at_end"] += 1
    # orbit-to-orbit change between the last two complete orbits: mean, minimum and maximum
    change = np.full((n, thermal.N_NODES), np.inf)
    swing_change = np.full((n, thermal.N_NODES), np.inf)
    for i in range(n):
        ends = np.flatnonzero(np.isfinite(cum_at[:, i, 0]))  # orbit boundaries passed (0 = start)
        if ends.size >= 3:
            a, c = ends[-2] - 1, ends[-1] - 1  # the last two complete orbits
            mean_a = (cum_at[a + 1, i] - cum_at[a, i]) / period_s[i]
            mean_c = (cum_at[c + 1, i] - cum_at[c, i]) / period_s[i]
            change[i] = np.abs(mean_c - mean_a)
            swing_change[i] = np.maximum(np.abs(o_min[c, i] - o_min[a, i]), np.abs(o_max[c, i] - o_max[a, i]))
    worst: list[FieldWorst] = []
    for f in LIMITED_FIELDS:
        lim = f.limits
        assert lim is not None
        for side, values, red, yellow in (("low", lo[f.name], lim.red_low, lim.yellow_low),
                                          ("high", hi[f.name], lim.red_high, lim.yellow_high)):
            if red is None and yellow is None:
                continue
            which = int(np.argmax(values) if side == "high" else np.argmin(values))
            st = limit_states(np.array([values[which]]), f)[0]
            worst.append(FieldWorst(f.name, f.unit, side, float(values[which]), reps[which].name, red, yellow, int(st)))
    return NominalDayResult(
        hours=hours, dt_s=dt_s, sats=reps, worst=worst, red_s=red_s, periodic_change_k=change,
        swing_change_k=swing_change, temp_range_k=np.stack([o_min.min(axis=0), o_max.max(axis=0)], axis=-1),
        energy_residual_fraction=(resid_flow - (e1 - e0)) / np.maximum(gen, 1.0),
        energy_generated_kwh=gen / 3.6e6, heater_mean_w=heater_j / (steps * dt_s),
        illumination_min=illum_min,
        tau_s=relaxation_time_s(des.thermal), period_s=float(period_s.min()), events=events)


def format_table(result: NominalDayResult) -> str:
    """The nominal day's table: field, worst value, limit (and the state it reached)."""
    names = ("green", "YELLOW", "RED")
    rows = [("field", "worst", "side", "yellow", "red limit", "state", "satellite", "time red")]
    for w in result.worst:
        red_h = result.red_s.get(w.name, 0.0) / 3600.0
        seen = bool(np.isfinite(w.value))  # a field with no value all day (net without the network): no worst
        rows.append((w.name, f"{w.value:.6g} {w.unit}".strip() if seen else "no value", w.side,
                     "-" if w.yellow is None else f"{w.yellow:g}",
                     "-" if w.limit is None else f"{w.limit:g}", names[w.state], w.sat if seen else "-",
                     f"{red_h:.2f} sat-h" if w.state == 2 else "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(wd) for cell, wd in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * wd for wd in widths))
    fdir = sorted((k.split(":", 1)[1], v) for k, v in result.events.items() if k.startswith("fdir:"))
    lines.append("onboard FDIR actions over the day: "
                 + (", ".join(f"{name} x{count}" for name, count in fdir) if fdir else "none"))
    return "\n".join(lines)


__all__ = [
    "BETA_TARGETS_DEG", "ENERGY_TOL_FRACTION", "FieldWorst", "GREEN_FIELDS", "MAIN_SHELL_SHARE", "NominalDayResult",
    "PERIODIC_TOL_K", "Representative", "format_table", "representative_satellites", "run_nominal_day",
]
