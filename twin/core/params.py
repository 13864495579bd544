"""Typed, validated parameter sections for the design TOML.

Each model module declares a frozen dataclass whose fields carry metadata made with
:func:`param` (unit, description, allowed range). :func:`build` turns one TOML table into
that dataclass, and every problem is reported as a :class:`DesignError` that names the
key (``section.key``) and what is wrong with it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class DesignError(ValueError):
    """An invalid design file or section; ``key`` is the dotted path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")



def _unit(meta: Mapping[str, Any]) -> str:
    """`` UNIT`` for messages; nothing for a dimensionless value (unit "1" or none)."""
    unit = str(meta.get("unit", ""))
    return "" if unit in ("", "1") else f" {unit}"

def param(
    unit: str,
    description: str,
    *,
    min: float | None = None,  # noqa: A002 - mirrors the schema vocabulary
    max: float | None = None,  # noqa: A002
    default: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with unit, description and an inclusive allowed range."""
    meta = {"unit": unit, "description": description, "min": min, "max": max}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.copy, default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check_number(key: str, value: Any, meta: Mapping[str, Any]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DesignError(key, f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise DesignError(key, f"must be finite, got {value!r}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise DesignError(key, f"{value!r} is below the minimum {lo}{_unit(meta)}")
    if hi is not None and value > hi:
        raise DesignError(key, f"{value!r} is above the maximum {hi}{_unit(meta)}")
    return value


def _convert(key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(tp)
    if tp is float:
        return float(_check_number(key, value, meta))
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise DesignError(key, f"expected an integer, got {type(value).__name__} {value!r}")
        return int(_check_number(key, value, meta))
    if tp is bool:
        if not isinstance(value, bool):
            raise DesignError(key, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise DesignError(key, f"expected a string, got {type(value).__name__} {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise DesignError(key, f"expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(f"{key}[{i}]", v, args[0], meta) for i, v in enumerate(value))
        if len(value) != len(args):
            raise DesignError(key, f"expected a list of {len(args)} items, got {len(value)}")
        return tuple(_convert(f"{key}[{i}]", v, a, meta) for i, (v, a) in enumerate(zip(value, args)))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise DesignError(key, f"expected a table, got {type(value).__name__}")
        return build(tp, value, key)
    raise TypeError(f"unsupported parameter type {tp!r} for {key}")


def build(cls: type[T], table: Mapping[str, Any], section: str) -> T:
    """Validate ``table`` against dataclass ``cls``; unknown, missing and out-of-range keys raise."""
    if not isinstance(table, Mapping):
        raise DesignError(section, f"expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise DesignError(f"{section}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{section}.{name}"
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DesignError(key, "missing required key")
            continue
        kwargs[name] = _convert(key, table[name], hints[name], f.metadata)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(section)
    return obj

