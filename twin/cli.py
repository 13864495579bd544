"""The ``orbitwin`` command line: each subcommand parses its options and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from .catalogue import CatalogueError
from .clock import Pacer, parse_speed
from .params import DesignError


def _fleet_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fleet")
    g.add_argument("--tle", help="TLE file (default: the shipped Starlink catalogue, 9,543 satellites)")
    g.add_argument("--design", help="design TOML (default: the shipped V3 compute satellite)")
    g.add_argument("--names", help="name patterns, comma-separated globs (e.g. 'STARLINK-3*')")
    g.add_argument("--alt-km", help="shell altitude band LO:HI in km (mean altitude)")
    g.add_argument("--inc-deg", help="shell inclination band LO:HI in degrees")
    g.add_argument("--count", type=int, help="keep the first N selected satellites")
    g.add_argument("--start", help="start time, ISO 8601 UTC (default: the catalogue's median epoch)")
    g.add_argument("--dt", type=float, default=1.0, help="time step in seconds (default 1)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _fleet_options(a: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .runner import FleetOptions

    return FleetOptions(a.tle, a.design, a.names, a.alt_km, a.inc_deg, a.count, a.start, a.dt, a.seed)


def cmd_run(a: argparse.Namespace) -> int:
    from .runner import build_twin, run_loop
    from .status_view import render

    twin = build_twin(_fleet_options(a))
    pacer = Pacer(parse_speed(a.speed))
    tty = sys.stdout.isatty() and not a.plain
    last = [0.0, 0.0, 0]
    events = [0]

    def on_tick(tw, stats) -> None:  # type: ignore[no-untyped-def]
        events[0] += len(tw.drain_events())
        now = time.monotonic()
        if now - last[0] < a.refresh:
            return
        speed = (tw.t_s - last[1]) / (now - last[0]) if last[0] else 0.0
        last[:] = [now, tw.t_s, stats.ticks]
        text = render(tw, stats.last_step_s * 1e3, speed, stats.lag_s, a.rows, events[0])
        print(("\x1b[H\x1b[2J" if tty else "") + text + ("" if tty else "\n"), flush=True)

    print(f"orbitwin: {twin.n} satellites, dt {twin.dt_s:g} s, seed {twin.seed}, speed {a.speed}", flush=True)
    try:
        stats = run_loop(twin, pacer, duration_s=a.duration, on_tick=on_tick)
    except KeyboardInterrupt:
        return 0
    print(render(twin, stats.last_step_s * 1e3, 0.0, stats.lag_s, a.rows, events[0]))
    print(f"done: {stats.ticks} ticks, mean step {stats.step_s_total / max(stats.ticks, 1) * 1e3:.2f} ms, "
          f"max lag {stats.max_lag_s:.3f} s")
    return 0


def cmd_schema(a: argparse.Namespace) -> int:
    from .schema import schema_json, schema_markdown

    print(schema_markdown() if a.format == "markdown" else schema_json())
    return 0


def cmd_validate(a: argparse.Namespace) -> int:
    from .validate import run_validation

    results = run_validation(quick=a.quick)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}")
    return 0 if all(r.passed for r in results) else 1


def cmd_bench(a: argparse.Namespace) -> int:
    if a.what == "fleet":
        from .bench import bench_fleet

        result = bench_fleet(count=a.count, steps=a.steps, dt_s=a.dt, naive_sample=a.naive_sample)
    else:  # pragma: no cover - argparse restricts choices
        raise SystemExit(f"unknown benchmark {a.what}")
    print(json.dumps(result, indent=2))
    return 0


def cmd_catalogue(a: argparse.Namespace) -> int:
    from .catalogue import shell_label
    from .runner import select_catalogue

    cat = select_catalogue(_fleet_options(a))
    shells = shell_label(cat.mean_altitude_m, cat.inclination_deg)
    for name, sid, shell in list(zip(cat.names, cat.norad_ids, shells))[: a.limit]:
        print(f"{name:<20}{sid:>8}  {shell}")
    print(f"{len(cat)} satellites")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orbitwin", description="Digital twin of orbital compute constellations")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="step the fleet and show a live status table")
    _fleet_args(p)
    p.add_argument("--speed", default="real", help="real, xN (e.g. x10) or max (default real)")
    p.add_argument("--duration", type=float, help="sim seconds to run (default: until Ctrl-C)")
    p.add_argument("--rows", type=int, default=12, help="satellites shown in the table")
    p.add_argument("--refresh", type=float, default=1.0, help="seconds between table refreshes")
    p.add_argument("--plain", action="store_true", help="no screen clearing, one block per refresh")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("schema", help="print the telemetry schema")
    p.add_argument("--format", choices=("json", "markdown"), default="json")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("validate", help="run the physics validation cases and print the results")
    p.add_argument("--quick", action="store_true", help="sample the fleet instead of all satellites")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("bench", help="benchmarks printing JSON")
    p.add_argument("what", choices=("fleet",))
    p.add_argument("--count", type=int, help="satellites (default: all)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--dt", type=float, default=1.0)
    p.add_argument("--naive-sample", type=int, default=200, help="satellites in the naive skyfield baseline")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("catalogue", help="list the selected satellites and their shells")
    _fleet_args(p)
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_catalogue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (CatalogueError, DesignError, ValueError) as exc:
        print(f"orbitwin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
