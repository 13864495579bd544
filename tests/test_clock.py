"""Pacing on an injected fake clock: no wall-time sleeps in tests."""

import pytest

from twin.runtime.clock import Pacer, parse_speed


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def wall(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


def test_real_time_waits_for_each_tick():
    c = FakeClock()
    p = Pacer(1.0, c.wall, c.sleep)
    p.start(0.0)
    for k in range(1, 6):
        c.now += 0.2  # the step took 0.2 s
        assert p.wait_until(float(k)) == 0.0
    assert sum(c.slept) == pytest.approx(4.0)
    assert c.now == pytest.approx(105.0)


def test_faster_than_real_time_and_lag_reporting():
    c = FakeClock()
    p = Pacer(10.0, c.wall, c.sleep)
    p.start(0.0)
    c.now += 0.05
    p.wait_until(1.0)
    assert c.now == pytest.approx(100.1)
    c.now += 1.0  # a slow step: 0.9 s behind schedule; ticks are never skipped, the lag is reported
    assert p.wait_until(2.0) == pytest.approx(0.9)


def test_as_fast_as_possible_never_sleeps():
    c = FakeClock()
    p = Pacer(None, c.wall, c.sleep)
    p.start(0.0)
    for k in range(100):
        p.wait_until(float(k))
    assert c.slept == []


@pytest.mark.parametrize("text,value", [("real", 1.0), ("x10", 10.0), ("2.5", 2.5), ("max", None), ("afap", None)])
def test_parse_speed(text, value):
    assert parse_speed(text) == value


@pytest.mark.parametrize("text", ["warp", "x0", "-1", ""])
def test_parse_speed_rejects(text):
    with pytest.raises(ValueError):
        parse_speed(text)
