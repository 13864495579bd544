"""The fleet engine: steps every satellite's models together on the sim clock.

Pure computation over numpy arrays: no wall clock, no network. Commands and faults are queued
with a sim time and applied at the start of the first tick at or after it; everything the
engine decides (limit crossings, FDIR actions, SEU/SEL, faults, commands) comes out as events.
Figures of the step itself: docs/physics.md#engine.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
import os
from typing import Any

import numpy as np

from twin.core import commanding
from twin.core import fdir as fdir_mod
from twin.core import deployment_steps, fdir_actions
from twin.core import hil_payload as hil
from twin.core import payload as pl
from twin.core import radiation
from twin.core import thermal
from twin.core import sat_random
from twin.core.catalogue import Catalogue
from twin.core.constants import R_EARTH_M, SECONDS_PER_DAY
from twin.core.deployment import Deployment
from twin.core.design import Design
from twin.core.environment import albedo_flux_w_m2, earth_ir_flux_w_m2, solar_flux_w_m2
from twin.core.ephemeris import SunEphemeris
from twin.core.eclipse import illumination_fraction
from twin.core.orbit import SGP4_ERROR_MESSAGES, FleetPropagator, OrbitState, beta_angle_rad, gmst82_rad
from twin.core.compute.coupling import ComputeCoupling
from twin.core.compute.demand import DemandGenerator, DemandParams
from twin.core.orbit_pipeline import PipelinedPropagator
from twin.core.power import HEATERS, ISL, LOAD_NAMES, PAYLOAD, RADIO, nominal_demand_w, power_step
from twin.core.events import Event, Request
from twin.core.faults import IMPULSE_FAULTS, NETWORK_FAULTS, FaultBook, FaultTarget
from twin.core.network import GroundSites, Mesh, MeshState, load_cities, load_gateways, terminals_from_count
from twin.core.network.latency import CityRtt, city_fibre_rtt_s, city_rtt
from twin.core.request_limits import RequestLimits
from twin.core.sat_random import SatRandom
from twin.core.shards import MeshExchange, ShardMap
from twin.core.solar_array import array_power_w
from twin.core.telemetry_assembly import build_telemetry
from twin.schema.commands import COMMANDS, FAULTS, CommandError, Reason, validate
from twin.schema.telemetry import (
    ATT_NADIR_FIXED, ATT_SUN_TRACK, ATT_TUMBLING, MODE_LOST, MODE_NOMINAL,
)

__all__ = ["Event", "FleetTwin", "Request", "julian_split"]

TUMBLE_PERIOD_S = 600.0


@functools.cache
def default_ground_sites() -> tuple[GroundSites, GroundSites]:
    """The shipped gateways and cities, read once per process (immutable; shared by every twin)."""
    return load_gateways(), load_cities()


def julian_split(jd: float) -> tuple[float, float]:
    """Split a Julian date into a whole-day part ending in .5 and a fraction (keeps precision)."""
    whole = np.floor(jd - 0.5) + 0.5
    return float(whole), float(jd - whole)


class FleetTwin:
    """Every satellite of a catalogue, stepped together with time step ``dt_s``."""

    def __init__(
        self,
        catalogue: Catalogue,
        design: Design,
        *,
        start_jd: float | None = None,
        dt_s: float = 1.0,
        seed: int = 0,
        orbit_worker: bool | None = None,
        limits: RequestLimits | None = None,
        network: bool | None = None,
        gateways: GroundSites | None = None,
        endpoints: GroundSites | None = None,
        compute_policy: str | None = None,
        compute_demand_scale: float = 0.0,
        pending: np.ndarray | None = None,
        start: bool = True,
    ) -> None:
        """``orbit_worker``: propagate the next tick in a child process (default: for >= 2,000
        satellites on a machine with two or more cores). ``limits``: bounds on queued requests and
        active faults (:class:`RequestLimits` defaults when None). ``network``: step the laser mesh
        over the catalogue's satellites and nearest-gateway routing every tick (``self.net``), the
        city-pair latency matrix every ``network.city_matrix_interval_s`` (``self.city_rtt``), and
        let the laser terminals' power follow their links (docs/network.md#engine-integration);
        None: the design's ``network.enabled``; False: the terminals draw their power as fitted.
        ``gateways``/``endpoints``: the ground sites (default: the shipped gateway list and the 100
        most populous cities). ``compute_policy``: place compute jobs across the fleet with this
        scheduler policy (``twin.core.compute.POLICIES``; ``self.compute``), which then owns the
        payloads' load set-point (docs/physics.md#compute-jobs); ``compute_demand_scale``: the seeded
        diurnal demand from the endpoints, times this (0: jobs only as submitted). ``pending``: bool per
        satellite, slots not in orbit yet (launched by the ``launch`` command; docs/physics.md#deployment).
        ``start``: evaluate the present now (False: the caller calls :meth:`start`, e.g. a shard once
        its mesh exchange is attached)."""
        if not dt_s > 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.catalogue = catalogue
        self.design = design
        self.names = catalogue.names
        self.index = {name: i for i, name in enumerate(self.names)}
        self.n = n = len(catalogue)
        self.dt_s = float(dt_s)
        self.seed = seed
        self.limits = limits or RequestLimits()
        self.shard: ShardMap | None = None  # set when this twin is one shard of a partitioned fleet (twin.core.shards)
        self.random = SatRandom.for_names(seed, self.names)  # per-satellite streams: a shard draws as the whole
        self.jd0, self.fr0 = julian_split(catalogue.median_epoch_jd() if start_jd is None else start_jd)
        self.t_s = 0.0
        self.tick = 0
        if orbit_worker is None:
            orbit_worker = n >= 2000 and (os.cpu_count() or 1) >= 2
        self.propagator: FleetPropagator | PipelinedPropagator = (
            PipelinedPropagator(catalogue, (design.radiation, design.solar_array.cover_glass_g_cm2))
            if orbit_worker else FleetPropagator(catalogue))
        self.sun = SunEphemeris()
        self.radiation_env = radiation.load_environment(design.radiation, design.solar_array.cover_glass_g_cm2)
        d = design.payload.n_devices

        th = design.thermal
        self.temp_k = np.tile(th.initial_temp_k, (n, 1))
        self.setpoint_k = np.tile(th.setpoint_k, (n, 1))
        self.soc = np.full(n, design.battery.soc_initial)
        self.v_rc_v = np.zeros(n)
        self.shed_state = np.zeros((n, len(LOAD_NAMES)), dtype=bool)
        self.dose_rad = np.zeros(n)
        self.cover_dose_rad = np.zeros(n)  # behind the solar cells' cover glass: drives array degradation
        self.seu_total = np.zeros(n, dtype=np.int64)
        self.mode = np.full(n, MODE_NOMINAL, dtype=np.int8)
        self.attitude = np.full(n, ATT_SUN_TRACK, dtype=np.int8)
        self.tumble_phase = 2 * np.pi * self.random.draws(sat_random.TUMBLE, 0).uniform()
        self.payload = pl.PayloadState.initial(n, design.payload)
        self.fdir = fdir_mod.FdirState.initial(n, d)
        # onboard FDIR responses decided at the end of a tick, applied in the next one
        self.charge_limit = np.ones(n)
        self.radio_fraction = np.ones(n)
        self.isl_on = np.ones(n, dtype=bool)
        self.heater_forced = np.zeros((n, thermal.N_NODES), dtype=bool)
        self.payload_off = np.zeros(n, dtype=bool)
        self.deployment = Deployment(catalogue.mean_altitude_m, catalogue.pending if pending is None else pending)
        self.faults = FaultBook(n, radiation.uncorrectable_fraction(design.radiation), self.limits.faults_per_sat)
        self.limit_state: dict[str, np.ndarray] | None = None
        self._queue: list[Request] = []  # waiting requests, their targets stored compactly (_stored_targets)
        self._queued_faults = np.zeros(n, dtype=np.int64)  # persistent faults waiting, per satellite
        self._all = np.arange(n)
        self._all.flags.writeable = False  # shared by every queued request that targets the whole fleet
        self._seq = itertools.count()
        self._events: list[Event] = []
        self.tm: dict[str, np.ndarray] = {}
        self._r_last = np.tile([R_EARTH_M + radiation.PLACEHOLDER_ALT_M, 0.0, 0.0], (n, 1))
        self.payload_source = np.zeros(n, dtype=np.int8)
        self.hil_divergence = np.zeros(n, dtype=bool)
        self.board_samples_rejected = 0  # hardware samples refused inside the step (not finite, out of range)
        self.mesh: Mesh | None = None
        if design.network.enabled if network is None else network:
            default_gateways, default_cities = default_ground_sites()
            self.mesh = Mesh.from_catalogue(catalogue, design.network, design.power.isl_terminal_count,
                                            self.jd0 + self.fr0, default_gateways if gateways is None else gateways,
                                            default_cities if endpoints is None else endpoints)
        self.net: MeshState | None = None
        # a shard whose mesh is the whole fleet's (self.mesh): the exchange gives every satellite's mesh inputs
        self.mesh_exchange: MeshExchange | None = None
        self.compute: ComputeCoupling | None = None
        if compute_policy is not None:
            cities = self.mesh.cities if self.mesh is not None else None
            if cities is None:
                cities = endpoints if endpoints is not None else default_ground_sites()[1]
            demand = None
            if compute_demand_scale > 0:
                demand = DemandGenerator(cities, DemandParams().scaled(compute_demand_scale), seed=seed,
                                         utc_hour_at_zero=(self.fr0 * 24.0 + 12.0) % 24.0)
            gws = self.mesh.gateways if self.mesh is not None else (
                gateways if gateways is not None else default_ground_sites()[0])
            self.compute = ComputeCoupling(n, design, compute_policy, seed=seed, cities=cities, demand=demand,
                                           gateways=gws)
        self.city_rtt: CityRtt | None = None  # the last city-pair latency matrix, with its sim time
        self._outage_version = -1  # the fault book's network version the outage arrays below reflect
        self._link_outages = np.zeros((0, 2), dtype=np.int64)
        self._gateway_ok: np.ndarray | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Evaluate the present (tick 0) without advancing: the first telemetry and the mesh's first tick."""
        self.step(advance=False)

    def close(self) -> None:
        """Release the orbit worker process, if any."""
        if isinstance(self.propagator, PipelinedPropagator):
            self.propagator.close()

    def __enter__(self) -> FleetTwin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- time -----------------------------------------------------------------
    def jd_fr(self, t_s: float | None = None) -> tuple[float, float]:
        """UTC Julian date (whole, fraction) at sim time ``t_s`` (default: now)."""
        t = self.t_s if t_s is None else t_s
        return self.jd0, self.fr0 + t / SECONDS_PER_DAY

    @property
    def now_jd(self) -> float:
        jd, fr = self.jd_fr()
        return jd + fr

    # --- requests -------------------------------------------------------------
    def resolve(self, target: Any) -> np.ndarray:
        """Satellite indices for a name, a list of names, an index array or ``"*"`` (all)."""
        if isinstance(target, str):
            if target == "*":
                return np.arange(self.n)
            if target in self.index:
                return np.array([self.index[target]])
            raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {target!r}", "sat")
        if isinstance(target, np.ndarray) and target.dtype.kind in "iu":
            if target.size and (target.min() < 0 or target.max() >= self.n):
                raise CommandError(Reason.UNKNOWN_SATELLITE, "satellite index out of range", "sat")
            return target
        out = []
        for t in target:
            if not isinstance(t, str) or t not in self.index:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {t!r}", "sat")
            out.append(self.index[t])
        if not out:
            raise CommandError(Reason.UNKNOWN_SATELLITE, "no satellite selected", "sat")
        return np.array(out)

    def submit(
        self,
        kind: str,
        name: Any,
        args: Any,
        target: Any,
        *,
        at_s: float | None = None,
        duration_s: float | None = None,
        request_id: str | None = None,
    ) -> Request:
        """Validate and queue a command or fault; raise :class:`CommandError` if it cannot be accepted."""
        table = COMMANDS if kind == "command" else FAULTS
        _, clean = validate(table, name, args)
        sats = self.resolve(target)
        if at_s is not None and not np.isfinite(at_s):
            raise CommandError(Reason.BAD_ARGUMENT, "time must be finite", "at")
        if duration_s is not None and (not np.isfinite(duration_s) or duration_s <= 0):
            raise CommandError(Reason.OUT_OF_RANGE, "duration must be > 0 s", "duration_s")
        if "device" in clean and clean["device"] is not None and clean["device"] >= self.design.payload.n_devices:
            raise CommandError(Reason.OUT_OF_RANGE, f"device must be < {self.design.payload.n_devices}", "device")
        if kind == "fault" and name in NETWORK_FAULTS:
            self._check_network_fault(name, clean, sats)
        if len(self._queue) >= self.limits.queued_total:
            raise CommandError(Reason.QUEUE_FULL, f"{len(self._queue)} requests already wait (the most allowed); "
                               "try again after some have run", None)
        persistent = kind == "fault" and name not in IMPULSE_FAULTS
        if persistent and not self.faults.room(sats, self._queued_faults):
            raise CommandError(Reason.TOO_MANY_FAULTS, f"a satellite already has {self.limits.faults_per_sat} "
                               "persistent faults active or waiting (the most allowed); clear one first", "sat")
        req = Request(self.t_s if at_s is None else max(float(at_s), self.t_s), next(self._seq), kind, name,
                      clean, sats, duration_s, request_id)
        if persistent:
            self._queued_faults[np.unique(sats)] += 1
        heapq.heappush(self._queue, dataclasses.replace(req, sats=self._stored_targets(sats)))
        return req

    def _check_network_fault(self, name: str, args: dict[str, Any], sats: np.ndarray) -> None:
        """A link or gateway outage names a satellite or gateway of this twin's network."""
        commanding.check_network_fault(self, name, args, sats)

    @functools.cached_property
    def _city_fibre_rtt_s(self) -> np.ndarray | None:
        cities = None if self.mesh is None else self.mesh.cities
        return None if cities is None else city_fibre_rtt_s(cities)

    @functools.cached_property
    def _gateway_number(self) -> dict[str, int]:
        return {} if self.mesh is None else {g: i for i, g in enumerate(self.mesh.gateways.names)}

    def _network_outages(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(link outages (k, 2) satellite pairs, gateways in service) from the active faults; None: none.
        A shard numbers the pairs over the whole fleet (its mesh's satellites)."""
        if self._outage_version != self.faults.network_version:
            self._outage_version = self.faults.network_version
            rows, index = (np.arange(self.n), self.index) if self.shard is None else (self.shard.rows, self.shard.index)
            pairs = [(int(rows[s]), index[f.args["peer"]]) for f in self.faults.network_faults("link_outage")
                     for s in f.sats]
            self._link_outages = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            down = [self._gateway_number[f.args["gateway"]] for f in self.faults.network_faults("gateway_outage")]
            self._gateway_ok = None
            if down and self.mesh is not None:
                self._gateway_ok = np.ones(len(self.mesh.gateways), dtype=bool)
                self._gateway_ok[down] = False
        return (self._link_outages if self._link_outages.size else None), self._gateway_ok

    @property
    def queued(self) -> int:
        """Requests waiting for their execution time."""
        return len(self._queue)

    def _stored_targets(self, sats: np.ndarray) -> np.ndarray:
        """A waiting request's targets in little memory: the whole fleet is one shared array, a
        large sorted selection a bit mask (n/8 bytes), anything else int32 indices."""
        if sats.size == self.n and np.array_equal(sats, self._all):
            return self._all
        if sats.size * 4 > self.n // 8 and sats.size > 1 and bool(np.all(np.diff(sats) > 0)):
            mask = np.zeros(self.n, dtype=bool)
            mask[sats] = True
            return np.packbits(mask)  # uint8: told apart from indices by its dtype
        return sats.astype(np.int32)

    def _targets(self, stored: np.ndarray) -> np.ndarray:
        """Fleet indices of a waiting request (inverse of :meth:`_stored_targets`)."""
        if stored.dtype == np.uint8:
            return np.flatnonzero(np.unpackbits(stored, count=self.n))
        return stored.astype(np.int64)

    def drain_events(self) -> list[Event]:
        """The events since the last call; a satellite not in orbit (pending, re-entered) has none but
        its deployment events."""
        ev, self._events = self._events, []
        if not self.deployment.all_on_station or self.deployment.version:
            gone = ~self.deployment.in_orbit
            ev = [e for e in ev if e.sat < 0 or not gone[e.sat] or e.kind == "deployment"]
        return ev

    def _emit(self, sat: int, kind: str, name: str, severity: str, **detail: Any) -> None:
        self._events.append(Event(self.t_s, sat, kind, name, severity, detail))

    def _fault_target(self) -> FaultTarget:
        return FaultTarget(self.t_s, self.mode, self.attitude, self.seu_total, self.payload, self.random,
                           self.tick)

    def _run_due_requests(self) -> None:
        while self._queue and self._queue[0].at_s <= self.t_s + 1e-9:
            req = heapq.heappop(self._queue)
            req.sats = self._targets(req.sats)
            if req.kind == "fault" and req.name not in IMPULSE_FAULTS:
                self._queued_faults[np.unique(req.sats)] -= 1
            try:
                if req.kind == "command":
                    result = self._execute_command(req)
                    name = "command_completed"
                else:
                    result, caused = self.faults.start(req, self._fault_target())
                    self._events += caused
                    name = "fault_applied"
                sev = "info"
            except CommandError as exc:
                result, name, sev = exc.as_dict(), "command_failed" if req.kind == "command" else "fault_failed", "warning"
            sat = int(req.sats[0]) if req.sats.size == 1 else -1
            self._emit(sat, req.kind, name, sev, request_id=req.request_id, request=req.name,
                       args=req.args, sats=int(req.sats.size), result=result)

    def _execute_command(self, req: Request) -> dict[str, Any]:
        """Carry out a due command (:func:`twin.core.commanding.execute_command`)."""
        return commanding.execute_command(self, req)

    def _enter_safe(self, sats: np.ndarray, why: str) -> None:
        """Put the nominal ones of ``sats`` in safe mode (:func:`twin.core.commanding.enter_safe`)."""
        commanding.enter_safe(self, sats, why)

    # --- the step ---------------------------------------------------------------
    def step(self, advance: bool = True) -> None:
        """Advance the whole fleet by one tick of ``dt_s`` (``advance=False`` evaluates the present)."""
        dt = self.dt_s
        if advance:
            self.t_s = (self.tick + 1) * dt
            self.tick += 1
        self._run_due_requests()
        if advance and not self.deployment.all_on_station:
            deployment_steps.advance_deployment(self, dt)
        if self.faults.active:
            self._events += self.faults.expire(self._fault_target())
        des = self.design
        jd, fr = self.jd_fr()
        sun_teme_m, dut1_s = self.sun.at(jd, fr)
        gmst = gmst82_rad(jd, fr + dut1_s / SECONDS_PER_DAY)
        orb = self.propagator.propagate(jd, fr, gmst)
        if isinstance(self.propagator, PipelinedPropagator):
            jd_n, fr_n = self.jd_fr(self.t_s + dt)
            self.propagator.prefetch(jd_n, fr_n, gmst82_rad(jd_n, fr_n + self.sun.at(jd_n, fr_n)[1] / SECONDS_PER_DAY))
        bad = orb.error_code != 0
        newly_lost = np.flatnonzero(bad & (self.mode != MODE_LOST))
        for i in newly_lost:
            code = int(orb.error_code[i])
            self._emit(int(i), "fdir", "satellite_lost", "critical", sgp4_error=code,
                       message=SGP4_ERROR_MESSAGES.get(code, "unknown"))
        self.mode[newly_lost] = MODE_LOST
        r = np.where(bad[:, None], self._r_last, orb.r_teme_m)
        self._r_last = r
        sun_dist_m = float(np.sqrt(sun_teme_m @ sun_teme_m))
        sun_unit = sun_teme_m / sun_dist_m
        r_norm = np.sqrt(np.einsum("ij,ij->i", r, r))
        cos_zenith = (r @ sun_unit) / np.where(r_norm > 0, r_norm, 1.0)
        illum = illumination_fraction(r, sun_teme_m)
        beta = beta_angle_rad(orb.r_teme_m, orb.v_teme_m_s, sun_unit)

        att = self.attitude
        cos_array = np.ones(self.n)
        if np.any(att == ATT_NADIR_FIXED):
            cos_array = np.where(att == ATT_NADIR_FIXED, np.maximum(cos_zenith, 0.0), cos_array)
        if np.any(att == ATT_TUMBLING):
            tumble = np.maximum(np.cos(2 * np.pi * self.t_s / TUMBLE_PERIOD_S + self.tumble_phase), 0.0)
            cos_array = np.where(att == ATT_TUMBLING, tumble, cos_array)

        flux_w_m2 = solar_flux_w_m2(sun_dist_m)
        alt_m = np.where(bad, np.nan, orb.alt_m)
        alt_env_m = r_norm - R_EARTH_M
        albedo = albedo_flux_w_m2(flux_w_m2, cos_zenith, alt_env_m)
        earth_ir = earth_ir_flux_w_m2(alt_env_m)

        # radiation environment first: SEL onsets this tick affect the payload's draw
        # (sampled along the orbit by the orbit worker when there is one: the same code, bit for bit)
        local = self.propagator.radiation_at(orb) if isinstance(self.propagator, PipelinedPropagator) else None
        if local is None:
            local = radiation.sample_along_orbit(self.radiation_env, orb)
        p_flux, e_flux, dose_rate = local.proton_flux_cm2_s, local.electron_flux_cm2_s, local.dose_rate_rad_s
        if advance:
            self.dose_rad += dose_rate * dt
            self.cover_dose_rad += local.cover_dose_rate_rad_s * dt
            self._radiation_effects(p_flux, local.seu_scale, dt)

        # payload, heaters and power
        safe = self.mode != MODE_NOMINAL
        if self.compute is not None and advance:
            self._plan_compute(orb, bad, sun_unit, gmst, illum, safe)
        plan = pl.plan(self.payload, des.payload, self.temp_k[:, thermal.PAYLOAD], safe)
        plan = self._apply_backends(plan)
        heater_w = thermal.heater_power_w(self.temp_k, self.setpoint_k, np.ones(self.n, bool), des.thermal,
                                          self.heater_forced if self.heater_forced.any() else None)
        demand = nominal_demand_w(self.n, des.power)
        demand[:, PAYLOAD] = np.where(self.fdir.shed_payload | self.payload_off | safe, 0.0, plan.power_w)
        demand[:, HEATERS] = heater_w.sum(axis=1)
        on_station = None if self.deployment.all_on_station else self.deployment.on_station
        if self.mesh is not None:
            # links need working terminals, powered (nominal mode, FDIR and the PCDU's SoC latch of the
            # previous tick) on a satellite with an orbit; their power follows the links in use
            count = des.power.isl_terminal_count
            powered = ~safe & self.isl_on & ~self.shed_state[:, ISL]
            terminals_ok = terminals_from_count(count - self.faults.isl_failed, count) & powered[:, None]
            mesh_bad = bad if on_station is None else bad | ~on_station  # only satellites on station link up
            if on_station is not None:
                terminals_ok &= on_station[:, None]
            link_outages, gateway_ok = self._network_outages()
            jobs_gbps = None if self.compute is None else self.compute.transfer_gbps(self.t_s - dt, dt)
            pos = np.where(mesh_bad[:, None], np.nan, orb.r_itrs_m)
            if self.shard is not None:  # every shard steps the whole fleet's mesh from every satellite's inputs
                if self.mesh_exchange is None:
                    raise RuntimeError("a shard with the network model steps only with its mesh exchange attached")
                pos, terminals_ok, link_outages, gateway_ok = self.mesh_exchange(
                    self.tick, pos, terminals_ok, link_outages, gateway_ok)
            self.net = self.mesh.step(self.t_s, pos, terminals_ok,
                                      gateway_ok=gateway_ok, link_outages=link_outages, gmst_rad=gmst,
                                      sat_demand_gbps=jobs_gbps,
                                      flows=None if self.compute is None else self.compute.migration_flows(self.t_s - dt,
                                                                                                            dt))
            if self.shard is not None:
                self.net = self.net.rows(self.shard.rows)
            demand[:, ISL] = des.power.isl_terminal_w * self.net.terminals_in_use
            interval = des.network.city_matrix_interval_s
            latency_here = self.shard is None or self.shard.spec.index == 1  # one shard publishes the matrix
            if advance and latency_here and interval > 0 and (self.city_rtt is None or np.floor(self.t_s / interval + 1e-9)
                                             > np.floor(self.city_rtt.t_s / interval + 1e-9)):
                self.city_rtt = city_rtt(self.mesh, self.t_s, self._city_fibre_rtt_s)
        else:
            demand[:, ISL] *= np.where(safe | ~self.isl_on, 0.0, self.faults.isl_fraction(des.power))
        demand[:, RADIO] *= np.minimum(np.where(safe, 0.25, 1.0), self.radio_fraction)
        gen_w = array_power_w(flux_w_m2, illum, cos_array, self.temp_k[:, thermal.ARRAY], self.cover_dose_rad,
                              self.faults.array_strings_failed, des.solar_array)
        ps = power_step(gen_w, demand, self.soc, self.v_rc_v, self.shed_state, dt,
                        des.battery, des.power, self.faults.battery_strings_failed, self.charge_limit)
        powered = ps.load_on[:, PAYLOAD] & (demand[:, PAYLOAD] > 0)
        out = pl.commit(self.payload, plan, powered, dt if advance else 0.0)
        if self.compute is not None and advance:
            delivered = out.util * des.payload.n_devices / np.maximum(out.devices_working, 1)
            loads_w = ps.load_w.sum(axis=1)
            batt = np.clip(ps.battery.power_w / np.where(loads_w > 0, loads_w, 1.0), 0.0, 1.0)
            self.compute.settle(self.t_s - dt, dt, delivered, batt)
        heater_on = ps.load_on[:, HEATERS]
        heater_w = np.where(heater_on[:, None], heater_w, 0.0)
        self.last_heater_w = heater_w.copy()

        internal = heater_w
        internal[:, thermal.PAYLOAD] += out.power_w
        internal[:, thermal.AVIONICS] += ps.load_w[:, [0, ISL, RADIO]].sum(axis=1)
        internal[:, thermal.BATTERY] += ps.battery.heat_w
        internal[:, thermal.ARRAY] -= gen_w - ps.shunt_w
        absorbed = thermal.absorbed_environment_w(des.thermal, flux_w_m2, illum, cos_array, albedo, earth_ir)
        self.last_battery_heat_w = ps.battery.heat_w
        if advance:
            self.soc, self.v_rc_v, self.shed_state = ps.battery.soc, ps.battery.v_rc_v, ps.shed_state
            self.temp_k = thermal.thermal_step(self.temp_k, internal, absorbed, dt, des.thermal,
                                               self.faults.radiator_eff, self.faults.heatpipe_eff)

        self.tm = build_telemetry(
            orb=orb, alt_m=alt_m, beta_rad=beta, illum=illum, ps=ps, out=out, gen_w=gen_w, p_flux=p_flux,
            e_flux=e_flux, dose_rate=dose_rate, temp_k=self.temp_k, soc=self.soc, dose_rad=self.dose_rad,
            seu_total=self.seu_total, mode=self.mode, attitude=self.attitude, payload=self.payload,
            payload_source=self.payload_source, hil_divergence=self.hil_divergence, faults=self.faults,
            saa_proton_flux_cm2_s=des.radiation.saa_proton_flux_cm2_s, sensor_noise=self.random.draws(sat_random.SENSOR_NOISE, self.tick), net=self.net,
            compute=self.compute)
        fdir_actions.run_fdir(self, dt if advance else 0.0)

    def _plan_compute(self, orb: OrbitState, bad: np.ndarray, sun_unit: np.ndarray, gmst: float,
                      illum: np.ndarray, safe: np.ndarray) -> None:
        """The scheduler's plan for the tick now starting (sim time ``t_s - dt``): its loads become the
        payloads' set-point (the jobs own the accelerators while compute placement is on)."""
        assert self.compute is not None
        p = self.payload
        device_ok = (p.off_remaining_s <= 0.0) & ~p.latched & ~p.hung[:, None]
        available = (~safe & ~bad & ~self.fdir.shed_payload & ~self.payload_off & ~self.shed_state[:, PAYLOAD])
        if not self.deployment.all_on_station:
            available &= self.deployment.on_station
        pos = np.where(bad[:, None], np.nan, orb.r_itrs_m)
        t0 = self.t_s - self.dt_s
        hil.collect_board_jobs(self, t0)  # boards' results first (hardware in the loop)
        view = self.compute.view(t0, orb.r_teme_m, orb.v_teme_m_s, sun_unit, gmst, pos, illum, self.soc,
                                 self.temp_k[:, thermal.PAYLOAD], device_ok, available, dt_s=self.dt_s,
                                 link_util=None if self.net is None else self.net.sat_max_util)
        p.load_setpoint[:] = self.compute.plan(t0, self.dt_s, view)
        p.backlog_top[:] = 0.0
        hil.send_board_jobs(self, t0)  # cancellations and new jobs to the boards

    def _apply_backends(self, plan: pl.PayloadOutput) -> pl.PayloadOutput:
        """Rows of satellites whose payload is a board: the board's measurement replaces the model."""
        return hil.apply_backends(self, plan)

    def attach_backend(self, sat: int, backend: pl.PayloadBackend) -> None:
        """Bind a hardware backend to satellite ``sat``'s payload."""
        hil.attach_backend(self, sat, backend)

    def detach_backend(self, sat: int) -> None:
        """Give satellite ``sat`` its simulated payload back."""
        hil.detach_backend(self, sat)

    def _radiation_effects(self, p_flux: np.ndarray, seu_scale: np.ndarray, dt: float) -> None:
        des, p = self.design, self.payload
        nd = des.payload.n_devices
        hit, corr, unc = radiation.seu_hits(self.random.draws(sat_random.SEU, self.tick), seu_scale, dt, des.radiation, nd)
        if hit.size:
            p.ecc_corrected[hit] += corr
            p.ecc_uncorrectable[hit] += unc
            self.seu_total[hit] += corr.sum(axis=1) + unc.sum(axis=1)
            for k, d in zip(*np.nonzero(unc)):
                s = int(hit[k])
                self._emit(s, "seu", "uncorrectable_upset", "warning", device=int(d), count=int(unc[k, d]))
                backend = p.backends.get(s)
                if backend is not None:
                    backend.radiation_effect("seu_uncorrectable", int(d), int(unc[k, d]))
                if self.compute is not None:
                    self.compute.upset(s, int(d))
        # all devices of a satellite share the payload node's temperature
        temp = self.temp_k[:, thermal.PAYLOAD:thermal.PAYLOAD + 1]
        rows, devs = radiation.sel_hits(self.random.draws(sat_random.SEL, self.tick), p_flux, temp, dt, des.radiation, nd)
        for s, d in zip(rows, devs):
            if self.mode[s] == MODE_LOST or p.latched[s, d] or p.off_remaining_s[s, d] > 0:
                continue
            p.latched[s, d] = True
            p.sel_total[s] += 1
            self._emit(int(s), "sel", "latchup", "critical", device=int(d), cause="radiation")
            backend = p.backends.get(int(s))
            if backend is not None:
                backend.radiation_effect("sel", int(d), 1)
