"""Two ``orbitwin run --shard`` processes on one real mosquitto: the same telemetry as one twin, and
requests that reach the shard owning their satellite (fleet requests every shard)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


from tests.mqtt_helpers import Recorder, start_twin, stop_process, wait_for
from twin.core.catalogue import load_catalogue

COUNT = 120
NAMES = load_catalogue().names[:COUNT]
FLEET = ["--count", str(COUNT), "--no-network", "--seed", "4", "--dt", "10"]

SCENARIO = f"""
seed = 4
[[request]]
at = 20
sat = "{NAMES[3]}"
fault = "sensor_noise"
args = {{ field = "battery_soc", sigma = 0.02 }}

[[request]]
at = 30
sat = "{NAMES[100]}"
fault = "sensor_noise"
args = {{ field = "payload_temp_k", sigma = 2.0 }}

[[request]]
at = 40
select = "*"
fault = "seu_burst"
args = {{ count = 30 }}

[[request]]
at = 50
sat = "{NAMES[70]}"
fault = "sun_pointing_loss"
"""


def _telemetry(rec: Recorder, prefix: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Every satellite packet under ``prefix`` by (satellite, packet, seq), without the run identity."""
    out = {}
    for topic, payload in rec.find(lambda t, p: t.startswith(f"{prefix}/sat/") and "/tm/" in t):
        body = {k: v for k, v in payload.items() if k not in ("bseq", "run")}
        out[(payload["sat"], topic.rsplit("/", 1)[1], payload["seq"])] = body
    return out


def test_two_shards_publish_the_single_twins_telemetry(mosquitto: Any, tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{p}/{leaf}" for p in ("single/v1", "sharded/v1")
                                                    for leaf in ("sat/+/tm/+", "state", "shard/+/state",
                                                                 "shard/+/fleet/catalogue")])
    common = [*FLEET, "--speed", "max", "--duration", "300", "--frames", "off", "--scenario", str(scenario)]
    procs = [start_twin(mosquitto.url, *common, "--prefix", "single/v1", state_dir=str(tmp_path))]
    procs += [start_twin(mosquitto.url, *common, "--prefix", "sharded/v1", "--shard", f"{k}/2",
                         state_dir=str(tmp_path)) for k in (1, 2)]
    try:
        for p in procs:
            assert p.wait(120) == 0
        single = wait_for(lambda: _telemetry(rec, "single/v1") if len(rec.find(
            lambda t, p: t == "single/v1/state" and p.get("state") == "offline")) else None, 90, what="single done")
        wait_for(lambda: len(rec.find(lambda t, p: t.startswith("sharded/v1/shard/") and t.endswith("/state")
                                      and p.get("state") == "offline")) == 2, 90, what="both shards done")
        sharded = _telemetry(rec, "sharded/v1")
    finally:
        for p in procs:
            stop_process(p)
        rec.close()
    assert set(sharded) == set(single) and len(single) > COUNT * 30
    diff = [k for k in single if single[k] != sharded[k]]
    assert not diff, f"{len(diff)} packets differ, e.g. {diff[0]}: {single[diff[0]]} vs {sharded[diff[0]]}"
    noisy = [v["fields"]["battery_soc"] for k, v in single.items() if k[0] == NAMES[3] and k[1] == "hk" and k[2] > 5]
    assert len(set(noisy)) > 5  # the injected noise is in the compared telemetry
    births = [p for t, p in rec.find(lambda t, p: t.startswith("sharded/v1/shard/") and t.endswith("/state")
                                                  and p.get("state") == "online")]
    assert sorted(b["shard"] for b in births) == ["1/2", "2/2"]
    assert sum(b["sats"] for b in births) == COUNT and all(b["fleet_sats"] == COUNT for b in births)
    cats = [p for t, p in rec.find(lambda t, p: t.startswith("sharded/v1/shard/") and t.endswith("/fleet/catalogue"))]
    assert sorted(s["sat"] for c in cats for s in c["sats"]) == sorted(NAMES)


