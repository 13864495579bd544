"""The mesh inside the fleet engine (opt-in ``FleetTwin(network=True)``): terminal faults, safe mode
and lost satellites take links down in the tick they happen, and laser terminal power follows the
links in use. The default engine (``network=False``) is unchanged (tests/test_engine.py)."""

from __future__ import annotations

import numpy as np

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.schema.telemetry import MODE_NOMINAL

DESIGN = load_design()
CAT = load_catalogue().select(alt_km=(530.0, 550.0), inc_deg=(53.1, 53.3))


def _twin() -> FleetTwin:
    return FleetTwin(CAT, DESIGN, dt_s=1.0, orbit_worker=False, network=True)


def test_terminal_power_follows_the_links_in_use() -> None:
    with _twin() as twin:
        twin.step()
        net = twin.net
        assert net is not None
        assert net.links_up.mean() > 3.0
        expected = DESIGN.power.isl_terminal_w * net.terminals_in_use
        assert np.allclose(twin.tm["isl_power_w"], expected)
        assert np.isfinite(net.gw_delay_s).mean() > 0.8


def test_a_terminal_failure_and_safe_mode_take_links_down_in_the_tick() -> None:
    with _twin() as twin:
        twin.step()
        net = twin.net
        assert net is not None
        # a satellite other satellites route through, with four links up
        users = np.bincount(net.gw_next_sat[net.gw_next_sat >= 0], minlength=twin.n)
        relay = int(np.flatnonzero((net.links_up == 4) & (users > 0))[0])
        name = twin.names[relay]
        twin.submit("fault", "laser_terminal_failure", {"terminals": 2}, name, at_s=twin.t_s + twin.dt_s)
        twin.step()
        net = twin.net
        assert net is not None
        assert net.links_up[relay] <= 2  # the two cross-plane terminals fail first
        assert twin.tm["isl_power_w"][relay] <= 2 * DESIGN.power.isl_terminal_w
        twin.submit("command", "enter_safe_mode", {}, name, at_s=twin.t_s + twin.dt_s)
        twin.step()
        net = twin.net
        assert net is not None
        assert twin.mode[relay] != MODE_NOMINAL
        assert net.links_up[relay] == 0 and twin.tm["isl_power_w"][relay] == 0.0
        assert not np.any(net.gw_next_sat == relay)  # nobody routes through it any more
