"""COBS + CRC-16 framing: frame encoder and streaming decoder (MicroPython-compatible).

encode_frame(type, seq, payload) -> COBS(header + payload + crc) + b"\\x00"
FrameDecoder.feed(chunk) -> list of Frame or ProtocolError (never raises)
decode_frame(block) -> Frame, raises only ProtocolError
"""
import struct

from orbitwin_fw import cobs
from orbitwin_fw.crc16 import crc16
from orbitwin_fw import messages as m
from orbitwin_fw.messages import ProtocolError

DELIM = b"\x00"


class Frame:
    """A decoded, CRC-checked frame."""

    def __init__(self, mtype, seq, payload, version=m.VERSION):
        self.mtype = mtype
        self.seq = seq
        self.payload = payload
        self.version = version

    def fields(self):
        """Payload unpacked to a dict (see messages.LAYOUTS)."""
        return m.unpack_payload(self.mtype, self.payload)

    def __eq__(self, other):
        return (isinstance(other, Frame) and self.mtype == other.mtype and self.seq == other.seq
                and self.payload == other.payload and self.version == other.version)

    def __repr__(self):
        return "Frame(%s, seq=%d, %d bytes)" % (m.NAMES.get(self.mtype, self.mtype), self.seq, len(self.payload))


def encode_frame(mtype, seq, payload=b"", version=m.VERSION):
    """Return the wire bytes for one frame, including the trailing 0x00."""
    if len(payload) > m.MAX_PAYLOAD:
        raise ProtocolError(m.E_OVERSIZE, "payload %d > %d" % (len(payload), m.MAX_PAYLOAD))
    raw = struct.pack(m.HEADER_FMT, version, mtype, seq & 0xFFFF, len(payload)) + payload
    raw = raw + struct.pack(">H", crc16(raw))
    return cobs.encode(raw) + DELIM


def encode_message(mtype, seq, fields):
    """pack_payload + encode_frame in one call."""
    return encode_frame(mtype, seq, m.pack_payload(mtype, fields))


def decode_frame(block):
    """Decode one COBS block (no delimiter).  Raises ProtocolError only."""
    try:
        if len(block) > m.MAX_ENCODED:
            raise ProtocolError(m.E_OVERSIZE, "%d bytes" % len(block))
        try:
            raw = cobs.decode(block)
        except ValueError:
            raise ProtocolError(m.E_COBS, "bad COBS")
        n = len(raw)
        if n < m.HEADER_SIZE + m.CRC_SIZE:
            raise ProtocolError(m.E_SHORT, "%d bytes" % n)
        body = raw[:n - 2]
        if crc16(body) != struct.unpack(">H", raw[n - 2:])[0]:
            raise ProtocolError(m.E_CRC, "crc mismatch")
        version, mtype, seq, plen = struct.unpack(m.HEADER_FMT, body[:m.HEADER_SIZE])
        if version != m.VERSION:
            raise ProtocolError(m.E_VERSION, "version %d" % version)
        if plen != n - m.HEADER_SIZE - m.CRC_SIZE:
            raise ProtocolError(m.E_LENGTH, "header says %d bytes" % plen)
        size = m.SIZES.get(mtype)
        if size is None:
            raise ProtocolError(m.E_TYPE, "type 0x%02x" % mtype)
        if plen != size:
            raise ProtocolError(m.E_LENGTH, "%s needs %d bytes, got %d" % (m.NAMES[mtype], size, plen))
        return Frame(mtype, seq, bytes(body[m.HEADER_SIZE:]), version)
    except ProtocolError:
        raise
    except Exception as exc:  # defensive: never leak anything else
        raise ProtocolError(m.E_COBS, repr(exc))


class FrameDecoder:
    """Streaming decoder: feed bytes in any chunking, get frames and errors back.

    Resynchronises on every 0x00.  Bytes beyond MAX_ENCODED before a delimiter
    are dropped and reported once as E_OVERSIZE.  Empty blocks (0x00 0x00) are
    idle fill and ignored.
    """

    def __init__(self, max_encoded=m.MAX_ENCODED):
        self.max_encoded = max_encoded
        self._buf = bytearray()
        self._overflow = False
        self.frames = 0
        self.errors = {}            # E_* code -> count
        self.error_total = 0
        self.bytes_in = 0

    def _error(self, err, out):
        self.errors[err.code] = self.errors.get(err.code, 0) + 1
        self.error_total += 1
        out.append(err)

    def feed(self, data):
        """Consume bytes; return a list of Frame and ProtocolError items, in order."""
        out = []
        if not data:
            return out
        data = bytes(data)
        self.bytes_in += len(data)
        n = len(data)
        start = 0
        while start <= n:
            i = data.find(DELIM, start)
            end = n if i < 0 else i
            if end > start and not self._overflow:
                if len(self._buf) + (end - start) > self.max_encoded:
                    self._overflow = True
                    self._buf = bytearray()
                else:
                    self._buf.extend(data[start:end])
            if i < 0:
                break
            if self._overflow:
                self._overflow = False
                self._error(ProtocolError(m.E_OVERSIZE, "no delimiter within %d bytes" % self.max_encoded), out)
            elif self._buf:
                block = bytes(self._buf)
                self._buf = bytearray()
                try:
                    out.append(decode_frame(block))
                    self.frames += 1
                except ProtocolError as err:
                    self._error(err, out)
            start = i + 1
        return out

    def reset(self):
        """Drop any partial frame (e.g. after reconnect)."""
        self._buf = bytearray()
        self._overflow = False
