"""Fault campaign on hardware in the loop: a firmware-sim board as STARLINK-1008's payload.

The board is the real firmware on a pseudo-terminal (``orbitwin_fw_host``), bridged to MQTT by the
serial bridge (``orbitwin bridge serial``'s code); a bench with a dev board on USB runs the same
with the board's port. A board runs on its own clock, so the twin runs at real time
(``speed="real"``, 0.25 s ticks, housekeeping and payload packets at 4 Hz) and the windows are
short. Two satellites.

1. The board binds: the satellite's payload telemetry comes from it (``payload_source`` 1).
2. A command to the satellite reaches the board: ``set_payload_load`` 0.3 sets the firmware's load.
3. A latch-up injected on the satellite is forwarded to the board (board event ``latchup``); the
   onboard FDIR power-cycles it (``fdir``/``power_cycle``), the board clears it (``latchup_cleared``)
   and the payload works again from the board within 20 s.
"""

from __future__ import annotations

from typing import Any

import pytest

from orbitwin.client import OrbitwinClient
from orbitwin.testing.assertions import within

pytestmark = pytest.mark.orbitwin_twin(count=2, dt_s=0.25, speed="real", rates="hk=4,payload=4")


def test_board_latchup_is_power_cycled_and_recovers(orbitwin_twin: Any, orbitwin_client: OrbitwinClient,
                                                    orbitwin_board_factory: Any) -> None:
    sat = orbitwin_twin.names[0]
    payload = orbitwin_client.telemetry(sat, fields=["payload_source", "payload_util"])
    events = orbitwin_client.events(sat, boards=True)
    board = orbitwin_board_factory(sat, seed=7)

    bound = within(30).after(orbitwin_twin.t_s).expect(payload, sat, "payload_source", equals=1, clock=orbitwin_twin)
    within(10).after(bound).event(events, "board_linked", sat=sat, clock=orbitwin_twin)

    orbitwin_client.command(sat, "set_payload_load", load=0.3)
    within(10).after(orbitwin_twin.t_s).expect(payload, sat, "payload_util", below=0.45, clock=orbitwin_twin)
    assert abs(board.firmware.load - 0.3) < 1e-6

    fault = orbitwin_client.fault(sat, "latchup", device=2)
    within(10).after(fault).event(events, "power_cycle", sat=sat, kind="fdir", clock=orbitwin_twin)
    latched = [e for e in events.history if e.get("board") == board.board and e["name"] == "latchup"]
    assert latched, f"the board never reported the latch-up; events: {[e['name'] for e in events.history]}"
    within(20).after(fault).expect(payload, sat, "payload_util", above=0.2, clock=orbitwin_twin)
    # board events carry the bridge's wall time, not sim time: wait for it in arrival order
    assert next(e for e in events if e["name"] == "latchup_cleared")["board"] == board.board
