"""The status view of ``orbitwin run``: live in a pseudo-terminal (worst first, colours, connection lines kept),
plain for logs (no ANSI, events counted as the service counts them), the final summary, and the embedded
broker's port (1883 when free, else a free port said; a busy port asked for refused).

The live runs step at ``--speed max`` with a sim ``--duration`` and refresh (almost) every tick, so the
number of refreshes follows the ticks, not the wall clock.
"""

from __future__ import annotations

import io
import os
import pty
import re
import fcntl
import select
import socket
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.mqtt_helpers import Recorder, wait_for
from twin.runtime.embedded_broker import PortBusyError, port_note, start_embedded_broker
from twin.runtime.fleet_view import STATES, worst_first
from twin.runtime.launch import RunSpec, run_twin
from twin.runtime.run_loop import FleetOptions, build_twin, select_catalogue
from twin.schema.telemetry import LIMIT_RED, LIMIT_YELLOW, MODE_LOST, MODE_NOMINAL, MODE_SAFE

CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b[()][AB0-9]|\r|\n|[^\x1b\r\n]")


class Screen:
    """Just enough of a terminal for rich's Live: text, CR/LF, cursor up, erase line, SGR colours per cell."""

    def __init__(self) -> None:
        self.cells: list[list[tuple[str, str]]] = [[]]
        self.row = self.col = 0
        self.sgr = ""

    def feed(self, text: str) -> None:
        for m in CSI.finditer(text):
            tok = m.group(0)
            if tok == "\r":
                self.col = 0
            elif tok == "\n":
                self.row += 1
                self.col = 0
            elif m.group(2):
                params, cmd = m.group(1), m.group(2)
                if cmd == "m":
                    self.sgr = "" if params in ("", "0") else params
                elif cmd == "A":
                    self.row = max(0, self.row - int(params or 1))
                elif cmd == "K":
                    self._line().clear()
                elif cmd == "J" and params == "2":
                    self.cells, self.row, self.col = [[]], 0, 0
                elif cmd == "H":
                    self.row = self.col = 0
            elif not tok.startswith("\x1b"):
                line = self._line()
                line.extend([(" ", "")] * (self.col + 1 - len(line)))
                line[self.col] = (tok, self.sgr)
                self.col += 1

    def _line(self) -> list[tuple[str, str]]:
        while len(self.cells) <= self.row:
            self.cells.append([])
        return self.cells[self.row]

    def lines(self) -> list[str]:
        return ["".join(c for c, _ in line).rstrip() for line in self.cells]

    def styles(self, row: int) -> set[str]:
        """SGR codes of the row's non-blank characters."""
        return {code for c, sgr in self.cells[row] if c.strip() for code in sgr.split(";") if code}


def run_in_pty(args: list[str], cols: int = 150, rows: int = 60, timeout_s: float = 240) -> tuple[int, str, str]:
    """``orbitwin ARGS`` with its stdout on a pseudo-terminal of ``cols`` x ``rows``: (exit code, terminal output, stderr)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "orbitwin.cli", *args], stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, env=env, close_fds=True)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise AssertionError(f"orbitwin {' '.join(args)} still running after {timeout_s} s")
        err = proc.communicate(timeout=60)[1].decode(errors="replace")
    finally:
        os.close(master)
    return proc.returncode, out.decode(errors="replace"), err


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


@pytest.fixture(scope="module")
def fleet_names() -> list[str]:
    return list(select_catalogue(FleetOptions(count=200)).names)


def faulty_scenario(path: Path, red: list[str], yellow: list[str]) -> Path:
    """A scenario that, at t = 0, makes ``red`` read a red payload temperature and ``yellow`` a yellow one."""
    blocks = [f'[[request]]\nat = 0\nsat = "{sat}"\nfault = "sensor_stuck"\nargs = {{ field = "payload_temp_k", '
              f'value = {value} }}\n' for sats, value in ((red, 400.0), (yellow, 358.0)) for sat in sats]
    path.write_text("seed = 3\n" + "\n".join(blocks))
    return path


def summary_of(text: str) -> dict[str, float]:
    """The final ``done:`` line's ticks, speed and events."""
    line = next(x for x in reversed(text.splitlines()) if x.startswith("done"))
    return {"ticks": int(re.search(r"(\d+) ticks", line)[1]),  # type: ignore[index]
            "speed": float(re.search(r"speed x([0-9.]+)", line)[1]),  # type: ignore[index]
            "events": int(re.search(r"events (\d+)", line)[1])}  # type: ignore[index]


