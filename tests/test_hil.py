"""Hardware in the loop end to end: firmware-sim boards on ptys, serial bridges, the twin, Mosquitto."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from bridges.board.bridge import SerialBridge, SerialBridgeSettings
from mqtt_helpers import Recorder, start_twin, wait_for
from orbitwin_fw import messages as m
from orbitwin_fw.framing import encode_message
from orbitwin_fw_host import start_sims, stop_sims
from twin.core.catalogue import load_catalogue

P = "orbitwin/v1"
SATS = list(load_catalogue().select(count=8).names)
SAT = SATS[0]


def _payload(rec: Recorder, sat: str = SAT) -> list[dict]:
    return [p["fields"] | {"t_s": p["t_s"]} for _, p in rec.find(lambda t, p: t == f"{P}/sat/{sat}/tm/payload")]


def _hil_events(rec: Recorder, sat: str = SAT) -> list[str]:
    return [p["name"] for _, p in rec.find(lambda t, p: t == f"{P}/sat/{sat}/event" and p.get("kind") == "hil")]


def _twin(mosquitto, tmp_path, *extra: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    rates = ";".join(f"{s}:payload=4,hk=4" for s in SATS)
    return start_twin(mosquitto.url, "--count", "8", "--dt", "0.25", "--sat-rates", rates, *extra,
                      state_dir=str(tmp_path))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.fixture
def sims():
    handles = start_sims(1, seed=7, mode="thread")
    yield handles
    stop_sims(handles)


def test_board_bound_seu_latchup_power_cycle_unplug_replug(mosquitto, tmp_path, sims):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/tm/payload", f"{P}/sat/+/event",
                                                      f"{P}/board/#", f"{P}/sat/+/reply"])
    twin = _twin(mosquitto, tmp_path)
    sim = sims[0]
    bridge = SerialBridge(SerialBridgeSettings(sim.port_path, SAT, mosquitto.url)).start()
    try:
        # bind: the twin takes this satellite's payload from the board and pushes its set-point
        wait_for(lambda: any(f["payload_source"] == 1 for f in _payload(rec)), 30)
        wait_for(lambda: "board_linked" in _hil_events(rec), 5)  # events follow the tick's telemetry
        wait_for(lambda: abs(sim.firmware.load - 0.8) < 1e-6, 10)
        board_util = wait_for(lambda: [p["raw"]["utilisation"] for _, p in rec.find(lambda t, p: t.endswith("/tm")
                                                                                    and "/board/" in t)][-5:], 10)
        twin_util = [f["payload_throughput_tops"] / (8 * 900.0) for f in _payload(rec) if f["payload_source"] == 1][-1]
        assert abs(twin_util - sum(board_util) / len(board_util)) < 0.2
        # SEU over MQTT: the twin forwards it, the board flips a real bit, scrubs, and the detection comes back
        before = bytes(sim.firmware.payload.weights)
        rec.publish(f"{P}/sat/{SAT}/fault", {"fault": "seu_burst", "args": {"count": 1}, "id": "seu-1"})
        det = wait_for(lambda: rec.find(lambda t, p: t == f"{P}/board/{SAT}/event" and p["name"] == "seu_detected"), 15)
        assert det[0][1]["detail"]["bit"] >= 0
        wait_for(lambda: any(f["ecc_corrected_total"] >= 1 for f in _payload(rec)), 10)
        assert bytes(sim.firmware.payload.weights) == before  # corrected in place by the board's own code
        # latch-up: the board stops working; onboard FDIR power-cycles it through the bridge
        rec.publish(f"{P}/sat/{SAT}/fault", {"fault": "latchup", "args": {"device": 2}, "id": "sel-1"})
        wait_for(lambda: rec.find(lambda t, p: t == f"{P}/board/{SAT}/event" and p["name"] == "latchup"), 10)
        wait_for(lambda: rec.find(lambda t, p: t == f"{P}/sat/{SAT}/event" and p.get("name") == "power_cycle"), 15)
        wait_for(lambda: rec.find(lambda t, p: t == f"{P}/board/{SAT}/event" and p["name"] == "latchup_cleared"), 15)
        n = len(_payload(rec))
        wait_for(lambda: any(f["payload_throughput_tops"] > 2000 and f["payload_source"] == 1
                             for f in _payload(rec)[n:]), 20)
        # unplug: the twin falls back to its model and says so; replug: back within 2 s
        n = len(_payload(rec))
        sim.unplug()
        wait_for(lambda: any(f["payload_source"] == 2 for f in _payload(rec)[n:]), 15)
        wait_for(lambda: "board_lost_fallback" in _hil_events(rec), 5)
        t0 = time.monotonic()
        sim.replug()
        wait_for(lambda: bridge.link.connected, 5)
        assert time.monotonic() - t0 < 2.0
        n = len(_payload(rec))
        wait_for(lambda: any(f["payload_source"] == 1 for f in _payload(rec)[n:]), 15)
        assert twin.poll() is None
    finally:
        bridge.stop()
        _stop(twin)
        rec.close()


def test_eight_boards_at_once_through_the_cli(mosquitto, tmp_path):
    handles = start_sims(8, seed=3, mode="process")
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/tm/payload", f"{P}/board/+/state"])
    twin = _twin(mosquitto, tmp_path)
    bridges = [subprocess.Popen([sys.executable, "-m", "orbitwin.cli", "bridge", "serial", "--port", h.port_path,
                                 "--sat", sat, "--mqtt", mosquitto.url, "--report-every", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
               for h, sat in zip(handles, SATS)]
    try:
        def bound():
            return all(any(f["payload_source"] == 1 for f in _payload(rec, s)) for s in SATS)
        wait_for(bound, 60)
    finally:
        for b in bridges:
            _stop(b)
        _stop(twin)
        stop_sims(handles)
        rec.close()


def test_faster_than_real_time_holds_the_board_state(mosquitto, tmp_path, sims):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/sat/+/tm/payload", f"{P}/sat/+/event"])
    twin = _twin(mosquitto, tmp_path, "--speed", "x8")
    bridge = SerialBridge(SerialBridgeSettings(sims[0].port_path, SAT, mosquitto.url)).start()
    try:
        wait_for(lambda: any(f["payload_source"] == 3 for f in _payload(rec)), 30)
        wait_for(lambda: "board_held" in _hil_events(rec), 5)
        assert not any(f["payload_source"] == 1 for f in _payload(rec))
    finally:
        bridge.stop()
        _stop(twin)
        rec.close()


def test_board_requests_over_mqtt_and_rejections(mosquitto, sims):
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/board/#"])
    bridge = SerialBridge(SerialBridgeSettings(sims[0].port_path, SAT, mosquitto.url)).start()
    try:
        wait_for(lambda: bridge.link.connected, 10)
        rec.publish(f"{P}/board/{SAT}/cmd", {"command": "set_load", "args": {"load": 0.25}, "id": "b1"})
        rec.publish(f"{P}/board/{SAT}/cmd", {"command": "set_load", "args": {"load": 5}, "id": "b2"})
        rec.publish(f"{P}/board/{SAT}/cmd", {"command": "self_destruct", "id": "b3"})
        rec.publish(f"{P}/board/{SAT}/fault", b"{{")
        replies = wait_for(lambda: [p for _, p in rec.find(lambda t, p: t.endswith("/reply"))]
                           if len(rec.find(lambda t, p: t.endswith("/reply"))) >= 5 else None, 10)
        st = {r["id"]: r for r in replies if r["status"] != "accepted"}
        assert st["b1"]["status"] == "completed"
        assert st["b2"]["reason"] == "out_of_range" and st["b3"]["reason"] == "unknown_command"
        assert any(r["reason"] == "malformed" for r in replies if r.get("reason"))
        wait_for(lambda: abs(sims[0].firmware.load - 0.25) < 1e-6, 5)
    finally:
        bridge.stop()
        rec.close()


def test_ten_thousand_garbled_frames_against_the_live_bridge(mosquitto):
    """A fake board writes garbage and valid frames into the pty; the bridge keeps forwarding."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/board/#"])
    bridge = SerialBridge(SerialBridgeSettings(path, SAT, mosquitto.url, tm_hz=1000)).start()
    stop = threading.Event()
    rng = random.Random(5)

    def fake_board() -> None:
        seq = 0
        tm = dict(zip(m.LAYOUTS[m.PAYLOAD_TELEMETRY][1], m.DEFAULTS[m.PAYLOAD_TELEMETRY]))
        for k in range(10_000):
            good = encode_message(m.PAYLOAD_TELEMETRY, seq, dict(tm, utilisation=0.5))
            seq = (seq + 1) % 65536
            bad = bytearray(good)
            kind = k % 4
            if kind == 0:
                bad[rng.randrange(len(bad) - 1)] ^= 1 << rng.randrange(8)
            elif kind == 1:
                bad = bytearray(rng.randbytes(rng.randrange(1, 300)))
            elif kind == 2:
                bad = bad[: rng.randrange(1, len(bad))] + b"\x00"
            else:
                bad = bytearray(b"\x01" * 400)
            os.write(master, b"\x00" + bytes(bad) + b"\x00" + (good if k % 50 == 0 else b""))
            if stop.is_set():
                return

    th = threading.Thread(target=fake_board, daemon=True)
    th.start()
    try:
        th.join(60)
        stats = bridge.link.stats
        errors = stats.get("crc_errors", 0) + stats.get("garbage", 0) + stats.get("oversize", 0)
        assert errors >= 9_000
        forwarded = rec.find(lambda t, p: t == f"{P}/board/{SAT}/tm")
        assert len(forwarded) >= 100  # the valid frames among the garbage still got through
        assert all(p["raw"]["utilisation"] == pytest.approx(0.5) for _, p in forwarded)
    finally:
        stop.set()
        bridge.stop()
        rec.close()
        os.close(master)
        os.close(slave)


