"""Fault campaign: a payload heat-pipe failure, the onboard FDIR's answer, and recovery once it is cleared.

Run it with ``pytest examples/campaigns`` (a mosquitto on the machine; the orbitwin pytest plugin
starts the broker and the twin). The twin runs in lockstep: sim time moves only when the test (or
an assertion waiting for its window) moves it, so the campaign's verdict does not depend on how
busy the machine is. Two satellites, 5 s ticks, seed 1.

1. STARLINK-1008's heat pipe fails completely (``heatpipe_degradation`` with efficiency 0): the
   payload node heats; within 2,400 s of sim time it is above its yellow high limit, and the
   onboard FDIR has throttled the payload on the way (``fdir``/``payload_throttle``).
2. It never reaches red meanwhile: the throttle holds it.
3. The fault is cleared (``clear_fault`` with the fault id of the injection's reply): within 600 s
   the payload is back below yellow.
4. The other satellite stayed nominal throughout.
"""

from __future__ import annotations

from typing import Any

import pytest

from orbitwin.client import OrbitwinClient, RequestRejected
from orbitwin.testing.assertions import within

pytestmark = pytest.mark.orbitwin_twin(count=2, dt_s=5.0, seed=1)


def test_heatpipe_failure_overheats_throttles_and_recovers(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat, other = orbitwin_twin.names
    hk = orbitwin_client.telemetry(None, packets="hk")  # opened first: it sees everything after the fault
    events = orbitwin_client.events(sat)
    fault = orbitwin_client.fault(sat, "heatpipe_degradation", efficiency=0.0)

    hot = within(2400).after(fault).expect(hk, sat, "payload_temp_k", above="yellow", clock=orbitwin_twin)
    within(2400).after(fault).event(events, "payload_throttle", kind="fdir", clock=orbitwin_twin)
    within(hot.t_s - fault["t_s"]).after(fault).always(hk, sat, "payload_temp_k", below="red", clock=orbitwin_twin)

    cleared = orbitwin_client.command(sat, "clear_fault", fault_id=fault["result"]["fault_id"])
    within(600).after(cleared).expect(hk, sat, "payload_temp_k", below="yellow", clock=orbitwin_twin)
    within(cleared["t_s"] - fault["t_s"]).after(fault).always(hk, other, "payload_temp_k", below="yellow",
                                                             clock=orbitwin_twin)


def test_safe_mode_entry_refuses_payload_commands_and_recovers(orbitwin_twin: Any,
                                                              orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[1]
    hk = orbitwin_client.telemetry(sat, packets="hk")
    entered = orbitwin_client.command(sat, "enter_safe_mode")
    within(10).after(entered).expect(hk, sat, "mode", equals=1, clock=orbitwin_twin)
    with pytest.raises(RequestRejected) as refused:
        orbitwin_client.command(sat, "set_payload_load", load=0.5)
    assert refused.value.reason == "not_now"
    within(60).after(entered).always(hk, sat, "payload_util", equals=0.0, clock=orbitwin_twin)

    left = orbitwin_client.command(sat, "leave_safe_mode")
    within(10).after(left).expect(hk, sat, "mode", equals=0, clock=orbitwin_twin)
    within(60).after(left).expect(hk, sat, "payload_util", above=0.5, clock=orbitwin_twin)
