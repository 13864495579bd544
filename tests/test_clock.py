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


def test_run_ids_are_unique_per_start_sortable_and_exact_in_a_double():
    from twin.runtime.clock import new_run_id, run_start_ms

    t = 1796219054.7149  # 2026-12-02T13:44:14.7149Z
    ids = {new_run_id(t) for _ in range(200)}
    assert len(ids) > 150  # random suffix: 200 starts in the same millisecond mostly differ
    assert all(run_start_ms(r) == 1796219054714 and len(str(r)) == 16 and r < 2**53 for r in ids)
    assert min(new_run_id(t + 0.001) for _ in range(20)) > max(ids)  # a later start sorts after


def test_paced_runs_start_at_the_wall_clock_and_max_at_the_catalogue_epoch():
    from twin.runtime.launch import RunSpec, with_default_start
    from twin.runtime.run_loop import FleetOptions

    now = 1796219054.7  # 2026-12-02T13:44:14.7Z
    assert with_default_start(RunSpec(speed="real"), now).fleet.start == "2026-12-02T13:44:14Z"
    assert with_default_start(RunSpec(speed="x10"), now).fleet.start == "2026-12-02T13:44:14Z"
    assert with_default_start(RunSpec(speed="max"), now).fleet.start is None  # the catalogue's median epoch
    given = RunSpec(fleet=FleetOptions(start="2026-06-21T00:00:00Z"), speed="x10")
    assert with_default_start(given, now).fleet.start == "2026-06-21T00:00:00Z"
