"""Serial protocol: COBS, CRC-16, message layouts, streaming decoder (no I/O)."""
from __future__ import annotations

import ast
import math
import pathlib
import random
import struct

import pytest
from cobs import cobs as cobs_oracle
from crc import Calculator, Crc16
from hypothesis import given, settings, strategies as st

from orbitwin_fw import cobs, crc16, framing, messages as m
from orbitwin_fw.framing import Frame, FrameDecoder, ProtocolError, decode_frame, encode_frame

FW_DIR = pathlib.Path(__file__).resolve().parents[1] / "firmware-sim" / "orbitwin_fw"
CRC_ORACLE = Calculator(Crc16.IBM_3740)          # = CRC-16/CCITT-FALSE


# ---- CRC and COBS against independent implementations -------------------------
def test_crc_check_value() -> None:
    assert crc16.crc16(b"123456789") == 0x29B1 == crc16.CHECK
    assert CRC_ORACLE.checksum(b"123456789") == 0x29B1


@given(st.binary(max_size=600))
def test_crc_matches_pypi_crc(data: bytes) -> None:
    assert crc16.crc16(data) == CRC_ORACLE.checksum(data)
    # running CRC over two parts equals CRC of the whole
    cut = len(data) // 3
    assert crc16.crc16(data[cut:], crc16.crc16(data[:cut])) == crc16.crc16(data)


@given(st.binary(max_size=800))
def test_cobs_matches_pypi_cobs(data: bytes) -> None:
    enc = cobs.encode(data)
    assert enc == cobs_oracle.encode(data)
    assert b"\x00" not in enc
    assert len(enc) <= len(data) + 1 + len(data) // 254
    assert cobs.decode(enc) == data == cobs_oracle.decode(enc)


def test_cobs_wire_vectors() -> None:
    # vectors from the COBS paper / Wikipedia
    assert cobs.encode(b"\x00") == b"\x01\x01"
    assert cobs.encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs.encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs.encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    assert cobs.encode(bytes(range(1, 255))) == b"\xff" + bytes(range(1, 255))
    for bad in (b"\x05\x01", b"\x02\x00", b"\x00"):
        with pytest.raises(ValueError):
            cobs.decode(bad)


def test_frame_wire_vector() -> None:
    # HEARTBEAT seq 7, fields pinned: guards against accidental layout changes
    wire = framing.encode_message(m.HEARTBEAT, 7, {"uptime_ms": 1000, "count": 3, "boot_count": 1, "flags": 1})
    raw = cobs.decode(wire[:-1])
    assert raw[:6] == struct.pack("<BBHH", 1, 0x03, 7, 11)
    assert raw[6:17] == struct.pack("<IIHB", 1000, 3, 1, 1)
    assert raw[-2:] == struct.pack(">H", crc16.crc16(raw[:-2]))
    assert wire[-1:] == b"\x00" and b"\x00" not in wire[:-1]


# ---- message round trips ---------------------------------------------------------
_F32 = st.floats(width=32, allow_nan=False)


def _field_strategy(code: str) -> st.SearchStrategy:
    ints = {"B": 8, "H": 16, "I": 32, "Q": 64}
    if code in ints:
        return st.integers(0, 2 ** ints[code] - 1)
    if code == "i":
        return st.integers(-2 ** 31, 2 ** 31 - 1)
    if code == "f":
        return _F32
    if code == "d":
        return st.floats(allow_nan=False)
    n = int(code[:-1])
    return st.binary(max_size=n).map(lambda b: b.replace(b"\x00", b"x"))


def _codes(fmt: str) -> list[str]:
    out, num = [], ""
    for ch in fmt[1:]:
        if ch.isdigit():
            num += ch
        else:
            out.append(num + ch if ch == "s" else ch)
            num = ""
    return out


