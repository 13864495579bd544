"""Assertions on telemetry and events in sim time: "within 600 s of the fault, payload_temp_k below yellow".

::

    hk = client.telemetry(sat, fields=["payload_temp_k"])          # open before the action: sees all after it
    reply = client.fault(sat, "heatpipe_degradation", efficiency=0.0)
    within(2400).after(reply).expect(hk, sat, "payload_temp_k", above="yellow", clock=twin)

Windows are in sim seconds (``t_s``, seconds since the twin's start); ``after`` takes a time, a reply,
an event or a :class:`~orbitwin.client.streams.Sample`. Limits are named as in the schema
(``twin.schema.telemetry``): ``yellow``/``red`` are the high limits, ``yellow_low``/``red_low`` the
low ones. With a lockstep twin as ``clock`` the assertion advances the sim clock itself, a chunk at a
time, until the window closes; a paced twin's clock runs by itself and the wall timeout follows its
speed. A failure says what was expected, the window and the last values seen with their sim times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from orbitwin.client.streams import Sample, Stream

LIMIT_NAMES = {"yellow": "yellow_high", "red": "red_high", "yellow_high": "yellow_high", "red_high": "red_high",
               "yellow_low": "yellow_low", "red_low": "red_low"}
CHUNK_S = 60.0  # sim seconds a lockstep twin is advanced per round while an assertion waits


class SimClock(Protocol):
    """What an assertion needs of a twin: its sim time, and for a lockstep twin a way to advance it."""

    @property
    def lockstep(self) -> bool: ...

    @property
    def t_s(self) -> float: ...

    def advance(self, sim_s: float, timeout_s: float | None = None) -> float: ...


def limit_value(field: str, limit: str | float) -> float:
    """A threshold: a number as given, or the named limit of ``field`` from the schema."""
    if not isinstance(limit, str):
        return float(limit)
    from twin.schema.telemetry import FIELDS

    spec = next((f for f in FIELDS if f.name == field), None)
    if spec is None:
        raise ValueError(f"unknown telemetry field {field!r}")
    if limit not in LIMIT_NAMES:
        raise ValueError(f"unknown limit {limit!r}: one of {', '.join(LIMIT_NAMES)} or a number")
    value = getattr(spec.limits, LIMIT_NAMES[limit], None) if spec.limits is not None else None
    if value is None:
        raise ValueError(f"{field} has no {LIMIT_NAMES[limit]} limit in the schema")
    return float(value)


def sim_time_of(when: Any) -> float:
    """Sim seconds of a number, a reply or event (its ``t_s``) or a Sample."""
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return float(when)
    t_s = when.t_s if isinstance(when, Sample) else when.get("t_s") if isinstance(when, dict) else None
    if not isinstance(t_s, (int, float)):
        raise ValueError(f"cannot tell the sim time of {when!r}: give sim seconds, a reply, an event or a Sample")
    return float(t_s)


@dataclass(frozen=True)
class Condition:
    """A predicate on a field of one satellite's samples, with words for the failure message."""

    sat: str
    field: str
    test: Callable[[Any], bool]
    words: str

    def holds(self, sample: Sample) -> bool:
        v = sample.fields.get(self.field)
        return v is not None and bool(self.test(v))


