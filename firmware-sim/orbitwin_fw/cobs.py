"""Consistent Overhead Byte Stuffing (COBS), MicroPython-compatible.

encode() output never contains 0x00, so 0x00 can delimit frames.  Overhead is
1 + floor(n / 254) bytes.  Byte-for-byte identical to the `cobs` PyPI package.
"""


class CobsError(ValueError):
    """Raised by decode() on malformed input."""


def encode(data):
    """COBS-encode bytes-like `data` (without the trailing 0x00 delimiter)."""
    out = bytearray(1)
    ci = 0
    code = 1
    n = len(data)
    i = 0
    for b in data:
        i += 1
        if b == 0:
            out[ci] = code
            ci = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[ci] = code
                if i < n:
                    ci = len(out)
                    out.append(0)
                    code = 1
    out[ci] = code
    return bytes(out)


def decode(data):
    """Decode one COBS block (no delimiter).  Raises CobsError if malformed."""
    out = bytearray()
    n = len(data)
    i = 0
    while i < n:
        code = data[i]
        if code == 0:
            raise CobsError("zero byte in COBS data")
        i += 1
        end = i + code - 1
        if end > n:
            raise CobsError("COBS code points past end of frame")
        while i < end:
            b = data[i]
            if b == 0:
                raise CobsError("zero byte in COBS data")
            out.append(b)
            i += 1
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)
