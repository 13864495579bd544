"""``orbitwin catalogue``: list the selected satellites with their NORAD ids and shells."""

from __future__ import annotations

import argparse
from typing import Any

from orbitwin.cli import arg_types
from orbitwin.cli.fleet_options import add_fleet_options, fleet_options


def add_parser(sub: Any) -> None:
    p = sub.add_parser("catalogue", help="list the selected satellites and their shells")
    add_fleet_options(p)
    p.add_argument("--limit", type=arg_types.positive_int, default=50,
                   help="satellites to list (default 50; the total is always printed)")
    p.set_defaults(func=cmd_catalogue)


def cmd_catalogue(a: argparse.Namespace) -> int:
    from twin.core.catalogue import shell_label
    from twin.runtime.run_loop import select_catalogue

    cat = select_catalogue(fleet_options(a))
    shells = shell_label(cat.mean_altitude_m, cat.inclination_deg)
    for name, sid, shell in list(zip(cat.names, cat.norad_ids, shells))[: a.limit]:
        print(f"{name:<20}{sid:>8}  {shell}")
    print(f"{len(cat)} satellites")
    return 0
