"""Every ```sh block of docs/mqtt.md runs verbatim (bash -c) against a real twin and does what
the guide says it does."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from twin.runtime.clock import Pacer
from mqtt_helpers import wait_for

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"
SAT = "STARLINK-1008"
SPEED = 20.0  # sim seconds per wall second: the 5 s payload packet comes every 0.25 s


def recipes() -> dict[str, str]:
    """``# recipe: NAME`` -> the sh block's text."""
    out = {}
    for block in re.findall(r"^```sh\n(.*?)^```", GUIDE.read_text(), re.S | re.M):
        m = re.match(r"# recipe: ([\w-]+)\n", block)
        assert m, f"an sh block without a '# recipe: NAME' first line:\n{block}"
        assert m.group(1) not in out, f"duplicate recipe {m.group(1)}"
        out[m.group(1)] = block
    return out


RECIPES = recipes()


@dataclass
class RunningTwin:
    """A TwinService stepping in a background thread at SPEED x real time."""

    service: Any
    host: str
    port: int
    error: list[BaseException]
    hold_at_s: float | None = None  # the twin stops stepping at this sim time ...
    release: Callable[[], bool] = lambda: True  # ... until this is true (checked every 10 ms, 60 s at most)

    def gate(self, twin: Any, stats: Any) -> None:
        """The run loop's on_tick: holds the sim clock at ``hold_at_s`` until ``release()``."""
        if self.hold_at_s is None or twin.t_s < self.hold_at_s:
            return
        deadline = time.monotonic() + 60.0
        while not self.release() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.hold_at_s = None

    @property
    def tick(self) -> int:
        return int(self.service.twin.tick)


