"""``orbitwin schema``: print the telemetry schema (JSON or a Markdown table)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the telemetry schema")
    p.add_argument("--format", choices=("json", "markdown"), default="json",
                   help="json (machine-readable, default) or markdown (a table for docs)")
    p.set_defaults(func=cmd_schema)


def cmd_schema(a: argparse.Namespace) -> int:
    from twin.schema.telemetry import schema_json, schema_markdown

    print(schema_markdown() if a.format == "markdown" else schema_json())
    return 0
