"""Run the unmodified firmware (orbitwin_fw) on the slave side of host ptys.

Each simulated board is one thread owning a pty master; the slave device
(/dev/pts/N) is opened by pyserial exactly like a USB serial board.  A stable
symlink (<link_dir>/board<i> -> /dev/pts/N) survives unplug/replug, because
Linux may hand out a different pts number when the pty is re-created.
"""
from __future__ import annotations

import math
import os
import select
import threading
import time
import tty

from orbitwin_fw import board as bd
from orbitwin_fw import messages as m
from orbitwin_fw.main import Firmware

AMBIENT_K = 300.0          # die temperature at zero load
DELTA_K_FULL = 35.0        # steady-state rise at 100 % utilisation
TAU_S = 4.0                # thermal time constant
WRITE_STALL_S = 0.05       # a blocked pty write longer than this drops bytes


class PtyPort:
    """Firmware port on a pty master fd (non-blocking)."""

    def __init__(self, master_fd: int) -> None:
        self.fd = master_fd
        os.set_blocking(master_fd, False)
        self.dropped = 0

    def read(self) -> bytes | None:
        try:
            return os.read(self.fd, 4096) or None
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return None

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + WRITE_STALL_S
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([], [self.fd], [], left)[1]:
                    self.dropped += len(view)     # nobody reading: like a UART, drop
                    return
            except OSError:
                self.dropped += len(view)
                return

    def wait(self, timeout_ms: float) -> bool:
        try:
            return bool(select.select([self.fd], [], [], timeout_ms / 1000.0)[0])
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        pass


class SimBoard(bd.Board):
    """Board services for the simulator: pty port, soft watchdog, thermal model."""

    platform = "sim"
    n_cores = 1
    n_accel = 1

    def __init__(self, port: PtyPort, index: int, wdt_timeout_ms: int = 1000) -> None:
        super().__init__(port, wdt_timeout_ms=wdt_timeout_ms, use_hw_wdt=False)
        self.index = index
        self.temp_k = AMBIENT_K
        self._util = 0.0
        self._t = time.monotonic()

    def board_id(self) -> str:
        return "sim-%d" % self.index

    def has_die_temp(self) -> bool:
        return True

    def note_utilisation(self, util: float, dt_ms: float) -> None:
        self.die_temp_k()
        self._util = util

    def die_temp_k(self) -> float:
        """First-order lag towards AMBIENT + DELTA * utilisation."""
        now = time.monotonic()
        dt, self._t = now - self._t, now
        target = AMBIENT_K + DELTA_K_FULL * self._util
        self.temp_k = target + (self.temp_k - target) * math.exp(-dt / TAU_S)
        return self.temp_k

    def reset(self, cause: int) -> None:  # the runner reboots the firmware
        raise RuntimeError("SimBoard.reset is handled by SimHandle")


class SimHandle:
    """One simulated board.  port_path is stable across unplug/replug."""

    def __init__(self, index: int, seed: int, link_dir: str, fw_kwargs: dict | None = None) -> None:
        self.index = index
        self.seed = seed
        self.port_path = os.path.join(link_dir, "board%d" % index)
        self.tty_path: str | None = None
        self.fw_kwargs = dict(fw_kwargs or {})
        self.wdt_timeout_ms = int(self.fw_kwargs.pop("wdt_timeout_ms", 1000))
        self.firmware: Firmware | None = None
        self.board: SimBoard | None = None
        self.boot_count = 0
        self.crashes = 0
        self._master = self._slave = -1
        self._lock = threading.Lock()
        self._requests: list = []
        self._stop = threading.Event()
        self._plugged = False
        self._thread = threading.Thread(target=self._run, name="sim-board%d" % index, daemon=True)
        self._plug()
        self._boot(m.RC_POWER_ON)
        self._thread.start()

    # ---- public API ---------------------------------------------------------
    @property
    def plugged(self) -> bool:
        return self._plugged

    def unplug(self) -> None:
        """Close the pty and remove the symlink, like pulling the USB cable."""
        self._call("unplug")

    def replug(self) -> None:
        """New pty, symlink updated, firmware powers on (USB-powered board)."""
        self._call("replug")

    def hardware_reset(self) -> None:
        """What toggling DTR/RTS into the reset pin does: reboot, port stays."""
        self._call("reset")

    def stop(self) -> None:
        """Stop the board thread and release the pty and symlink."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2.0)
        self._unplug()
        try:
            os.rmdir(os.path.dirname(self.port_path))    # last board removes the dir
        except OSError:
            pass

    def __repr__(self) -> str:
        return "SimHandle(board%d, %s -> %s)" % (self.index, self.port_path, self.tty_path)

    # ---- internals ------------------------------------------------------------
    def _call(self, what: str, timeout: float = 2.0) -> None:
        done = threading.Event()
        with self._lock:
            self._requests.append((what, done))
        if not done.wait(timeout):
            raise TimeoutError("sim board%d did not handle %s" % (self.index, what))

    def _plug(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)        # no echo, no CR/LF translation
        self.tty_path = os.ttyname(self._slave)
        tmp = self.port_path + ".new"
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(self.tty_path, tmp)
        os.replace(tmp, self.port_path)
        self.board = SimBoard(PtyPort(self._master), self.index, self.wdt_timeout_ms)
        self._plugged = True

    def _unplug(self) -> None:
        self._plugged = False
        self.firmware = None
        try:
            os.unlink(self.port_path)
        except FileNotFoundError:
            pass
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = -1
        self.tty_path = None

    def _boot(self, cause: int) -> None:
        kw = dict(seed=self.seed)
        kw.update(self.fw_kwargs)
        self.firmware = Firmware(self.board, boot_count=self.boot_count, reset_cause=cause, **kw)
        self.boot_count += 1

    def _service_requests(self) -> None:
        with self._lock:
            reqs, self._requests = self._requests, []
        for what, done in reqs:
            if what == "unplug" and self._plugged:
                self._unplug()
            elif what == "replug" and not self._plugged:
                self._plug()
                self._boot(m.RC_POWER_ON)
            elif what == "reset" and self._plugged:
                self._boot(m.RC_EXTERNAL)
            done.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._requests:
                self._service_requests()
            fw = self.firmware
            if not self._plugged or fw is None:
                self._stop.wait(0.01)
                continue
            try:
                idle = fw.step()
            except Exception:          # firmware crash: the watchdog would reboot it
                self.crashes += 1
                self._boot(m.RC_CRASH)
                continue
            if fw.reset_request is not None:
                cause = fw.reset_request if fw.reset_request >= 0 else m.RC_SOFT
                if cause == m.RC_POWER_CYCLE:
                    self.board.temp_k = AMBIENT_K
                self._boot(cause)
            elif fw.hung and self.board.wdt_expired():
                self._boot(m.RC_WATCHDOG)
            elif idle:
                self.board.port.wait(min(idle, 10))
        self._service_requests()