def condition(sat: str, field: str, *, below: str | float | None = None, above: str | float | None = None,
              equals: Any = None, where: Callable[[Any], bool] | None = None) -> Condition:
    """``field`` of ``sat`` below / above a threshold (a number or a limit name), equal to a value, or
    satisfying ``where``; exactly one of them."""
    given = [k for k, v in (("below", below), ("above", above), ("equals", equals), ("where", where)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of below, above, equals or where (got {', '.join(given) or 'none'})")
    if below is not None:
        lo = limit_value(field, below)
        return Condition(sat, field, lambda v: v < lo, f"below {lo:g}" + (f" ({below})" if isinstance(below, str) else ""))
    if above is not None:
        hi = limit_value(field, above)
        return Condition(sat, field, lambda v: v > hi, f"above {hi:g}" + (f" ({above})" if isinstance(above, str) else ""))
    if equals is not None:
        return Condition(sat, field, lambda v: v == equals, f"equal to {equals!r}")
    assert where is not None
    return Condition(sat, field, where, f"satisfying {getattr(where, '__name__', 'the predicate')}")


def _wall_budget(clock: SimClock | None, sim_s: float) -> float:
    """Wall seconds to allow for ``sim_s`` of sim time: generous, only against a twin that stopped."""
    speed = getattr(clock, "speed_factor", None)
    if clock is not None and not clock.lockstep and speed:
        return 30.0 + 1.5 * max(sim_s, 0.0) / speed
    return 120.0


def _t(item: Any) -> float:
    t_s = item.get("t_s") if isinstance(item, dict) else getattr(item, "t_s", None)
    return float(t_s) if isinstance(t_s, (int, float)) else math.nan


def _watch(stream: Stream[Any], match: Callable[[Any], bool], decide: Callable[[Any], bool | None],
           t0: float, t1: float, clock: SimClock | None, timeout_s: float | None) -> tuple[Any | None, list[Any]]:
    """Scan ``stream``'s items of ``match`` with ``t0 <= t_s <= t1`` in order until ``decide`` returns a
    verdict (True/False: that item ends it) or the window closes (returns None, the items seen)."""
    budget = _wall_budget(clock, t1 - max(stream.sim_time, t0)) if timeout_s is None else timeout_s
    deadline = time.monotonic() + budget
    seen: list[Any] = []
    k = 0
    while True:
        done_t = stream.sim_time
        items = stream.history[k:]
        k += len(items)
        for item in items:
            if match(item) and t0 - 1e-9 <= _t(item) <= t1 + 1e-9:
                seen.append(item)
                if decide(item) is not None:
                    return item, seen
        if done_t >= t1 - 1e-9:
            return None, seen
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{stream.what}: no sample up to sim t={t1:g} s within {budget:g} s of wall time "
                                 f"(the stream has reached t={stream.sim_time:g} s)")
        if clock is not None and clock.lockstep:
            if clock.t_s < t1 - 1e-9:
                clock.advance(min(CHUNK_S, t1 - clock.t_s))
            stream.wait_sim_time(min(t1, clock.t_s), min(left, 30.0))  # the fleet summary of its last tick
        else:
            stream.wait_more(len(stream.history), min(left, 1.0))


def _values(seen: list[Sample], field: str, n: int = 5) -> str:
    def shown(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else repr(v)

    tail = ", ".join(f"{shown(s.fields.get(field))} @ t={s.t_s:g} s" for s in seen[-n:])
    return f"last values {tail} ({len(seen)} samples)" if seen else "no sample in the window"


@dataclass(frozen=True)
class Window:
    """A sim-time window of ``length_s`` seconds starting at ``start_s`` (None: the stream's sim time now)."""

    length_s: float
    start_s: float | None = None

    def after(self, when: Any) -> Window:
        """The window starting at ``when`` (sim seconds, a reply, an event or a Sample)."""
        return Window(self.length_s, sim_time_of(when))

    def _bounds(self, stream: Stream[Any], clock: SimClock | None) -> tuple[float, float]:
        t0 = self.start_s if self.start_s is not None else clock.t_s if clock is not None else stream.sim_time
        if not math.isfinite(t0):
            raise ValueError("the window has no start: give after(...) (the stream has seen nothing yet)")
        return t0, t0 + self.length_s

    def expect(self, stream: Stream[Sample], sat: str, field: str, *, below: str | float | None = None,
               above: str | float | None = None, equals: Any = None, where: Callable[[Any], bool] | None = None,
               clock: SimClock | None = None, timeout_s: float | None = None) -> Sample:
        """The first sample in the window where the condition holds; AssertionError if none does."""
        cond = condition(sat, field, below=below, above=above, equals=equals, where=where)
        t0, t1 = self._bounds(stream, clock)
        hit, seen = _watch(stream, lambda s: s.sat == sat and field in s.fields,
                           lambda s: True if cond.holds(s) else None, t0, t1, clock, timeout_s)
        if hit is None:
            raise AssertionError(f"{sat} {field} never {cond.words} within {self.length_s:g} s of sim t={t0:g} s "
                                 f"(window {t0:g}..{t1:g} s): {_values(seen, field)}")
        return hit

    def always(self, stream: Stream[Sample], sat: str, field: str, *, below: str | float | None = None,
               above: str | float | None = None, equals: Any = None, where: Callable[[Any], bool] | None = None,
               clock: SimClock | None = None, timeout_s: float | None = None) -> list[Sample]:
        """Every sample in the window satisfies the condition (and there is at least one); returns them."""
        cond = condition(sat, field, below=below, above=above, equals=equals, where=where)
        t0, t1 = self._bounds(stream, clock)
        bad, seen = _watch(stream, lambda s: s.sat == sat and field in s.fields,
                           lambda s: None if cond.holds(s) else False, t0, t1, clock, timeout_s)
        if bad is not None:
            raise AssertionError(f"{sat} {field} was not {cond.words} at sim t={bad.t_s:g} s "
                                 f"(window {t0:g}..{t1:g} s): {_values(seen, field)}")
        if not seen:
            raise AssertionError(f"{sat} {field}: no sample in the window {t0:g}..{t1:g} s")
        return seen

    def event(self, stream: Stream[dict[str, Any]], name: str, *, sat: str | None = None, kind: str | None = None,
              clock: SimClock | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        """The first event ``name`` (of ``sat``, of ``kind``) in the window; AssertionError if none comes."""
        t0, t1 = self._bounds(stream, clock)

        def decide(ev: dict[str, Any]) -> bool | None:
            ok = ev.get("name") == name and (sat is None or ev.get("sat") == sat) and (
                kind is None or ev.get("kind") == kind)
            return True if ok else None

        hit, seen = _watch(stream, lambda ev: True, decide, t0, t1, clock, timeout_s)
        if hit is None:
            names = ", ".join(f"{e.get('name')} @ t={_t(e):g} s" for e in seen[-8:]) or "none"
            raise AssertionError(f"no event {name!r}{f' of {sat}' if sat else ''} within {self.length_s:g} s of "
                                 f"sim t={t0:g} s (window {t0:g}..{t1:g} s); events seen: {names}")
        return dict(hit)


def within(sim_s: float) -> Window:
    """A window of ``sim_s`` sim seconds; then ``.after(t)`` and ``.expect(...)``, ``.always(...)``, ``.event(...)``."""
    if not sim_s > 0:
        raise ValueError(f"a window needs a positive length in sim seconds, not {sim_s!r}")
    return Window(float(sim_s))


def assert_within(stream: Stream[Sample], sat: str, field: str, *, within_s: float, after_s: Any = None,
                  clock: SimClock | None = None, timeout_s: float | None = None, **condition: Any) -> Sample:
    """Functional form of ``within(within_s).after(after_s).expect(stream, sat, field, **condition)``."""
    w = within(within_s)
    return (w if after_s is None else w.after(after_s)).expect(stream, sat, field, clock=clock, timeout_s=timeout_s,
                                                              **condition)
