"""firmware-sim end to end: real ptys, pyserial, bridges.board.link, the same firmware."""
from __future__ import annotations

import os
import random
import threading
import time
import tty
from typing import Callable, Iterator

import pytest

from bridges.board.link import Message, SerialLink
from orbitwin_fw import framing, messages as m
from orbitwin_fw.payload import Payload
from orbitwin_fw_host import SimHandle, start_sims, stop_sims

SILENCE_MS = 400


def wait_until(cond: Callable[[], object], timeout: float, poll: float = 0.005) -> bool:
    """Condition wait: True as soon as cond() is truthy, False after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(poll)
    return bool(cond())


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    sims = start_sims(1, seed=11)
    yield sims[0]
    stop_sims(sims)


@pytest.fixture
def link(sim: SimHandle) -> Iterator[SerialLink]:
    with SerialLink(sim.port_path, 115200, silence_ms=SILENCE_MS) as lk:
        assert lk.wait_connected(3.0)
        yield lk


@pytest.mark.timing
def test_handshake_and_time_sync(sim: SimHandle, link: SerialLink) -> None:
    caps = link.capabilities
    assert caps["board_id"] == "sim-0" and caps["platform"] == "sim"
    assert caps["buffer_size"] == 8192 and caps["has_die_temp"] == 1
    assert os.path.realpath(sim.port_path) == sim.tty_path
    ts = link.time_sync()
    assert 0 < ts.rtt_s < 0.1
    assert abs(ts.board_to_host_mono(ts.board_uptime_ms) - ts.host_mono_mid_s) < 1e-9


def test_telemetry_and_heartbeats_flow(link: SerialLink) -> None:
    seen: list[int] = []

    def count(msg: Message) -> bool:
        seen.append(msg.mtype)
        return seen.count(m.PAYLOAD_TELEMETRY) >= 5 and m.HEARTBEAT in seen

    assert link.wait_message(count, 3.0) is not None
    tm = link.telemetry
    assert tm["jobs_done"] > 0 and 290 < tm["die_temp_k"] < 350 and tm["weights_ok"] == 1


def test_set_load_changes_utilisation(link: SerialLink) -> None:
    assert link.set_load(0.9).ok
    assert link.wait_telemetry(lambda f: f["utilisation"] > 0.7, 3.0)
    assert link.set_load(0.1).ok
    assert link.wait_telemetry(lambda f: f["utilisation"] < 0.25 and f["load"] < 0.2, 3.0)
    assert link.set_throttle(0.0).ok
    assert link.wait_telemetry(lambda f: f["utilisation"] == 0.0, 3.0)
    assert link.set_load(1.5).status == m.ST_BAD_ARG


def test_seu_flips_a_real_bit_and_scrub_reports_it(sim: SimHandle, link: SerialLink) -> None:
    fw = sim.firmware
    pristine = Payload(fw.payload.size, fw.payload.block_size, sim.seed).weights
    assert fw.payload.weights == pristine
    ack = link.inject_seu(12345)
    assert ack.ok and ack.detail == 12345
    # the board's own scrub located the flipped bit from the buffer contents
    tm = link.wait_telemetry(lambda f: f["seu_corrected"] >= 1, 3.0)
    assert tm and tm["last_seu_bit"] == 12345 and tm["weights_ok"] == 1
    assert sim.firmware.payload.weights == pristine          # corrected in place
    # a double-bit upset in one block is detected but cannot be corrected
    assert link.inject_seu(40001, double=True).ok
    tm = link.wait_telemetry(lambda f: f["seu_uncorrectable"] >= 1, 3.0)
    assert tm and tm["weights_ok"] == 0
    diff = [i * 8 + b for i, (x, y) in enumerate(zip(fw.payload.weights, pristine))
            for b in range(8) if (x ^ y) >> b & 1]
    assert diff == sorted([40001, 40001 ^ 1])
    assert link.wait_message(lambda x: x.mtype == m.HEARTBEAT and x.fields["flags"] & m.HB_WEIGHTS_BAD, 2.0)


def test_retried_command_is_not_executed_twice(sim: SimHandle, link: SerialLink) -> None:
    wire = framing.encode_message(m.FAULT, 4242, {"kind": m.FAULT_SEU, "arg": 77})
    link.write_raw(wire)
    link.write_raw(wire)
    # both copies are ACKed (second from the dedup cache) but only one bit flipped
    assert wait_until(lambda: link.stats["unexpected"] >= 2, 2.0)
    assert sim.firmware.payload.seu_injected == 1


def test_latchup_then_reset_clears_it(link: SerialLink) -> None:
    resets = link.stats["board_resets"]
    assert link.inject_latchup().ok
    tm = link.wait_telemetry(lambda f: f["latched"] == 1 and f["utilisation"] == 0.0, 3.0)
    assert tm is not None
    jobs = tm["jobs_done"]
    assert link.wait_telemetry(lambda f: f["jobs_done"] == jobs and f["latched"] == 1, 2.0)
    assert link.reset().ok
    assert link.wait_telemetry(lambda f: f["latched"] == 0 and f["utilisation"] > 0.2, 3.0)
    assert wait_until(lambda: link.stats["board_resets"] > resets, 2.0)


def test_hang_trips_watchdog_and_link_notices(sim: SimHandle, link: SerialLink) -> None:
    events: list[str] = []
    link.on_event = lambda name, detail: events.append(name)
    boots = sim.boot_count
    assert link.inject_hang().ok
    assert wait_until(lambda: "silent" in events, 2.0)
    assert wait_until(lambda: sim.boot_count > boots, 3.0)          # watchdog reboot
    assert wait_until(lambda: "alive" in events and link.connected and not link.silent, 3.0)
    assert link.ping().ok and link.capabilities["reset_cause"] == m.RC_WATCHDOG


def test_unplug_replug_reconnects_within_2s(sim: SimHandle, link: SerialLink) -> None:
    connected = threading.Event()
    link.on_event = lambda name, detail: connected.set() if name == "connected" else None
    old_tty = sim.tty_path
    sim.unplug()
    assert not os.path.exists(sim.port_path)
    assert wait_until(lambda: link.state == "disconnected", 2.0)
    with pytest.raises(Exception):
        link.ping()
    connected.clear()
    t0 = time.monotonic()
    sim.replug()
    assert connected.wait(2.0), "no reconnect within 2 s of the port returning"
    assert time.monotonic() - t0 < 2.0
    assert link.ping().ok and link.stats["reconnects"] >= 1
    assert os.path.realpath(sim.port_path) == sim.tty_path
    print("replug: %s -> %s, reconnect %.3f s" % (old_tty, sim.tty_path, time.monotonic() - t0))


def test_hardware_reset(sim: SimHandle, link: SerialLink) -> None:
    boots = sim.boot_count
    sim.hardware_reset()
    assert wait_until(lambda: link.capabilities and link.capabilities["reset_cause"] == m.RC_EXTERNAL, 3.0)
    assert sim.boot_count == boots + 1
    assert link.hardware_reset() == "command"           # a pty has no DTR/RTS lines


def test_eight_sims_at_once() -> None:
    sims = start_sims(8, seed=100, mode="process")
    links = [SerialLink(h.port_path, 115200).start() for h in sims]
    try:
        assert all(lk.wait_connected(5.0) for lk in links)
        ids = {lk.capabilities["board_id"] for lk in links}
        assert ids == {"sim-%d" % i for i in range(8)}
        for lk in links:
            assert lk.set_load(0.3).ok
        for lk in links:
            assert lk.wait_telemetry(lambda f: 0.15 < f["utilisation"] < 0.45, 5.0)
    finally:
        for lk in links:
            lk.stop()
        stop_sims(sims)


def _garble(rng: random.Random, wire: bytes) -> bytes:
    """One damaged frame that still ends in exactly one 0x00 delimiter."""
    body = bytearray(wire[:-1])
    how = rng.randrange(4)
    if how == 0:
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    elif how == 1:
        del body[rng.randrange(1, len(body)):]
    elif how == 2:
        body = bytearray(rng.randbytes(rng.randint(1, 60)))
    else:
        body += rng.randbytes(300)
    out = bytes(body).replace(b"\x00", b"\x01") + b"\x00"
    return out if out != wire else _garble(rng, wire)


def test_10k_garbled_frames_into_the_link_decoder() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    rng = random.Random(5)
    good = framing.encode_message(m.HEARTBEAT, 1, {"uptime_ms": 1, "count": 1})
    with SerialLink(os.ttyname(slave), 115200) as lk:
        assert wait_until(lambda: lk.state == "open", 2.0)
        chunks = []
        for i in range(10_000):
            chunks.append(_garble(rng, good))
            if i % 1000 == 0:
                chunks.append(good)
        data = b"".join(chunks)
        writer = threading.Thread(target=lambda: [os.write(master, data[i:i + 4096])
                                                  for i in range(0, len(data), 4096)])
        writer.start()
        writer.join(20)
        s = lk.stats
        assert wait_until(lambda: s["crc_errors"] + s["garbage"] + s["oversize"] >= 10_000, 15.0)
        assert wait_until(lambda: s["frames_rx"] >= 10, 2.0), s
        assert s["frames_rx"] == 10                  # only the intact heartbeats got through
        assert lk.heartbeat == {"uptime_ms": 1, "count": 1, "boot_count": 0, "flags": 0}
        assert lk._threads[0].is_alive() and lk._threads[1].is_alive()
    os.close(master)
    os.close(slave)


def test_10k_garbled_frames_into_a_live_board(sim: SimHandle, link: SerialLink) -> None:
    rng = random.Random(9)
    ping = framing.encode_message(m.COMMAND, 7, {"code": m.CMD_PING})
    data = b"".join(_garble(rng, ping) for _ in range(10_000))
    for i in range(0, len(data), 4096):
        link.write_raw(data[i:i + 4096])
    assert wait_until(lambda: link.stats["board_rx_errors"] >= 10_000, 15.0), link.stats
    assert link.ping().ok and sim.crashes == 0
    assert link.wait_telemetry(lambda f: f["jobs_done"] > 0, 2.0)


def test_serial_bench_smoke() -> None:
    from orbitwin.bench.serial import run_serial_bench
    res = run_serial_bench(n_pings=50, flood_s=0.2, mode="thread")
    assert res["baseline_raw_pty_echo"]["round_trip_p99_ms"] > 0
    for row in res["by_baud"].values():
        assert row["round_trip_p50_ms"] <= row["round_trip_p99_ms"] < 50
        assert row["frames_per_s"] > 10 and row["timeouts"] == 0
