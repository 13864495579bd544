"""Orbitwin compute-payload firmware (MicroPython-compatible).

The same files run on a real board (Raspberry Pi Pico, ESP32, ...) and on a
host over a pseudo-terminal (see orbitwin_fw_host).  Only modules available in
MicroPython are imported; see docs/serial-protocol.md.
"""
FW_VERSION = (0, 1, 0)
