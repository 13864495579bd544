"""Progress with an estimate of the time left (issue 17), and one-line connection errors that say why."""

from __future__ import annotations

import dataclasses
import io
import math
import re
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from orbitwin.cli.progress import (
    Estimator, ProgressDisplay, choose_mode, format_amount, format_clock, plain_line,
)
from twin.mqtt.connection import MqttConnectError, MqttConnection
from twin.mqtt.settings import MqttSettings
from twin.runtime.embedded_broker import free_port


class FakeClock:
    """A monotone clock the test moves by hand, s."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Calls:
    """A progress callback that records every (done, total)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []

    def __call__(self, done: float, total: float) -> None:
        self.calls.append((float(done), float(total)))

    def check_complete(self) -> None:
        assert self.calls, "progress never called"
        done = [d for d, _ in self.calls]
        assert done == sorted(done), "done went backwards"
        assert len({t for _, t in self.calls}) == 1 and self.calls[-1][0] == self.calls[-1][1]


# --- the estimator ---------------------------------------------------------------------------
def test_estimator_time_left_from_the_fraction_done() -> None:
    clock = FakeClock()
    est = Estimator(clock)
    clock.t += 30.0  # setup before the first report is no measure of the work
    est.update(0, 100)
    assert est.remaining_s is None and est.fraction == 0.0
    clock.t += 1.0
    est.update(1, 100)  # below the least fraction: no estimate yet
    assert est.remaining_s is None
    clock.t += 9.0
    est.update(10, 100)  # 10 % in 10 s: 90 s left
    assert est.remaining_s == pytest.approx(90.0) and est.elapsed_s == pytest.approx(40.0)
    clock.t += 10.0
    est.update(20, 100)  # steady pace: the finish time holds
    assert est.remaining_s == pytest.approx(80.0)
    clock.t += 5.0
    assert est.remaining_s == pytest.approx(75.0)  # counts down between reports


def test_estimator_smooths_a_change_of_pace() -> None:
    clock = FakeClock()
    t0 = clock.t
    est = Estimator(clock)
    est.update(0, 1000)
    clock.t += 100.0
    est.update(100, 1000)  # 10 % in 100 s: finish at 1000 s
    assert est.remaining_s == pytest.approx(900.0)
    clock.t += 1.0
    est.update(1000 * 101 / 600, 1000)  # faster: the raw finish jumps to 600 s, the smoothed one moves a little
    left = est.remaining_s
    assert left is not None and 600.0 - 101.0 < left < 1000.0 - 101.0 - 50.0
    while clock.t - t0 < 400.0:  # the new pace held: the estimate settles on it
        clock.t += 1.0
        est.update(1000 * (clock.t - t0) / 600, 1000)
    assert est.remaining_s == pytest.approx(600.0 - 400.0, rel=1e-3)


def test_estimator_done_and_bad_input() -> None:
    clock = FakeClock()
    est = Estimator(clock)
    est.update(np.int64(5), np.float64(5.0))  # numpy numbers are numbers
    assert est.fraction == 1.0 and est.remaining_s == 0.0
    for bad in (0, -1, math.nan, "ten"):
        with pytest.raises(ValueError, match="total must be a finite number > 0"):
            est.update(1, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="done must be a finite number"):
        est.update(math.inf, 10)


def test_formats() -> None:
    assert [format_clock(s) for s in (0, 41, 61.4, 725, 3723, None)] == ["0:00", "0:41", "1:01", "12:05", "1:02:03", "?"]
    assert [format_amount(v) for v in (0, 0.5, 10.3, 24.0, 1234.4)] == ["0", "0.5", "10.3", "24", "1,234"]


# --- plain lines -----------------------------------------------------------------------------
def test_plain_line_format() -> None:
    clock = FakeClock()
    est = Estimator(clock)
    est.update(0, 86_400)
    clock.t += 41.0
    est.update(0.43 * 86_400, 86_400)
    line = plain_line("validate", "nominal day", est, "h sim", 1 / 3600)
    assert line == "validate: nominal day 43% (10.3 of 24 h sim) elapsed 0:41 left ~0:54"
    est2 = Estimator(clock)
    est2.update(1, 1000)
    assert plain_line("bench fleet", "timed steps", est2, "steps").endswith("(1 of 1,000 steps) elapsed 0:00 left ?")


