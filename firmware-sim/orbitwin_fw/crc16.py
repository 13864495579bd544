"""CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0).

Check value: crc16(b"123456789") == 0x29B1.  Table-driven, MicroPython-compatible.
"""

POLY = 0x1021
INIT = 0xFFFF
CHECK = 0x29B1


def _make_table():
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            if c & 0x8000:
                c = ((c << 1) ^ POLY) & 0xFFFF
            else:
                c = (c << 1) & 0xFFFF
        table.append(c)
    return tuple(table)


_TABLE = _make_table()


def crc16(data, crc=INIT):
    """Return the CRC of bytes-like `data`; pass `crc` to continue a running CRC."""
    t = _TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b) & 0xFF]
    return crc
