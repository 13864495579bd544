"""``orbitwin bench placement``: the same seeded demand over the whole fleet, once per placement policy.

The fleet's state is computed without the engine (issue 16 has not coupled the scheduler to
:class:`twin.core.engine.FleetTwin` yet): SGP4 every ``anchor_s`` of sim time, flown on as a circular
orbit in between; sunlight and the eclipse ahead from :func:`twin.core.compute.eclipse_outlook`;
the SAA ahead from the radiation grid's proton flux at 550 km (:func:`region_outlook`, every
``anchor_s``); a battery state-of-charge proxy per satellite (bus + idle payload + the scheduler's
accelerator power from the battery in eclipse, recharge at the design's C-rate in sunlight);
uncorrectable upsets drawn from the radiation model with their own seeded generator, so every policy
sees the same upsets at the same devices. No thermal model: the junction headroom is held at the
design's margin, so throttled device-hours are not measured here. What is timed is the scheduler
(``Scheduler.submit`` + ``Scheduler.step``) per tick.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from twin.core import radiation, sat_random
from twin.core.sat_random import SatRandom
from twin.core.catalogue import load_catalogue
from twin.core.compute import (
    POLICIES, DemandGenerator, DemandParams, FleetView, JobKind, JobState, PlacementParams, Scheduler,
    eclipse_outlook, region_outlook,
)
from twin.core.compute.coupling import saa_mask
from twin.core.compute.territory import continent_of
from twin.core.constants import R_EARTH_M, SECONDS_PER_DAY
from twin.core.design import Design, load_design
from twin.core.ephemeris import SunEphemeris
from twin.core.network import load_cities
from twin.core.orbit import FleetPropagator, gmst82_rad, teme_to_itrs



class FleetState:
    """The fleet without the engine: circular orbits re-anchored on SGP4 every ``anchor_s``."""

    def __init__(self, design: Design, count: int | None, anchor_s: float, seed: int) -> None:
        cat = load_catalogue()
        if count is not None:
            cat = cat.subset(np.arange(min(count, len(cat))))
        self.cat, self.design, self.anchor_s = cat, design, anchor_s
        self.n = len(cat)
        self.prop = FleetPropagator(cat)
        self.sun = SunEphemeris()
        jd = cat.median_epoch_jd()
        self.jd0 = math.floor(jd - 0.5) + 0.5
        self.fr0 = jd - self.jd0
        self.env = radiation.load_environment(design.radiation, design.solar_array.cover_glass_g_cm2)
        self.mask = saa_mask(design)
        self.rng = np.random.default_rng(seed)
        self._anchor_t = -np.inf
        b, pw, pl = design.battery, design.power, design.payload
        nominal_v = b.cells_series * 3.6  # estimate: 3.6 V nominal Li-ion cell voltage
        self.capacity_j = b.strings_parallel * b.cell_capacity_ah * 3600.0 * nominal_v
        self.bus_w = pw.avionics_w + pw.isl_terminal_w * pw.isl_terminal_count + pw.radio_w + pw.heaters_w \
            + pl.n_devices * pl.device_idle_w
        self.charge_w = b.max_charge_c_rate * b.strings_parallel * b.cell_capacity_ah * nominal_v
        self.soc_min, self.soc_max = b.soc_min, b.soc_max

    def utc_hour(self) -> float:
        return (self.fr0 * 24.0 + 12.0) % 24.0  # Julian days start at noon

    def _anchor(self, t_s: float) -> None:
        fr = self.fr0 + t_s / SECONDS_PER_DAY
        r, v, err = self.prop.teme(self.jd0, fr)
        bad = err != 0
        r[bad], v[bad] = np.nan, np.nan
        self.r0, self.v0, self._anchor_t = r, v, t_s
        h = np.cross(r, v)
        rn = np.linalg.norm(r, axis=1)
        self.x_hat = r / rn[:, None]
        self.y_hat = np.cross(h / np.linalg.norm(h, axis=1)[:, None], self.x_hat)
        self.radius, self.omega = rn, np.linalg.norm(h, axis=1) / rn**2
        sun, dut1 = self.sun.at(self.jd0, fr)
        gmst = gmst82_rad(self.jd0, fr + dut1 / SECONDS_PER_DAY)
        saa = region_outlook(r, v, gmst, self.mask, horizon_s=5400.0, step_s=30.0)
        self.saa_tts, self.saa_left = saa.time_to_eclipse_s, saa.eclipse_left_s
        self.saa_now = saa.in_eclipse

    def at(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(Earth-fixed positions, TEME positions, velocities, Sun unit vector, SAA time-to, SAA left) at ``t_s``."""
        if t_s - self._anchor_t >= self.anchor_s:
            self._anchor(t_s)
        dt = t_s - self._anchor_t
        ang = self.omega * dt
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        r = self.radius[:, None] * (c * self.x_hat + s * self.y_hat)
        v = (self.radius * self.omega)[:, None] * (-s * self.x_hat + c * self.y_hat)
        fr = self.fr0 + t_s / SECONDS_PER_DAY
        sun, dut1 = self.sun.at(self.jd0, fr)
        gmst = gmst82_rad(self.jd0, fr + dut1 / SECONDS_PER_DAY)
        tts = np.maximum(self.saa_tts - dt, 0.0)
        left = np.where(self.saa_now, np.maximum(self.saa_left - dt, 0.0), self.saa_left)
        return teme_to_itrs(r, gmst), r, v, sun / np.linalg.norm(sun), tts, left

    def seu_scale(self, pos_itrs: np.ndarray) -> np.ndarray:
        x, y, z = pos_itrs[:, 0], pos_itrs[:, 1], pos_itrs[:, 2]
        rr = np.sqrt(x * x + y * y + z * z)
        lat = np.arcsin(np.clip(z / rr, -1, 1))
        lon = np.arctan2(y, x)
        ok = np.isfinite(rr)
        out: np.ndarray = self.env.sample(np.where(ok, lat, 0), np.where(ok, lon, 0),
                                          np.where(ok, rr - R_EARTH_M, radiation.PLACEHOLDER_ALT_M)).seu_scale
        return np.where(ok, out, 0.0)


