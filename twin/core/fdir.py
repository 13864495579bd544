"""Limit checking and onboard fault detection, isolation and recovery (FDIR).

Limits come from the schema. FDIR acts on *measured* telemetry (sensor faults can fool it, as
on a real spacecraft) with hysteresis, and returns the actions it took so the runtime can
publish them as events. Thresholds and their basis: docs/physics.md#fdir.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.core.params import param
from twin.schema.telemetry import LIMIT_GREEN, LIMIT_RED, LIMIT_YELLOW, LIMITED_FIELDS, Field


@dataclass(frozen=True)
class FdirParams:
    """Onboard FDIR settings (section ``fdir``)."""

    hot_throttle: float = param("1", "Throttle applied when the payload is yellow-hot", min=0.0, max=1.0)
    red_hot_throttle: float = param("1", "Throttle applied when the payload is red-hot", min=0.0, max=1.0)
    hot_release_k: float = param("K", "Release the throttle this far below the yellow-high limit", min=0.0)
    latch_detect_s: float = param("s", "Latch-up persistence before FDIR power-cycles the device", min=0.0)
    watchdog_s: float = param("s", "Payload hang persistence before FDIR power-cycles the payload", min=0.0)
    safe_soc: float = param("1", "State of charge that puts the satellite in safe mode", min=0.0, max=1.0)


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


def evaluate_limits(telemetry: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Limit state of every limited field, keyed by field name."""
    return {f.name: limit_states(np.asarray(telemetry[f.name], dtype=float), f) for f in LIMITED_FIELDS}


def worst_state(states: dict[str, np.ndarray], n: int) -> np.ndarray:
    out = np.full(n, LIMIT_GREEN, dtype=np.int8)
    for s in states.values():
        np.maximum(out, s, out=out)
    return out


@dataclass
class FdirState:
    """Persistence timers over the fleet."""

    latch_s: np.ndarray  # (n, d) how long each device has been latched
    hang_s: np.ndarray  # (n,)
    hot: np.ndarray  # (n,) int8 0 none, 1 yellow throttle, 2 red throttle
    shed_payload: np.ndarray  # (n,) bool

    @classmethod
    def initial(cls, n: int, d: int) -> FdirState:
        return cls(np.zeros((n, d)), np.zeros(n), np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool))


@dataclass
class FdirActions:
    """What FDIR decided this tick (indices into the fleet)."""

    throttle: np.ndarray  # (n,) throttle factor FDIR imposes
    power_cycle: list[tuple[int, int | None]]  # (sat, device or None = whole payload)
    enter_safe: np.ndarray  # sat indices
    changed_hot: np.ndarray  # sat indices whose thermal throttle level changed
    changed_shed: np.ndarray  # sat indices whose payload shed flag changed


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
    """Run the onboard rules on measured telemetry ``tm`` and the payload's device states."""
    temp = tm["payload_temp_k"]
    lim = payload_limits.limits
    assert lim is not None and lim.yellow_high is not None and lim.red_high is not None
    with np.errstate(invalid="ignore"):
        level = np.where(temp > lim.red_high, 2, np.where(temp > lim.yellow_high, 1, 0)).astype(np.int8)
        release = temp < lim.yellow_high - p.hot_release_k
    new_hot = np.where(level > st.hot, level, np.where(release, 0, st.hot)).astype(np.int8)
    changed_hot = np.flatnonzero(new_hot != st.hot)
    st.hot = new_hot
    throttle = np.array([1.0, p.hot_throttle, p.red_hot_throttle])[new_hot]

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
    return FdirActions(throttle, cycles, enter_safe, changed_hot, changed_shed)
