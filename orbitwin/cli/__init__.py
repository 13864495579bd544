"""The ``orbitwin`` command line: each subcommand parses its options and calls one library function."""

from orbitwin.cli.main import main

__all__ = ["main"]
