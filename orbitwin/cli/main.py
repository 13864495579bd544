"""The ``orbitwin`` command line: the top parser and the dispatch; each subcommand lives in its own module.

Every subcommand module has ``add_parser(subparsers)``, which defines its options and sets
``func``, the function that runs it. Errors a user can fix (bad options, files, credentials, an
unreachable broker) print one line, ``orbitwin: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from orbitwin.cli import bench, boards, bridge, catalogue, dashboards_push, run, scenario, schema, send, validate


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that does not repeat unrecognised arguments' values (a mistyped ``--pasword X``
    would otherwise print the secret X): only the option names are shown."""

    def error(self, message: str) -> NoReturn:
        head = "unrecognized arguments: "
        if message.startswith(head):
            words = message[len(head):].split(" ")
            names = [w.split("=", 1)[0] for w in words if w.startswith("-")]
            hidden = len(words) - len(names) + sum("=" in w for w in words if w.startswith("-"))
            message = head + " ".join(names) + (f" (and {hidden} value(s), not shown)" if hidden else "")
        super().error(message)


def _version() -> str:
    """The installed package's version (``unknown`` when run from a tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orbitwin")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orbitwin", description="Digital twin of orbital compute constellations")
    parser.add_argument("--version", action="version", version=f"orbitwin {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run.add_parser(sub)
    schema.add_parser(sub)
    validate.add_parser(sub)
    bench.add_parser(sub)
    bridge.add_parser(sub)
    boards.add_parser(sub)
    dashboards_push.add_parser(sub)  # the generator's `dashboards build` parser, with `push`
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
