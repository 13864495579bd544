"""``orbitwin validate``: run the physics validation cases and print PASS/FAIL per case."""

from __future__ import annotations

import argparse
from typing import Any

from orbitwin.cli.progress import ProgressDisplay, add_no_progress_option, progress_display

# the long cases' progress: case -> (label, unit shown, shown units per callback unit)
_TASKS: dict[str, tuple[str, str, float]] = {
    "sunlit": ("sunlit vs skyfield", "satellites", 1.0),
    "positions": ("positions vs skyfield", "instants", 1.0),
    "energy": ("energy balance orbit", "min sim", 1 / 60),
    "reproducibility": ("reproducibility", "steps", 1.0),
    "day": ("nominal day", "h sim", 1 / 3600),
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="run the physics validation cases and print the results")
    p.add_argument("--quick", action="store_true",
                   help="sample the fleet instead of all satellites; nominal day with 30 s steps instead of 10 s; "
                        "network orbit every 120 s instead of 10 s")
    p.add_argument("--only", action="append", metavar="CASE",
                   help="run only this case (repeatable): eclipse, sunlit, positions, thermal, energy, radiation, "
                        "reproducibility, day, network")
    p.add_argument("--day-hours", type=float, default=24.0, metavar="H",
                   help="sim time of the nominal day in hours (default 24)")
    add_no_progress_option(p)
    p.set_defaults(func=cmd_validate)


def cmd_validate(a: argparse.Namespace) -> int:
    from twin.validation.dose_split import dose_report
    from twin.validation.nominal_day import NominalDayResult, format_table
    from twin.validation.physics_checks import run_validation

    def show_day(result: NominalDayResult) -> None:
        print(f"nominal day: {result.hours:g} h of sim time, dt {result.dt_s:g} s, default design, satellites:")
        for r in result.sats:
            print(f"  {r.name:<22} {r.shell:<12} beta {r.beta_deg:+6.1f} deg  ({r.role})")
        print(format_table(result))
        print()

    if a.day_hours <= 0:
        print("orbitwin validate: --day-hours must be > 0")
        return 2
    with progress_display("validate", enabled=not a.no_progress) as show:
        _radiation_grid(show)

        def case_progress(case: str) -> Any:
            return show.task(*_TASKS[case]) if case in _TASKS else None

        results = run_validation(quick=a.quick, only=a.only, on_day=show_day, day_hours=a.day_hours,
                                 progress=case_progress)
        dose_lines: list[str] = []
        if a.only is None or "radiation" in a.only:
            dose_checks, dose_lines = dose_report(quick=a.quick, progress=show.task("dose vs SHIELDOSE-2", "orbits"))
            results += dose_checks
        net_lines: list[str] = []
        if a.only is None or "network" in a.only:
            from twin.validation.network_checks import network_report

            net_checks, net_lines = network_report(quick=a.quick, progress=show.task("network orbit", "min sim", 1 / 60))
            results += net_checks
    if not results:
        print("orbitwin validate: no case matched --only")
        return 2
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}")
    if dose_lines:
        print("\n".join(dose_lines))
    if net_lines:
        print("\n".join(net_lines))
    return 0 if all(r.passed for r in results) else 1


def _radiation_grid(show: ProgressDisplay) -> None:
    """Load the default design's radiation grid now, so a build (no cached grid) shows its progress."""
    from twin.core.design import load_design
    from twin.core.radiation_grid import get_grid

    get_grid(load_design().radiation.grid_spec(), progress=show.task("radiation grid build", "nodes"))