@st.composite
def messages_st(draw: st.DrawFn) -> tuple[int, int, dict]:
    mtype = draw(st.sampled_from(sorted(m.LAYOUTS)))
    fmt, names = m.LAYOUTS[mtype]
    fields = {n: draw(_field_strategy(c)) for n, c in zip(names, _codes(fmt))}
    return mtype, draw(st.integers(0, 0xFFFF)), fields


def test_layouts_are_consistent() -> None:
    for mtype, (fmt, names) in m.LAYOUTS.items():
        assert len(_codes(fmt)) == len(names), m.NAMES[mtype]
        assert m.SIZES[mtype] <= m.MAX_PAYLOAD
        assert len(encode_frame(mtype, 0xFFFF, bytes(m.SIZES[mtype]))) <= m.MAX_ENCODED + 1


@given(messages_st())
def test_every_message_round_trips(msg: tuple[int, int, dict]) -> None:
    mtype, seq, fields = msg
    wire = framing.encode_message(mtype, seq, fields)
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame) and frame.mtype == mtype and frame.seq == seq
    got = frame.fields()
    for name, value in fields.items():
        if isinstance(value, float) and m.LAYOUTS[mtype][0][1 + m.LAYOUTS[mtype][1].index(name)] == "f":
            assert got[name] == struct.unpack("<f", struct.pack("<f", value))[0]
        else:
            assert got[name] == value, name


def test_nan_die_temperature_survives() -> None:
    wire = framing.encode_message(m.PAYLOAD_TELEMETRY, 1, {"die_temp_k": float("nan")})
    assert math.isnan(decode_frame(wire[:-1]).fields()["die_temp_k"])


