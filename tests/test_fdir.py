"""Onboard FDIR for every thermal node: each limit leads to its response and its event.

The node limits are the schema's (``twin/schema/telemetry.py``); the responses and their figures
are the design's ``[fdir]`` section (docs/physics.md#fdir). Each test puts one node beyond a
limit on a real fleet engine, steps the sim clock, and checks the event and the physical effect
(charge current, payload power, radio and laser-terminal power, heater power).
"""

import numpy as np
import pytest

from twin.core import fdir, thermal
from twin.core.battery import battery_step
from twin.core.catalogue import load_catalogue
from twin.core.design import load_design
from twin.core.engine import FleetTwin
from twin.core.events import FDIR_EVENTS
from twin.schema.telemetry import FIELD_BY_NAME

CAT = load_catalogue()
DESIGN = load_design()
F = DESIGN.fdir
B = DESIGN.battery
# STARLINK-5548 (550 km, 97.6 deg) sits at beta ~80 deg on the catalogue's epoch: full sun all day,
# so its battery charges whenever its SoC is below the ceiling.
FULL_SUN = "STARLINK-5548"
MAX_CHARGE_A = B.max_charge_c_rate * B.cell_capacity_ah * B.strings_parallel  # 155 A


def limits(node):
    return FIELD_BY_NAME[f"{node}_temp_k"].limits


def make(names=(FULL_SUN, "STARLINK-2748"), dt_s=1.0):
    """Satellite 0 in full sun, satellite 1 (beta ~0) sunlit for the first minutes of the epoch."""
    # FDIR only: no network (two satellites make no mesh; the terminals draw their power as fitted)
    twin = FleetTwin(CAT.subset([CAT.names.index(n) for n in names]), DESIGN, dt_s=dt_s, seed=0, network=False)
    twin.step()
    twin.drain_events()
    return twin


def hold(twin, node, temps_k, steps=1):
    """Pin a node's temperature (per satellite) for ``steps`` ticks; return the events."""
    j = thermal.NODE_NAMES.index(node)
    out = []
    for _ in range(steps):
        twin.temp_k[:, j] = temps_k
        twin.step()
        out += twin.drain_events()
    return out


def fdir_events(evs, name, sat=0):
    return [e for e in evs if e.kind == "fdir" and e.name == name and e.sat == sat]


def test_battery_charge_limit_scales_the_charge_current():
    big_charge = -1e6  # W: far more than the pack may take
    full = battery_step(np.array([0.5]), 0.0, big_charge, 1.0, B)
    half = battery_step(np.array([0.5]), 0.0, big_charge, 1.0, B, charge_limit=0.5)
    assert full.current_a[0] == pytest.approx(-MAX_CHARGE_A, rel=1e-12)
    assert half.current_a[0] == pytest.approx(-0.5 * MAX_CHARGE_A, rel=1e-12)
    assert half.limited[0]
    # discharge is not affected
    d = battery_step(np.array([0.5]), 0.0, 5000.0, 1.0, B, charge_limit=0.0)
    assert d.power_w[0] == pytest.approx(5000.0, rel=1e-9)


