"""The ``orbitwin`` command line: the top parser and the dispatch; each subcommand lives in its own module.

Every subcommand module has ``add_parser(subparsers)``, which defines its options and sets
``func``, the function that runs it. Errors a user can fix (bad options, files, credentials, an
unreachable broker) print one line, ``orbitwin: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from orbitwin.cli import bench, bridge, catalogue, run, scenario, schema, send, validate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orbitwin", description="Digital twin of orbital compute constellations")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    schema.add_parser(sub)
    validate.add_parser(sub)
    bench.add_parser(sub)
    bridge.add_parser(sub)
    from dashboards.build import add_cli as add_dashboards_parser

    add_dashboards_parser(sub)
    scenario.add_parser(sub)
    send.add_parser(sub)
    catalogue.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, ConnectionError) as exc:  # bad input (every *Error of the twin is a ValueError), broker
        print(f"orbitwin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