def _replies(rec: Recorder, rid: str) -> list[dict[str, Any]]:
    return [p for _, p in rec.find(lambda t, p: t.endswith("/reply") and isinstance(p, dict) and p.get("id") == rid)]


def test_requests_reach_the_shard_that_owns_the_satellite(mosquitto: Any, tmp_path: Path) -> None:
    """Two shards with the mesh, paced: each request reaches the shard that owns its satellite, fleet
    requests every shard, route requests shard 1 (over the whole fleet's mesh)."""
    fleet = tmp_path / "small.toml"
    fleet.write_text(SMALL)
    rec = Recorder(mosquitto.host, mosquitto.port, ["orbitwin/v1/#"])
    procs: list[subprocess.Popen[Any]] = [start_twin(mosquitto.url, "--constellation", str(fleet), "--dt", "10",
                                                     "--speed", "x20", "--shard", f"{k}/2", state_dir=str(tmp_path))
                                          for k in (1, 2)]
    try:
        cats = wait_for(lambda: (c := rec.find(lambda t, p: t.endswith("/fleet/catalogue"))) and len(c) == 2 and c,
                        60, what="both shards' catalogues")
        owner = {s["sat"]: t.split("/")[3] for t, p in cats for s in p["sats"]}
        names = sorted(owner)
        in_2 = next(n for n in names if owner[n] == "2")
        only_1 = [n for n in names if owner[n] == "1"][:3]

        def send(topic: str, body: dict[str, Any]) -> None:
            rec.publish(f"orbitwin/v1/{topic}", json.dumps(body))

        send(f"sat/{in_2}/cmd", {"id": "one", "command": "throttle", "args": {"factor": 0.5}})
        send("sat/NO-SUCH-SAT/cmd", {"id": "nobody", "command": "throttle", "args": {"factor": 0.5}})
        send("fleet/cmd", {"id": "all", "command": "throttle", "args": {"factor": 0.9}, "select": "*"})
        send("fleet/cmd", {"id": "some", "command": "throttle", "args": {"factor": 0.8}, "select": {"sats": only_1}})
        send("shard/2/fleet/cmd", {"id": "mine", "command": "throttle", "args": {"factor": 0.7}, "select": "*"})
        wait_for(lambda: rec.find(lambda t, p: t.endswith("/fleet/topology")), 60, what="a topology frame")
        send("fleet/route", {"id": "path", "from": {"sat": in_2}, "to": {"gateway": "*"}})
        wait_for(lambda: len([r for r in _replies(rec, "all") if r["status"] == "completed"]) == 2
                 and len([r for r in _replies(rec, "some") if r["status"] == "completed"]) == 2
                 and any(r["status"] == "completed" for r in _replies(rec, "one"))
                 and any(r["status"] == "completed" for r in _replies(rec, "mine"))
                 and _replies(rec, "path")
                 and _replies(rec, "nobody"), 60, what="the replies")
    finally:
        for p in procs:
            stop_process(p)
        rec.close()
    one = _replies(rec, "one")
    assert {r["shard"] for r in one} == {"2/2"} and [r["status"] for r in one] == ["accepted", "completed"]
    nobody = _replies(rec, "nobody")
    assert len(nobody) == 1 and nobody[0]["shard"] == "1/2" and nobody[0]["reason"] == "unknown_satellite"
    taken = [r for r in _replies(rec, "all") if r["status"] == "accepted"]
    assert sorted(r["shard"] for r in taken) == ["1/2", "2/2"] and sum(r["sats"] for r in taken) == len(names)
    some = {r["shard"]: r for r in _replies(rec, "some") if r["status"] == "accepted"}
    assert some["1/2"]["sats"] == len(only_1) and some["2/2"]["sats"] == 0
    mine = _replies(rec, "mine")
    assert {r["shard"] for r in mine} == {"2/2"}
    # the shard's own fleet request is answered under the shard; fleet-wide ones on the common topic
    topics = {t for t, p in rec.find(lambda t, p: isinstance(p, dict) and p.get("id") in ("all", "mine"))}
    assert "orbitwin/v1/fleet/reply" in topics and "orbitwin/v1/shard/2/fleet/reply" in topics
    path = _replies(rec, "path")
    assert len(path) == 1 and path[0]["shard"] == "1/2" and path[0]["status"] == "completed", path
    assert path[0]["result"]["path"][0] == in_2  # a satellite of shard 2, routed over the whole mesh by shard 1
    tops = {t for t, _ in rec.find(lambda t, p: t.endswith("/fleet/topology"))}
    assert tops == {"orbitwin/v1/shard/1/fleet/topology"}  # one shard publishes the whole mesh's topology