def test_plain_lines_are_rate_limited_on_the_injected_clock() -> None:
    clock = FakeClock()
    out = io.StringIO()
    display = ProgressDisplay("validate", "plain", out, every_s=10.0, clock=clock)
    quick = display.task("eclipse", "steps")
    for k in range(1, 6):  # a task done within the interval prints nothing
        clock.t += 1.0
        quick(k, 5)
    assert out.getvalue() == ""
    day = display.task("nominal day", "h sim", 1 / 3600)
    for k in range(1, 101):  # 100 reports 1 s apart: a line every 10 s of the display's clock, then the last
        clock.t += 1.0
        day(k * 864.0, 86_400.0)
    lines = out.getvalue().splitlines()
    pattern = re.compile(r"validate: nominal day \d+% \([\d.]+ of 24 h sim\) elapsed \d+:\d\d left (\?|~\d+:\d\d)")
    assert all(pattern.fullmatch(line) for line in lines), lines
    assert len(lines) == 10 + 1  # at 5, 15, ... 95 s of the task (10 s after the display began), then at 100 %
    assert lines[0] == "validate: nominal day 5% (1.2 of 24 h sim) elapsed 0:05 left ~1:35"  # 4 % in 4 s
    assert lines[-1] == "validate: nominal day 100% (24 of 24 h sim) elapsed 1:40 left ~0:00"
    day(86_400.0, 86_400.0)  # reported again when done: no second last line
    assert len(out.getvalue().splitlines()) == 11


def test_off_mode_and_mode_choice() -> None:
    out = io.StringIO()
    display = ProgressDisplay("bench fleet", "off", out)
    display.task("timed steps")(1, 1)
    assert out.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert choose_mode(False, Tty(), {}) == "off"
    assert choose_mode(True, io.StringIO(), {}) == "plain"
    assert choose_mode(True, Tty(), {"CI": "true"}) == "plain"
    assert choose_mode(True, Tty(), {"TERM": "xterm"}) == "rich"


def test_rich_mode_renders_a_bar_with_the_time_left() -> None:
    clock = FakeClock()
    out = io.StringIO()
    with ProgressDisplay("validate", "rich", out, clock=clock) as display:
        task = display.task("nominal day", "h sim", 1 / 3600)
        task(0, 86_400)
        for k in range(1, 11):
            clock.t += 1.0
            task(k * 4320.0, 86_400)
        display._rich.refresh()  # noqa: SLF001
    text = out.getvalue()
    assert "nominal day" in text and "of 24 h sim" in text and "left ~" in text


# --- the callbacks of the long work ----------------------------------------------------------
def test_nominal_day_reports_sim_seconds() -> None:
    from twin.validation.nominal_day import run_nominal_day

    calls = Calls()
    run_nominal_day(0.5, 60.0, progress=calls)
    calls.check_complete()
    assert len(calls.calls) == 30 and calls.calls[-1] == (1800.0, 1800.0)


def test_validation_cases_report_through_their_callbacks() -> None:
    from twin.validation.physics_checks import run_validation

    asked: list[str] = []
    per_case: dict[str, Calls] = {}

    def progress(case: str) -> Calls:
        asked.append(case)
        return per_case.setdefault(case, Calls())

    checks = run_validation(only=["eclipse", "reproducibility", "positions"], progress=progress)
    assert {c.name.split(":")[0] for c in checks} >= {"reproducibility"}
    assert asked == ["eclipse", "positions", "reproducibility"]  # asked for exactly the cases run
    assert per_case["eclipse"].calls == []  # a short case reports nothing
    per_case["reproducibility"].check_complete()
    assert per_case["reproducibility"].calls[-1] == (240.0, 240.0) and len(per_case["reproducibility"].calls) == 240
    per_case["positions"].check_complete()
    assert per_case["positions"].calls == [(1.0, 4.0), (2.0, 4.0), (3.0, 4.0), (4.0, 4.0)]


