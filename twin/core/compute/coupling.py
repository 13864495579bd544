"""The scheduler inside the engine: the fleet's state as the scheduler sees it, and its plan back.

:class:`ComputeCoupling` builds a :class:`~twin.core.compute.placement.FleetView` from the engine's
arrays each tick (sunlight and the eclipse ahead, the SAA ahead from the radiation grid, state of
charge, junction headroom, device health), turns the scheduler's planned device loads into the
payload's load set-point, and after the power step tells the scheduler the speed the devices
actually ran at and the battery's share of the payload's power, so each job's energy is the
energy the payload drew. Pure numpy: no clock, no I/O. Model: docs/physics.md#compute-jobs.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import numpy as np
from numpy.typing import NDArray

from twin.core import radiation
from twin.core.compute.demand import DemandGenerator
from twin.core.compute.outlook import OutlookCache, eclipse_outlook, region_outlook
from twin.core.compute.jobs import GROUND, SATELLITE, JobBatch, JobKind, JobState
from twin.core.site_names import SiteNames
from twin.schema.commands import CommandError, Reason
from twin.core.compute.placement import FleetView, PlacementParams, Scheduler, StepResult
from twin.core.compute.sovereignty import TrackTerritory
from twin.core.compute.territory import Jurisdiction, continent_of
from twin.schema.compute_summary import CONTINENTS, LATENCY_REGIONS
from twin.core.constants import OMEGA_EARTH_RAD_S
from twin.core.design import Design
from twin.core.network.ground import GroundSites

F64 = NDArray[np.float64]
B = NDArray[np.bool_]

# Both outlooks are refreshed for every satellite this often (sim s), a slice of the fleet per tick, and
# counted down between refreshes (OutlookCache)
ECLIPSE_OUTLOOK_INTERVAL_S = 20.0  # setting: closed form; a refresh corrects the circular-orbit drift
SAA_OUTLOOK_INTERVAL_S = 120.0  # setting: a pass lasts 5-15 min; the outlook looks one orbit ahead
SAA_HORIZON_S = 5400.0  # setting: how far ahead the SAA outlook looks (about one orbit)
SAA_STEP_S = 60.0  # setting: ground-track sampling of the SAA outlook (a pass lasts 5-15 min at 550 km)
LATENCY_WINDOW_S = 3600.0  # setting: the fleet summary's interactive latency percentiles cover this much sim time


def saa_mask(design: Design, alt_m: float = 550e3, step_deg: float = 1.0) -> B:
    """Latitude/longitude cells (180/step x 360/step) where the proton flux at ``alt_m`` is above the
    design's SAA threshold (``radiation.saa_proton_flux_cm2_s``)."""
    env = radiation.load_environment(design.radiation, design.solar_array.cover_glass_g_cm2)
    lat = np.radians(-90.0 + step_deg * (np.arange(int(180 / step_deg)) + 0.5))
    lon = np.radians(-180.0 + step_deg * (np.arange(int(360 / step_deg)) + 0.5))
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    local = env.sample(la.ravel(), lo.ravel(), np.full(la.size, alt_m))
    out: B = (local.proton_flux_cm2_s > design.radiation.saa_proton_flux_cm2_s).reshape(la.shape)
    return out


