"""Start and stop a set of simulated boards, as threads of this process or one process each."""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Protocol

from orbitwin_fw.main import Firmware
from orbitwin_fw_host.procs import ProcSimHandle
from orbitwin_fw_host.sim import SimHandle


class BoardHandle(Protocol):
    """What :class:`SimHandle` and :class:`ProcSimHandle` both offer."""

    index: int
    seed: int
    port_path: str
    tty_path: str | None

    @property
    def firmware(self) -> Firmware | None:
        """The running firmware object (None when the board runs in another process or is unplugged)."""

    @property
    def plugged(self) -> bool:
        """Whether the board's pty exists (USB cable in)."""

    def unplug(self) -> None: ...
    def replug(self) -> None: ...
    def hardware_reset(self) -> None: ...
    def stop(self) -> None: ...


def start_sims(count: int, seed: int = 1, link_dir: str | None = None, mode: str = "thread",
               **fw_kwargs: Any) -> list[BoardHandle]:
    """Start `count` simulated boards; returns handles (port_path = stable symlink).

    mode "thread" (default): boards are threads of this process and
    handle.firmware is inspectable; mode "process": one process per board
    (ProcSimHandle), so busy boards do not share a GIL.  fw_kwargs go to
    orbitwin_fw.main.Firmware (telemetry_hz, load, buffer_size, ...).
    """
    if mode not in ("thread", "process"):
        raise ValueError("mode must be 'thread' or 'process'")
    link_dir = link_dir or tempfile.mkdtemp(prefix="orbitwin-sim-")
    os.makedirs(link_dir, exist_ok=True)
    handles: list[BoardHandle] = []
    try:
        for i in range(count):
            if mode == "process":
                handles.append(ProcSimHandle(i, seed + i, link_dir, fw_kwargs))
            else:
                handles.append(SimHandle(i, seed + i, link_dir, fw_kwargs))
    except Exception:
        stop_sims(handles)
        shutil.rmtree(link_dir, ignore_errors=True)
        raise
    return handles


def stop_sims(handles: list[BoardHandle]) -> None:
    """Stop all handles and remove their link directory."""
    dirs = {os.path.dirname(h.port_path) for h in handles}
    for h in handles:
        h.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