# ---- error detection -------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(messages_st())
def test_every_single_bit_flip_is_detected(msg: tuple[int, int, dict]) -> None:
    mtype, seq, fields = msg
    wire = framing.encode_message(mtype, seq, fields)
    for bit in range(len(wire) * 8):
        bad = bytearray(wire)
        bad[bit // 8] ^= 1 << (bit % 8)
        out = FrameDecoder().feed(bytes(bad) + b"\x00")
        assert not any(isinstance(x, Frame) for x in out), (bit, out)


def test_single_bit_flips_exhaustive_on_fixed_frames() -> None:
    rng = random.Random(7)
    for mtype in m.LAYOUTS:
        for _ in range(5):
            payload = bytes(rng.choice((0, 0, 1, 0xFF, rng.randrange(256))) for _ in range(m.SIZES[mtype]))
            wire = encode_frame(mtype, rng.randrange(0x10000), payload)
            for bit in range(len(wire) * 8):
                bad = bytearray(wire)
                bad[bit // 8] ^= 1 << (bit % 8)
                assert not any(isinstance(x, Frame) for x in FrameDecoder().feed(bytes(bad) + b"\x00"))


@given(st.lists(messages_st(), min_size=1, max_size=6), st.binary(max_size=300), st.randoms())
def test_resync_and_random_chunking(msgs: list, garbage: bytes, rnd: random.Random) -> None:
    wires = [framing.encode_message(t, s, f) for t, s, f in msgs]
    stream = garbage + b"\x00" + b"".join(wires)
    dec, got, i = FrameDecoder(), [], 0
    while i < len(stream):
        n = rnd.randint(1, 40)
        got += dec.feed(stream[i:i + n])
        i += n
    frames = [x for x in got if isinstance(x, Frame)]
    assert [(f.mtype, f.seq) for f in frames] == [(t, s) for t, s, _ in msgs]
    assert all(isinstance(x, (Frame, ProtocolError)) for x in got)


def test_byte_by_byte_feeding() -> None:
    wires = [framing.encode_message(t, i, {}) for i, t in enumerate(sorted(m.LAYOUTS))]
    dec = FrameDecoder()
    out = [x for w in wires for b in w for x in dec.feed(bytes([b]))]
    assert [f.mtype for f in out] == sorted(m.LAYOUTS) and dec.error_total == 0


def test_oversize_is_dropped_and_next_frame_decodes() -> None:
    good = framing.encode_message(m.HEARTBEAT, 1, {"count": 9})
    dec = FrameDecoder()
    out = dec.feed(b"\x01" * 5000) + dec.feed(b"\x00" + good)
    assert [type(x) for x in out] == [ProtocolError, Frame]
    assert out[0].code == m.E_OVERSIZE and dec.errors == {m.E_OVERSIZE: 1}
    with pytest.raises(ProtocolError):
        encode_frame(m.HEARTBEAT, 0, bytes(m.MAX_PAYLOAD + 1))


def test_truncated_frames() -> None:
    good = framing.encode_message(m.PAYLOAD_TELEMETRY, 2, {"jobs_done": 5})
    dec = FrameDecoder()
    for cut in range(1, len(good) - 1):
        out = dec.feed(good[:cut] + b"\x00")
        assert len(out) == 1 and isinstance(out[0], ProtocolError)
    # a frame cut short and glued to the next one loses only the damaged one
    out = dec.feed(good[:10] + good + good)
    assert [type(x) for x in out] == [ProtocolError, Frame]


@pytest.mark.parametrize("raw,code", [
    (b"\x01\x02", m.E_SHORT),
    (struct.pack("<BBHH", 9, m.HEARTBEAT, 0, 11) + bytes(11), m.E_VERSION),
    (struct.pack("<BBHH", 1, 0x55, 0, 0), m.E_TYPE),
    (struct.pack("<BBHH", 1, m.HEARTBEAT, 0, 3) + bytes(3), m.E_LENGTH),
    (struct.pack("<BBHH", 1, m.HEARTBEAT, 0, 12) + bytes(11), m.E_LENGTH),
])
def test_header_errors(raw: bytes, code: int) -> None:
    if len(raw) >= 6:
        raw += struct.pack(">H", crc16.crc16(raw))
    with pytest.raises(ProtocolError) as ei:
        decode_frame(cobs.encode(raw))
    assert ei.value.code == code


@given(st.binary(max_size=2000))
def test_decoder_never_raises_on_garbage(data: bytes) -> None:
    out = FrameDecoder().feed(data) + FrameDecoder().feed(data + b"\x00")
    assert all(isinstance(x, (Frame, ProtocolError)) for x in out)
    try:
        decode_frame(data)
    except ProtocolError:
        pass


def test_seq_wraps_and_skips_no_seq() -> None:
    assert m.next_seq(0xFFFE) == 0 and m.next_seq(5) == 6


# ---- firmware stays MicroPython-compatible -------------------------------------------
MICROPYTHON_OK = {"struct", "time", "sys", "machine", "micropython", "select", "gc"}


def test_firmware_imports_only_micropython_modules() -> None:
    files = sorted(FW_DIR.glob("*.py"))
    assert {f.name for f in files} >= {"cobs.py", "crc16.py", "messages.py", "framing.py",
                                       "payload.py", "main.py", "board.py"}
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, "%s: relative import" % path.name
                mods = [node.module or ""]
            else:
                # CPython-only syntax MicroPython may lack: annotations, f-strings
                assert not isinstance(node, (ast.AnnAssign, ast.JoinedStr)), path.name
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    assert node.returns is None, "%s: return annotation" % path.name
                if isinstance(node, ast.arg):
                    assert node.annotation is None, "%s: annotation" % path.name
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top in MICROPYTHON_OK or top == "orbitwin_fw", "%s imports %s" % (path.name, mod)


def test_protocol_doc_matches_messages() -> None:
    doc = (FW_DIR.parents[1] / "docs" / "serial-protocol.md").read_text()
    for mtype, (fmt, _names) in m.LAYOUTS.items():
        row = "| 0x%02X | %s |" % (mtype, m.NAMES[mtype])
        assert row in doc and "`%s` | %d |" % (fmt, m.SIZES[mtype]) in doc, m.NAMES[mtype]
        for name in _names:
            assert "`%s`" % name in doc or name in ("req_seq", "fw_minor", "fw_patch"), name
    assert "version 1" in doc and m.VERSION == 1