class ComputeCoupling:
    """A :class:`Scheduler` for ``n`` satellites of ``design``, fed by the engine every tick."""

    def __init__(self, n: int, design: Design, policy: str = "aware", *, seed: int = 0,
                 cities: GroundSites | None = None, demand: DemandGenerator | None = None,
                 gateways: GroundSites | None = None) -> None:
        """``cities``: the ground endpoints jobs come from and go to; ``gateways``: where results may be
        downlinked (a job's jurisdiction allows only its own)."""
        self.design = design
        self.params = PlacementParams.from_design(design)
        self.scheduler = Scheduler(n, self.params, policy, seed=seed, ground=cities)
        self.demand = demand
        self.mask = saa_mask(design)
        self._eclipse = OutlookCache(n, ECLIPSE_OUTLOOK_INTERVAL_S)
        self._saa = OutlookCache(n, SAA_OUTLOOK_INTERVAL_S)
        self.speed = np.ones(n)  # the devices' clock factor last tick
        self.battery_fraction = np.zeros(n)  # the battery's share of the loads last tick
        self.last: StepResult | None = None
        self._view: FleetView | None = None
        self._requested = np.zeros(n)
        self.throttled_dev_s = 0.0  # device-seconds that ran a job slower than planned (throttle, cap, power)
        # (end of tick s, interactive latencies s, their source endpoints) in the window
        self._latency: deque[tuple[float, F64, NDArray[np.int64]]] = deque()
        self._city_region = np.zeros(0, np.int64) if cities is None else np.array(
            [CONTINENTS.index(c) if c in CONTINENTS else -1 for c in continent_of(cities.lat_deg, cities.lon_deg)],
            dtype=np.int64)
        self._ledger_seen = 0
        self._city_names: SiteNames | None = None
        self.gateways = gateways
        self._territories: dict[str, TrackTerritory] = {}
        self.named_jurisdictions: dict[str, Jurisdiction] = {}  # configured polygons jobs may name

    def view(self, t_s: float, r_teme_m: F64, v_teme_m_s: F64, sun_unit: F64, gmst_rad: float, pos_itrs_m: F64,
             illum: F64, soc: F64, payload_temp_k: F64, device_ok: B, available: B, dt_s: float = 0.0,
             link_util: F64 | None = None) -> FleetView:
        """The scheduler's view of the tick starting at ``t_s`` (arrays over satellites; non-finite rows: lost).

        The engine's state (positions, sunlight) is the one at the tick's end; ``track_from_m`` is where
        each satellite was ``dt_s`` earlier, at its start (the inertial velocity turned into the rotating
        frame by ``gmst_rad``, polar motion neglected), so a jurisdiction is checked over the whole tick."""
        # the state is the tick's end: outlooks computed from it are referred to that time
        t_end = t_s + dt_s
        due = self._eclipse.due(t_end, dt_s)
        if due.size:
            self._eclipse.refresh(due, eclipse_outlook(r_teme_m[due], v_teme_m_s[due], sun_unit), t_end)
        due = self._saa.due(t_end, dt_s)
        if due.size:
            self._saa.refresh(due, region_outlook(r_teme_m[due], v_teme_m_s[due], gmst_rad, self.mask, SAA_HORIZON_S,
                                                  SAA_STEP_S), t_end)
        ecl, saa = self._eclipse.at(t_s), self._saa.at(t_s)
        tts, left = saa.time_to_eclipse_s, saa.eclipse_left_s
        p = self.design.payload
        junction_full_k = payload_temp_k + p.junction_rise_k_per_w * p.device_peak_w
        track_from = None
        if dt_s > 0:
            c, s = np.cos(gmst_rad), np.sin(gmst_rad)
            v = v_teme_m_s
            v_fixed = np.stack([c * v[:, 0] + s * v[:, 1] + OMEGA_EARTH_RAD_S * pos_itrs_m[:, 1],
                                -s * v[:, 0] + c * v[:, 1] - OMEGA_EARTH_RAD_S * pos_itrs_m[:, 0], v[:, 2]], axis=1)
            track_from = pos_itrs_m - v_fixed * dt_s
        return FleetView(pos_itrs_m, illum, soc, ecl.time_to_eclipse_s, ecl.eclipse_left_s, tts, left,
                         p.throttle_start_k - junction_full_k, self.speed, device_ok, available,
                         self.battery_fraction, track_from, link_util)

    def plan(self, t_s: float, dt_s: float, view: FleetView) -> F64:
        """New demand, then the scheduler's plan; returns the load set-point per working device (n,) 0..1."""
        if self.demand is not None:
            self.scheduler.submit(self.demand.between(t_s, t_s + dt_s))
        device_load = self.scheduler.plan(t_s, dt_s, view)
        working = np.maximum(np.count_nonzero(view.device_ok, axis=1), 1)
        self._requested = np.clip(device_load.sum(axis=1) / working, 0.0, 1.0)
        self._view = view
        return self._requested

    def settle(self, t_s: float, dt_s: float, delivered_load: F64, battery_fraction: F64) -> StepResult:
        """Advance the jobs with what the payload delivered: ``delivered_load`` (n,) the load per working
        device after throttling, the power cap and the power system; ``battery_fraction`` (n,) the
        battery's share of the satellite's loads this tick."""
        assert self._view is not None, "settle() without plan()"
        req = self._requested
        speed = np.where(req > 0, np.clip(delivered_load / np.where(req > 0, req, 1.0), 0.0, 1.0), self.speed)
        view = dataclasses.replace(self._view, speed=speed, battery_fraction=battery_fraction)
        self.last = self.scheduler.advance(t_s, dt_s, view)
        busy = np.count_nonzero(self.last.device_load > 0, axis=1)
        self.throttled_dev_s += float(np.sum(busy * (speed < 0.999))) * dt_s
        led = self.scheduler.jobs.ledger
        if len(led.latency_s) > self._ledger_seen:
            self._latency.append((t_s + dt_s, np.concatenate(led.latency_s[self._ledger_seen:]),
                                  np.concatenate(led.latency_src[self._ledger_seen:])))
            self._ledger_seen = len(led.latency_s)
        while self._latency and self._latency[0][0] < t_s + dt_s - LATENCY_WINDOW_S:
            self._latency.popleft()
        self.speed, self.battery_fraction = speed, battery_fraction
        self._view = None
        return self.last

    def submit_job(self, args: dict[str, Any], sats: np.ndarray, t_s: float, sat_index: dict[str, int]) -> dict[str, Any]:
        """Queue one client job (the checked arguments of the ``run_job`` command) at sim time ``t_s``, to
        run only on satellites ``sats`` (indices; the request's selection); its life is watched
        (:meth:`Scheduler.drain_events`). Raises CommandError for an endpoint it cannot resolve."""
        src_kind, src = self._endpoint(args["source"], "source", sat_index)
        dst_kind, dst = (src_kind, src) if args.get("destination") is None else \
            self._endpoint(args["destination"], "destination", sat_index)
        kind = JobKind[args["kind"].upper()]
        deadline = args.get("deadline_s")
        bound = args.get("latency_bound_ms")
        batch = JobBatch.of(submit_s=t_s, kind=kind, work_dev_s=args["work_dev_s"], input_bytes=args["input_bytes"],
                            output_bytes=args["output_bytes"], state_bytes=args["state_bytes"],
                            checkpoint_every_dev_s=args["checkpoint_every_dev_s"],
                            deadline_s=np.inf if deadline is None else t_s + deadline,
                            latency_bound_s=np.inf if bound is None else bound / 1e3,
                            src_kind=src_kind, src=src, dst_kind=dst_kind, dst=dst)
        allowed = None
        if sats.size < self.scheduler.n:
            allowed = np.zeros(self.scheduler.n, dtype=bool)
            allowed[sats] = True
        territory, key = None, None
        if args.get("jurisdiction") is not None:
            territory, key = self.territory(args["jurisdiction"])
        (job_id,) = self.scheduler.submit(batch, watch=True, allowed=allowed, territory=territory, territory_key=key)
        out = {"job_id": int(job_id), "kind": args["kind"], "policy": self.scheduler.policy,
               "satellites_allowed": int(sats.size)}
        if territory is not None:
            out["jurisdiction"] = territory.jurisdiction.describe() | {"gateways": len(territory.gateway_index)}
        return out

    def territory(self, spec: str) -> tuple[TrackTerritory, str]:
        """The jurisdiction of a ``run_job`` argument (comma-separated ISO-3 codes or region names), built once
        per distinct territory; CommandError when it names nothing known or has no gateway to downlink through."""
        entries = [e.strip() for e in spec.split(",") if e.strip()]
        named = self.named_jurisdictions.get(spec.strip())
        if named is not None:
            jur, key = named, f"polygon:{spec.strip()}"
        else:
            try:
                jur = Jurisdiction.parse(entries)
            except ValueError as exc:
                names = f" or one of the configured {', '.join(sorted(self.named_jurisdictions))}" \
                    if self.named_jurisdictions else ""
                raise CommandError(Reason.BAD_ARGUMENT, f"{exc}{names}", "jurisdiction") from None
            key = ",".join(jur.codes)
        t = self._territories.get(key)
        if t is None:
            t = TrackTerritory(jur, self.gateways)
            self._territories[key] = t
        if t.gateway_index.size == 0:
            raise CommandError(Reason.BAD_ARGUMENT, f"no gateway of this twin is in the jurisdiction {spec!r}: "
                               "its results could not be downlinked", "jurisdiction")
        return t, key

    def _endpoint(self, text: str, field: str, sat_index: dict[str, int]) -> tuple[int, int]:
        """(kind, index) of ``'city:NAME'``, ``'sat:NAME'`` or a bare satellite or city name."""
        kind, sep, name = text.partition(":")
        if not sep:
            kind, name = ("sat" if text in sat_index else "city"), text
        if kind == "sat":
            if name not in sat_index:
                raise CommandError(Reason.UNKNOWN_SATELLITE, f"unknown satellite {name!r}", field)
            return SATELLITE, sat_index[name]
        if kind != "city":
            raise CommandError(Reason.BAD_ARGUMENT, f"{field} must be 'city:NAME' or 'sat:NAME', not {text!r}", field)
        ground = self.scheduler.ground
        if ground is None:
            raise CommandError(Reason.NOT_NOW, "this twin has no ground endpoints (cities) for jobs", field)
        if self._city_names is None:
            self._city_names = SiteNames(ground.names, "city")
        return GROUND, self._city_names.find(name, field)

    def transfer_gbps(self, t_s: float, dt_s: float) -> F64:
        """Per satellite (n,): the jobs' input arriving from the ground during the tick [t_s, t_s + dt_s)
        (Gbit/s averaged over the tick: the uplink rate each job's input gets, ``PlacementParams.uplink_rate_bps``,
        times the share of the tick it is still arriving). The engine
        adds it to the mesh's traffic between the satellite and its gateway. Migrations between
        satellites are charged their energy but not routed over particular laser links."""
        sch = self.scheduler
        c = sch.jobs.cols
        rows = sch.jobs.rows_in(JobState.RUNNING)
        rows = rows[(c["ready_s"][rows] > t_s) & (c["done_dev_s"][rows] == 0) & (c["input_bytes"][rows] > 0)]
        share = np.clip((c["ready_s"][rows] - t_s) / dt_s, 0.0, 1.0) if dt_s > 0 else np.ones(rows.size)
        out: F64 = np.bincount(c["sat"][rows], weights=share, minlength=sch.n).astype(np.float64) * (
            self.params.uplink_rate_bps / 1e9)
        return out

    def migration_flows(self, t_s: float, dt_s: float) -> tuple[NDArray[np.int64], NDArray[np.int64], F64]:
        """Checkpoints moving between satellites during the tick [t_s, t_s + dt_s): (from, to, Gbit/s each
        averaged over the tick: the transfer rate a migration gets, ``PlacementParams.transfer_rate_bps``,
        times the share of the tick it is still moving); the engine routes them over the mesh's laser links."""
        sch = self.scheduler
        c = sch.jobs.cols
        rows = sch.jobs.rows_in(JobState.MIGRATING)
        rows = rows[(c["ready_s"][rows] > t_s) & (c["moved_from"][rows] >= 0)]
        share = np.clip((c["ready_s"][rows] - t_s) / dt_s, 0.0, 1.0) if dt_s > 0 else np.ones(rows.size)
        return c["moved_from"][rows].copy(), c["sat"][rows].copy(), share * (self.params.transfer_rate_bps / 1e9)

    def upset(self, sat: int, device: int) -> int:
        """An uncorrectable upset on a device: the job there is hit (re-run or corrupt, by policy)."""
        return self.scheduler.upset(sat, device)

    # --- what the twin publishes (schema: the ``compute`` packet and the fleet summary's compute_* keys)
    def telemetry(self) -> dict[str, np.ndarray]:
        """Per satellite (n,): jobs holding a device, the jobs' accelerator power and its battery part
        (W, last tick), and since start the jobs completed there, of them corrupt, and upsets that hit jobs."""
        last = self.last
        zeros = np.zeros(self.scheduler.n)
        sch = self.scheduler
        return {
            "jobs_running": sch.running_per_sat(),
            "compute_power_w": zeros if last is None else last.dynamic_w,
            "compute_battery_w": zeros if last is None else last.battery_w,
            "jobs_completed_total": sch.sat_completed.copy(),
            "jobs_corrupted_total": sch.sat_corrupted.copy(),
            "job_upsets_total": sch.sat_upsets.copy(),
        }

    def summary(self) -> dict[str, Any]:
        """Fleet-wide compute figures for the fleet summary (totals since start unless stated):
        jobs by end state, deadline misses, corrupt results, migrations and bytes moved, accelerator
        energy for jobs from the battery and from the arrays (Wh), throttled device-hours, and the
        interactive latency p50/p99 (ms) over the last ``LATENCY_WINDOW_S`` (NaN when none)."""
        sch = self.scheduler
        led = sch.jobs.ledger
        c = sch.jobs.cols
        active = sch.jobs.active_rows()
        state = c["state"][active]
        lat = np.concatenate([x for _, x, _ in self._latency]) if self._latency else np.zeros(0)
        src = np.concatenate([s for _, _, s in self._latency]) if self._latency else np.zeros(0, np.int64)
        p50, p99 = (np.percentile(lat, (50.0, 99.0)) * 1e3).tolist() if lat.size else (float("nan"),) * 2
        region = np.full(src.size, -1)
        if self._city_region.size and src.size:
            region = np.where(src >= 0, self._city_region[np.clip(src, 0, self._city_region.size - 1)], -1)
        by_region: dict[str, float] = {}
        for k, name in enumerate(LATENCY_REGIONS):
            mine = lat[region == k]
            q = (np.percentile(mine, (50.0, 99.0)) * 1e3).tolist() if mine.size else [float("nan")] * 2
            by_region[f"interactive_latency_p50_ms_{name}"], by_region[f"interactive_latency_p99_ms_{name}"] = q
        return {
            "compute_policy": sch.policy,
            "jobs_submitted": int(sch.jobs.next_id),
            "jobs_queued": int(np.count_nonzero(state == JobState.QUEUED)),
            "jobs_running": int(np.count_nonzero((state == JobState.RUNNING) | (state == JobState.MIGRATING))),
            "jobs_completed": int(led.ended[:, JobState.COMPLETED].sum()),
            "jobs_failed": int(led.ended[:, JobState.FAILED].sum()),
            "jobs_rejected": int(led.ended[:, JobState.REJECTED].sum()),
            "jobs_interactive_completed": int(led.ended[JobKind.INTERACTIVE, JobState.COMPLETED]),
            "jobs_deadline_missed": int(led.deadline_misses),
            "jobs_corrupted": int(led.corrupted),
            "job_migrations": int(led.migrations + c["migrations"][active].sum()),
            "job_bytes_moved": float(led.bytes_moved + c["bytes_moved"][active].sum()),
            "compute_battery_wh": sch.battery_j / 3600.0,
            "compute_array_wh": (sch.energy_j - sch.battery_j) / 3600.0,
            "throttled_device_h": self.throttled_dev_s / 3600.0,
            "interactive_latency_p50_ms": float(p50),
            "interactive_latency_p99_ms": float(p99),
        } | by_region
