"""Convenience commands of SerialLink, built on command() and inject_fault()."""
from __future__ import annotations

import time
from typing import Any

import serial

from orbitwin_fw import messages as m
from bridges.board.link_types import Ack, LinkDown


class BoardCommands:
    """Mixin: named COMMAND/FAULT helpers and the DTR/RTS hardware reset."""

    _ser: Any
    url: str

    def command(self, code: int, value: float = 0.0, *, timeout: float | None = None,
                retries: int | None = None) -> Ack:  # pragma: no cover
        raise NotImplementedError

    def inject_fault(self, kind: int, arg: int = 0, flags: int = 0, *,
                     timeout: float | None = None) -> Ack:  # pragma: no cover
        raise NotImplementedError

    def ping(self) -> Ack:
        return self.command(m.CMD_PING)

    def set_load(self, load: float) -> Ack:
        return self.command(m.CMD_SET_LOAD, load)

    def set_throttle(self, throttle: float) -> Ack:
        return self.command(m.CMD_SET_THROTTLE, throttle)

    def set_telemetry_hz(self, hz: float) -> Ack:
        return self.command(m.CMD_SET_TELEMETRY_HZ, hz)

    def reset(self) -> Ack:
        return self.command(m.CMD_RESET)

    def power_cycle(self) -> Ack:
        return self.command(m.CMD_POWER_CYCLE)

    def inject_seu(self, bit: int, double: bool = False) -> Ack:
        return self.inject_fault(m.FAULT_SEU, bit, m.FAULT_SEU_DOUBLE if double else 0)

    def inject_latchup(self) -> Ack:
        return self.inject_fault(m.FAULT_LATCHUP)

    def inject_hang(self) -> Ack:
        return self.inject_fault(m.FAULT_HANG)

    def hardware_reset(self, pulse_s: float = 0.1) -> str:
        """Pulse RTS (EN) with DTR released, as ESP32 auto-reset circuits expect.

        Returns "dtr_rts", or "command" if the port has no modem-control lines
        (pty, many Pico CDC setups) and CMD_POWER_CYCLE was sent instead.
        """
        ser = self._ser
        if ser is None:
            raise LinkDown(self.url)
        try:
            ser.dtr = False
            ser.rts = True
            time.sleep(pulse_s)
            ser.rts = False
            return "dtr_rts"
        except (OSError, serial.SerialException, ValueError):
            self.power_cycle()
            return "command"