def test_network_orbit_walk_reports_sim_seconds() -> None:
    from twin.core.design import load_design
    from twin.validation.network_checks import fleet_orbit_checks

    design = load_design()
    calls = Calls()
    checks, _ = fleet_orbit_checks(design.network, design.power.isl_terminal_count, dt_s=1200.0, reference_ticks=1,
                                   reference_cities=1, catalogue_count=200, progress=calls)
    calls.check_complete()
    ticks = int(re.search(r"\((\d+) ticks", checks[0].detail).group(1))  # type: ignore[union-attr]
    assert len(calls.calls) == ticks and calls.calls[-1][0] == ticks * 1200.0


def test_fleet_bench_reports_its_timed_steps() -> None:
    from orbitwin.bench.fleet import bench_fleet

    calls = Calls()
    result = bench_fleet(count=20, steps=3, naive_sample=2, progress=calls)
    calls.check_complete()
    assert calls.calls == [(k, 6.0) for k in range(1, 7)] and result["steps"] == 3


def test_placement_bench_reports_over_every_policy() -> None:
    from orbitwin.bench.placement import bench_placement

    calls = Calls()
    bench_placement(hours=20 / 3600, dt_s=1.0, count=40, policies=("nearest", "random"), progress=calls)
    calls.check_complete()
    assert len(calls.calls) == 40 and calls.calls[-1] == (40.0, 40.0) and calls.calls[19] == (20.0, 40.0)


@pytest.fixture
def grid_cache(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import twin.core.radiation_grid as rg

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(rg, "_LOADED", {})
    yield


def test_radiation_grid_build_reports_nodes_and_chunks_change_nothing(grid_cache: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import twin.core.radiation_grid as rg
    from twin.core.radiation import RadiationParams

    spec = dataclasses.replace(RadiationParams().grid_spec(), lat_step_deg=15.0, lon_step_deg=30.0, alt_step_km=550.0)
    whole = rg.build_grid(spec)  # 507 nodes: one chunk
    monkeypatch.setattr(rg, "_BUILD_CHUNK", 100)
    calls = Calls()
    built = rg.get_grid(spec, progress=calls)
    calls.check_complete()
    assert [d for d, _ in calls.calls] == [100, 200, 300, 400, 500, 507] and calls.calls[-1][1] == 507
    assert np.array_equal(built.log10_flux, whole.log10_flux)
    again = Calls()
    rg.get_grid(spec, progress=again)  # in memory: no build, no progress
    assert again.calls == []


# --- connection errors say why ---------------------------------------------------------------
def _connect_error(url: str, wait_s: float = 1.0) -> str:
    with pytest.raises(MqttConnectError) as info:
        MqttConnection(MqttSettings(url), client_id="progress-test").start(wait_s)
    message = str(info.value)
    assert "\n" not in message and not message.rstrip().endswith("()") and "()" not in message, message
    return message


def test_nothing_listening_says_connection_refused() -> None:
    message = _connect_error(f"mqtt://127.0.0.1:{free_port()}")
    assert message.startswith("could not connect to mqtt://127.0.0.1:") and "connection refused" in message


def test_silent_server_says_no_connack() -> None:
    with socket.socket() as server:  # accepts (the kernel's backlog) and never answers
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        message = _connect_error(f"mqtt://127.0.0.1:{server.getsockname()[1]}", 1.0)
    assert message.startswith("no CONNACK from mqtt://127.0.0.1:") and "within 1 s" in message


def test_server_that_hangs_up_says_so() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        stop = threading.Event()

        def hang_up() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except OSError:
                    continue
                conn.close()

        th = threading.Thread(target=hang_up, daemon=True)
        th.start()
        try:
            message = _connect_error(f"mqtt://127.0.0.1:{server.getsockname()[1]}", 1.0)
        finally:
            stop.set()
            th.join(5)
    assert "closed the connection without accepting it (disconnected: " in message


def test_tls_to_a_silent_port_times_out_at_the_deadline() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        message = _connect_error(f"mqtts://127.0.0.1:{server.getsockname()[1]}", 1.0)
    assert "TLS handshake timed out" in message or "no CONNACK" in message, message
