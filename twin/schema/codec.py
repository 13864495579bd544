"""The telemetry codec: what each schema dtype is in numpy, JSON, JSON Schema and InfluxDB line protocol.

A field's ``dtype`` in :mod:`twin.schema.telemetry` is one of three names; this module is the only
place that interprets them:

=========  ===========  =====================  ==================  ==========================
dtype      numpy        JSON (JSON Schema)     line protocol       Python value
=========  ===========  =====================  ==================  ==========================
``float``  ``float64``  number or ``null``     float (``1.5``)     ``float`` (``int`` accepted)
``int``    ``int64``    integer                integer (``3i``)    ``int``
``bool``   ``bool_``    ``true``/``false``     boolean (``true``)  ``bool``
=========  ===========  =====================  ==================  ==========================

Non-finite numbers (NaN, +inf, -inf) are "no value": JSON has no NaN, so they are sent as ``null``;
InfluxDB has no null, so a ``null`` or non-finite value is left out of the line (the point keeps
its other fields). A finite value survives JSON and line protocol exactly (``repr`` of a float is
its shortest round-tripping text).

The encoders (:mod:`twin.contract.telemetry_encoder`, :func:`twin.contract.topics.dumps`), the
line-protocol mapping (:mod:`bridges.influx.line_protocol`), the AsyncAPI payload schemas and the
telemetry snapshot of the core all go through here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from twin.schema.telemetry import FIELDS, Field

_INF: Final = math.inf


class CodecError(TypeError):
    """A value whose Python type does not fit the field's dtype (the message says which it has)."""


def is_finite(x: float) -> bool:
    """True for a finite float (not NaN, +inf or -inf)."""
    return math.isfinite(x)


def json_number(x: float) -> float | None:
    """A float as JSON carries it: itself if finite, else None (``null``)."""
    return x if x == x and x != _INF and x != -_INF else None


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float (nested in dicts, lists, tuples, numpy scalars) turned into None.

    Dict keys become strings; tuples become lists. The result serialises with ``allow_nan=False``.
    """
    if isinstance(obj, float):
        return json_number(obj)
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return json_safe(obj.item())
    return obj


def json_column(values: np.ndarray) -> list[Any]:
    """A column as JSON-ready Python values (floats, ints, bools; None for non-finite floats)."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        return [json_number(x) for x in values.tolist()]
    return values.tolist()  # type: ignore[no-any-return]


def line_literal(v: Any) -> str | None:
    """Any scalar as a line-protocol field value by its Python type; None to leave it out.

    ``bool`` -> ``true``/``false``, ``int`` -> ``3i``, finite ``float`` -> ``1.5``; non-finite floats,
    None and anything else -> None.
    """
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float) and v == v and v != _INF and v != -_INF:
        return repr(v)
    return None


class Codec(ABC):
    """How values of one schema dtype are typed and written. Instances are the three in :data:`CODECS`."""

    dtype: str
    """The schema's dtype name (``float``, ``int``, ``bool``)."""
    numpy: type[np.generic]
    """numpy scalar type of the telemetry arrays."""
    python: type
    """Python type of one value in JSON and line protocol."""
    json_type: str
    """JSON Schema type of a value (``number``, ``integer``, ``boolean``)."""
    nullable: bool
    """Non-finite values exist and are sent as JSON ``null``."""
    line_kind: str
    """InfluxDB field type: ``float``, ``integer`` or ``boolean``."""
    json_slot: str
    """The %-format placeholder a JSON template writes a :meth:`json_texts` item with."""

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of one value (``{"type": ...}``; floats admit null)."""
        return {"type": [self.json_type, "null"] if self.nullable else self.json_type}

    @abstractmethod
    def json_texts(self, values: np.ndarray) -> list[Any]:
        """One item per value for ``json_slot``: the JSON literal text (or an int for ``%d``)."""

    @abstractmethod
    def line_value(self, v: Any) -> str | None:
        """A decoded JSON value as a line-protocol field value; None (null, non-finite) to leave it out.

        Raises :class:`CodecError` for a value of another type.
        """

    def line_values(self, col: Sequence[Any]) -> list[str | None]:
        """:meth:`line_value` of each item of a column."""
        return list(map(self.line_value, col))

    def _wrong(self, v: Any) -> CodecError:
        return CodecError(f"has a {type(v).__name__}, expected {self.dtype}")

    def __repr__(self) -> str:
        return f"<Codec {self.dtype}>"


class _FloatCodec(Codec):
    dtype = "float"
    numpy = np.float64
    python = float
    json_type = "number"
    nullable = True
    line_kind = "float"
    json_slot = "%s"

    def json_texts(self, values: np.ndarray) -> list[Any]:
        if np.isfinite(values).all():
            return list(map(repr, values.tolist()))
        return [repr(x) if x == x and x != _INF and x != -_INF else "null" for x in values.tolist()]

    def line_value(self, v: Any) -> str | None:
        t = type(v)
        if t is float:
            return repr(v) if v == v and v != _INF and v != -_INF else None
        if t is int:
            return repr(float(v))
        if v is None:
            return None
        raise self._wrong(v)


class _IntCodec(Codec):
    dtype = "int"
    numpy = np.int64
    python = int
    json_type = "integer"
    nullable = False
    line_kind = "integer"
    json_slot = "%d"

    def json_texts(self, values: np.ndarray) -> list[Any]:
        return values.tolist()  # type: ignore[no-any-return]

    def line_value(self, v: Any) -> str | None:
        if type(v) is int:
            return f"{v}i"
        if v is None:
            return None
        raise self._wrong(v)


class _BoolCodec(Codec):
    dtype = "bool"
    numpy = np.bool_
    python = bool
    json_type = "boolean"
    nullable = False
    line_kind = "boolean"
    json_slot = "%s"

    def json_texts(self, values: np.ndarray) -> list[Any]:
        return ["true" if v else "false" for v in values.tolist()]

    def line_value(self, v: Any) -> str | None:
        if type(v) is bool:
            return "true" if v else "false"
        if v is None:
            return None
        raise self._wrong(v)


CODECS: Final[dict[str, Codec]] = {c.dtype: c for c in (_FloatCodec(), _IntCodec(), _BoolCodec())}
"""Every schema dtype's codec, by dtype name."""


FIELD_CODECS: Final[dict[str, Codec]] = {f.name: CODECS[f.dtype] for f in FIELDS}
"""Each telemetry field's codec, by field name."""


def codec(field: Field | str) -> Codec:
    """The codec of a field (a :class:`Field` or a field name); KeyError for an unknown field or dtype."""
    return CODECS[field.dtype] if isinstance(field, Field) else FIELD_CODECS[field]