# --- worst first, on a twin whose state is set ------------------------------------------------
def test_worst_first_orders_red_yellow_lost_safe_nominal_then_by_name() -> None:
    twin = build_twin(FleetOptions(count=30))
    try:
        twin.step()
        n = twin.n
        lim, mode = np.zeros(n, dtype=np.int8), np.full(n, MODE_NOMINAL, dtype=twin.mode.dtype)
        lim[[25, 3]] = LIMIT_RED
        lim[[12]] = LIMIT_YELLOW
        mode[[20]] = MODE_LOST
        mode[[7, 28]] = MODE_SAFE
        mode[[3]] = MODE_SAFE  # red and in safe mode: red first
        twin.tm["limit_state"], twin.mode[:] = lim, mode
        order = worst_first(twin, 8).tolist()
        assert order[:6] == [3, 25, 12, 20, 7, 28]
        by_name = sorted(range(n), key=lambda i: twin.names[i])
        assert order[6:] == [i for i in by_name if i not in (3, 25, 12, 20, 7, 28)][:2]
        assert worst_first(twin, n).tolist()[:6] == order[:6] and len(worst_first(twin, 10 * n)) == n
        assert worst_first(twin, 0).size == 0 and STATES[0] == "red"
    finally:
        twin.close()


# --- the live view in a pseudo-terminal --------------------------------------------------------
def test_live_view_in_a_terminal(tmp_path: Path, fleet_names: list[str]) -> None:
    red, yellow = fleet_names[190:192], fleet_names[150:153]
    scenario = faulty_scenario(tmp_path / "faults.toml", red, yellow)
    rc, raw, err = run_in_pty(["run", "--count", "200", "--scenario", str(scenario), "--speed", "max",
                               "--duration", "20", "--refresh", "0.001", "--rows", "20", "--events", "30",
                               "--broker-port", "0", "--state-dir", str(tmp_path)], rows=90)
    assert rc == 0, err + strip_ansi(raw)[-3000:]
    assert raw.count("\x1b[1A") > 100, "the view is not redrawn in place"
    screen = Screen()
    screen.feed(raw)
    lines = screen.lines()
    heads = [i for i, x in enumerate(lines) if x.startswith("Orbitwin  sim")]
    assert len(heads) == 1, "one live view on screen, redrawn in place:\n" + "\n".join(lines)
    assert strip_ansi(raw).count("Orbitwin  sim") >= 10, "several refreshes"
    top = heads[0]
    # the header: a real speed at --speed max, the progress bar done
    assert float(re.search(r"speed x([0-9.]+) \(max\)", lines[top])[1]) > 0  # type: ignore[index]
    assert "100% done" in lines[top + 1]
    assert re.search(r"\d+% done, about [0-9hmins ]+ left", strip_ansi(raw)), "an estimate of the time left on the way"
    # the table: worst first (red, yellow, then green; by name within each), in colour
    table = next(i for i in range(top, len(lines)) if lines[i].lstrip().startswith("satellite"))
    rows = lines[table + 2:table + 22]
    red_n, yellow_n = (int(re.search(rf"{k} (\d+)", lines[top + 2])[1]) for k in ("red", "yellow"))  # type: ignore[index]
    states = [r.split()[2] for r in rows]
    want = ["red"] * min(red_n, 20) + ["yellow"] * min(yellow_n, 20 - min(red_n, 20))
    assert states == want + ["green"] * (20 - len(want)), "\n".join(lines[top:])
    for state in ("red", "yellow", "green"):
        names = [r.split()[0] for r, st in zip(rows, states) if st == state]
        assert names == sorted(names), state
    shown = [r.split()[0] for r in rows]
    assert set(red) <= set(shown) and set(yellow) <= set(shown), "the faulty satellites late in the catalogue are shown"
    for k, st in enumerate(states):
        codes = screen.styles(table + 2 + k)
        assert ("31" in codes) == (st == "red") and ("33" in codes) == (st == "yellow"), (rows[k], codes)
    # the events feed: the faults and the limit crossings
    feed = "\n".join(lines[table:])
    assert "events (last" in feed and "fault sensor_stuck applied" in feed
    assert "limit payload_temp_k green -> red (400)" in feed and "limit payload_temp_k green -> yellow (358)" in feed
    # the connection lines, still on screen at the bottom of the last refresh
    port = int(re.search(r"broker   mqtt://127\.0\.0\.1:(\d+)", feed)[1])  # type: ignore[index]
    assert f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'orbitwin/v1/#' -v" in feed
    assert f"mosquitto_pub -h 127.0.0.1 -p {port} -t 'orbitwin/v1/sat/{fleet_names[0]}/cmd'" in feed
    end = next(i for i in range(table, len(lines)) if lines[i].startswith("done"))
    assert "mosquitto_pub" in lines[end - 1] or "mosquitto_pub" in lines[end - 2]
    # the final summary: the run's real speed and every event
    s = summary_of("\n".join(lines))
    assert s["ticks"] == 20 and s["speed"] > 0 and s["events"] >= 2 * (len(red) + len(yellow))
    assert f"events {s['events']}" in lines[top], "the summary's count is the view's"


def test_short_terminal_keeps_the_connection_lines(tmp_path: Path) -> None:
    rc, raw, err = run_in_pty(["run", "--count", "30", "--speed", "max", "--duration", "5", "--refresh", "0.001",
                               "--rows", "40", "--broker-port", "0", "--state-dir", str(tmp_path)], cols=100, rows=24)
    assert rc == 0, err
    screen = Screen()
    screen.feed(raw)
    lines = screen.lines()
    top = next(i for i, x in enumerate(lines) if x.startswith("Orbitwin  sim"))
    end = next(i for i in range(top, len(lines)) if lines[i].startswith("done"))
    assert end - top < 24, "the view fits the terminal"
    assert any("mosquitto_sub -h 127.0.0.1" in x for x in lines[top:end])
    assert any("mosquitto_pub -h 127.0.0.1" in x for x in lines[top:end])


