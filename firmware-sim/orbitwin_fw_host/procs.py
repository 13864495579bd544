"""Process-per-board mode: each simulated board in its own Python process.

Threads share one GIL, so eight busy boards in one process cannot each reach
their load set-point; a process per board behaves like separate hardware.
The firmware object is then not inspectable from the parent (firmware=None).
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import threading

from orbitwin_fw_host.sim import SimHandle


def _child(conn, index: int, seed: int, link_dir: str, fw_kwargs: dict) -> None:
    h = SimHandle(index, seed, link_dir, fw_kwargs)
    conn.send(h.tty_path)
    try:
        while True:
            what = conn.recv()
            if what == "stop":
                break
            getattr(h, what)()
            conn.send(h.tty_path)
    except (EOFError, OSError):
        pass                                  # parent went away
    finally:
        h.stop()
        try:
            conn.send(None)
        except (OSError, EOFError):
            pass


class ProcSimHandle:
    """Same API as SimHandle, board running in a child process."""

    firmware = None

    def __init__(self, index: int, seed: int, link_dir: str, fw_kwargs: dict | None = None) -> None:
        self.index = index
        self.seed = seed
        self.port_path = os.path.join(link_dir, "board%d" % index)
        self._lock = threading.Lock()
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, name="sim-board%d" % index, daemon=True,
                                 args=(child_conn, index, seed, link_dir, dict(fw_kwargs or {})))
        self._proc.start()
        mp.connection.wait([self._conn, self._proc.sentinel], 10.0)
        if not self._conn.poll(0):
            self._proc.kill()
            raise TimeoutError("sim board%d process did not start" % index)
        self.tty_path: str | None = self._conn.recv()
        self.plugged = True

    def _call(self, what: str) -> None:
        with self._lock:
            self._conn.send(what)
            if not self._conn.poll(5.0):
                raise TimeoutError("sim board%d did not handle %s" % (self.index, what))
            self.tty_path = self._conn.recv()

    def unplug(self) -> None:
        self._call("unplug")
        self.plugged = False

    def replug(self) -> None:
        self._call("replug")
        self.plugged = True

    def hardware_reset(self) -> None:
        self._call("hardware_reset")

    def stop(self) -> None:
        with self._lock:
            if self._proc.is_alive():
                try:
                    self._conn.send("stop")
                    self._conn.poll(3.0)
                except OSError:
                    pass
                self._proc.join(3.0)
                if self._proc.is_alive():
                    self._proc.kill()
                    self._proc.join(1.0)

    def __repr__(self) -> str:
        return "ProcSimHandle(board%d, %s -> %s, pid %s)" % (self.index, self.port_path, self.tty_path, self._proc.pid)