def test_board_behind_an_rfc2217_port_server(mosquitto, sims):
    """``--port rfc2217://host:port``: a board shared over the network by an RFC 2217 server
    (pyserial's PortManager in front of the firmware-sim port, as its rfc2217_server example does)."""
    import socket

    import serial
    import serial.rfc2217

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        conn.settimeout(0.05)
        real = serial.serial_for_url(sims[0].port_path, 115200, timeout=0.01)

        class PtyPort:
            """The pty behind the server: a pty has no modem lines, so their ioctls are ignored."""

            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                if name in ("cts", "dsr", "ri", "cd"):
                    return False
                return getattr(real, name)

            def __setattr__(self, name, value):  # type: ignore[no-untyped-def]
                try:
                    setattr(real, name, value)
                except OSError:
                    pass

        ser = PtyPort()

        class Net:  # what PortManager writes its option negotiation to
            write = conn.sendall
        pm = serial.rfc2217.PortManager(ser, Net())

        def board_to_net() -> None:
            while not stop.is_set():
                try:
                    data = ser.read(4096)
                    if data:
                        conn.sendall(b"".join(pm.escape(data)))
                except (OSError, TypeError, serial.SerialException):  # closed at the end of the test
                    return
        threading.Thread(target=board_to_net, daemon=True).start()
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            ser.write(b"".join(pm.filter(data)))
        real.close()
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{P}/board/#"])
    bridge = SerialBridge(SerialBridgeSettings(f"rfc2217://127.0.0.1:{port}", SAT, mosquitto.url)).start()
    try:
        wait_for(lambda: bridge.link.connected, 15)
        wait_for(lambda: rec.find(lambda t, p: t == f"{P}/board/{SAT}/tm"), 10)
        rec.publish(f"{P}/board/{SAT}/cmd", {"command": "set_load", "args": {"load": 0.3}, "id": "r1"})
        wait_for(lambda: abs(sims[0].firmware.load - 0.3) < 1e-6, 10)
    finally:
        stop.set()
        bridge.stop()
        rec.close()
        srv.close()