def test_battery_hot_limits_charge_throttles_then_sheds_the_payload():
    twin = make()
    twin.soc[:] = 0.6  # charging in full sun: about 110 A, surplus-limited, before FDIR acts
    twin.step()
    assert twin.tm["illumination"][0] == 1.0
    charge_a = -twin.tm["battery_current_a"][0]
    assert charge_a > 0.5 * MAX_CHARGE_A + 5.0, "the test needs a charge current the yellow limit clips"
    p_payload = twin.tm["payload_power_w"][0]
    lim = limits("battery")
    hot = lim.yellow_high + 3.0  # yellow, below red
    ev = hold(twin, "battery", [hot, 295.0])
    (e,) = fdir_events(ev, "battery_hot")
    assert e.detail["level"] == 1 and e.severity == "warning"
    assert e.detail["charge_limit"] == F.battery_hot_charge_limit and e.detail["throttle"] == F.battery_hot_throttle
    assert not fdir_events(ev, "battery_hot", sat=1)
    ev = hold(twin, "battery", [hot, 295.0], steps=3)
    assert -twin.tm["battery_current_a"][0] == pytest.approx(F.battery_hot_charge_limit * MAX_CHARGE_A, rel=1e-9)
    assert twin.tm["payload_throttle"][0] <= F.battery_hot_throttle
    assert twin.tm["payload_power_w"][0] < 0.7 * p_payload
    assert twin.tm["payload_throttle"][1] == 1.0
    # red-hot: deeper charge derating and the payload off
    ev = hold(twin, "battery", [lim.red_high + 2.0, 295.0], steps=3)
    (e,) = fdir_events(ev, "battery_hot")
    assert e.detail["level"] == 2 and e.severity == "critical" and e.detail["payload_off"]
    assert twin.tm["payload_power_w"][0] == 0.0
    assert -twin.tm["battery_current_a"][0] == pytest.approx(F.battery_red_hot_charge_limit * MAX_CHARGE_A, rel=1e-9)
    # hysteresis: back inside yellow but within hot_release_k of it, the response holds
    ev = hold(twin, "battery", [lim.yellow_high - F.hot_release_k + 1.0, 295.0], steps=2)
    assert not fdir_events(ev, "battery_hot") and twin.charge_limit[0] == F.battery_red_hot_charge_limit
    ev = hold(twin, "battery", [lim.yellow_high - F.hot_release_k - 1.0, 295.0], steps=3)
    (e,) = fdir_events(ev, "battery_hot")
    assert e.detail["level"] == 0 and e.severity == "info"
    assert twin.charge_limit[0] == 1.0 and twin.tm["payload_power_w"][0] == pytest.approx(p_payload, rel=0.02)


def test_battery_cold_forces_its_heater_and_trickles_the_charge():
    twin = make()
    # a thermostat commanded far down would leave a cold pack unheated: FDIR does not
    twin.submit("command", "set_heater_setpoint", {"node": "battery", "temp_k": 250.0}, "*")
    twin.soc[:] = 0.6
    lim = limits("battery")
    cold = lim.yellow_low - 2.0
    ev = hold(twin, "battery", [cold, lim.yellow_low + 2.0], steps=2)
    (e,) = fdir_events(ev, "battery_cold")
    assert e.detail["level"] == 1 and e.detail["heaters_forced"] == ["battery"]
    assert not fdir_events(ev, "battery_cold", sat=1)
    assert twin.last_heater_w[0, thermal.BATTERY] == DESIGN.thermal.battery_heater_w
    assert twin.last_heater_w[1, thermal.BATTERY] == 0.0  # thermostat at 250 K: off
    assert -twin.tm["battery_current_a"][0] == pytest.approx(F.battery_cold_charge_limit * MAX_CHARGE_A, rel=1e-9)
    assert -twin.tm["battery_current_a"][1] > 2 * F.battery_cold_charge_limit * MAX_CHARGE_A


def test_avionics_hot_cuts_the_radio_then_the_laser_terminals():
    twin = make()
    p = DESIGN.power
    assert twin.tm["radio_power_w"][0] == p.radio_w
    lim = limits("avionics")
    ev = hold(twin, "avionics", [lim.yellow_high + 2.0, 300.0], steps=2)
    (e,) = fdir_events(ev, "avionics_hot")
    assert e.detail["level"] == 1 and e.detail["radio_fraction"] == F.avionics_hot_radio
    assert twin.tm["radio_power_w"][0] == pytest.approx(F.avionics_hot_radio * p.radio_w)
    assert twin.tm["isl_power_w"][0] == pytest.approx(p.isl_terminal_w * p.isl_terminal_count)
    assert twin.tm["radio_power_w"][1] == p.radio_w
    ev = hold(twin, "avionics", [lim.red_high + 2.0, 300.0], steps=2)
    (e,) = fdir_events(ev, "avionics_hot")
    assert e.detail["level"] == 2 and not e.detail["isl_on"]
    assert twin.tm["radio_power_w"][0] == pytest.approx(F.avionics_red_hot_radio * p.radio_w)
    assert twin.tm["isl_power_w"][0] == 0.0


