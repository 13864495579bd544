"""The Python client (orbitwin.client) against a real mosquitto and a twin in lockstep (orbitwin.testing).

Replies: a command's ``completed`` reply is returned; a rejection raises RequestRejected with the
twin's reason and field (and a bad argument is refused before sending, the same way); a missing
reply raises a TimeoutError naming what was awaited. Streams: telemetry of the selection only,
events, replayed telemetry; route and replay requests; signed requests. The sim-time assertions
pass and fail on what the twin publishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orbitwin.client import OrbitwinClient, ReplyTimeout, RequestRejected
from orbitwin.testing.assertions import assert_within, limit_value, within

pytestmark = pytest.mark.orbitwin_twin(count=3, dt_s=1.0, seed=2)


def test_command_returns_its_completed_reply(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[0]
    t0 = orbitwin_twin.t_s
    reply = orbitwin_client.command(sat, "throttle", factor=0.5)
    assert reply["status"] == "completed" and reply["sat"] == sat
    assert reply["result"]["factor"] == 0.5 and reply["result"]["applied"] == 1
    assert reply["t_s"] == t0 + 1.0  # lockstep: the request made the twin take exactly the tick that ran it
    assert float(orbitwin_twin.twin.payload.cmd_throttle[0]) == 0.5


def test_rejections_raise_with_the_reason_and_field(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    with pytest.raises(RequestRejected) as exc:
        orbitwin_client.command("NO-SUCH-SAT", "throttle", factor=0.5)
    assert exc.value.reason == "unknown_satellite" and exc.value.field == "sat"
    assert exc.value.reply["status"] == "rejected" and "NO-SUCH-SAT" in str(exc.value)
    # refused before sending, with the reason the twin's parser gives
    with pytest.raises(RequestRejected) as exc:
        orbitwin_client.command(orbitwin_twin.names[0], "throttle", factor=2.0)
    assert (exc.value.reason, exc.value.field, exc.value.reply["source"]) == ("out_of_range", "factor", "client")
    with pytest.raises(RequestRejected, match="unknown_command"):
        orbitwin_client.fault(orbitwin_twin.names[0], "meteor_strike")
    # accepted, then rejected when it runs: payload commands are refused in safe mode
    sat = orbitwin_twin.names[1]
    orbitwin_client.command(sat, "enter_safe_mode")
    with pytest.raises(RequestRejected) as exc:
        orbitwin_client.command(sat, "set_payload_load", load=0.4)
    assert exc.value.reason == "not_now"
    assert orbitwin_client.command(sat, "leave_safe_mode")["status"] == "completed"


def test_timeouts_name_what_was_awaited(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[0]
    at = orbitwin_twin.t_s + 100
    pending = orbitwin_client.send(sat, "command", "throttle", {"factor": 0.7}, at=at)
    with pytest.raises(ReplyTimeout) as exc:
        pending.result(0.5)
    msg = str(exc.value)
    assert f"command 'throttle' on {sat}" in msg and pending.id in msg and "['accepted']" in msg
    assert pending.accepted is not None and pending.accepted["execute_t_s"] == at
    orbitwin_twin.advance(at - orbitwin_twin.t_s)  # the sim clock reaches it: completed
    assert pending.result(30)["t_s"] == at


def test_no_twin_online_is_a_timeout_naming_the_state_topic(orbitwin_broker: Any) -> None:
    with OrbitwinClient.connect(orbitwin_broker.url, timeout_s=0.5) as client:
        with pytest.raises(TimeoutError, match="not online: no birth on orbitwin/v1/state"):
            client.command("STARLINK-1008", "throttle", factor=0.5)


def test_telemetry_yields_the_selection_only(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    a, b, c = orbitwin_twin.names
    stream = orbitwin_client.telemetry([a, c], fields=["payload_temp_k", "net_power_w"])
    everything = orbitwin_client.telemetry(packets="hk")
    t_end = orbitwin_twin.advance(20)
    assert stream.wait_sim_time(t_end, 30) and everything.wait_sim_time(t_end, 30)
    samples = stream.poll()
    assert {s.sat for s in samples} == {a, c}
    assert all(set(s.fields) <= {"payload_temp_k", "net_power_w"} and s.fields for s in samples)
    assert {s.packet for s in samples} == {"hk", "power"}  # the packets carrying those fields
    hk_a = [s for s in samples if s.sat == a and s.packet == "hk"]
    assert len(hk_a) == 20 and all(y.seq > x.seq for x, y in zip(hk_a, hk_a[1:]))
    assert {s.sat for s in everything.poll()} == {a, b, c}
    with pytest.raises(ValueError, match="unknown telemetry field 'payload_temp'"):
        orbitwin_client.telemetry(a, fields=["payload_temp"])


def test_events_follow_a_fault(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[2]
    events = orbitwin_client.events(sat)
    reply = orbitwin_client.fault(sat, "seu_burst", count=5)
    ev = within(5).after(reply["t_s"] - 1).event(events, "fault_applied", sat=sat, clock=orbitwin_twin)
    assert ev["detail"]["request_id"] == reply["id"]
    assert any(e["kind"] == "seu" for e in events.history)
    assert all(e.get("sat") in (sat, None) for e in events.history)


def test_replay_request_and_replayed_telemetry(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[0]
    orbitwin_twin.advance(5)
    again = orbitwin_client.telemetry(sat, replayed=True)
    reply = orbitwin_client.replay(sat, 0, 4)
    assert reply["status"] == "completed" and reply["found"] == 5 and reply["evicted"] == 0
    assert again.wait_more(4, 30)
    assert sorted(s.seq for s in again.history) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="from_seq 9 is after to_seq 2"):
        orbitwin_client.replay(sat, 9, 2)


@pytest.mark.orbitwin_twin(count=3, network=True)
def test_route_request(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    orbitwin_twin.advance(1)
    reply = orbitwin_client.route("city:London", "city:New York")
    result = reply["result"]
    assert reply["status"] == "completed" and result["to"] == {"city": "New-York-Newark"}
    assert result["fibre_rtt_ms"] > 50 and isinstance(result["reachable"], bool)
    with pytest.raises(RequestRejected) as exc:
        orbitwin_client.route("city:London", "city:Atlantis")
    assert exc.value.reason == "bad_argument" and exc.value.field == "to.city"


def test_signed_requests(orbitwin_twin_factory: Any, orbitwin_broker: Any, tmp_path: Path) -> None:
    (tmp_path / "ops.secret").write_text("s" * 32 + "\n")
    (tmp_path / "keys.toml").write_text('[keys.ops-1]\nsecret_file = "ops.secret"\ncommands = ["throttle"]\n')
    twin = orbitwin_twin_factory(count=2, keys=str(tmp_path / "keys.toml"))
    sat = twin.names[0]
    with OrbitwinClient.connect(orbitwin_broker.url, key_id="ops-1", key_secret_file=str(tmp_path / "ops.secret")) as c:
        reply = c.command(sat, "throttle", factor=0.9)
        assert reply["authenticated"] is True and reply["kid"] == "ops-1"
        with pytest.raises(RequestRejected) as exc:
            c.command(sat, "enter_safe_mode")
        assert exc.value.reason == "forbidden"
    with OrbitwinClient.connect(orbitwin_broker.url) as anonymous:
        with pytest.raises(RequestRejected) as exc:
            anonymous.command(sat, "throttle", factor=0.9)
        assert exc.value.reason == "unauthenticated"


def test_sim_time_assertions_pass_and_fail(orbitwin_twin: Any, orbitwin_client: OrbitwinClient) -> None:
    sat = orbitwin_twin.names[0]
    hk = orbitwin_client.telemetry(sat, packets="hk")
    t0 = orbitwin_twin.t_s
    temps = within(30).after(t0).always(hk, sat, "payload_temp_k", below="yellow", clock=orbitwin_twin)
    assert len(temps) == 30 and temps[-1].t_s == t0 + 30
    assert assert_within(hk, sat, "mode", equals=0, within_s=5, after_s=t0, clock=orbitwin_twin).t_s == t0 + 1
    with pytest.raises(AssertionError) as exc:
        within(10).after(t0 + 30).expect(hk, sat, "payload_temp_k", above="red", clock=orbitwin_twin)
    msg = str(exc.value)
    assert f"{sat} payload_temp_k never above 363.15 (red)" in msg and f"@ t={t0 + 40:g} s" in msg
    assert "window" in msg and "11 samples" in msg
    with pytest.raises(ValueError, match="battery_soc has no red_high limit"):
        limit_value("battery_soc", "red")
