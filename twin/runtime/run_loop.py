"""Build a fleet twin from user options and run it on a paced sim clock."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twin.contract.topics import iso_utc
from twin.core.catalogue import Catalogue, apply_tle_epoch, load_catalogue
from twin.runtime.clock import Pacer
from twin.core.design import load_design
from twin.core.engine import FleetTwin, default_ground_sites, julian_split
from twin.core.compute.territory import Jurisdiction
from twin.core.ephemeris import iso_to_jd, jd_to_datetime
from twin.core.network import Mesh, load_cities, load_gateways
from twin.core.shards import ShardMap, ShardSpec, fleet_partition


def parse_band(text: str | None) -> tuple[float, float] | None:
    """``"540:560"`` -> (540.0, 560.0); ``None`` stays ``None``."""
    if text is None:
        return None
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ValueError(f"expected LO:HI, got {text!r}")
    return float(lo), float(hi)


@dataclass
class FleetOptions:
    """What selects and configures a fleet (the CLI's options, usable from Python)."""

    tle: str | None = None
    design: str | None = None
    names: str | None = None
    alt_km: str | None = None
    inc_deg: str | None = None
    count: int | None = None
    start: str | None = None
    dt_s: float = 1.0
    seed: int = 0
    tle_epoch: str = "auto"  # stale-catalogue policy: auto, keep or shift (twin.core.catalogue.apply_tle_epoch)
    network: bool | None = None  # step the laser mesh and routing (None: the design's network.enabled)
    gateways: str | None = None  # gateway sites CSV (name, lat_deg, lon_deg[, status]); None: the shipped list
    endpoints: str | None = None  # user endpoint sites CSV (name, lat_deg, lon_deg); None: the 100 largest cities
    compute_policy: str | None = None  # place compute jobs with this policy (twin.core.compute.POLICIES); None: off
    compute_demand_scale: float = 1.0  # with compute_policy: the seeded diurnal demand times this (0: none)
    jurisdictions: str | None = None  # with compute_policy: a TOML of named jurisdiction polygons
    constellation: str | None = None  # a synthetic constellation TOML (or a shipped one's name): instead of the
    # TLE catalogue, or joined to it when ``tle`` is given ("shipped": the shipped catalogue)
    shard: str | None = None  # "K/N": only shard K of the selected fleet split into N (twin.core.shards)
    orbit_worker: bool | None = None  # propagate in a child process (None: for >= 2,000 satellites on 2+ cores)


def select_catalogue(opts: FleetOptions) -> Catalogue:
    """The selected satellites, their epochs handled by ``opts.tle_epoch`` for a run starting at
    ``opts.start`` (None: at the catalogue's median epoch, where nothing is shifted)."""
    cat = _base_catalogue(opts)
    if opts.names or opts.alt_km or opts.inc_deg or opts.count:
        cat = cat.select(opts.names, parse_band(opts.alt_km), parse_band(opts.inc_deg), opts.count)
    start = None if opts.start is None else julian_split(iso_to_jd(opts.start))
    return apply_tle_epoch(cat, opts.tle_epoch, start)


def _base_catalogue(opts: FleetOptions) -> Catalogue:
    """The TLE catalogue, the synthetic constellation, or the TLE catalogue followed by the constellation.

    A constellation whose epoch is ``start`` is generated at the run's start; joined to a TLE catalogue,
    at that catalogue's median epoch, so the stale-catalogue policy moves both together.
    """
    if opts.constellation is None:
        return load_catalogue(opts.tle)
    from twin.core.constellation import DEFAULT_EPOCH_ISO, build_catalogue, load_constellation

    spec = load_constellation(opts.constellation)
    if opts.tle is None:
        return build_catalogue(spec, iso_to_jd(opts.start or DEFAULT_EPOCH_ISO))
    tle = load_catalogue(None if opts.tle == "shipped" else opts.tle)
    return tle + build_catalogue(spec, tle.median_epoch_jd())


def describe_tle_epoch(cat: Catalogue) -> str:
    """One line saying how far the catalogue's epoch is from the start and what the twin did about it."""
    e = cat.epoch
    if e.catalogue_epoch_jd is None:
        return "catalogue epochs as read"
    day = jd_to_datetime(e.catalogue_epoch_jd).strftime("%Y-%m-%d")
    when = "the start" if abs(e.gap_days) < 1 / 86400 else f"{_days(e.gap_days)} the start"
    head = f"catalogue epoch {day} is {when}"
    if e.applied == "shift":
        why = "" if e.policy == "shift" else f": more than {e.threshold_days:g} days apart"
        return (f"{head}; elements re-epoched to the start (--tle-epoch {e.policy}{why}): a plausible "
                f"constellation with the catalogue's planes and phasing, not where the real satellites are; "
                f"for real positions use a fresh catalogue (--tle); --tle-epoch keep propagates the old "
                f"elements as they are")
    if abs(e.gap_days) > e.threshold_days:
        return (f"{head}; elements propagated as given (--tle-epoch {e.policy}): SGP4 extrapolated far from "
                f"epoch, element sets that fail are lost; --tle-epoch shift re-epochs them, a fresh "
                f"catalogue (--tle) gives real positions")
    why = "" if e.policy == "keep" else f": within {e.threshold_days:g} days"
    return f"{head}; elements propagated as given (--tle-epoch {e.policy}{why})"


def tle_epoch_info(cat: Catalogue) -> dict[str, Any]:
    """The catalogue's epoch policy as published in the twin's birth and catalogue (``tle_epoch``)."""
    e = cat.epoch
    return {"policy": e.policy, "applied": e.applied,
            "catalogue_epoch": None if e.catalogue_epoch_jd is None else iso_utc(jd_to_datetime(e.catalogue_epoch_jd)),
            "start_minus_epoch_days": round(e.gap_days, 6), "shift_days": round(e.shift_total_days, 9),
            "threshold_days": e.threshold_days}


def _days(gap_days: float) -> str:
    n = abs(gap_days)
    amount = f"{n:.0f} days" if n >= 2 else f"{n * 24:.1f} h"
    return f"{amount} {'before' if gap_days >= 0 else 'after'}"


def load_jurisdictions(path: str) -> dict[str, Jurisdiction]:
    """Named jurisdiction polygons from a TOML file: ``[name]`` tables with ``polygon = [[lat, lon], ...]``
    (degrees, at least 3 vertices). ValueError naming the file and the entry for anything else."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read jurisdictions: {exc}") from None
    out: dict[str, Jurisdiction] = {}
    for name, table in data.items():
        if not isinstance(table, dict) or set(table) != {"polygon"}:
            raise ValueError(f"{path}: [{name}] must hold exactly polygon = [[lat, lon], ...]")
        if "," in name:
            raise ValueError(f"{path}: [{name}]: a jurisdiction name cannot contain a comma")
        try:
            out[name] = Jurisdiction.parse({"polygon": table["polygon"]})
        except ValueError as exc:
            raise ValueError(f"{path}: [{name}]: {exc}") from None
    return out


def build_twin(opts: FleetOptions) -> FleetTwin:
    """A twin of the selected satellites with the given design, start, step and seed."""
    named = None
    if opts.jurisdictions is not None:
        if opts.compute_policy is None:
            raise ValueError("--jurisdictions needs --compute (jurisdictions constrain compute jobs)")
        named = load_jurisdictions(opts.jurisdictions)
    cat = select_catalogue(opts)
    design = load_design(opts.design)
    start_jd = None if opts.start is None else iso_to_jd(opts.start)
    shard = None
    gateways = None if opts.gateways is None else load_gateways(opts.gateways)
    endpoints = None if opts.endpoints is None else load_cities(opts.endpoints)
    network = design.network.enabled if opts.network is None else opts.network
    whole_mesh = None
    if opts.shard is not None:
        if opts.compute_policy is not None:
            raise ValueError("--shard cannot be used with --compute yet: the scheduler places jobs across the "
                             "whole fleet in one process")
        spec = ShardSpec.parse(opts.shard)
        if start_jd is None:
            start_jd = cat.median_epoch_jd()  # the whole fleet's, so every shard starts at the same instant
        shard = ShardMap.of(cat, fleet_partition(cat, start_jd, spec.count), spec)
        if network:  # the whole fleet's mesh, stepped in every shard from every satellite's inputs (exchanged)
            default_gateways, default_cities = default_ground_sites()
            jd0, fr0 = julian_split(start_jd)
            whole_mesh = Mesh.from_catalogue(cat, design.network, design.power.isl_terminal_count, jd0 + fr0,
                                             default_gateways if gateways is None else gateways,
                                             default_cities if endpoints is None else endpoints)
        cat = cat.subset(shard.rows)
    twin = FleetTwin(
        cat,
        design,
        start_jd=start_jd,
        dt_s=opts.dt_s,
        seed=opts.seed,
        network=False if shard is not None else opts.network,
        gateways=gateways,
        endpoints=endpoints,
        compute_policy=opts.compute_policy,
        compute_demand_scale=opts.compute_demand_scale,
        orbit_worker=opts.orbit_worker,
        start=whole_mesh is None,  # a shard with the mesh starts once its exchange is attached (twin.start)
    )
    if named is not None and twin.compute is not None:
        twin.compute.named_jurisdictions = named
    twin.shard = shard
    if whole_mesh is not None:
        twin.mesh = whole_mesh
    return twin


@dataclass
class RunStats:
    """What a run did so far: ticks, step times [s], lag [s], and the sim and wall time it took [s]."""

    ticks: int = 0
    step_s_total: float = 0.0
    last_step_s: float = 0.0
    lag_s: float = 0.0  # s the tick started behind its schedule (slow ticks and backpressure waits)
    max_lag_s: float = 0.0
    gate_s_total: float = 0.0  # s spent waiting for the output link (backpressure)
    sim_s: float = 0.0  # sim seconds stepped by run_loop
    wall_s: float = 0.0  # wall seconds from run_loop's start to its last tick

    @property
    def speed(self) -> float:
        """Achieved speed over the run: sim seconds per wall second (0 before any tick)."""
        return self.sim_s / self.wall_s if self.wall_s > 0 else 0.0


def run_loop(
    twin: FleetTwin,
    pacer: Pacer,
    *,
    duration_s: float | None = None,
    on_tick: Callable[[FleetTwin, RunStats], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    tick: Callable[[], None] | None = None,
    stats: RunStats | None = None,
    gate: Callable[[], float] | None = None,
) -> RunStats:
    """Step until ``duration_s`` of sim time has passed (forever when None), paced by ``pacer``.

    ``tick`` is one tick's work (default ``twin.step``; the MQTT runtime adds its I/O around it).
    ``gate`` runs before each tick once it is due and may block (the MQTT link's backpressure);
    it returns the seconds it waited, which count as lag like a slow tick.
    """
    stats = RunStats() if stats is None else stats
    tick = twin.step if tick is None else tick
    end = None if duration_s is None else twin.t_s + duration_s
    pacer.start(twin.t_s)
    wall0, sim0 = time.perf_counter(), twin.t_s
    while (end is None or twin.t_s < end - 1e-9) and not should_stop():
        stats.lag_s = pacer.wait_until(twin.t_s + twin.dt_s)
        if gate is not None:
            waited = gate()
            if waited > 0:
                stats.gate_s_total += waited
                stats.lag_s = pacer.lag_at(twin.t_s + twin.dt_s)
            if should_stop():
                break
        stats.max_lag_s = max(stats.max_lag_s, stats.lag_s)
        t0 = time.perf_counter()
        tick()
        stats.last_step_s = time.perf_counter() - t0
        stats.step_s_total += stats.last_step_s
        stats.ticks += 1
        stats.wall_s, stats.sim_s = time.perf_counter() - wall0, twin.t_s - sim0
        if on_tick is not None:
            on_tick(twin, stats)
    return stats
