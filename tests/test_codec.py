"""The telemetry codec (twin.schema.codec): every schema dtype handled once, the same way everywhere.

Property tests: any value of a field's dtype, NaN and +-inf included, goes through the MQTT
encoders (per-satellite messages and fleet frames) and the line-protocol mapping; finite values
come back exactly, non-finite ones as JSON null and as a field left out of the line.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridges.influx.line_protocol import MappingError, flat_line, frame_lines, message_lines
from twin.contract.asyncapi_payloads import field_schema
from twin.contract.telemetry_encoder import FrameEncoder, PacketEncoder
from twin.contract.topics import Topics, dumps
from twin.schema.codec import CODECS, FIELD_CODECS, CodecError, codec, json_column, json_number, json_safe, line_literal
from twin.schema.telemetry import FIELD_BY_NAME, FIELDS, PACKET_FIELDS

T_ISO = "2026-01-01T00:00:00.000Z"
T_NS = 1_767_225_600_000_000_000
NON_FINITE = (math.nan, math.inf, -math.inf)
INT64 = st.integers(-(2**63), 2**63 - 1)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
VALUES = {"float": ANY_FLOAT, "int": INT64, "bool": st.booleans()}


def same(a: Any, b: Any) -> bool:
    """Equal value and type; floats bit for bit (so -0.0 is not 0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    return type(a) is type(b) and a == b


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


def parse_line(line: bytes) -> tuple[str, dict[str, Any], int]:
    """(measurement+tags, fields, timestamp) of one line (no spaces or commas inside values here)."""
    head, body, t = line.decode().split(" ")
    out: dict[str, Any] = {}
    for item in body.split(","):
        key, _, v = item.partition("=")
        out[key] = (int(v[:-1]) if v.endswith("i") else v == "true" if v in ("true", "false") else float(v))
    return head, out, int(t)


def expected_json(dtype: str, v: Any) -> Any:
    return json_number(v) if dtype == "float" else v


# --- the table -----------------------------------------------------------------------------
def test_every_schema_dtype_and_field_has_a_codec() -> None:
    assert {f.dtype for f in FIELDS} <= set(CODECS)
    assert set(FIELD_CODECS) == {f.name for f in FIELDS}
    for f in FIELDS:
        assert codec(f) is codec(f.name) is CODECS[f.dtype] is FIELD_CODECS[f.name]
    with pytest.raises(KeyError):
        codec("no_such_field")


@pytest.mark.parametrize("dtype, kind, python, json_type, line_kind", [
    ("float", "f", float, ["number", "null"], "float"),
    ("int", "i", int, "integer", "integer"),
    ("bool", "b", bool, "boolean", "boolean"),
])
def test_codec_table(dtype: str, kind: str, python: type, json_type: Any, line_kind: str) -> None:
    c = CODECS[dtype]
    assert c.dtype == dtype and np.dtype(c.numpy).kind == kind and c.python is python
    assert c.json_schema() == {"type": json_type} and c.line_kind == line_kind
    assert c.nullable == (dtype == "float")


def test_asyncapi_field_schemas_take_their_type_from_the_codec() -> None:
    for f in FIELDS:
        assert field_schema(f)["type"] == codec(f).json_schema()["type"], f.name


# --- non-finite values ---------------------------------------------------------------------
@given(ANY_FLOAT)
def test_json_number_and_dumps_turn_non_finite_into_null(x: float) -> None:
    back = json.loads(dumps({"x": x, "nested": [x, (x,)], "np": np.float64(x), 3: {"y": x}}))
    want = x if finite(x) else None
    assert json_number(x) is want or same(json_number(x), want)
    for got in (back["x"], back["nested"][0], back["nested"][1][0], back["np"], back["3"]["y"]):
        assert got is None if want is None else same(got, want)


def test_json_safe_keeps_everything_else() -> None:
    obj = {"a": 1, "b": True, "c": "nan", "d": None, "e": [np.int64(7), np.bool_(False)], "f": (1.5, -math.inf)}
    assert json_safe(obj) == {"a": 1, "b": True, "c": "nan", "d": None, "e": [7, False], "f": [1.5, None]}


@given(st.lists(ANY_FLOAT, min_size=1, max_size=20))
def test_json_column(xs: list[float]) -> None:
    got = json_column(np.array(xs, dtype=np.float64))
    assert len(got) == len(xs)
    for x, g in zip(xs, got):
        assert g is None if not finite(x) else same(g, x)
    assert json_column(np.array([1, 2])) == [1, 2] and json_column(np.array([True])) == [True]


@given(st.one_of(ANY_FLOAT, INT64, st.booleans(), st.none(), st.text(max_size=3)))
def test_line_literal(v: Any) -> None:
    text = line_literal(v)
    if isinstance(v, bool):
        assert text == ("true" if v else "false")
    elif isinstance(v, int):
        assert text == f"{v}i"
    elif isinstance(v, float) and finite(v):
        assert text is not None and same(float(text), v)
    else:
        assert text is None


def test_flat_lines_leave_non_finite_numbers_out() -> None:
    line = flat_line("fleet", {"t": T_ISO, "a": math.nan, "b": math.inf, "c": 1.5, "d": 2, "e": True,
                               "f": {"g": -math.inf, "h": 0.25}}, T_NS)
    assert line == f"fleet c=1.5,d=2i,e=true,f_h=0.25 {T_NS}".encode()


# --- line protocol per dtype -------------------------------------------------------------------
@given(st.data())
def test_line_values_per_dtype(data: st.DataObject) -> None:
    for dtype, c in CODECS.items():
        v = data.draw(VALUES[dtype])
        text = c.line_value(v)
        if dtype == "float" and not finite(v):
            assert text is None
        else:
            assert text is not None
            back = int(text[:-1]) if c.line_kind == "integer" else (text == "true") if c.line_kind == "boolean" \
                else float(text)
            assert same(back, v)
        assert c.line_value(None) is None


@pytest.mark.parametrize("dtype, wrong", [
    ("float", "1.5"), ("float", True), ("float", [1.0]), ("int", 1.0), ("int", True), ("int", "3"),
    ("bool", 1), ("bool", 0.0), ("bool", "true"),
])
def test_a_value_of_another_type_is_refused(dtype: str, wrong: Any) -> None:
    with pytest.raises(CodecError, match=f"has a {type(wrong).__name__}, expected {dtype}"):
        CODECS[dtype].line_value(wrong)
    name = next(f.name for f in FIELDS if f.dtype == dtype)
    packet = FIELD_BY_NAME[name].packet
    fields = {f: [None] for f in PACKET_FIELDS[packet]} | {name: [wrong]}
    msg = {"packet": packet, "sat": "S", "seq": 0, "run": 0, "bseq": 1, "t": T_ISO, "fields": {
        k: v[0] for k, v in fields.items()}}
    with pytest.raises(MappingError, match=f"field {name} has a {type(wrong).__name__}, expected {dtype}"):
        message_lines(msg)


def test_an_int_in_a_float_field_is_a_float() -> None:
    assert CODECS["float"].line_value(3) == "3.0"


# --- encoders -> JSON -> line protocol, every packet ------------------------------------------------
def _packet_values(packet: str, n: int) -> st.SearchStrategy[dict[str, list[Any]]]:
    return st.fixed_dictionaries({f: st.lists(VALUES[FIELD_BY_NAME[f].dtype], min_size=n, max_size=n)
                                  for f in PACKET_FIELDS[packet]})


@st.composite
def packets(draw: st.DrawFn) -> tuple[str, dict[str, list[Any]]]:
    packet = draw(st.sampled_from(sorted(PACKET_FIELDS)))
    n = draw(st.integers(1, 3))
    return packet, draw(_packet_values(packet, n))


@settings(max_examples=150, deadline=None)
@given(packets())
def test_round_trip_through_encoders_and_line_protocol(case: tuple[str, dict[str, list[Any]]]) -> None:
    packet, values = case
    n = len(next(iter(values.values())))
    names = [f"SAT-{i}" for i in range(n)]
    tm = {f: np.array(v, dtype=codec(f).numpy) for f, v in values.items()}
    rows, seq = np.arange(n), np.arange(10, 10 + n)
    messages = [json.loads(p) for _, p in PacketEncoder(packet, names, range(n), Topics()).encode(
        tm, rows, seq, 1, T_ISO, 0.0)]
    _, frame_payload = FrameEncoder(packet, names, range(n), Topics()).encode(tm, rows, seq, 1, T_ISO, 0.0)
    frame = json.loads(frame_payload)
    validators = {f: jsonschema.Draft7Validator(codec(f).json_schema()) for f in values}  # the AsyncAPI type

    lines = [ln for m in messages for _, _, ln in message_lines(m)]
    assert lines == [ln for _, _, ln in frame_lines(frame)]  # one message per satellite == one frame
    for k, line in enumerate(lines):
        head, got, t_ns = parse_line(line)
        assert head == f"{packet},sat={names[k]},run={frame['run']}" and t_ns == T_NS and got.pop("seq") == 10 + k
        for f, col in values.items():
            dtype = FIELD_BY_NAME[f].dtype
            want = expected_json(dtype, col[k])
            for sent in (messages[k]["fields"][f], frame["fields"][f][k]):
                assert sent is None if want is None else same(sent, want), (f, col[k], sent)
                validators[f].validate(sent)
            if want is None:
                assert f not in got  # InfluxDB has no null: the field is left out of the point
            else:
                assert same(got[f], want), (f, col[k], got[f])
