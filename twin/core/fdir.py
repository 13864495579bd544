"""Limit checking and onboard fault detection, isolation and recovery (FDIR).

Limits come from the schema. FDIR acts on *measured* telemetry (sensor faults can fool it, as
on a real spacecraft) with hysteresis, and returns the actions it took so the runtime can
publish them as events. Thresholds and their basis: docs/physics.md#fdir.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.core.params import param
from twin.schema.telemetry import FIELD_BY_NAME, LIMIT_GREEN, LIMIT_RED, LIMIT_YELLOW, LIMITED_FIELDS, Field


@dataclass(frozen=True)
class FdirParams:
    """Onboard FDIR settings (section ``fdir``)."""

    hot_throttle: float = param("1", "Throttle applied when the payload is yellow-hot", min=0.0, max=1.0)
    red_hot_throttle: float = param("1", "Throttle applied when the payload is red-hot", min=0.0, max=1.0)
    hot_release_k: float = param("K", "Release a node's thermal response this far inside its yellow limit", min=0.0)
    latch_detect_s: float = param("s", "Latch-up persistence before FDIR power-cycles the device", min=0.0)
    watchdog_s: float = param("s", "Payload hang persistence before FDIR power-cycles the payload", min=0.0)
    safe_soc: float = param("1", "State of charge that puts the satellite in safe mode", min=0.0, max=1.0)
    battery_hot_charge_limit: float = param(
        "1", "Charge current limit (fraction of max_charge_c_rate) while the battery is yellow-hot", min=0.0, max=1.0)
    battery_red_hot_charge_limit: float = param(
        "1", "Charge current limit while the battery is red-hot", min=0.0, max=1.0)
    battery_cold_charge_limit: float = param(
        "1", "Charge current limit while the battery is below its yellow-low limit (plating risk)", min=0.0, max=1.0)
    battery_hot_throttle: float = param(
        "1", "Payload throttle while the battery is yellow-hot (less discharge current)", min=0.0, max=1.0)
    avionics_hot_radio: float = param("1", "Radio power fraction while the avionics node is yellow-hot", min=0.0, max=1.0)
    avionics_red_hot_radio: float = param(
        "1", "Radio power fraction while the avionics node is red-hot (laser terminals off too)", min=0.0, max=1.0)
    radiator_hot_throttle: float = param("1", "Payload throttle while the radiator is yellow-hot", min=0.0, max=1.0)
    radiator_red_hot_throttle: float = param("1", "Payload throttle while the radiator is red-hot", min=0.0, max=1.0)


def limit_states(values: np.ndarray, f: Field) -> np.ndarray:
    """Per-satellite limit state (0 green, 1 yellow, 2 red) of one field; NaN is green."""
    lim = f.limits
    assert lim is not None
    state = np.zeros(values.shape, dtype=np.int8)
    with np.errstate(invalid="ignore"):
        for thr, side, level in (
            (lim.yellow_low, -1, LIMIT_YELLOW), (lim.yellow_high, 1, LIMIT_YELLOW),
            (lim.red_low, -1, LIMIT_RED), (lim.red_high, 1, LIMIT_RED),
        ):
            if thr is None:
                continue
            hit = values < thr if side < 0 else values > thr
            state[hit] = np.maximum(state[hit], level)
    return state


_LIMIT_TABLE = np.array([[np.nan if v is None else v for v in
                          (f.limits.yellow_low, f.limits.yellow_high, f.limits.red_low, f.limits.red_high)]
                         for f in LIMITED_FIELDS if f.limits is not None]).T  # (4, F)


assert (LIMIT_GREEN, LIMIT_YELLOW) == (0, 1), "evaluate_limits casts the yellow test to the state code"


def evaluate_limits(telemetry: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Limit state of every limited field, keyed by field name (one vectorised pass; same rules as
    :func:`limit_states`)."""
    # (fields, satellites): each field's row is one contiguous copy, and each state row a view
    values = np.stack([np.asarray(telemetry[f.name], dtype=float) for f in LIMITED_FIELDS], axis=0)
    y_lo, y_hi, r_lo, r_hi = (t[:, None] for t in _LIMIT_TABLE)
    with np.errstate(invalid="ignore"):
        state = ((values < y_lo) | (values > y_hi)).astype(np.int8)
        state[(values < r_lo) | (values > r_hi)] = LIMIT_RED
    return {f.name: state[k] for k, f in enumerate(LIMITED_FIELDS)}


def worst_state(states: dict[str, np.ndarray], n: int) -> np.ndarray:
    out = np.full(n, LIMIT_GREEN, dtype=np.int8)
    for s in states.values():
        np.maximum(out, s, out=out)
    return out


