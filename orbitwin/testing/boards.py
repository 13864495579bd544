"""A firmware-sim board on a pseudo-terminal, bridged to MQTT as a satellite's payload (hardware in the loop).

The board is the real firmware (``orbitwin_fw``) run on the host over a pty (``orbitwin_fw_host``), and
the bridge is ``orbitwin bridge serial``'s :class:`~bridges.board.bridge.SerialBridge`: what a bench
with a dev board on USB runs, minus the USB cable. The twin binds the board when the bridge's state
says it is online (``payload_source`` 1 in telemetry); boards run on wall time, so pair them with a
twin at ``speed="real"``.
"""

from __future__ import annotations

from typing import Any

from twin.contract.topics import DEFAULT_PREFIX
from twin.mqtt import MqttSettings


class SimBoard:
    """A started firmware-sim board (``sim``: its handle, ``firmware`` inspectable) and its serial bridge."""

    def __init__(self, sat: str, broker: MqttSettings | str, *, seed: int = 7, prefix: str = DEFAULT_PREFIX,
                 board: str | None = None) -> None:
        from bridges.board.bridge import SerialBridge, SerialBridgeSettings
        from orbitwin_fw_host import start_sims, stop_sims

        self.sat = sat
        self._stop_sims = stop_sims
        self._sims = start_sims(1, seed=seed, mode="thread")
        self.sim: Any = self._sims[0]
        try:
            self.bridge = SerialBridge(SerialBridgeSettings(self.sim.port_path, sat, MqttSettings.coerce(broker),
                                                            board=board, prefix=prefix)).start()
        except BaseException:
            stop_sims(self._sims)
            raise
        self.board = self.bridge.board

    @property
    def firmware(self) -> Any:
        """The firmware object of the board (its load, payload memory, latch state)."""
        return self.sim.firmware

    def stop(self) -> None:
        try:
            self.bridge.stop()
        finally:
            self._stop_sims(self._sims)

    def __enter__(self) -> SimBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
