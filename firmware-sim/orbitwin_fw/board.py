"""Tiny hardware shim: clock, port, watchdog, die temperature, reset.

On a MicroPython board the port is USB-CDC stdio (polled with `select`, a
MicroPython built-in) or a machine.UART; on the host the simulator passes its
own port object.  A port has: read() -> bytes or None (non-blocking),
write(data), wait(timeout_ms) -> True if input is readable.
"""
import sys
import time

try:
    import machine
except ImportError:
    machine = None
try:
    import micropython
except ImportError:
    micropython = None

if hasattr(time, "ticks_ms"):
    ticks_ms = time.ticks_ms
    ticks_us = time.ticks_us
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
else:  # CPython shim with MicroPython's wrap-around semantics (period 2**30)
    _PERIOD = 1 << 30
    _HALF = _PERIOD >> 1
    _MASK = _PERIOD - 1

    def ticks_ms():
        return int(time.monotonic() * 1000) & _MASK

    def ticks_us():
        return int(time.perf_counter() * 1000000) & _MASK

    def ticks_diff(a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_add(a, b):
        return (a + b) & _MASK

    def sleep_ms(ms):
        time.sleep(ms / 1000.0)

NAN = float("nan")


class StdioPort:
    """USB-CDC console as a binary port (real boards). Disables Ctrl-C."""

    def __init__(self):
        import select
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        if micropython is not None:
            micropython.kbd_intr(-1)      # 0x03 is data, not KeyboardInterrupt

    def read(self):
        buf = bytearray()
        while len(buf) < 256 and self._poll.poll(0):
            b = self._in.read(1)
            if not b:
                break
            buf.extend(b)
        return bytes(buf) if buf else None

    def write(self, data):
        self._out.write(data)

    def wait(self, timeout_ms):
        return bool(self._poll.poll(int(timeout_ms)))

    def close(self):
        if micropython is not None:
            micropython.kbd_intr(3)


class UartPort:
    """machine.UART as a port (a board wired to a USB-UART adapter)."""

    def __init__(self, uart_id=0, baudrate=115200, **kw):
        self._uart = machine.UART(uart_id, baudrate, **kw)

    def read(self):
        if self._uart.any():
            return self._uart.read()
        return None

    def write(self, data):
        self._uart.write(data)

    def wait(self, timeout_ms):
        t0 = ticks_ms()
        while not self._uart.any():
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                return False
            sleep_ms(1)
        return True

    def close(self):
        pass


class Board:
    """Board services used by the firmware.  The simulator subclasses this."""

    platform = sys.platform
    n_cores = 1
    n_accel = 0

    def __init__(self, port, wdt_timeout_ms=2000, use_hw_wdt=False):
        self.port = port
        self.wdt_timeout_ms = wdt_timeout_ms
        self._wdt = None
        self._last_feed = ticks_ms()
        if use_hw_wdt and machine is not None and hasattr(machine, "WDT"):
            self._wdt = machine.WDT(timeout=wdt_timeout_ms)
        self._adc = None
        if machine is not None and sys.platform == "rp2":
            self.n_cores = 2
            try:
                self._adc = machine.ADC(4)       # RP2040 on-die temperature sensor
            except Exception:
                self._adc = None

    @property
    def hw_wdt(self):
        return self._wdt is not None

    def board_id(self):
        if machine is not None and hasattr(machine, "unique_id"):
            uid = machine.unique_id()
            return "".join("%02x" % b for b in uid)[:16]
        return "unknown"

    def has_die_temp(self):
        return self._adc is not None

    def die_temp_k(self):
        """Die temperature in kelvin, or NaN if the board has no sensor."""
        if self._adc is None:
            return NAN
        volts = self._adc.read_u16() * 3.3 / 65535
        return 27.0 - (volts - 0.706) / 0.001721 + 273.15

    def note_utilisation(self, util, dt_ms):
        """Hook for the simulator's thermal model; nothing on real boards."""

    def feed_wdt(self):
        self._last_feed = ticks_ms()
        if self._wdt is not None:
            self._wdt.feed()

    def wdt_expired(self):
        return ticks_diff(ticks_ms(), self._last_feed) > self.wdt_timeout_ms

    def reset(self, cause):
        """Reboot the board.  Real boards never return from this."""
        if machine is not None:
            machine.reset()
        raise SystemExit(cause)

    def hang(self):
        """A hung main loop: spin until the hardware watchdog bites."""
        while self._wdt is not None:
            pass