#: Thermal nodes in telemetry order (as ``twin.core.thermal.NODE_NAMES``); field ``{node}_temp_k``.
NODES = ("payload", "radiator", "battery", "avionics", "array")
#: Which onboard response each thermal rule has (docs/physics.md#fdir). ``hot``/``cold`` rules
#: not listed here only raise limit events: the array has no thermal actuator onboard.
HOT_RULES = ("payload", "radiator", "battery", "avionics")
COLD_RULES = ("payload", "radiator", "battery", "avionics")
#: Heater forced on by a cold node: its own heater; a cold radiator gets the payload's heater,
#: which warms the pumped loop (the radiator has no heater of its own).
COLD_HEATER_NODE = {"payload": 0, "radiator": 0, "battery": 2, "avionics": 3}
#: Degradation telemetry whose yellow-low limit caps the payload at the measured efficiency: the
#: radiator's emissive area. (A degraded heat pipe shows as a hot payload: the payload rule acts.)
DEGRADED_FIELDS = ("radiator_efficiency",)


@dataclass
class FdirState:
    """Persistence timers and latched response levels over the fleet."""

    latch_s: np.ndarray  # (n, d) how long each device has been latched
    hang_s: np.ndarray  # (n,)
    hot: np.ndarray  # (n,) int8 0 none, 1 yellow throttle, 2 red throttle (payload node)
    shed_payload: np.ndarray  # (n,) bool
    node_hot: np.ndarray  # (n, 5) int8 response level per node, hot side (column 0 mirrors ``hot``)
    node_cold: np.ndarray  # (n, 5) int8 response level per node, cold side
    degraded: np.ndarray  # (n, k) bool per DEGRADED_FIELDS

    @classmethod
    def initial(cls, n: int, d: int) -> FdirState:
        return cls(np.zeros((n, d)), np.zeros(n), np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool),
                   np.zeros((n, len(NODES)), dtype=np.int8), np.zeros((n, len(NODES)), dtype=np.int8),
                   np.zeros((n, len(DEGRADED_FIELDS)), dtype=bool))


@dataclass
class FdirActions:
    """What FDIR decided this tick (indices into the fleet); the engine applies it next tick."""

    throttle: np.ndarray  # (n,) throttle factor FDIR imposes on the payload
    power_cycle: list[tuple[int, int | None]]  # (sat, device or None = whole payload)
    enter_safe: np.ndarray  # sat indices
    changed_hot: np.ndarray  # sat indices whose payload thermal throttle level changed
    changed_shed: np.ndarray  # sat indices whose payload shed flag changed
    charge_limit: np.ndarray  # (n,) fraction of the battery's max charge current allowed
    radio_fraction: np.ndarray  # (n,) fraction of the radio's power allowed
    isl_on: np.ndarray  # (n,) bool laser terminals allowed
    heater_forced: np.ndarray  # (n, 5) bool heater at full power regardless of its thermostat
    payload_off: np.ndarray  # (n,) bool payload powered off (battery red-hot)
    node_changes: list[tuple[int, str, str, int, int]]  # (sat, node, "hot"|"cold", old level, new level)
    degraded_changes: list[tuple[int, str, bool]]  # (sat, field, degraded now)


def _node_limits() -> np.ndarray:
    """(4, 5) yellow-high, red-high, yellow-low, red-low of each node's ``{node}_temp_k`` (NaN: none)."""
    rows = []
    for node in NODES:
        lim = FIELD_BY_NAME[f"{node}_temp_k"].limits
        assert lim is not None
        rows.append([np.nan if v is None else v for v in (lim.yellow_high, lim.red_high, lim.yellow_low, lim.red_low)])
    return np.array(rows).T


_NODE_LIMITS = _node_limits()
_HOT_COLS = np.array([j for j, node in enumerate(NODES) if node in HOT_RULES])
_COLD_COLS = np.array([j for j, node in enumerate(NODES) if node in COLD_RULES])


def thermal_levels(st: FdirState, p: FdirParams, tm: dict[str, np.ndarray]) -> list[tuple[int, str, str, int, int]]:
    """Update ``st.node_hot``/``st.node_cold`` from the measured node temperatures; return the changes.

    Limits are the schema's ``{node}_temp_k`` limits: level 1 beyond yellow, 2 beyond red;
    a level escalates at once and holds until the temperature is ``hot_release_k`` back inside
    the yellow limit (where the level is 0, so a release sets 0). NaN readings neither raise nor
    release a level. Nodes outside ``HOT_RULES``/``COLD_RULES`` keep level 0.
    """
    y_hi, r_hi, y_lo, r_lo = _NODE_LIMITS
    changes: list[tuple[int, str, str, int, int]] = []
    with np.errstate(invalid="ignore"):
        for side, table, cols in (("hot", st.node_hot, _HOT_COLS), ("cold", st.node_cold, _COLD_COLS)):
            temp = np.stack([np.asarray(tm[f"{NODES[j]}_temp_k"], dtype=float) for j in cols], axis=-1)
            beyond = temp > y_hi[cols] if side == "hot" else temp < y_lo[cols]
            if not np.count_nonzero(table) and not beyond.any():
                continue  # the usual tick: every node inside its yellow limits, no response held
            if side == "hot":
                level = beyond.view(np.int8) + (temp > r_hi[cols]).view(np.int8)
                release = temp < y_hi[cols] - p.hot_release_k
            else:
                level = beyond.view(np.int8) + (temp < r_lo[cols]).view(np.int8)
                release = temp > y_lo[cols] + p.hot_release_k
            old = table[:, cols]
            new = np.maximum(level, old)
            new[release] = 0
            diff = new != old
            if diff.any():
                for i, k in zip(*np.nonzero(diff)):
                    changes.append((int(i), NODES[cols[k]], side, int(old[i, k]), int(new[i, k])))
                table[:, cols] = new
    st.hot = st.node_hot[:, 0].copy()
    return changes


