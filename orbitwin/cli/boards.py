"""``orbitwin boards``: the serial ports of this machine, with USB ids, and which look like dev boards."""

from __future__ import annotations

import argparse
import json
from typing import Any

# USB vendor id -> what it usually is on a bench
KNOWN_VENDORS: dict[int, str] = {
    0x2E8A: "Raspberry Pi (Pico, RP2040/RP2350)",
    0x303A: "Espressif (ESP32-S2/S3/C3 native USB)",
    0x0483: "STMicroelectronics (STM32, ST-LINK)",
    0x0403: "FTDI USB-serial",
    0x10C4: "Silicon Labs CP210x USB-serial",
    0x1A86: "WCH CH340/CH341 USB-serial",
    0x2341: "Arduino",
    0x239A: "Adafruit",
    0x0D28: "Arm DAPLink (micro:bit, mbed)",
}

NO_PORTS = ("no serial ports found. A USB board shows up as /dev/ttyACM* or /dev/ttyUSB* (COMn on Windows, "
            "/dev/cu.usbmodem* on macOS): check the cable carries data (not charge-only), look at `dmesg | tail` "
            "after plugging it in, and make sure your user may open it (Linux: group dialout, "
            "sudo usermod -aG dialout $USER, then log in again). No board at hand? "
            "`python -m orbitwin_fw_host --count 1` runs a firmware-sim board on a pseudo-terminal and prints its port.")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("boards", help="list serial ports (USB VID:PID, serial number, maker) and spot dev boards",
                       description="List this machine's serial ports with their USB vendor and product ids, serial "
                                   "number, manufacturer and description; known dev-board vendors are marked. Then: "
                                   "orbitwin bridge serial --port DEVICE --sat NAME --mqtt URL")
    p.add_argument("--json", action="store_true", help="print the ports as one JSON array (for scripts)")
    p.set_defaults(func=cmd_boards)


def port_info(port: Any) -> dict[str, Any]:
    """One port (a pyserial ``ListPortInfo``) as a plain dict; ``vid_pid`` as ``2E8A:0005`` or None."""
    vid, pid = port.vid, port.pid
    return {"device": port.device, "vid_pid": f"{vid:04X}:{pid:04X}" if vid is not None and pid is not None else None,
            "vid": vid, "pid": pid, "serial_number": port.serial_number, "manufacturer": port.manufacturer,
            "product": port.product, "description": port.description if port.description != "n/a" else None,
            "location": port.location, "known_board": KNOWN_VENDORS.get(vid) if vid is not None else None}


def format_port(info: dict[str, Any]) -> str:
    """One line: device, VID:PID, what the vendor usually is, maker and product, serial number."""
    if info["vid_pid"] is None:
        return f"{info['device']}  (no USB ids: a built-in or virtual port, {info['description'] or 'no description'})"
    words = [info["device"], info["vid_pid"]]
    if info["known_board"]:
        words.append(f"[dev board: {info['known_board']}]")
    maker = " ".join(w for w in (info["manufacturer"], info["product"] or info["description"]) if w)
    words.append(maker or "(no description)")
    if info["serial_number"]:
        words.append(f"serial {info['serial_number']}")
    return "  ".join(words)


def format_ports(infos: list[dict[str, Any]]) -> str:
    """The listing for people: one line per port (USB ones first), or what to check when there is none."""
    if not infos:
        return NO_PORTS
    infos = sorted(infos, key=lambda i: (i["vid_pid"] is None, i["known_board"] is None, i["device"]))
    lines = [format_port(i) for i in infos]
    if any(i["vid_pid"] for i in infos):
        lines.append("then: orbitwin bridge serial --port DEVICE --sat NAME --mqtt mqtt://BROKER")
    return "\n".join(lines)


def cmd_boards(a: argparse.Namespace) -> int:
    from serial.tools.list_ports import comports  # type: ignore[import-untyped]  # pyserial ships no stubs

    infos = [port_info(p) for p in comports()]
    print(json.dumps(infos) if a.json else format_ports(infos))
    return 0