# --- plain, for logs: no ANSI, worst first, the service's event count ------------------------
def test_plain_view_counts_the_services_events(mosquitto: Any, tmp_path: Path, fleet_names: list[str]) -> None:
    prefix = f"lv{uuid.uuid4().hex[:8]}/v1"
    red = fleet_names[30:31]
    scenario = faulty_scenario(tmp_path / "faults.toml", red, fleet_names[35:36])
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{prefix}/fleet/status"])
    try:
        r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--mqtt", mosquitto.url, "--prefix", prefix,
                            "--count", "40", "--scenario", str(scenario), "--speed", "max", "--duration", "10",
                            "--refresh", "0.001", "--state-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout, "plain output has no ANSI"
        s = summary_of(r.stdout)
        assert s["ticks"] == 10 and s["speed"] > 0
        final = wait_for(lambda: next((p for t, p, *_ in reversed(rec.messages) if p.get("tick") == 10), None), 30,
                         what="the final status")
        assert s["events"] == final["counters"]["events"] > 0
    finally:
        rec.client.disconnect()
        rec.client.loop_stop()
    blocks = r.stdout.split("\nOrbitwin  sim")
    assert len(blocks) >= 5, "a block per refresh"
    last = blocks[-1].splitlines()
    table = next(i for i, x in enumerate(last) if x.startswith("satellite"))
    rows = [x.split() for x in last[table + 1:table + 13]]
    rank = {"red": 0, "yellow": 1, "green": 2}
    keys = [(rank[r[2]], r[0]) for r in rows]
    assert keys == sorted(keys) and keys[0][0] == 0, "worst first, then by name"
    assert (0, red[0]) in keys and (1, fleet_names[35]) in keys
    assert f"watch    mosquitto_sub -h {mosquitto.host} -p {mosquitto.port} -t '{prefix}/#' -v" in r.stdout


def test_run_twin_without_mqtt_reports_speed_and_events(tmp_path: Path, fleet_names: list[str]) -> None:
    scenario = faulty_scenario(tmp_path / "faults.toml", fleet_names[5:6], [])
    out = io.StringIO()
    stats = run_twin(RunSpec(fleet=FleetOptions(count=10), speed="max", duration_s=8.0, use_mqtt=False,
                             scenario_path=str(scenario), refresh_s=0.0), out=out)
    s = summary_of(out.getvalue())
    assert stats.ticks == s["ticks"] == 8 and stats.sim_s == 8.0 and stats.speed > 0 and s["speed"] > 0
    assert s["events"] >= 2, out.getvalue()  # fault applied, fault started, limit crossing


# --- the embedded broker's port ----------------------------------------------------------------
@pytest.fixture
def occupied() -> Iterator[int]:
    """A loopback port this test listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def test_busy_preferred_port_falls_back_to_a_free_one(occupied: int) -> None:
    broker = start_embedded_broker(preferred=occupied)
    try:
        assert broker.port != occupied and broker.busy_port == occupied
        assert port_note(broker) == f"port {occupied} is busy; the embedded broker listens on {broker.port}"
    finally:
        broker.stop()


def test_free_preferred_port_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    broker = start_embedded_broker(preferred=port)
    try:
        assert broker.port == port and port_note(broker) is None
    finally:
        broker.stop()


def test_asked_for_busy_port_is_a_clear_error(occupied: int, tmp_path: Path) -> None:
    with pytest.raises(PortBusyError, match=f"port {occupied} on 127.0.0.1 is busy"):
        start_embedded_broker(occupied)
    r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--count", "2", "--duration", "2", "--speed",
                        "max", "--broker-port", str(occupied), "--state-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and f"orbitwin: error: port {occupied} on 127.0.0.1 is busy" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--mqtt", "mqtt://127.0.0.1:1", "--broker-port",
                        "0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--broker-port sets the embedded broker's port" in r.stderr
    for bad in ("70000", "-1", "x"):
        r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--broker-port", bad],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--broker-port" in r.stderr and "0..65535" in r.stderr


def test_the_run_says_the_preferred_port_was_busy(occupied: int, tmp_path: Path) -> None:
    out = io.StringIO()
    run_twin(RunSpec(fleet=FleetOptions(count=2), speed="max", duration_s=2.0, preferred_port=occupied,
                     refresh_s=0.0, link=_link(tmp_path)), out=out)
    text = out.getvalue()
    port = int(re.search(rf"port {occupied} is busy; the embedded broker listens on (\d+)", text)[1])  # type: ignore[index]
    assert port != occupied and f"mosquitto_sub -h 127.0.0.1 -p {port} " in text


def _link(tmp_path: Path) -> Any:
    from twin.runtime.mqtt_link import LinkSettings

    return LinkSettings(state_dir=str(tmp_path))