def step(
    st: FdirState,
    p: FdirParams,
    tm: dict[str, np.ndarray],
    latched: np.ndarray,
    hung: np.ndarray,
    safe: np.ndarray,
    dt_s: float,
    payload_limits: Field,
    soc_limits: Field,
) -> FdirActions:
    """Run the onboard rules on measured telemetry ``tm`` and the payload's device states.

    Thermal rules per node (docs/physics.md#fdir): payload hot -> throttle; battery hot -> limit
    the charge current and throttle the payload (its discharge current heats the pack), red-hot
    -> payload off; battery cold -> heater forced on, charge current limited; avionics hot ->
    radio reduced (red: laser terminals off too); radiator hot -> payload throttled; radiator
    degraded -> payload capped at the measured efficiency; cold payload, radiator or avionics ->
    heater forced on. ``payload_limits`` is kept for callers; the node limits come from the schema.
    """
    old_hot = st.node_hot[:, 0].copy()
    node_changes = thermal_levels(st, p, tm)
    changed_hot = np.flatnonzero(st.node_hot[:, 0] != old_hot)
    hot, cold = st.node_hot, st.node_cold
    n = hot.shape[0]
    ones = np.ones(n)
    if np.count_nonzero(hot):  # the usual tick holds no thermal response: skip the lookups
        throttle = np.array([1.0, p.hot_throttle, p.red_hot_throttle])[hot[:, 0]]
        throttle = np.minimum(throttle, np.where(hot[:, 2] > 0, p.battery_hot_throttle, 1.0))
        throttle = np.minimum(throttle, np.array([1.0, p.radiator_hot_throttle, p.radiator_red_hot_throttle])[hot[:, 1]])
        payload_off = hot[:, 2] >= 2  # red-hot battery: payload powered off, the pack only feeds the bus
        charge = np.array([1.0, p.battery_hot_charge_limit, p.battery_red_hot_charge_limit])[hot[:, 2]]
        radio = np.array([1.0, p.avionics_hot_radio, p.avionics_red_hot_radio])[hot[:, 3]]
        isl_on = hot[:, 3] < 2
    else:
        throttle, payload_off, charge, radio, isl_on = ones, np.zeros(n, dtype=bool), ones, ones, np.ones(n, dtype=bool)
    degraded_changes: list[tuple[int, str, bool]] = []
    for k, name in enumerate(DEGRADED_FIELDS):
        lim = FIELD_BY_NAME[name].limits
        assert lim is not None and lim.yellow_low is not None
        eff = np.asarray(tm[name], dtype=float)
        with np.errstate(invalid="ignore"):
            now = eff < lim.yellow_low
        if now.any() or st.degraded[:, k].any():
            for i in np.flatnonzero(now != st.degraded[:, k]):
                degraded_changes.append((int(i), name, bool(now[i])))
            st.degraded[:, k] = now
        if now.any():
            cap = np.clip(np.nan_to_num(eff, nan=1.0), p.red_hot_throttle, 1.0)
            throttle = np.where(now, np.minimum(throttle, cap), throttle)
    forced = np.zeros(hot.shape, dtype=bool)
    if np.count_nonzero(cold):
        charge = np.where(cold[:, 2] > 0, np.minimum(charge, p.battery_cold_charge_limit), charge)
        for node, heater in COLD_HEATER_NODE.items():
            forced[:, heater] |= cold[:, NODES.index(node)] > 0

    soc = tm["battery_soc"]
    slim = soc_limits.limits
    assert slim is not None and slim.red_low is not None and slim.yellow_low is not None
    with np.errstate(invalid="ignore"):
        shed = np.where(soc < slim.red_low, True, np.where(soc > slim.yellow_low, False, st.shed_payload))
    changed_shed = np.flatnonzero(shed != st.shed_payload)
    st.shed_payload = shed

    cycles: list[tuple[int, int | None]] = []
    if latched.any():
        st.latch_s = np.where(latched, st.latch_s + dt_s, 0.0)
        cycles += [(int(s), int(d)) for s, d in zip(*np.nonzero(latched & (st.latch_s >= p.latch_detect_s)))]
    elif st.latch_s.any():
        st.latch_s[:] = 0.0
    if hung.any():
        st.hang_s = np.where(hung, st.hang_s + dt_s, 0.0)
        cycles += [(int(s), None) for s in np.flatnonzero(hung & (st.hang_s >= p.watchdog_s))]
    elif st.hang_s.any():
        st.hang_s[:] = 0.0
    with np.errstate(invalid="ignore"):
        enter_safe = np.flatnonzero(~safe & (soc < p.safe_soc))
    return FdirActions(throttle, cycles, enter_safe, changed_hot, changed_shed, charge, radio, isl_on, forced,
                       payload_off, node_changes, degraded_changes)
