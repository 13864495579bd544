"""Serial link benchmark over firmware-sim ptys: command round trip and frame rate.

A pty ignores the baud rate: bytes move at memory speed whatever termios says,
so the "115200" row measures the same transport as the fastest row.  Each row
also reports ``uart_limit_frames_per_s``, what a real 8N1 UART at that baud
rate could carry, so the numbers are not mistaken for hardware results.
"""
from __future__ import annotations

import json
import os
import threading
import time
import tty
from collections.abc import Callable

import serial

from bridges.board.link import SerialLink
from orbitwin_fw import messages as m
from orbitwin_fw.framing import encode_message
from orbitwin_fw_host import start_sims, stop_sims

PTY_MAX_BAUD = 4_000_000        # highest termios rate Linux defines (B4000000)


def _pct(samples_s: list[float], q: float) -> float:
    xs = sorted(samples_s)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))] * 1000.0, 3)


def _raw_echo_baseline(n: int) -> dict:
    """Write 16 bytes to a bare pty, an echo thread returns them; no protocol."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            os.write(master, data)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    ser = serial.Serial(os.ttyname(slave), 115200, timeout=1.0)
    msg, rtts = bytes(range(1, 17)), []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            ser.write(msg)
            if ser.read(len(msg)) != msg:
                raise RuntimeError("echo mismatch")
            rtts.append(time.perf_counter() - t0)
    finally:
        stop.set()
        ser.close()
        os.close(slave)
        os.close(master)
        t.join(1.0)
    return {"round_trip_p50_ms": _pct(rtts, 0.5), "round_trip_p99_ms": _pct(rtts, 0.99), "samples": n}


def _bench_one(baud: int, n: int, flood_s: float, seed: int, mode: str, load: float,
               tick: Callable[[], None] | None = None) -> dict:
    sims = start_sims(1, seed, mode=mode, load=load)
    count = [0]

    def on_message(msg: object) -> None:
        count[0] += 1

    link = SerialLink(sims[0].port_path, baud, on_message=on_message, ack_timeout_s=0.5, retries=0)
    try:
        link.start()
        if not link.wait_connected(5.0):
            raise RuntimeError("board did not connect")
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            if not link.ping().ok:
                raise RuntimeError("ping refused")
            rtts.append(time.perf_counter() - t0)
            if tick is not None:
                tick()
        link.set_telemetry_hz(1000.0)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(flood_s)                    # measuring a rate over a fixed window
        fps = (count[0] - c0) / (time.perf_counter() - t0)
        link.set_telemetry_hz(10.0)
        tm_bytes = len(encode_message(m.PAYLOAD_TELEMETRY, 0, {}))
        return {
            "round_trip_p50_ms": _pct(rtts, 0.5), "round_trip_p99_ms": _pct(rtts, 0.99),
            "frames_per_s": round(fps, 1), "samples": n,
            "uart_limit_frames_per_s": round(baud / 10.0 / tm_bytes, 1),
            "timeouts": link.stats["timeouts"], "protocol_errors":
                link.stats["crc_errors"] + link.stats["garbage"] + link.stats["oversize"],
        }
    finally:
        link.stop()
        stop_sims(sims)


def run_serial_bench(n_pings: int = 500, bauds: tuple[int, ...] = (115200, PTY_MAX_BAUD),
                     flood_s: float = 1.0, seed: int = 1, mode: str = "process",
                     load: float = 0.5, progress: Callable[[float, float], None] | None = None) -> dict:
    """Measure ACK round trip (host -> board -> host) and received frames/s.

    Round trip = SerialLink.ping() wall time: COMMAND written, firmware loop
    decodes and ACKs, host reader decodes the ACK.  frames_per_s = frames the
    host decoded per second with board telemetry set to 1000 Hz (capped by the
    firmware loop, not by the pty).  mode "process" runs the board in its own
    process, as real hardware would be; the board keeps `load` busy meanwhile.
    ``progress(done, total)``: pings answered, over every baud rate.
    """
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], n_pings * len(bauds))

    out: dict = {
        "transport": "pty (firmware-sim, %s mode)" % mode,
        "note": "pty ignores baud rate; rows differ only in the termios setting",
        "board_load": load,
        "baseline_raw_pty_echo": _raw_echo_baseline(n_pings),
        "by_baud": {},
    }
    for baud in bauds:
        out["by_baud"][str(baud)] = _bench_one(baud, n_pings, flood_s, seed, mode, load, tick)
    return out


if __name__ == "__main__":
    print(json.dumps(run_serial_bench(), indent=2))
