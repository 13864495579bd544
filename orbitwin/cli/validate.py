"""``orbitwin validate``: run the physics validation cases and print PASS/FAIL per case."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="run the physics validation cases and print the results")
    p.add_argument("--quick", action="store_true", help="sample the fleet instead of all satellites")
    p.set_defaults(func=cmd_validate)


def cmd_validate(a: argparse.Namespace) -> int:
    from twin.validation.dose_split import dose_report
    from twin.validation.physics_checks import run_validation

    results = run_validation(quick=a.quick)
    dose_checks, dose_lines = dose_report(quick=a.quick)
    results += dose_checks
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.detail}")
    print("\n".join(dose_lines))
    return 0 if all(r.passed for r in results) else 1
