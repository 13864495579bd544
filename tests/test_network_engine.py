"""The mesh inside the fleet engine (on by default; docs/network.md#engine-integration).

Terminal faults, safe mode, lost satellites, link outages and gateway outages change links and
routes in the tick they happen; laser terminal power follows the links in use; the city-pair
latency matrix is kept at its interval; network faults name satellites and gateways that exist.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.network.geometry import C_M_S, light_bound_rtt_s
from twin.schema.commands import CommandError, Reason
from twin.schema.telemetry import MODE_LOST, MODE_NOMINAL

DESIGN = load_design()
FLEET = load_catalogue()
CAT = FLEET.select(alt_km=(530.0, 550.0), inc_deg=(53.1, 53.3))
SMALL = FLEET.select(count=3)
W = DESIGN.power.isl_terminal_w


def _twin(**kw: object) -> FleetTwin:
    return FleetTwin(CAT, DESIGN, dt_s=1.0, orbit_worker=False, **kw)  # type: ignore[arg-type]


def _relay(twin: FleetTwin) -> int:
    """A satellite with four links up that other satellites route through to their gateway."""
    net = twin.net
    assert net is not None
    users = np.bincount(net.gw_next_sat[net.gw_next_sat >= 0], minlength=twin.n)
    return int(np.flatnonzero((net.links_up == 4) & (users > 0))[0])


def _fault_id(twin: FleetTwin) -> int:
    (ev,) = [e for e in twin.drain_events() if e.name == "fault_applied"]
    return int(ev.detail["result"]["fault_id"])


def test_the_network_is_on_by_default_and_can_be_switched_off() -> None:
    small = SMALL
    with FleetTwin(small, DESIGN, orbit_worker=False) as twin:
        assert twin.mesh is not None and twin.mesh.n == 3 and twin.net is not None  # over the selection only
    with FleetTwin(small, DESIGN, orbit_worker=False, network=False) as twin:
        assert twin.mesh is None and twin.net is None
        twin.step()
        assert twin.tm["isl_power_w"][0] == pytest.approx(W * DESIGN.power.isl_terminal_count)  # as fitted
    off = dataclasses.replace(DESIGN, network=dataclasses.replace(DESIGN.network, enabled=False))
    with FleetTwin(small, off, orbit_worker=False) as twin:
        assert twin.mesh is None


def test_terminal_power_follows_the_links_in_use() -> None:
    with _twin() as twin:
        twin.step()
        net = twin.net
        assert net is not None
        assert net.links_up.mean() > 3.0
        assert np.array_equal(twin.tm["isl_power_w"], W * net.terminals_in_use)
        assert np.isfinite(net.gw_delay_s).mean() > 0.8
        # a satellite with no link draws no laser power, one with four draws four terminals'
        assert set(np.unique(twin.tm["isl_power_w"])) <= {k * W for k in range(5)}


def test_a_terminal_failure_and_safe_mode_take_links_down_in_the_tick() -> None:
    with _twin() as twin:
        twin.step()
        relay = _relay(twin)
        name = twin.names[relay]
        twin.submit("fault", "laser_terminal_failure", {"terminals": 2}, name, at_s=twin.t_s + twin.dt_s)
        twin.step()
        net = twin.net
        assert net is not None
        assert net.links_up[relay] <= 2  # the two cross-plane terminals fail first
        assert twin.tm["isl_power_w"][relay] <= 2 * W
        twin.submit("command", "enter_safe_mode", {}, name, at_s=twin.t_s + twin.dt_s)
        twin.step()
        net = twin.net
        assert net is not None
        assert twin.mode[relay] != MODE_NOMINAL
        assert net.links_up[relay] == 0 and twin.tm["isl_power_w"][relay] == 0.0
        assert not np.any(net.partner == relay)  # no neighbour keeps a link to it
        assert not np.any(net.gw_next_sat == relay)  # nobody routes through it any more


def test_isl_shedding_and_fdir_switch_the_terminals_off_with_their_links() -> None:
    """The PCDU's low-battery ISL latch and FDIR's avionics response (``isl_on``) of the previous tick
    power the terminals down: their links drop and draw nothing in the next tick."""
    from twin.core.power import ISL

    with _twin() as twin:
        twin.step()
        relay = _relay(twin)
        other = int(np.flatnonzero((twin.net.links_up == 4) & (np.arange(twin.n) != relay))[0])  # type: ignore[union-attr]
        twin.shed_state[relay, ISL] = True  # as the SoC latch leaves it at the end of a tick
        twin.isl_on[other] = False  # as FDIR leaves it for a red-hot avionics node
        twin.step()
        net = twin.net
        assert net is not None
        for sat in (relay, other):
            assert net.links_up[sat] == 0 and net.terminals_in_use[sat] == 0
            assert twin.tm["isl_power_w"][sat] == 0.0
            assert not np.any(net.partner == sat) and not np.any(net.gw_next_sat == sat)


def test_a_lost_satellite_goes_dark_in_the_tick() -> None:
    with _twin() as twin:
        twin.step()
        relay = _relay(twin)
        real = twin.propagator.propagate

        def failing(jd: float, fr: float, gmst: float):  # type: ignore[no-untyped-def]
            orb = real(jd, fr, gmst)
            code = orb.error_code.copy()
            code[relay] = 6  # SGP4: the satellite has decayed
            return dataclasses.replace(orb, error_code=code)

        twin.propagator.propagate = failing  # type: ignore[method-assign]
        twin.step()
        net = twin.net
        assert net is not None
        assert twin.mode[relay] == MODE_LOST
        assert net.links_up[relay] == 0 and net.terminals_in_use[relay] == 0 and net.gateways_visible[relay] == 0
        assert not np.any(net.partner == relay) and not np.any(net.gw_next_sat == relay)
        assert twin.tm["isl_power_w"][relay] == 0.0


def test_a_link_outage_takes_the_link_down_in_the_tick_until_its_end() -> None:
    with _twin() as twin:
        twin.step()
        net = twin.net
        assert net is not None
        # a satellite whose route to its gateway starts over a laser link
        sat = int(np.flatnonzero((net.gw_next_sat >= 0) & (net.links_up == 4))[0])
        peer = int(net.gw_next_sat[sat])
        assert peer in net.partner[sat]
        delay_before = float(net.gw_delay_s[sat])
        twin.submit("fault", "link_outage", {"peer": twin.names[peer]}, twin.names[sat], duration_s=30.0)
        twin.step()
        fid = _fault_id(twin)
        net = twin.net
        assert net is not None
        slot = net.partner[sat] == peer
        assert not np.any(net.slot_up[sat] & slot)  # the link is down (or re-assigned elsewhere)
        up_pairs = {tuple(e) for e in net.edges.tolist()}
        assert (min(sat, peer), max(sat, peer)) not in up_pairs
        assert net.gw_next_sat[sat] != peer  # the route moved in the same tick
        assert net.gw_delay_s[sat] >= delay_before - 2e-4  # never shorter than before (moved 1 s at most)
        assert twin.faults.active[fid].end_s == twin.t_s + 30.0  # applied in this tick, for 30 s
        for _ in range(29):
            twin.step()
            assert (min(sat, peer), max(sat, peer)) not in {tuple(e) for e in twin.net.edges.tolist()}  # type: ignore[union-attr]
        twin.step()
        assert fid not in twin.faults.active  # ended with its duration
        assert any(e.name == "fault_ended" and e.detail["fault_id"] == fid for e in twin.drain_events())
        # the pair may link again: free terminals re-pair, then wait for acquisition
        for _ in range(int(DESIGN.network.acquisition_s) + 12):
            twin.step()
        net = twin.net
        assert net is not None
        assert (min(sat, peer), max(sat, peer)) in {tuple(e) for e in net.edges.tolist()}


def test_a_gateway_outage_moves_routes_in_the_tick_and_clears_with_clear_fault() -> None:
    with _twin() as twin:
        twin.step()
        net = twin.net
        assert net is not None
        served = np.bincount(net.gw_index[net.gw_index >= 0], minlength=len(twin.mesh.gateways))  # type: ignore[union-attr]
        gw = int(np.argmax(served))
        gw_name = twin.mesh.gateways.names[gw]  # type: ignore[union-attr]
        visible_before = net.gateways_visible.copy()
        twin.submit("fault", "gateway_outage", {"gateway": gw_name}, twin.names[0])
        twin.step()
        fid = _fault_id(twin)
        net = twin.net
        assert net is not None
        assert not np.any(net.gw_index == gw)  # nobody routes to it in the tick of the outage
        assert not np.any(net.gw_visibility.site == gw)
        assert net.gateways_visible.sum() < visible_before.sum()
        twin.submit("command", "clear_fault", {"fault_id": fid}, twin.names[0])
        twin.step()
        net = twin.net
        assert net is not None
        assert np.any(net.gw_index == gw)  # back in service in the tick it is cleared


@pytest.mark.parametrize("fault,args,reason,field", [
    ("link_outage", {"peer": "NOT-A-SATELLITE"}, Reason.UNKNOWN_SATELLITE, "peer"),
    ("link_outage", {"peer": "SELF"}, Reason.BAD_ARGUMENT, "peer"),
    ("link_outage", {"peer": 7}, Reason.BAD_ARGUMENT, "peer"),
    ("link_outage", {}, Reason.BAD_ARGUMENT, "peer"),
    ("gateway_outage", {"gateway": "Atlantis"}, Reason.BAD_ARGUMENT, "gateway"),
    ("gateway_outage", {}, Reason.BAD_ARGUMENT, "gateway"),
])
def test_network_faults_reject_unknown_names(fault: str, args: dict[str, object], reason: Reason, field: str) -> None:
    small = SMALL
    with FleetTwin(small, DESIGN, orbit_worker=False) as twin:
        if args.get("peer") == "SELF":
            args = {"peer": twin.names[0]}
        with pytest.raises(CommandError) as exc:
            twin.submit("fault", fault, args, twin.names[0])
        assert exc.value.reason == reason and exc.value.field == field
        assert twin.queued == 0


def test_network_faults_are_refused_without_the_network() -> None:
    small = SMALL
    with FleetTwin(small, DESIGN, orbit_worker=False, network=False) as twin:
        for fault, args in (("link_outage", {"peer": twin.names[1]}), ("gateway_outage", {"gateway": "Adelanto, CA"})):
            with pytest.raises(CommandError) as exc:
                twin.submit("fault", fault, args, twin.names[0])
            assert exc.value.reason == Reason.NOT_NOW


def test_the_city_matrix_is_kept_at_its_interval() -> None:
    with _twin() as twin:
        assert twin.city_rtt is None  # not at construction: the first advancing tick computes it
        twin.step()
        first = twin.city_rtt
        assert first is not None and first.t_s == twin.t_s == 1.0
        assert twin.mesh is not None
        assert np.array_equal(first.rtt_s, 2.0 * twin.mesh.city_matrix_s())
        c = len(first.names)
        assert first.rtt_s.shape == (c, c) == first.stretch.shape
        iu = np.triu_indices(c, 1)
        ok = np.isfinite(first.rtt_s[iu])
        assert first.reachable_pairs == ok.sum() > 0.1 * iu[0].size  # one shell reaches part of the world
        # every route at least the great-circle light time, and at least the two ground hops
        cities = twin.mesh.cities
        assert cities is not None
        bound = light_bound_rtt_s(cities.pos_m[iu[0]], cities.pos_m[iu[1]])
        assert np.all(first.rtt_s[iu][ok] >= bound[ok] - 1e-12)
        assert np.all(first.rtt_s[iu][ok] >= 2 * 2 * 500e3 / C_M_S)
        assert np.allclose(first.stretch[iu][ok], first.rtt_s[iu][ok] / first.fibre_rtt_s[iu][ok])
        for _ in range(58):
            twin.step()
        assert twin.city_rtt is first  # kept until the interval has passed
        twin.step()
        assert twin.city_rtt is not first and twin.city_rtt is not None and twin.city_rtt.t_s == 60.0
    never = dataclasses.replace(DESIGN, network=dataclasses.replace(DESIGN.network, city_matrix_interval_s=0.0))
    with FleetTwin(SMALL, never, orbit_worker=False) as twin:
        twin.step()
        assert twin.city_rtt is None


def test_the_run_options_switch_the_network_off() -> None:
    import argparse

    from orbitwin.cli.fleet_options import add_fleet_options, fleet_options
    from twin.runtime.run_loop import build_twin

    p = argparse.ArgumentParser()
    add_fleet_options(p)
    on = fleet_options(p.parse_args(["--count", "2"]))
    off = fleet_options(p.parse_args(["--count", "2", "--no-network"]))
    assert on.network is None and off.network is False
    with build_twin(on) as twin:
        assert twin.mesh is not None and twin.n == 2
    with build_twin(off) as twin:
        assert twin.mesh is None