@pytest.fixture
def running_twin(mosquitto: Any, tmp_path: Path) -> Iterator[RunningTwin]:
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.runtime.run_loop import FleetOptions, build_twin
    from twin.runtime.mqtt_service import TwinService

    twin = build_twin(FleetOptions(count=5, dt_s=1.0, seed=1))
    link = MqttLink(MqttSettings(mosquitto.url), LinkSettings(state_dir=str(tmp_path)))
    service = TwinService(twin, link)
    link.start()
    stop = threading.Event()
    rt = RunningTwin(service, mosquitto.host, mosquitto.port, [])

    def loop() -> None:
        try:
            service.run(Pacer(SPEED), on_tick=rt.gate, should_stop=stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            rt.error.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        wait_for(lambda: rt.tick >= 10 or rt.error, 10)
        yield rt
    finally:
        stop.set()
        thread.join(10)
        link.stop()
        twin.close()
    assert not rt.error, f"the twin died: {rt.error[0]!r}"


def run_recipe(block: str, rt: RunningTwin, timeout: float = 90.0) -> list[tuple[str, dict[str, Any]]]:
    """Run the block with bash; (text before the JSON, JSON) for each output line that has JSON."""
    env = dict(os.environ, MQTT_HOST=rt.host, MQTT_PORT=str(rt.port))
    proc = subprocess.Popen(["bash", "-c", block], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"recipe did not finish in {timeout} s:\n{out}\n{err}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    lines = []
    for line in out.splitlines():
        if "{" in line:
            k = line.index("{")
            lines.append((line[:k].strip(), json.loads(line[k:])))
    return lines


def statuses(lines: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [body["status"] for _, body in lines if "status" in body]


def publish_later(rt: RunningTwin, topic: str, body: dict[str, Any], delay: float) -> threading.Thread:
    """Publish ``body`` after ``delay`` s from another thread (a stimulus for a watching recipe)."""

    def go() -> None:
        time.sleep(delay)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect(rt.host, rt.port)
        c.loop_start()
        c.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)
        c.loop_stop()
        c.disconnect()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


# --- one check per recipe ------------------------------------------------------------------
def check_state(rt: RunningTwin) -> None:
    ((topic, body),) = run_recipe(RECIPES["state"], rt)
    assert topic == "orbitwin/v1/state" and body["state"] == "online" and body["bseq"] == rt.service.link.bseq


def check_watch_satellite(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["watch-satellite"], rt)
    assert len(lines) == 5
    seqs = [b["seq"] for _, b in lines]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert all(t == f"orbitwin/v1/sat/{SAT}/tm/{b['packet']}" and b["sat"] == SAT for t, b in lines)


def check_watch_events(rt: RunningTwin) -> None:
    stim = publish_later(rt, "orbitwin/v1/sat/STARLINK-1012/fault", {"fault": "latchup", "args": {"device": 1}}, 1.5)
    lines = run_recipe(RECIPES["watch-events"], rt)
    stim.join()
    assert len(lines) == 3 and all(t.endswith("/event") and "kind" in b for t, b in lines)
    assert ("sel", "latchup") in {(b["kind"], b["name"]) for _, b in lines}


def check_summary(rt: RunningTwin) -> None:
    ((_, body),) = run_recipe(RECIPES["summary"], rt)
    assert body["sats"] == 5 and body["tick"] >= 10


def check_latchup(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["latchup"], rt)
    replies = [b for t, b in lines if t.endswith("/reply")]
    events = {(b["kind"], b["name"]) for t, b in lines if t.endswith("/event")}
    assert [r["status"] for r in replies] == ["accepted", "completed"] and {r["id"] for r in replies} == {"sel-1"}
    assert {("sel", "latchup"), ("fault", "fault_applied")} <= events
    assert replies[1]["result"]["devices"] == [3]


def check_throttle(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["throttle"], rt)
    assert len(lines) == 2 and all(b["packet"] == "payload" for _, b in lines)
    assert lines[-1][1]["fields"]["payload_throttle"] == 0.5


def check_rejected(rt: RunningTwin) -> None:
    ((_, body),) = run_recipe(RECIPES["rejected"], rt)
    assert (body["status"], body["reason"], body["field"], body["id"]) == ("rejected", "out_of_range", "factor",
                                                                          "thr-bad")


def check_fleet_select(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["fleet-select"], rt)
    assert statuses(lines) == ["accepted", "completed"]
    assert lines[0][1]["sats"] == 5 and lines[1][1]["result"]["applied"] == 5


def check_safe_mode(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["safe-mode"], rt)
    assert statuses(lines[:2]) == ["accepted", "completed"] and lines[0][1]["id"] == "safe-all"
    hk = [b for _, b in lines[2:]]
    assert len(hk) == 3 and all(b["packet"] == "hk" and b["fields"]["mode"] == 1 for b in hk)


def check_mqtt5(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["mqtt5"], rt)
    assert [t for t, _ in lines] == ["clients/ops-console/replies corr=req-42"] * 2
    assert statuses(lines) == ["accepted", "completed"] and all(b["id"] == "req-42" for _, b in lines)


def check_time_tagged(rt: RunningTwin) -> None:
    # the sim clock waits at t = 28 s until the request has reached the twin, so "at": 30 is in
    # the future when it is handled however slow the machine is
    link, counters = rt.service.link, rt.service.counters
    received, requests = link.stats.received, counters["requests"]
    rt.release = lambda: link.stats.received > received or counters["requests"] > requests
    rt.hold_at_s = 28.0
    assert rt.service.twin.t_s < 28, "the twin must still be before the hold"
    lines = run_recipe(RECIPES["time-tagged"], rt)
    assert statuses(lines) == ["accepted", "completed"]
    assert lines[0][1]["execute_t_s"] == 30.0 and lines[1][1]["t_s"] >= 30.0
    assert lines[1][1]["result"]["fault_id"] >= 1


def check_replay(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["replay"], rt)
    (reply,) = [b for _, b in lines if "status" in b]
    assert (reply["status"], reply["found"], reply["evicted"], reply["id"]) == ("completed", 5, 0, "replay-1")
    replayed = [(t, b) for t, b in lines if "/tm/" in t]
    assert sorted(b["seq"] for _, b in replayed) == list(range(5))
    assert all(t == f"orbitwin/v1/replay/{SAT}/tm/{b['packet']}" and b["sat"] == SAT for t, b in replayed)


CHECKS: dict[str, Callable[[RunningTwin], None]] = {
    "state": check_state, "watch-satellite": check_watch_satellite, "watch-events": check_watch_events,
    "summary": check_summary, "latchup": check_latchup, "throttle": check_throttle, "rejected": check_rejected,
    "fleet-select": check_fleet_select, "safe-mode": check_safe_mode, "mqtt5": check_mqtt5,
    "time-tagged": check_time_tagged, "replay": check_replay,
}


def test_every_recipe_is_checked_and_portable() -> None:
    assert set(CHECKS) == set(RECIPES)
    for name, block in RECIPES.items():
        commands = re.sub(r"\\\n\s*", " ", block).splitlines()
        for cmd in (c for c in commands if c.lstrip().startswith("mosquitto_")):
            assert '-h "${MQTT_HOST:-localhost}" -p "${MQTT_PORT:-1883}"' in cmd, (name, cmd)
            if cmd.lstrip().startswith("mosquitto_sub"):
                assert re.search(r" -[CW] \d+", cmd), f"{name}: a subscription that may never end: {cmd}"


@pytest.mark.parametrize("name", list(CHECKS))
def test_recipe(name: str, running_twin: RunningTwin) -> None:
    CHECKS[name](running_twin)
    assert not running_twin.error