def _percentile(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if x.size else None


def run_policy(policy: str, design: Design, hours: float, dt_s: float, count: int | None, seed: int,
               demand_scale: float, anchor_s: float = 60.0,
               progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """One policy over ``hours`` of sim time; the metrics of issue 16 as a dict.

    ``progress(done, total)``: after every tick, sim seconds placed of the run's.
    """
    fleet = FleetState(design, count, anchor_s, seed)
    params = PlacementParams.from_design(design)
    cities = load_cities()
    demand = DemandGenerator(cities, DemandParams().scaled(demand_scale), seed=seed,
                             utc_hour_at_zero=fleet.utc_hour())
    sched = Scheduler(fleet.n, params, policy, seed=seed, ground=cities)
    nd = params.n_devices
    soc = np.full(fleet.n, design.battery.soc_initial)
    device_ok = np.ones((fleet.n, nd), bool)
    upsets = SatRandom(seed + 1, np.arange(fleet.n, dtype=np.uint64))
    steps = int(round(hours * 3600.0 / dt_s))
    cost_ms = np.zeros(steps)
    cpu_ms = np.zeros(steps)
    seu_scale = np.zeros(fleet.n)
    soc_low = 0
    for k in range(steps):
        t = k * dt_s
        pos, r, v, sun_unit, saa_tts, saa_left = fleet.at(t)
        ecl = eclipse_outlook(r, v, sun_unit)
        illum = (~ecl.in_eclipse).astype(np.float64)
        alive = np.isfinite(pos).all(axis=1)
        view = FleetView(np.where(alive[:, None], pos, np.nan), illum, soc, ecl.time_to_eclipse_s,
                         ecl.eclipse_left_s, saa_tts, saa_left, np.full(fleet.n, 30.0), np.ones(fleet.n),
                         device_ok, alive & (soc > design.power.shed_payload_below_soc), 1.0 - illum)
        batch = demand.between(t, t + dt_s)
        t0, c0 = time.perf_counter(), time.process_time()
        sched.submit(batch)
        res = sched.step(t, dt_s, view)
        cost_ms[k] = (time.perf_counter() - t0) * 1e3
        cpu_ms[k] = (time.process_time() - c0) * 1e3
        # the SoC proxy: in eclipse the battery gives bus + idle payload + compute; in sunlight it recharges
        draw_w = np.where(ecl.in_eclipse, fleet.bus_w + res.dynamic_w, -fleet.charge_w)
        soc = np.clip(soc - draw_w * dt_s / fleet.capacity_j, fleet.soc_min, fleet.soc_max)
        soc_low += int(np.count_nonzero(soc < 0.5))
        # the same uncorrectable upsets for every policy (own generator, drawn before any decision)
        if k % 10 == 0:
            seu_scale = fleet.seu_scale(pos)
        hit, _, unc = radiation.seu_hits(upsets.draws(sat_random.SEU, k), seu_scale, dt_s, design.radiation, nd)
        for row, dev in zip(*np.nonzero(unc)):
            sched.upset(int(hit[row]), int(dev))
        if progress is not None:
            progress((k + 1) * dt_s, steps * dt_s)
    return _metrics(policy, hours, sched, cities, cost_ms, cpu_ms,
                    {"throttled_device_hours": None,  # no thermal model in the proxy fleet
                     "satellite_ticks_below_soc_0_5": soc_low})


def _metrics(policy: str, hours: float, sched: Scheduler, cities: Any, cost_ms: np.ndarray, cpu_ms: np.ndarray,
             extra: dict[str, Any]) -> dict[str, Any]:
    """The metrics of issue 16 from a scheduler's ledger and its timed ticks."""
    steps = cost_ms.size
    led = sched.jobs.ledger
    lat, src = led.latencies()
    # regions: the continent of each source city (Natural Earth, twin.core.compute.territory)
    city_region = np.array(continent_of(cities.lat_deg, cities.lon_deg), dtype=object)
    region = np.where(src >= 0, city_region[np.clip(src, 0, None)], "satellite") if src.size else np.zeros(0, dtype=object)
    by_region = {name: {"p50_ms": _ms(_percentile(lat[region == name], 50)),
                        "p99_ms": _ms(_percentile(lat[region == name], 99)),
                        "completed": int(np.count_nonzero(region == name))}
                 for name in sorted(set(city_region.tolist()))}
    active = sched.jobs.active_rows()
    c = sched.jobs.cols
    energy_j = sched.energy_j
    completed = led.ended[:, JobState.COMPLETED]
    return {
        "policy": policy,
        "sim_hours": hours,
        "jobs_submitted": int(sched.jobs.next_id),
        "jobs_completed": int(completed.sum()),
        "jobs_completed_per_hour": float(completed.sum() / hours),
        "completed_by_kind": {k.name.lower(): int(completed[k]) for k in JobKind},
        "failed": int(led.ended[:, JobState.FAILED].sum()),
        "rejected": int(led.ended[:, JobState.REJECTED].sum()),
        "still_active": int(active.size),
        "deadline_misses": int(led.deadline_misses),
        "interactive_latency_p50_ms": _ms(_percentile(lat, 50)),
        "interactive_latency_p99_ms": _ms(_percentile(lat, 99)),
        "interactive_latency_by_region": by_region,
        "compute_energy_wh": energy_j / 3600.0,
        "compute_energy_from_battery_wh": sched.battery_j / 3600.0,
        "compute_energy_from_arrays_wh": (energy_j - sched.battery_j) / 3600.0,
        "jobs_corrupted": int(led.corrupted + np.count_nonzero(c["corrupt"][active])),
        "upsets_on_jobs": int(led.upsets + c["upsets"][active].sum()),
        "migrations": int(led.migrations + c["migrations"][active].sum()),
        "bytes_moved": float(led.bytes_moved + c["bytes_moved"][active].sum()),
        "transfer_energy_wh": sched.transfer_j / 3600.0,
        "scheduler_ms_per_tick_p50": float(np.median(cost_ms)) if steps else None,
        "scheduler_ms_per_tick_p99": float(np.percentile(cost_ms, 99)) if steps else None,
        "scheduler_cpu_ms_per_tick_p50": float(np.median(cpu_ms)) if steps else None,
    } | extra


def run_policy_engine(policy: str, design: Design, hours: float, dt_s: float, count: int | None, seed: int,
                      demand_scale: float, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """One policy placed inside the engine (:class:`twin.core.engine.FleetTwin` with ``compute_policy``):
    the payload, power, thermal and radiation models decide speed, battery share and upsets. What is
    timed is the scheduler's part of each tick (``ComputeCoupling.view`` + ``plan`` + ``settle``).
    ``progress(done, total)``: after every tick, sim seconds placed of the run's."""
    from twin.core.engine import FleetTwin

    cat = load_catalogue()
    if count is not None:
        cat = cat.subset(np.arange(min(count, len(cat))))
    twin = FleetTwin(cat, design, dt_s=dt_s, seed=seed, network=False, compute_policy=policy,
                     compute_demand_scale=demand_scale)
    comp = twin.compute
    assert comp is not None
    timed = {"wall": 0.0, "cpu": 0.0}

    def timer(fn: Any) -> Any:
        def wrapped(*args: Any, **kw: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kw)
            finally:
                timed["wall"] += time.perf_counter() - t0
                timed["cpu"] += time.process_time() - c0
        return wrapped

    comp.view = timer(comp.view)  # type: ignore[method-assign]
    comp.plan = timer(comp.plan)  # type: ignore[method-assign]
    comp.settle = timer(comp.settle)  # type: ignore[method-assign]
    steps = int(round(hours * 3600.0 / dt_s))
    cost_ms, cpu_ms = np.zeros(steps), np.zeros(steps)
    throttled_dev_s = 0.0
    soc_low = 0
    try:
        for k in range(steps):
            timed["wall"] = timed["cpu"] = 0.0
            twin.step()
            cost_ms[k], cpu_ms[k] = timed["wall"] * 1e3, timed["cpu"] * 1e3
            last = comp.last
            if last is not None:
                busy = np.count_nonzero(last.device_load > 0, axis=1)
                throttled_dev_s += float(np.sum(busy * (twin.tm["payload_throttle"] < 0.999))) * dt_s
            soc_low += int(np.count_nonzero(twin.soc < 0.5))
            if progress is not None:
                progress((k + 1) * dt_s, steps * dt_s)
    finally:
        twin.close()
    return _metrics(policy, hours, comp.scheduler, twin.mesh.cities if twin.mesh else load_cities(), cost_ms, cpu_ms,
                    {"throttled_device_hours": throttled_dev_s / 3600.0, "satellite_ticks_below_soc_0_5": soc_low,
                     "fleet": "engine"})


def _ms(x: float | None) -> float | None:
    return None if x is None else x * 1e3


def bench_placement(hours: float = 24.0, dt_s: float = 1.0, count: int | None = None, seed: int = 1,
                    policies: tuple[str, ...] = POLICIES, demand_scale: float = 1.0,
                    engine: bool = False, progress: Callable[[float, float], None] | None = None) -> dict[str, Any]:
    """Every policy over the same seeded demand; the metrics side by side and against nearest.

    ``engine``: place inside the full engine (payload, power, thermal and radiation models; upsets
    from the engine's own generator) instead of the proxy fleet (same upsets for every policy).
    ``progress(done, total)``: sim seconds placed, over every policy's run.
    """
    design = load_design()
    t0 = time.perf_counter()
    run = run_policy_engine if engine else run_policy
    results = {}
    for i, p in enumerate(policies):
        def part(done: float, total: float, i: int = i) -> None:
            if progress is not None:
                progress(i * total + done, len(policies) * total)

        results[p] = run(p, design, hours, dt_s, count, seed, demand_scale, progress=part)
    out: dict[str, Any] = {
        "benchmark": "placement", "satellites": count or len(load_catalogue()), "sim_hours": hours, "dt_s": dt_s,
        "seed": seed, "demand_scale": demand_scale, "fleet": "engine" if engine else "proxy",
        "machine": platform.machine(),
        "wall_s": time.perf_counter() - t0, "policies": results,
    }
    if "nearest" in results and "aware" in results:
        a, b = results["aware"], results["nearest"]
        base = b["compute_energy_from_battery_wh"]
        out["aware_vs_nearest"] = {
            "battery_energy_reduction": (1.0 - a["compute_energy_from_battery_wh"] / base) if base > 0 else None,
            "deadline_misses": [a["deadline_misses"], b["deadline_misses"]],
            "jobs_corrupted": [a["jobs_corrupted"], b["jobs_corrupted"]],
            "target_battery_50pct_lower": bool(base > 0 and a["compute_energy_from_battery_wh"] <= 0.5 * base),
            "target_misses_not_higher": a["deadline_misses"] <= b["deadline_misses"],
            "target_corrupted_lower": a["jobs_corrupted"] < b["jobs_corrupted"],
            "target_scheduler_10ms_p50": a["scheduler_ms_per_tick_p50"] <= 10.0,
            "target_scheduler_10ms_p50_cpu": a["scheduler_cpu_ms_per_tick_p50"] <= 10.0,
        }
    return out
