"""The fleet-selection options shared by ``run`` and ``catalogue``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from orbitwin.cli import arg_types

if TYPE_CHECKING:  # the runtime (and the numerical core behind it) loads only when a command runs
    from twin.runtime.run_loop import FleetOptions


def add_fleet_options(p: argparse.ArgumentParser) -> None:
    """TLE and design files, satellite selection, start time, step and seed."""
    g = p.add_argument_group("fleet")
    g.add_argument("--tle", help="TLE file (default: the shipped Starlink catalogue, 9,543 satellites)")
    g.add_argument("--constellation", metavar="TOML",
                   help="a synthetic constellation (Walker shells; a file or a shipped name: starlink-gen1-shell1, "
                        "kuiper-shell1, dawn-dusk-cluster, million) instead of the TLE catalogue; with --tle "
                        "(a file, or 'shipped') after the catalogue's satellites")
    g.add_argument("--design", help="design TOML (default: the shipped V3 compute satellite)")
    g.add_argument("--names", help="name patterns, comma-separated globs (e.g. 'STARLINK-3*')")
    g.add_argument("--alt-km", help="shell altitude band LO:HI in km (mean altitude)")
    g.add_argument("--inc-deg", help="shell inclination band LO:HI in degrees")
    g.add_argument("--count", type=arg_types.positive_int, help="keep the first N selected satellites (N >= 1)")
    g.add_argument("--start", type=arg_types.utc_time, help="start time, ISO 8601 UTC (default: orbitwin run at real or xN speed: the wall clock; "
                                   "otherwise the catalogue's median epoch)")
    g.add_argument("--tle-epoch", default="auto", choices=("auto", "keep", "shift"),
                   help="a catalogue far from the start: keep (propagate the TLEs as given: SGP4 extrapolation, "
                        "decayed element sets are lost), shift (re-epoch every element set by the same interval "
                        "so the catalogue's median epoch is the start: the catalogue's constellation, not where "
                        "the real satellites are) or auto (shift when the start is more than 7 days from the "
                        "median epoch, else keep; the default)")
    g.add_argument("--dt", type=arg_types.positive_seconds, default=1.0, help="time step in seconds (default 1)")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0, or the scenario's)")
    g.add_argument("--no-network", dest="network", action="store_false", default=None,
                   help="run without the laser mesh and routing (default: the design's [network] enabled, on in the "
                        "shipped design); the laser terminals then draw their power as fitted")
    g.add_argument("--gateways", metavar="CSV",
                   help="gateway sites: a CSV with columns name, lat_deg, lon_deg (optional type and status: only rows "
                        "of type 'gateway' and status 'operational' are used; default: the shipped Starlink gateway "
                        "list)")
    g.add_argument("--endpoints", metavar="CSV",
                   help="user endpoints (traffic sources, city-pair latency, route names): a CSV with columns name, "
                        "lat_deg, lon_deg, in order of traffic weight (default: the 100 most populous cities)")
    g.add_argument("--compute", dest="compute_policy", choices=("nearest", "random", "round_robin", "aware"),
                   help="place compute jobs across the fleet with this scheduler policy; the jobs then own the "
                        "payloads' load (default: off, the payloads run their commanded load)")
    g.add_argument("--compute-demand", dest="compute_demand_scale", type=arg_types.non_negative, default=1.0,
                   metavar="SCALE",
                   help="with --compute: the seeded diurnal job demand from the endpoints, times SCALE (default 1; "
                        "0: no generated jobs)")
    g.add_argument("--jurisdictions", metavar="TOML",
                   help="with --compute: named jurisdiction polygons jobs may name beside country codes and "
                        "regions, a TOML of [name] tables with polygon = [[lat, lon], ...] in degrees")


def fleet_options(a: argparse.Namespace) -> FleetOptions:
    """The parsed fleet options as the runtime's :class:`FleetOptions`."""
    from twin.runtime.run_loop import FleetOptions

    return FleetOptions(a.tle, a.design, a.names, a.alt_km, a.inc_deg, a.count, a.start, a.dt,
                        0 if a.seed is None else a.seed, a.tle_epoch, getattr(a, "network", None),
                        getattr(a, "gateways", None), getattr(a, "endpoints", None),
                        getattr(a, "compute_policy", None), float(getattr(a, "compute_demand_scale", 1.0)),
                        getattr(a, "jurisdictions", None), getattr(a, "constellation", None))
