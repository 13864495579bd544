"""Every ```sh block of docs/mqtt.md runs verbatim (bash -c) against a real twin and does what
the guide says it does: each alone on a fresh twin at 20x, and all of them one after another in
document order against one twin at real time (as a user copying them would), where a recipe
that left the fleet in a state the next one cannot work from would fail.

Recipes are found by their ``# recipe: NAME`` first line, in document order, so a section added
to the guide is run too; ``CHECKS`` says what each must print."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from twin.runtime.clock import Pacer
from mqtt_helpers import wait_for

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "mqtt.md"
SAT = "STARLINK-1008"
SPEED = 20.0  # sim seconds per wall second for the one-recipe tests: the 10 s payload packet every 0.5 s
RECIPE_TIMEOUT_S = 75.0  # wall bound of one recipe: its own waits end at -W 30 (twice at most), the rest is slack


def recipes() -> dict[str, str]:
    """``# recipe: NAME`` -> the sh block's text, in document order."""
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
    """A TwinService stepping in a background thread at ``speed`` x real time."""

    service: Any
    host: str
    port: int
    error: list[BaseException]
    speed: float = SPEED
    in_order: bool = False  # True: the recipes run one after another on this twin (not each on a fresh one)
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


@contextmanager
def twin_on(broker: Any, state_dir: Path, speed: float, *, in_order: bool = False,
            first_ticks: int = 10) -> Iterator[RunningTwin]:
    """A 5-satellite twin on ``broker`` stepping at ``speed`` in a thread, after its first ticks."""
    from twin.mqtt import MqttSettings
    from twin.runtime.mqtt_link import LinkSettings, MqttLink
    from twin.core.design import load_design
    from twin.core.engine import FleetTwin
    from twin.runtime.run_loop import FleetOptions, select_catalogue
    from twin.runtime.mqtt_service import TwinService

    # what build_twin makes, with the network model on (the route recipe asks for one)
    twin = FleetTwin(select_catalogue(FleetOptions(count=5)), load_design(), dt_s=1.0, seed=1, network=True)
    link = MqttLink(MqttSettings(broker.url), LinkSettings(state_dir=str(state_dir)))
    service = TwinService(twin, link, auth=recipe_verifier())
    link.start()
    stop = threading.Event()
    rt = RunningTwin(service, broker.host, broker.port, [], speed=speed, in_order=in_order)

    def loop() -> None:
        try:
            service.run(Pacer(speed), on_tick=rt.gate, should_stop=stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            rt.error.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        wait_for(lambda: rt.tick >= first_ticks or rt.error, 10 + 2 * first_ticks / speed)
        yield rt
    finally:
        stop.set()
        thread.join(10)
        link.stop()
        twin.close()
    assert not rt.error, f"the twin died: {rt.error[0]!r}"


# the key the "signed" recipe signs with (ORBITWIN_KEY_ID, ORBITWIN_KEY_SECRET_FILE); the twin takes unsigned
# requests too (every other recipe), as a quick-start twin does
RECIPE_KEY_ID, RECIPE_SECRET = "ops-1", "recipe-test-secret-0123456789abcdef"


def recipe_verifier() -> Any:
    from twin.contract.request_auth import Key, KeyRights, RequestVerifier

    rights = KeyRights(frozenset({"*"}), frozenset({"*"}), fleet=True)
    return RequestVerifier({RECIPE_KEY_ID: Key(RECIPE_KEY_ID, RECIPE_SECRET.encode(), rights)}, require=False)


@pytest.fixture
def running_twin(mosquitto: Any, tmp_path: Path) -> Iterator[RunningTwin]:
    with twin_on(mosquitto, tmp_path, SPEED) as rt:
        yield rt


def run_recipe(block: str, rt: RunningTwin, timeout: float = RECIPE_TIMEOUT_S) -> list[tuple[str, dict[str, Any]]]:
    """Run the block with bash; (text before the JSON, JSON) for each output line that has JSON."""
    secret_file = Path(rt.service.link.settings.state_dir or ".") / "recipe-key.secret"
    secret_file.write_text(RECIPE_SECRET + "\n")
    env = dict(os.environ, MQTT_HOST=rt.host, MQTT_PORT=str(rt.port), ORBITWIN_KEY_ID=RECIPE_KEY_ID,
               ORBITWIN_KEY_SECRET_FILE=str(secret_file))
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
    # the recipe causes the two events it waits for (a quiet fleet at real time has none for minutes)
    lines = run_recipe(RECIPES["watch-events"], rt)
    assert [t for t, _ in lines] == ["orbitwin/v1/sat/STARLINK-1012/event"] * 2
    (seu, applied) = (b for _, b in lines)
    assert (seu["kind"], seu["name"], seu["detail"]["count"]) == ("seu", "seu_burst", 10)
    assert (applied["kind"], applied["name"], applied["detail"]["request_id"]) == ("fault", "fault_applied", "seu-1")


def check_summary(rt: RunningTwin) -> None:
    tick = rt.tick
    ((_, body),) = run_recipe(RECIPES["summary"], rt)
    assert body["sats"] == 5 and body["tick"] >= tick and body["t_s"] == body["tick"] * 1.0  # a current tick (dt 1 s)


def check_latchup(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["latchup"], rt)
    replies = [b for t, b in lines if t.endswith("/reply")]
    events = {(b["kind"], b["name"]) for t, b in lines if t.endswith("/event")}
    assert [r["status"] for r in replies] == ["accepted", "completed"] and {r["id"] for r in replies} == {"sel-1"}
    assert {("sel", "latchup"), ("fault", "fault_applied")} <= events
    assert replies[1]["result"]["devices"] == [3]


def check_throttle(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["throttle"], rt)
    assert statuses(lines) == ["accepted", "completed"] and {b["id"] for _, b in lines[:2]} == {"thr-1"}
    (_, payload), = lines[2:]
    assert payload["packet"] == "payload" and payload["t_s"] > lines[1][1]["t_s"]  # a tick after the command
    assert payload["fields"]["payload_throttle"] == 0.5


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


def check_leave_safe_mode(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["leave-safe-mode"], rt)
    assert statuses(lines[:2]) == ["accepted", "completed"] and lines[0][1]["id"] == "nominal-all"
    assert lines[1][1]["result"] == {"mode": "nominal", "applied": 5}
    hk = [b for _, b in lines[2:]]
    assert len(hk) == 3 and all(b["packet"] == "hk" and b["fields"]["mode"] == 0 for b in hk)


def check_mqtt5(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["mqtt5"], rt)
    assert [t for t, _ in lines] == ["clients/ops-console/replies corr=req-42"] * 2
    assert statuses(lines) == ["accepted", "completed"] and all(b["id"] == "req-42" for _, b in lines)
    assert lines[1][1]["result"]["applied"] == 1


def rr_lines(lines: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(response topic, correlation data, reply) of each line ``mosquitto_rr -F '%t corr=%D %p'`` printed."""
    out = []
    for head, body in lines:
        m = re.fullmatch(r"(\S+) corr=(\S*)", head)
        assert m, f"not a '%t corr=%D' line: {head!r}"
        out.append((m.group(1), m.group(2), body))
    return out


def check_mosquitto_rr(rt: RunningTwin) -> None:
    # twice back to back, as a user would: each run prints its own request's first reply, never the
    # previous run's late ``completed`` (its response topic and correlation data are its own)
    seen = []
    for _ in range(2):
        ((topic, corr, body),) = rr_lines(run_recipe(RECIPES["mosquitto-rr"], rt))
        assert topic == f"clients/{corr}/replies" and corr not in seen
        assert (body["status"], body["id"], body["sat"], body["request"]) == ("accepted", corr, SAT, "set_payload_load")
        seen.append(corr)


def check_time_tagged(rt: RunningTwin) -> None:
    if not rt.in_order:
        # the sim clock waits at t = 28 s until the request has reached the twin, so "at": 30 is in
        # the future when it is handled however slow the machine is
        link, counters = rt.service.link, rt.service.counters
        received, requests = link.stats.received, counters["requests"]
        rt.release = lambda: link.stats.received > received or counters["requests"] > requests
        rt.hold_at_s = 28.0
        assert rt.service.twin.t_s < 28, "the twin must still be before the hold"
    lines = run_recipe(RECIPES["time-tagged"], rt)
    assert statuses(lines) == ["accepted", "completed"]
    accepted, completed = lines[0][1], lines[1][1]
    if "late_s" in accepted:  # after the recipes above, a real-time twin is past 30 s: it runs at once
        assert rt.in_order and accepted["t_s"] > 30.0
        assert accepted["execute_t_s"] == accepted["t_s"] and accepted["late_s"] == accepted["execute_t_s"] - 30.0
    else:
        assert accepted["execute_t_s"] == 30.0 and accepted["t_s"] <= 30.0
    assert completed["t_s"] >= accepted["execute_t_s"] and completed["result"]["fault_id"] >= 1


def check_replay(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["replay"], rt)
    (reply,) = [b for _, b in lines if "status" in b]
    assert (reply["status"], reply["found"], reply["evicted"], reply["id"]) == ("completed", 5, 0, "replay-1")
    replayed = [(t, b) for t, b in lines if "/tm/" in t]
    assert sorted(b["seq"] for _, b in replayed) == list(range(5))
    assert all(t == f"orbitwin/v1/replay/{SAT}/tm/{b['packet']}" and b["sat"] == SAT for t, b in replayed)


def check_signed(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["signed"], rt)
    assert statuses(lines) == ["accepted", "completed"], lines
    assert all(b["id"] == "thr-signed" and b["authenticated"] is True and b["kid"] == RECIPE_KEY_ID
               for _, b in lines), lines
    assert rt.service.counters["rejected_unauthenticated"] == 0


def check_route(rt: RunningTwin) -> None:
    lines = run_recipe(RECIPES["route"], rt)
    ((_, body),) = lines  # the reply; the RTT line has no JSON
    assert (body["status"], body["id"], body["request"]) == ("completed", "ldn-nyc", "route"), body
    r = body["result"]
    assert (r["from"], r["to"]) == ({"city": "London"}, {"city": "New-York-Newark"})
    # London-New York over a great circle of 5,570 km in fibre (group index 1.468) and at c (docs/network.md)
    assert abs(r["fibre_rtt_ms"] - 54.55) < 0.05 and 37.0 < r["bound_rtt_ms"] < 37.3
    if r["reachable"]:  # not with five satellites; the full fleet's answer is in tests/test_route_request.py
        assert r["rtt_ms"] >= r["bound_rtt_ms"] and abs(r["stretch"] - r["rtt_ms"] / r["fibre_rtt_ms"]) < 1e-9
    else:
        assert r["path"] == [] and r["rtt_ms"] is None and r["stretch"] is None and r["bottleneck_gbps"] == 0
    twin = rt.service.twin
    assert twin.mesh is not None and twin.net is not None and body["t_s"] <= twin.t_s
    text = subprocess.run(["bash", "-c", RECIPES["route"]], capture_output=True, text=True, timeout=RECIPE_TIMEOUT_S,
                          env=dict(os.environ, MQTT_HOST=rt.host, MQTT_PORT=str(rt.port))).stdout
    want = r"RTT \d+\.\d ms, fibre 54\.5 ms, stretch \d\.\d\d" if r["reachable"] else r"no route now; fibre 54\.5 ms"
    assert re.search(rf"^{want}$", text, re.M), text


CHECKS: dict[str, Callable[[RunningTwin], None]] = {
    "state": check_state, "watch-satellite": check_watch_satellite, "watch-events": check_watch_events,
    "summary": check_summary, "latchup": check_latchup, "throttle": check_throttle, "rejected": check_rejected,
    "fleet-select": check_fleet_select, "safe-mode": check_safe_mode, "leave-safe-mode": check_leave_safe_mode,
    "mqtt5": check_mqtt5, "mosquitto-rr": check_mosquitto_rr, "time-tagged": check_time_tagged,
    "replay": check_replay, "route": check_route, "signed": check_signed,
}


def check_runs(rt: RunningTwin, name: str) -> None:
    """A recipe without a check of its own (see test_every_recipe_is_checked_and_portable): it must end
    with status 0, print something, and get no ``rejected`` reply."""
    lines = run_recipe(RECIPES[name], rt)
    assert lines, f"recipe {name} printed no JSON"
    assert "rejected" not in statuses(lines), lines


def test_every_recipe_is_checked_and_portable() -> None:
    assert not set(CHECKS) - set(RECIPES), "checks of recipes the guide no longer has"
    assert set(CHECKS) == set(RECIPES), f"recipes without a check in CHECKS: {sorted(set(RECIPES) - set(CHECKS))}"
    for name, block in RECIPES.items():
        commands = re.sub(r"\\\n\s*", " ", block).splitlines()
        for cmd in (c for c in commands if c.lstrip().startswith("mosquitto_")):
            assert '-h "${MQTT_HOST:-localhost}" -p "${MQTT_PORT:-1883}"' in cmd, (name, cmd)
            if cmd.lstrip().startswith(("mosquitto_sub", "mosquitto_rr")):
                assert re.search(r" -W \d+", cmd), f"{name}: a wait that may never end: {cmd}"


@pytest.mark.parametrize("name", list(CHECKS))
def test_recipe(name: str, running_twin: RunningTwin) -> None:
    CHECKS[name](running_twin)
    assert not running_twin.error


@pytest.mark.timing
def test_recipes_in_document_order_on_one_real_time_twin(mosquitto: Any, tmp_path: Path) -> None:
    """A user copying the guide: every recipe, in the order the guide gives them, against one twin at
    ``--speed x1`` (started at the catalogue's epoch, so all five satellites propagate whatever the
    date; ``orbitwin run`` at x1 starts at the wall clock, see the guide). Each is bounded by its own ``-W`` waits (RECIPE_TIMEOUT_S at most) and checked as
    alone; a recipe that left the fleet where the next cannot work (safe mode before a payload command)
    or waits for something a real-time twin does not make fails here."""
    took: dict[str, float] = {}
    with twin_on(mosquitto, tmp_path, 1.0, in_order=True, first_ticks=2) as rt:
        for name in RECIPES:
            t0 = time.monotonic()
            try:
                CHECKS[name](rt) if name in CHECKS else check_runs(rt, name)
            except AssertionError as exc:
                raise AssertionError(f"recipe {name!r} (after {list(took)}) at sim t = {rt.service.twin.t_s} s: "
                                     f"{exc}") from None
            took[name] = round(time.monotonic() - t0, 1)
            assert not rt.error, f"the twin died after recipe {name!r}: {rt.error[0]!r}"
    print("wall seconds per recipe:", took)


def test_mosquitto_rr_on_a_shared_response_topic_prints_the_previous_requests_late_reply(
        running_twin: RunningTwin) -> None:
    """The guide's explanation, shown: mosquitto_rr prints the first message on its response topic. When
    the twin takes a while between ``accepted`` and ``completed`` (a large fleet's tick, here a step held
    for 2 s), the second of two back-to-back runs on one shared response topic prints the first run's
    ``completed``; with the recipe's own topic per request each run prints its own reply."""
    rt = running_twin
    twin = rt.service.twin
    real_step = twin.step
    slow = threading.Event()

    def step(*args: Any, **kwargs: Any) -> None:
        real_step(*args, **kwargs)
        if slow.is_set():
            time.sleep(2.0)  # between this tick's accepted replies and its completed ones

    twin.step = step
    recipe = RECIPES["mosquitto-rr"]
    rr = next(line for line in re.sub(r"\\\n\s*", " ", recipe).splitlines() if line.startswith("mosquitto_rr"))
    assert '-e "clients/$req/replies"' in rr
    shared = rr.replace('-e "clients/$req/replies"', "-e clients/ops-console/shared")
    slow.set()
    try:
        lines = rr_lines(run_recipe(f"req=first\n{shared}\nreq=second\n{shared}\n", rt))
        own = rr_lines(run_recipe(f"{recipe}\n{recipe}\n", rt))
    finally:
        slow.clear()
        twin.step = real_step
    assert [(corr, b["status"]) for _, corr, b in lines] == [("first", "accepted"), ("first", "completed")]
    assert [b["id"] for _, _, b in lines] == ["first", "first"]  # the second run never saw its own reply
    assert [b["status"] for _, _, b in own] == ["accepted", "accepted"]
    assert all(b["id"] == corr and topic == f"clients/{corr}/replies" for topic, corr, b in own)
    assert own[0][1] != own[1][1]