def test_avionics_cold_forces_its_heater():
    twin = make()
    lim = limits("avionics")
    twin.submit("command", "set_heater_setpoint", {"node": "avionics", "temp_k": 200.0}, "*")
    ev = hold(twin, "avionics", [lim.yellow_low - 2.0, 290.0], steps=2)
    (e,) = fdir_events(ev, "avionics_cold")
    assert e.detail["level"] == 1
    assert twin.last_heater_w[0, thermal.AVIONICS] == DESIGN.thermal.avionics_heater_w
    assert twin.last_heater_w[1, thermal.AVIONICS] == 0.0


def test_radiator_hot_throttles_the_payload():
    twin = make()
    lim = limits("radiator")
    ev = hold(twin, "radiator", [lim.yellow_high + 2.0, 280.0], steps=2)
    (e,) = fdir_events(ev, "radiator_hot")
    assert e.detail["level"] == 1 and e.detail["throttle"] == F.radiator_hot_throttle
    assert twin.tm["payload_throttle"][0] <= F.radiator_hot_throttle and twin.tm["payload_throttle"][1] == 1.0
    ev = hold(twin, "radiator", [lim.red_high + 2.0, 280.0], steps=2)
    (e,) = fdir_events(ev, "radiator_hot")
    assert e.detail["level"] == 2 and twin.tm["payload_throttle"][0] <= F.radiator_red_hot_throttle


@pytest.mark.parametrize("node", ["payload", "radiator"])
def test_cold_payload_or_radiator_forces_the_payload_heater(node):
    twin = make()
    lim = limits(node)
    ev = hold(twin, node, [lim.yellow_low - 2.0, lim.yellow_low + 20.0], steps=2)
    (e,) = fdir_events(ev, f"{node}_cold")
    assert e.detail["level"] == 1 and e.detail["heaters_forced"] == ["payload"]
    assert twin.last_heater_w[0, thermal.PAYLOAD] == DESIGN.thermal.payload_heater_w
    assert twin.last_heater_w[1, thermal.PAYLOAD] == 0.0


def test_degraded_radiator_caps_the_payload_at_the_measured_efficiency():
    fault, field = "radiator_degradation", "radiator_efficiency"
    twin = make()
    eff = 0.6  # below the yellow-low limit 0.8, above the red-hot throttle floor
    assert eff < FIELD_BY_NAME[field].limits.yellow_low
    twin.submit("fault", fault, {"efficiency": eff}, twin.names[0])
    twin.step()
    twin.step()
    ev = twin.drain_events()
    (e,) = fdir_events(ev, field.replace("_efficiency", "_degraded"))
    assert e.detail["level"] == 1 and e.detail[field] == pytest.approx(eff)
    assert twin.tm["payload_throttle"][0] == pytest.approx(eff) and twin.tm["payload_throttle"][1] == 1.0


def test_every_thermal_rule_has_a_catalogued_event_and_every_node_a_decision():
    names = {f"{n}_hot" for n in fdir.HOT_RULES if n != "payload"} | {f"{n}_cold" for n in fdir.COLD_RULES}
    names |= {f.replace("_efficiency", "_degraded") for f in fdir.DEGRADED_FIELDS} | {"payload_throttle"}
    assert names <= set(FDIR_EVENTS)
    # every node is either handled on each side or knowingly left to its limit events (the array)
    assert set(fdir.NODES) == set(thermal.NODE_NAMES)
    assert set(fdir.HOT_RULES) | {"array"} == set(fdir.NODES) == set(fdir.COLD_RULES) | {"array"}


def test_nan_reading_neither_raises_nor_releases_a_level():
    st = fdir.FdirState.initial(2, 8)
    tm = {f"{n}_temp_k": np.array([330.0, np.nan]) for n in fdir.NODES}
    tm["battery_temp_k"] = np.array([np.nan, 320.0])
    fdir.thermal_levels(st, F, tm)
    assert st.node_hot[1, thermal.BATTERY] == 2 and st.node_hot[0, thermal.BATTERY] == 0
    tm["battery_temp_k"] = np.array([np.nan, np.nan])
    fdir.thermal_levels(st, F, tm)
    assert st.node_hot[1, thermal.BATTERY] == 2
