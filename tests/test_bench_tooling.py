"""Bench tooling: `orbitwin boards`, `bridge serial` failing fast (port, --sat) or retrying, the human status
lines and their --json twins, and `bridge influx` always saying why InfluxDB is not OK."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import urllib3
from serial.tools.list_ports_common import ListPortInfo

from bridges.influx.writer import InfluxV1Writer, classify, no_answer
from mqtt_helpers import Recorder, start_twin, stop_process, wait_for
from orbitwin.cli.boards import NO_PORTS, format_ports, port_info
from orbitwin.cli.status_line import grafana_line, influx_line, serial_line
from orbitwin_fw_host import start_sims, stop_sims
from twin.core.catalogue import load_catalogue
from twin.runtime.embedded_broker import free_port

CLI = [sys.executable, "-m", "orbitwin.cli"]
SATS = list(load_catalogue().select(count=5).names)


def _spawn(tmp: Path, name: str, *args: str) -> tuple[subprocess.Popen[str], Path, Path]:
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    proc = subprocess.Popen([*CLI, *args], stdout=out.open("w"), stderr=err.open("w"), text=True)
    return proc, out, err


def _port(device: str, vid: int | None = None, pid: int | None = None, **attrs: Any) -> ListPortInfo:
    info = ListPortInfo(device, skip_link_detection=True)
    info.vid, info.pid = vid, pid
    for k, v in attrs.items():
        setattr(info, k, v)
    return info


# --- orbitwin boards -------------------------------------------------------------------------------

def test_boards_lists_usb_ids_and_marks_known_dev_boards() -> None:
    pico = _port("/dev/ttyACM0", 0x2E8A, 0x0005, serial_number="E6614C311B7A", manufacturer="MicroPython",
                 product="Board in FS mode", description="Board in FS mode - Board CDC")
    odd = _port("/dev/ttyUSB3", 0x1234, 0xABCD, manufacturer="Acme", description="Widget")
    legacy = _port("/dev/ttyS0")
    text = format_ports([port_info(p) for p in (legacy, odd, pico)])
    lines = text.splitlines()
    assert lines[0] == ("/dev/ttyACM0  2E8A:0005  [dev board: Raspberry Pi (Pico, RP2040/RP2350)]  "
                        "MicroPython Board in FS mode  serial E6614C311B7A")
    assert lines[1] == "/dev/ttyUSB3  1234:ABCD  Acme Widget"  # unknown vendor: no mark
    assert lines[2].startswith("/dev/ttyS0  (no USB ids")
    assert lines[-1].startswith("then: orbitwin bridge serial --port DEVICE")
    info = port_info(pico)
    assert (info["vid_pid"], info["vid"], info["known_board"]) == ("2E8A:0005", 0x2E8A, "Raspberry Pi (Pico, RP2040/RP2350)")
    assert port_info(_port("/dev/ttyUSB0", 0x10C4, 0xEA60))["known_board"].startswith("Silicon Labs CP210x")


def test_boards_says_what_to_check_when_there_is_no_port() -> None:
    assert format_ports([]) == NO_PORTS
    assert "dialout" in NO_PORTS and "orbitwin_fw_host" in NO_PORTS


def test_orbitwin_boards_runs_on_this_machine() -> None:
    human = subprocess.run([*CLI, "boards"], capture_output=True, text=True, timeout=60)
    assert human.returncode == 0 and human.stdout.strip(), human.stderr
    js = subprocess.run([*CLI, "boards", "--json"], capture_output=True, text=True, timeout=60)
    assert js.returncode == 0, js.stderr
    ports = json.loads(js.stdout)
    assert isinstance(ports, list) and all({"device", "vid_pid", "serial_number", "known_board"} <= set(p) for p in ports)


# --- bridge serial: fail fast, or retry ---------------------------------------------------------------

def test_bridge_serial_refuses_a_missing_port_before_touching_the_broker(tmp_path: Path) -> None:
    port = str(tmp_path / "ttyNOPE")
    t0 = time.monotonic()
    out = subprocess.run([*CLI, "bridge", "serial", "--port", port, "--sat", SATS[0], "--mqtt", "mqtt://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert out.stderr.splitlines() == [
        f"orbitwin: error: cannot open serial port {port}: no such device: is the board plugged in? "
        "`orbitwin boards` lists the serial ports (ENOENT) (--retry waits for it)"]
    assert time.monotonic() - t0 < 30  # no broker wait: the port is checked first


def test_bridge_serial_retries_a_missing_port_when_asked_and_links_when_it_appears(mosquitto: Any,
                                                                                  tmp_path: Path) -> None:
    sims = start_sims(1, seed=7, mode="thread")
    try:
        sims[0].unplug()
        proc, out, err = _spawn(tmp_path, "serial", "bridge", "serial", "--port", sims[0].port_path, "--sat", SATS[0],
                                "--mqtt", mosquitto.url, "--retry", "--sat-check-wait", "0.5", "--report-every", "0.2")
        try:
            wait_for(lambda: "waiting for port (no such device" in out.read_text() or proc.poll() is not None, 60, 0.05,
                     what="a status line saying the bridge waits for the port")
            assert proc.poll() is None, err.read_text()
            # no twin ran on this broker: one warning, and the bridge goes on
            assert f"no satellite catalogue on the broker within 0.5 s (is the twin running?); --sat {SATS[0]} not " \
                   "checked" in err.read_text()
            sims[0].replug()
            line = wait_for(lambda: next((ln for ln in out.read_text().splitlines() if "  linked  " in ln), None),
                            60, 0.05, what="a status line saying linked")
            assert f" serial {SATS[0]} -> {SATS[0]}  linked  rx " in line and " frames  tx " in line, line
            assert line.endswith(" ms") and "rtt - ms" not in line, line
        finally:
            stop_process(proc)
    finally:
        stop_sims(sims)


def test_bridge_serial_checks_the_satellite_against_the_twins_catalogue(mosquitto: Any, tmp_path: Path) -> None:
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/fleet/catalogue", "orbitwin/v1/board/+/state"])
    twin = start_twin(mosquitto.url, "--count", "5", state_dir=str(tmp_path))
    sims = start_sims(1, seed=7, mode="thread")
    try:
        wait_for(lambda: rec.find(lambda t, p: t.endswith("/catalogue")), 90, 0.1, what="the twin's catalogue")
        wrong = SATS[0].lower()
        bad = subprocess.run([*CLI, "bridge", "serial", "--port", sims[0].port_path, "--sat", wrong,
                              "--mqtt", mosquitto.url], capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2, bad
        assert bad.stderr.splitlines() == [
            f"orbitwin: error: unknown satellite {wrong!r}: the running twin's catalogue (5 satellites) has no such "
            f"name; did you mean {SATS[0]}?"]
        assert not rec.find(lambda t, p: t.endswith("/state"))  # refused before announcing any board
        proc, out, err = _spawn(tmp_path, "serial", "bridge", "serial", "--port", sims[0].port_path, "--sat", SATS[1],
                                "--mqtt", mosquitto.url, "--report-every", "0.2", "--json")
        try:
            def linked() -> dict[str, Any] | None:
                for ln in out.read_text().splitlines():
                    if ln.startswith("{") and json.loads(ln)["linked"]:
                        return json.loads(ln)
                return None if proc.poll() is None else {"exited": err.read_text()}
            st = wait_for(linked, 60, 0.05, what="a JSON status line with linked true")
            assert {"board", "linked", "silent", "tm", "requests", "link"} <= set(st), st
            assert st["board"] == SATS[1] and st["link"]["frames_rx"] > 0 and st["port_error"] == ""
            assert "warning" not in err.read_text()
        finally:
            stop_process(proc)
    finally:
        stop_sims(sims)
        stop_process(twin)
        rec.close()


# --- status lines ---------------------------------------------------------------------------------

def test_status_lines_for_people() -> None:
    serial = {"board": "board-1", "sat": "STARLINK-1234", "linked": True, "silent": False, "rtt_ms": 4.2,
              "port_error": "", "link": {"frames_rx": 1204, "frames_tx": 310, "crc_errors": 1, "timeouts": 2}}
    assert serial_line(serial)[8:] == " serial board-1 -> STARLINK-1234  linked  rx 1,204 frames  tx 310  errors 3  rtt 4 ms"
    waiting = serial | {"linked": False, "port_error": "no such device (ENOENT)", "retry_s": 1.0, "rtt_ms": None}
    assert "  waiting for port (no such device (ENOENT); retrying every 1 s)  " in serial_line(waiting)
    influx = {"connected": True, "db_ok": False, "db_error": "", "points_written": 120400, "spool_points": 5,
              "dead_letters": 0, "missing_now": 0, "lag_s": 0.25}
    assert influx_line(influx)[8:] == (" influx  mqtt up  db NOT OK (no reason given)  written 120,400 points  spool 5  "
                                       "dead letters 0  gaps 0  lag 0.2 s")
    grafana = {"mqtt_connected": False, "pending_replies": 1, "planner": {"alerts": 3},
               "counters": {"commands_published": 2}, "poller": {"polls": 10, "query_errors": 1}}
    assert grafana_line(grafana)[8:] == (" grafana  mqtt DOWN  alerts 3  commands 2  pending 1  timeouts 0  "
                                         "rejected requests 0  poller: 10 polls, 1 errors")


# --- bridge influx: why the database is not OK -------------------------------------------------------

def test_no_answer_names_the_url_the_exception_and_the_errno() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(urllib3.exceptions.HTTPError) as exc:
        urllib3.PoolManager(retries=False).request("GET", f"{url}/ping")
    assert no_answer(exc.value, url) == f"no answer from {url}: NewConnectionError, Connection refused (ECONNREFUSED)"
    assert no_answer(ConnectionRefusedError(), url) == f"no answer from {url}: ConnectionRefusedError"
    assert classify(401, b"").message == "HTTP 401 Unauthorized"  # no body: the status still says why
    out = InfluxV1Writer(url, "x").write([b"m v=1 1"])
    assert (out.status, out.http_status) == ("retry", None) and "ECONNREFUSED" in out.message and url in out.message


def _status_line_with(out: Path, proc: subprocess.Popen[str], err: Path, text: str) -> str:
    def found() -> str | None:
        line = next((ln for ln in out.read_text().splitlines() if text in ln), None)
        return line if line or proc.poll() is None else f"exited: {err.read_text()}"
    line: str = wait_for(found, 60, 0.05, what=f"a status line with {text!r}")
    return line


def test_bridge_influx_says_why_when_nothing_listens(mosquitto: Any, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc, out, err = _spawn(tmp_path, "influx", "bridge", "influx", "--mqtt", mosquitto.url, "--influx", url,
                            "--spool-dir", str(tmp_path / "spool"), "--dead-letter", str(tmp_path / "dead.jsonl"),
                            "--report-every", "0.3")
    try:
        line = _status_line_with(out, proc, err, "db NOT OK")
        assert f"db NOT OK (InfluxDB write retry: no answer from {url}: NewConnectionError, Connection refused " \
               "(ECONNREFUSED))" in line, line
        assert "mqtt up" in line and not line.startswith("{")
    finally:
        stop_process(proc)


def test_bridge_influx_says_why_a_real_influxd_refuses_the_writes(mosquitto: Any, influxd: Any, tmp_path: Path) -> None:
    db = f"bench_{int(time.time() * 1e6) % 10**9}"
    proc, out, err = _spawn(tmp_path, "influx", "bridge", "influx", "--mqtt", mosquitto.url, "--influx", influxd.url,
                            "--db", db, "--rp", "nope", "--spool-dir", str(tmp_path / "spool"),
                            "--dead-letter", str(tmp_path / "dead.jsonl"), "--report-every", "0.3", "--json")
    try:
        def failed() -> dict[str, Any] | None:
            for ln in out.read_text().splitlines():
                if ln.startswith("{") and json.loads(ln)["db_ok"] is False:
                    return json.loads(ln)
            return None if proc.poll() is None else {"db_error": f"exited: {err.read_text()}"}
        st = wait_for(failed, 60, 0.05, what="a JSON status line with db_ok false")
        assert st["db_error"].startswith(f"InfluxDB write fatal: {influxd.url} answered HTTP "), st["db_error"]
        assert "retention policy not found: nope" in st["db_error"], st["db_error"]
    finally:
        stop_process(proc)