def test_shard_option_needs_an_external_broker(tmp_path: Path) -> None:
    import sys

    for extra, why in ((["--shard", "1/2", "--no-network"], "--shard needs --mqtt"),
                       (["--no-network", "--mqtt", "mqtt://127.0.0.1:1", "--shard", "3/2"], "K/N")):
        r = subprocess.run([sys.executable, "-m", "orbitwin.cli", "run", "--count", "60", "--plain", *extra],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and why in r.stderr, r.stderr


SMALL = """
name = "small"
epoch = "2026-12-01T00:00:00Z"
[[shell]]
name = "S"
altitude_km = 550.0
inclination_deg = 53.0
planes = 12
sats_per_plane = 12
"""


def test_shards_with_the_mesh_exchange_their_inputs_and_match_the_single_twin(mosquitto: Any, tmp_path: Path) -> None:
    """With the network model each shard steps the whole mesh from every shard's inputs (over the
    broker, tick by tick): links, routes and the laser terminals' power are the single twin's."""
    fleet = tmp_path / "small.toml"
    fleet.write_text(SMALL)
    # network faults booked in one shard change the whole mesh in both: every link between S-P05-S00 (shard 1)
    # and plane 6 (shard 2) down for two minutes, booked on plane 6's satellites; a gateway out, booked in shard 1
    scenario = tmp_path / "outages.toml"
    scenario.write_text('[[request]]\nat = 100\nselect = { names = "S-P06-*" }\nfault = "link_outage"\n'
                        'args = { peer = "S-P05-S00" }\nduration_s = 120\n\n'
                        '[[request]]\nat = 150\nsat = "S-P01-S01"\nfault = "gateway_outage"\n'
                        'args = { gateway = "Adelanto, CA" }\n')
    rec = Recorder(mosquitto.host, mosquitto.port, [f"{p}/sat/+/tm/{k}" for p in ("single/v1", "sharded/v1")
                                                    for k in ("net", "power")] + ["sharded/v1/shard/+/mesh"])
    common = ["--constellation", str(fleet), "--seed", "4", "--dt", "10", "--speed", "max", "--duration", "300",
              "--frames", "off", "--scenario", str(scenario)]
    procs = [start_twin(mosquitto.url, *common, "--prefix", "single/v1", state_dir=str(tmp_path))]
    procs += [start_twin(mosquitto.url, *common, "--prefix", "sharded/v1", "--shard", f"{k}/2",
                         state_dir=str(tmp_path)) for k in (1, 2)]
    expected = 144 * 30 * 2  # both packets of every satellite at every tick, 1 to 30
    try:
        for p in procs:
            assert p.wait(180) == 0
        wait_for(lambda: len(_telemetry(rec, "single/v1")) == expected == len(_telemetry(rec, "sharded/v1")), 60,
                 what="all the telemetry")
    finally:
        for p in procs:
            stop_process(p)
        rec.close()
    single, sharded = _telemetry(rec, "single/v1"), _telemetry(rec, "sharded/v1")
    assert single == sharded
    assert sum(v["fields"]["links_up"] for k, v in single.items() if k[1] == "net") > 144 * 30  # a live mesh
    links = {v["t_s"]: v["fields"]["links_up"] for k, v in single.items() if k[:2] == ("S-P05-S00", "net")}
    assert max(links[t] for t in (70.0, 80.0, 90.0)) > max(links[t] for t in (160.0, 170.0, 180.0))  # the outage bit
    frames = rec.find(lambda t, p: t.endswith("/mesh"))
    assert {t.split("/")[3] for t, _ in frames} == {"1", "2"} and len(frames) == 2 * 31  # one per shard and tick


def test_a_bridge_per_shard_stores_the_whole_fleet_exactly_once(mosquitto: Any, influxd: Any, tmp_path: Path) -> None:
    """Two shards and two InfluxDB bridges, one per partition (``bridge influx --shard K``): every
    satellite's telemetry stored once, each satellite's events by its own shard's bridge only."""
    import uuid

    import numpy as np

    from tests.pipeline import bridge_proc, check_exactly_once, expected_counts, ticks_done, twin_proc, wait_settled

    db = f"shards_{uuid.uuid4().hex[:6]}"
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    dirs = [tmp_path / f"s{k}" for k in (1, 2)]
    for d in dirs:
        d.mkdir()
    bridges = [bridge_proc(d, mosquitto.url, influxd.url, db, "--shard", str(k), "--bridge-id", f"influx-{k}",
                           client_id=f"bridge-{k}-{uuid.uuid4().hex[:4]}").start() for k, d in zip((1, 2), dirs)]
    twins = []
    try:
        for b in bridges:
            wait_for(lambda b=b: '"connected": true' in b.text(), 30, what="bridge up")
        twins = [twin_proc(d, mosquitto.url, COUNT, *FLEET[2:], "--speed", "x20", "--duration", "200",
                           "--scenario", str(scenario), "--shard", f"{k}/2").start() for k, d in zip((1, 2), dirs)]
        for t in twins:
            assert t.popen is not None and t.popen.wait(120) == 0
        status = [wait_settled(b) for b in bridges]
    finally:
        for p in (*twins, *bridges):
            p.stop()
    ticks = ticks_done(twins[0])
    counts = expected_counts(COUNT, ticks, 10.0, network=False)
    np.testing.assert_array_equal(counts, expected_counts(COUNT, ticks_done(twins[1]), 10.0, network=False))
    result = check_exactly_once(influxd, db, list(NAMES), counts)
    assert result["lost"] == 0 and result["duplicates"] == 0, result
    assert all(st["shard"] in ("1", "2") and st["dead_letters"] == 0 for st in status)
    assert all(st["other_partition"] > 0 for st in status)  # each saw the other shard's events and left them
    res = influxd.query('SELECT count(*) FROM "events" GROUP BY "sat"', db=db)
    series = res["results"][0].get("series", [])
    assert {s["tags"]["sat"] for s in series} >= {NAMES[3], NAMES[100]}


def test_the_python_client_commands_a_sharded_twin(mosquitto: Any, tmp_path: Path) -> None:
    """OrbitwinClient: online with the shards' births, a satellite's command answered by its shard, a fleet
    command waited for from every shard and merged (the satellites of both)."""
    from orbitwin.client import OrbitwinClient

    procs = [start_twin(mosquitto.url, *FLEET, "--speed", "x10", "--shard", f"{k}/2", state_dir=str(tmp_path))
             for k in (1, 2)]
    try:
        with OrbitwinClient.connect(mosquitto.url, timeout_s=60) as c:
            birth = c.wait_online()
            assert birth["shard"] in ("1/2", "2/2")
            one = c.command(NAMES[5], "throttle", factor=0.5)
            assert one["status"] == "completed" and one["shard"] in ("1/2", "2/2") and "shards" not in one
            every = c.command(None, "throttle", factor=0.9, select="*")
            assert every["status"] == "completed" and sorted(r["shard"] for r in every["shards"]) == ["1/2", "2/2"]
            assert sum(r["result"]["applied"] for r in every["shards"]) == COUNT
    finally:
        for p in procs:
            stop_process(p)
