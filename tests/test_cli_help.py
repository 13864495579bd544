"""Every option and positional of every ``orbitwin`` subcommand has a help text (issue 17: help for every option)."""

from __future__ import annotations

import argparse

from orbitwin.cli.main import build_parser


def _undocumented(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> list[str]:
    missing: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped:
                    missing.append(" ".join((*path, name)) + " (the subcommand itself)")
                missing += _undocumented(sub, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
            missing.append(" ".join((*path, *(action.option_strings[-1:] or [action.dest]))))
    return missing


def test_every_option_has_help() -> None:
    assert _undocumented(build_parser(), ("orbitwin",)) == []


def test_the_check_finds_an_option_without_help() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    s = sub.add_parser("x", help="x")
    s.add_argument("--bare")
    sub.add_parser("y")
    assert _undocumented(p, ("p",)) == ["p x --bare", "p y (the subcommand itself)"]
